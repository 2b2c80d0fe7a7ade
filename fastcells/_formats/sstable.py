"""The LevelDB-style SSTable (TF's ``table`` format, as in a checkpoint's .index file):
uncompressed blocks of prefix-compressed (key, value) entries, each block followed by its
compression type and masked crc32c, the file ending in a footer of two block handles and the
magic number."""
import struct

from fastcells._formats import FormatError
from fastcells._formats.crc32c import crc32c, unmask
from fastcells._formats.protobuf import varint


_TABLE_MAGIC = 0xdb4775248b80fb57
_FOOTER_LEN = 48            # two BlockHandles (<= 20 bytes each) padded to 40, then the magic
_BLOCK_TRAILER = 5          # 1 byte compression type, 4 bytes masked crc32c


def _read_block(buf, offset, size, what, verify):
    """The contents of the table block at (offset, size), its trailer checked."""
    end = offset + size
    if offset < 0 or end + _BLOCK_TRAILER > len(buf):
        raise FormatError(f"the {what} block (offset {offset}, size {size}) runs past the end of "
                          f"the file ({len(buf)} bytes): truncated?")
    ctype = buf[end]
    if ctype != 0:
        kind = {1: "snappy"}.get(ctype, f"type {ctype}")
        raise FormatError(f"the {what} block is compressed ({kind}); only uncompressed index "
                          f"blocks (what TF writes) are supported")
    if verify:
        stored = struct.unpack_from("<I", buf, end + 1)[0]
        if crc32c(bytes(buf[offset:end + 1])) != unmask(stored):
            raise FormatError(f"the {what} block at offset {offset} fails its crc32c check")
    return buf[offset:end]


def _block_entries(block, what):
    """The (key, value) entries of one block (prefix-compressed keys; restart array ignored
    beyond its bounds check, entries are read in order)."""
    n = len(block)
    if n < 4:
        raise FormatError(f"the {what} block is too short ({n} bytes)")
    num_restarts = struct.unpack_from("<I", block, n - 4)[0]
    limit = n - 4 - 4 * num_restarts
    if limit < 0:
        raise FormatError(f"the {what} block claims {num_restarts} restart points, more than fit")
    pos, key, out = 0, b"", []
    while pos < limit:
        shared, pos = varint(block, pos)
        unshared, pos = varint(block, pos)
        vlen, pos = varint(block, pos)
        if shared > len(key) or pos + unshared + vlen > limit:
            raise FormatError(f"a malformed entry in the {what} block")
        key = key[:shared] + bytes(block[pos:pos + unshared])
        pos += unshared
        out.append((key, bytes(block[pos:pos + vlen])))
        pos += vlen
    return out


def read_handle(buf, pos=0):
    offset, pos = varint(buf, pos)
    size, pos = varint(buf, pos)
    return offset, size, pos


def read_table(buf, verify):
    """{key bytes: value bytes} of the whole table."""
    if len(buf) < _FOOTER_LEN:
        raise FormatError(f"too short for a table ({len(buf)} bytes; the footer alone is "
                          f"{_FOOTER_LEN}): truncated?")
    footer = buf[len(buf) - _FOOTER_LEN:]
    magic = struct.unpack_from("<Q", footer, 40)[0]
    if magic != _TABLE_MAGIC:
        raise FormatError("no table magic number at the end: not a TF checkpoint index, or "
                          "truncated")
    _, _, pos = read_handle(footer)                           # metaindex (unused)
    ioff, isize, _ = read_handle(footer, pos)
    entries = {}
    for _, hv in _block_entries(_read_block(buf, ioff, isize, "index", verify), "index"):
        off, size, _ = read_handle(hv)
        for k, v in _block_entries(_read_block(buf, off, size, "data", verify), "data"):
            entries[k] = v
    return entries
