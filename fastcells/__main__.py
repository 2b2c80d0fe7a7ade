"""python -m fastcells — check every cell against the NumPy reference, then time one cell call.

    python -m fastcells            accuracy check + timing table; exit status 1 on any mismatch
    python -m fastcells check      accuracy check only
    python -m fastcells --version  the installed version
    python -m fastcells bench      one cell call over the benchmark grid, fastcells beside NumPy
                                   and (if installed) torch, as a table
                                   (fastcells.benchmarks.cells)
    python -m fastcells bench-seq  whole sequences beside a NumPy loop, torch and onnxruntime
                                   when installed (fastcells.benchmarks.sequences)
    python -m fastcells bench-seq --precision fp32,bf16,int8
                                   the reduced-precision table: fastcells at each precision
                                   beside onnxruntime fp32 / DynamicQuantizeLSTM and torch fp32
                                   / torch.ao dynamic int8, with accuracy and % of floor
                                   (fastcells.benchmarks.quantized); without --precision,
                                   bench-seq is the fp32 table above
    bench / bench-seq options: --quick, --rounds N, --case ID (repeatable). Both tables open
    with the machine line and the limits the run measured (multiply-add peaks, GEMM rates,
    cache bandwidths), and give each row its floor on this machine and % of floor; peers are
    timed round robin (the minimum over rounds of each round's median).

It prints show_config() first. The accuracy check runs each cell for 100 steps (batch 4) from
TF-initialised weights and compares every output with fastcells.reference computed in float64
on the same weights and inputs: float32 within 1e-5 norm-wise relative, float64 within 1e-12.
"""
import argparse
import sys
import timeit

import numpy as np

import fastcells
from fastcells import reference
from fastcells.benchmarks import warm_up
from fastcells.cells._oracle import oracle_step

TOLERANCE = {np.float32: 1e-5, np.float64: 1e-12}
STEPS, BATCH, INPUT = 100, 4, 48


def _configs():
    """(label, factory(dtype) -> cell)."""
    lstm_options = dict(use_peepholes=True, cell_clip=3.0, num_proj=40, proj_clip=2.0)
    return [
        ("BasicRNNCell(64)", lambda dt: fastcells.BasicRNNCell(64, dtype=dt, seed=1)),
        ("BasicLSTMCell(64)", lambda dt: fastcells.BasicLSTMCell(64, dtype=dt, seed=2)),
        ("LSTMCell(64, peepholes, clips, num_proj=40)",
         lambda dt: fastcells.LSTMCell(64, dtype=dt, seed=3, **lstm_options)),
        ("GRUCell(64)", lambda dt: fastcells.GRUCell(64, dtype=dt, seed=4)),
    ]


def check(out=sys.stdout):
    """Runs every cell against the reference; returns True when all agree."""
    rng = np.random.default_rng(0)
    x_all = rng.standard_normal((BATCH, STEPS, INPUT))
    ok = True
    print(f"accuracy: {STEPS} steps, batch {BATCH}, input {INPUT}, against fastcells.reference "
          f"in float64 (isa {fastcells._core.default_isa()})", file=out)
    for label, make in _configs():
        for dtype in (np.float32, np.float64):
            cell = make(dtype)
            cell.build(INPUT)
            ref_step = oracle_step(cell, np.float64)       # the cell's weights, in float64
            x = x_all.astype(dtype)
            state = cell.zero_state(BATCH, dtype)
            ref_state = cell.zero_state(BATCH, dtype)
            got, want = [], []
            for t in range(STEPS):
                output, state = cell(x[:, t], state)
                ref_out, ref_state = ref_step(x[:, t], ref_state)
                got.append(output)
                want.append(ref_out)
            got, want = np.stack(got), np.stack(want)
            err = np.linalg.norm(got - want) / np.linalg.norm(want)
            passed = bool(err <= TOLERANCE[dtype])
            ok &= passed
            print(f"  {label:<44} {np.dtype(dtype).name:>7}  rel. error {err:9.2e}  "
                  f"(tolerance {TOLERANCE[dtype]:.0e})  {'ok' if passed else 'MISMATCH'}",
                  file=out)
    return ok


def _best_seconds(fn, number):
    """Seconds per call, best of 7 repeats of `number` calls, after the threads other libraries
    leave spinning (OpenBLAS after the accuracy check) have gone idle and a short warm-up."""
    warm_up(fn, 0.05)
    return min(timeit.repeat(fn, number=number, repeat=7)) / number


def timing(out=sys.stdout, batch=1, units=128):
    """One LSTM cell call, B=batch, I=H=units, float32: fastcells vs NumPy (and torch)."""
    rng = np.random.default_rng(0)
    cell = fastcells.BasicLSTMCell(units, seed=0)
    cell.build(units)
    w = cell.get_weights()
    x = rng.standard_normal((batch, units)).astype(np.float32)
    state = cell.zero_state(batch, np.float32)
    inplace = cell.zero_state(batch, np.float32)
    rows = [("fastcells cell(x, state)", _best_seconds(lambda: cell(x, state), 2000)),
            ("fastcells cell.step_(x, state)", _best_seconds(lambda: cell.step_(x, inplace), 2000)),
            ("NumPy reference.lstm_cell", _best_seconds(
                lambda: reference.lstm_cell(x, state.c, state.h, w["kernel"], w["bias"]), 2000))]
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        torch_cell = torch.nn.LSTMCell(units, units)
        tx, th, tc = (torch.from_numpy(a) for a in (x, np.zeros_like(x), np.zeros_like(x)))
        with torch.inference_mode():
            rows.append(("torch.nn.LSTMCell", _best_seconds(lambda: torch_cell(tx, (th, tc)),
                                                            2000)))
    fast = rows[0][1]
    print(f"\ntiming: one LSTM step, B={batch}, I=H={units}, float32, "
          f"isa {fastcells._core.default_isa()} (best of 7 repeats)", file=out)
    for label, seconds in rows:
        print(f"  {label:<34} {seconds * 1e6:9.2f} us   {seconds / fast:6.2f}x the time of "
              f"cell(x, state)", file=out)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastcells", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", default="all",
                        choices=["all", "check", "bench", "bench-seq"])
    parser.add_argument("--quick", action="store_true",
                        help="bench, bench-seq: fewer, shorter round-robin rounds and probes")
    parser.add_argument("--rounds", type=int, default=None, metavar="N",
                        help="bench, bench-seq: round-robin rounds (each times every peer once, "
                             "in a rotated order; default 7, 5 with --precision, 3 with "
                             "--quick)")
    parser.add_argument("--case", action="append", default=None, metavar="ID",
                        help="bench, bench-seq: only the grid row with this id (e.g. "
                             "lstm-B1-I32-H32-T63); repeat for several")
    parser.add_argument("--precision", default=None, metavar="LIST",
                        help="bench-seq: the reduced-precision table for these fastcells "
                             "precisions, comma-separated from fp32,bf16,int8 (default: the "
                             "fp32 table)")
    parser.add_argument("--version", action="version", version=f"fastcells {fastcells.__version__}")
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        parser.error(f"--rounds: expected >= 1, got {args.rounds}")
    precisions = None
    if args.precision is not None:
        from fastcells.benchmarks import quantized
        if args.command != "bench-seq":
            parser.error(f"--precision: expected with bench-seq, got it with {args.command}")
        try:
            precisions = quantized.parse_precisions(args.precision)
        except ValueError as e:
            parser.error(str(e))
    if args.command in ("bench", "bench-seq"):
        from fastcells.benchmarks import cells, quantized, sequences
        module = cells if args.command == "bench" else sequences
        grid_name = args.command
        if precisions is not None:
            module, grid_name = quantized, "bench-seq --precision"
        cases = None
        if args.case:
            by_id = {case.id: case for case in module.grid(full=True)}
            unknown = [c for c in args.case if c not in by_id]
            if unknown:
                parser.error(f"--case: expected ids of the {grid_name} grid "
                             f"({', '.join(by_id)}), got {', '.join(unknown)}")
            cases = [by_id[c] for c in args.case]
        fastcells.show_config()
        print()
        options = {} if precisions is None else {"precisions": precisions}
        module.run(quick=args.quick, cases=cases, rounds=args.rounds, **options)
        return 0
    fastcells.show_config()
    print()
    ok = check()
    if args.command == "all":
        timing()
    print("\nall cells agree with the reference" if ok else "\nMISMATCH: see the lines above")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
