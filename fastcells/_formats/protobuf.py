"""Protobuf wire-format reading: varints, the fields of one message (no schema), and the fields
of a message read against a small schema (field number -> name and kind), every wire type
checked. Every malformed input raises FormatError saying what and where; nothing here reads
past its buffer or builds a value larger than its buffer."""
import struct

from fastcells._formats import FormatError


VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5
_WIRE_NAMES = {VARINT: "varint", FIXED64: "fixed64", LEN: "length-delimited",
               FIXED32: "fixed32", 3: "start-group", 4: "end-group"}

# schema kind -> the wire type it must come in
_KIND_WIRE = {"int32": VARINT, "int64": VARINT, "enum": VARINT, "bool": VARINT,
              "uint64": VARINT, "fixed32": FIXED32, "fixed64": FIXED64, "bytes": LEN}


def varint(buf, pos, what="a varint", bits=64):
    """(value, next position) of the base-128 varint at buf[pos]: at most ceil(bits / 7) bytes
    and a value below 2**bits (protobuf: 64; LevelDB's varint32: 32), else FormatError."""
    result = shift = 0
    n = len(buf)
    while True:
        if pos >= n:
            raise FormatError(f"{what} runs past the end of its buffer (truncated)")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            if result >> bits:
                raise FormatError(f"{what} overflows {bits} bits")
            return result, pos
        shift += 7
        if shift >= bits:
            raise FormatError(f"{what} is longer than {(bits + 6) // 7} bytes")


def iter_fields(buf, what="a message"):
    """(field number, wire type, value) of each field of the message in `buf`, in order:
    varints and fixed32/fixed64 as int, length-delimited as a memoryview into `buf` (no copy).
    Groups (wire types 3, 4), field number 0 and anything past the end are FormatError."""
    buf = memoryview(buf)
    pos, n = 0, len(buf)
    while pos < n:
        start = pos
        key, pos = varint(buf, pos, f"{what}: the field key at byte {start}")
        field, wire = key >> 3, key & 7
        if field == 0:
            raise FormatError(f"{what}: field number 0 at byte {start} (not a protobuf message)")
        if wire == VARINT:
            value, pos = varint(buf, pos, f"{what}: field {field} (varint)")
        elif wire == FIXED64:
            if pos + 8 > n:
                raise FormatError(f"{what}: field {field} (fixed64) runs past the end of the "
                                  f"message ({n - pos} bytes left)")
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == LEN:
            size, pos = varint(buf, pos, f"{what}: the length of field {field}")
            if size > n - pos:
                raise FormatError(f"{what}: field {field} claims {size} bytes, past the end of "
                                  f"the message ({n - pos} bytes left)")
            value, pos = buf[pos:pos + size], pos + size
        elif wire == FIXED32:
            if pos + 4 > n:
                raise FormatError(f"{what}: field {field} (fixed32) runs past the end of the "
                                  f"message ({n - pos} bytes left)")
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise FormatError(f"{what}: field {field} has wire type {wire} "
                              f"({_WIRE_NAMES.get(wire, 'invalid')}), which is not supported")
        yield field, wire, value


def message_fields(buf):
    """The fields of a protobuf message: {field number: [values]} (varints as int, fixed32 and
    fixed64 as int, length-delimited as bytes)."""
    out = {}
    for field, wire, value in iter_fields(buf):
        out.setdefault(field, []).append(bytes(value) if wire == LEN else value)
    return out


def _signed(value, bits):
    """A varint's two's-complement value as a signed integer of `bits` bits (protobuf int32
    and int64: negatives are 10-byte sign-extended varints); None when it does not fit."""
    if value >= 1 << 63:
        value -= 1 << 64
    if not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
        return None
    return value


def read_message(buf, schema, what):
    """The fields of `schema` in the message `buf`: {name: value}, absent fields absent.

    schema: {field number: (name, kind)} or (name, kind, "repeated"); kind one of int32,
    int64, enum (signed, as protobuf encodes them), uint64, bool, fixed32, fixed64, bytes (a
    string or nested message, as a memoryview). A repeated field gives a list; a singular one
    seen twice keeps the last value (protobuf's rule). Fields not in the schema are skipped
    (their wire format still checked). A known field in another wire type, or an int32 that
    does not fit 32 bits, is FormatError naming `what` and the field."""
    out = {}
    for field, wire, value in iter_fields(buf, what):
        spec = schema.get(field)
        if spec is None:
            continue
        name, kind = spec[0], spec[1]
        want = _KIND_WIRE[kind]
        if wire != want:
            raise FormatError(f"{what}: field {field} ({name}) has wire type {wire} "
                              f"({_WIRE_NAMES.get(wire)}), expected {want} ({_WIRE_NAMES[want]})")
        if kind in ("int32", "enum", "int64"):
            bits = 64 if kind == "int64" else 32
            signed = _signed(value, bits)
            if signed is None:
                raise FormatError(f"{what}: field {field} ({name}) = {value} does not fit "
                                  f"in {kind}")
            value = signed
        elif kind == "bool":
            value = value != 0
        if len(spec) > 2:
            out.setdefault(name, []).append(value)
        else:
            out[name] = value
    return out
