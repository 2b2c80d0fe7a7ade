"""Reads the disassembly of aarch64 kernel objects and reports each one's product loops: the
innermost loops with an int8 or bf16 product instruction (sdot, smmla, bfmlalb/t), or of which
at least a third of the instructions are multiply-adds (fmla; smull/smull2 + saddw/saddw2,
the portable int8 product's widening steps); the epilogues' loops, a few fmla among the
activations' selects and compares, are not: instructions per iteration, the product's
instructions, and vector loads and stores relative to sp (register spills). Exits 1 when any
product loop spills.

    python tools/aarch64/inner_loops.py OBJDUMP KERNEL.o [KERNEL.o ...]

OBJDUMP: the aarch64 objdump (aarch64-linux-gnu-objdump). A loop is a backward branch and the
instructions from its target to it; it is innermost when no other backward branch lies inside.
Each kernel's loops are grouped by their length, their product instructions and their spills,
with a count, the commonest first.
"""
import re
import subprocess
import sys
from collections import Counter

PRODUCT_ONLY = {"sdot", "smmla", "bfmlalb", "bfmlalt"}     # in no epilogue
MULTIPLY_ADDS = PRODUCT_ONLY | {"fmla", "smull", "smull2", "saddw", "saddw2"}
BRANCHES = {"b", "cbz", "cbnz", "tbz", "tbnz"}
_FUNCTION = re.compile(r"^([0-9a-f]+) <(.+)>:$")
_INSN = re.compile(r"^\s+([0-9a-f]+):\s+(\S+)\s*(.*)$")
_TARGET = re.compile(r"\b([0-9a-f]+) <")
_VECTOR_REG = re.compile(r"\b[qdsv][0-9]+\b")


def functions(objdump, path):
    """{name: [(address, opcode, operands)]} of the object's text."""
    listing = subprocess.run([objdump, "-d", "--no-show-raw-insn", path], check=True,
                             capture_output=True, text=True).stdout
    found, body = {}, None
    for line in listing.splitlines():
        m = _FUNCTION.match(line)
        if m:
            body = found.setdefault(m.group(2), [])
            continue
        m = _INSN.match(line)
        if m and body is not None:
            body.append((int(m.group(1), 16), m.group(2), m.group(3)))
    return found


def innermost_loops(body):
    """The [first, last] index ranges of the innermost loops of one function."""
    index = {address: i for i, (address, _, _) in enumerate(body)}
    loops = []
    for i, (address, opcode, operands) in enumerate(body):
        if opcode in BRANCHES or opcode.startswith("b."):
            m = _TARGET.search(operands)
            if m and int(m.group(1), 16) < address and int(m.group(1), 16) in index:
                loops.append((index[int(m.group(1), 16)], i))
    return [(a, b) for a, b in loops
            if not any((a, b) != (c, d) and a <= c and d <= b for c, d in loops)]


def report(objdump, path):
    """Prints the object's multiply-add loops; returns the number that spill."""
    shapes = Counter()
    for body in functions(objdump, path).values():
        for first, last in innermost_loops(body):
            loop = body[first:last + 1]
            ops = Counter(opcode for _, opcode, _ in loop)
            macs = sum(ops[o] for o in MULTIPLY_ADDS)
            if not any(ops[o] for o in PRODUCT_ONLY) and 3 * macs < len(loop):
                continue
            spills = sum(1 for _, opcode, operands in loop
                         if opcode[:2] in ("ld", "st") and "sp" in operands.split("[")[-1]
                         and _VECTOR_REG.search(operands))
            shapes[(len(loop), tuple(sorted((o, n) for o, n in ops.items() if o in MULTIPLY_ADDS)),
                    spills)] += 1
    spilling = 0
    print(path.rsplit("/", 1)[-1])
    for (size, macs, spills), count in sorted(shapes.items(), key=lambda kv: -kv[1]):
        spilling += count if spills else 0
        print(f"   {count:3d} loop(s) of {size:3d} instructions: "
              f"{', '.join(f'{n} {o}' for o, n in macs)}; {spills} vector spill(s)")
    return spilling


def main(argv):
    if len(argv) < 3:
        print(f"usage: {argv[0]} OBJDUMP KERNEL.o [KERNEL.o ...]", file=sys.stderr)
        return 2
    objdump, paths = argv[1], argv[2:]
    spilling = sum(report(objdump, path) for path in paths)
    if spilling:
        print(f"{spilling} multiply-add loop(s) spill vector registers")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
