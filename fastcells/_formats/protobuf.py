"""Protobuf wire-format reading (no schema): varints and the fields of one message."""
import struct

from fastcells._formats import FormatError


def varint(buf, pos):
    """(value, next position) of the base-128 varint at buf[pos]."""
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise FormatError("a varint runs past the end of its buffer")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise FormatError("a varint is longer than 10 bytes")


def message_fields(buf):
    """The fields of a protobuf message: {field number: [values]} (varints as int, fixed32 and
    fixed64 as int, length-delimited as bytes)."""
    out, pos, n = {}, 0, len(buf)
    while pos < n:
        key, pos = varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = varint(buf, pos)
        elif wire == 1:
            if pos + 8 > n:
                raise FormatError("a fixed64 field runs past the end of its message")
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == 2:
            size, pos = varint(buf, pos)
            if pos + size > n:
                raise FormatError("a length-delimited field runs past the end of its message")
            value, pos = bytes(buf[pos:pos + size]), pos + size
        elif wire == 5:
            if pos + 4 > n:
                raise FormatError("a fixed32 field runs past the end of its message")
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise FormatError(f"unsupported protobuf wire type {wire} (field {field})")
        out.setdefault(field, []).append(value)
    return out
