"""The LevelDB-style SSTable (TF's ``table`` format, as in a checkpoint's .index file):
uncompressed blocks of prefix-compressed (key, value) entries, each block followed by its
compression type and masked crc32c, the file ending in a footer of two block handles and the
magic number.

Reading is bounded by the file's size, whatever the file says: each distinct data block is
read (and crc-checked) once however many index entries name it, blocks may not overlap each
other or the index block (TF's TableBuilder writes them one after the other), so the bytes
visited total at most the file's size; keys are rebuilt in one buffer per block (an entry
keeps `shared` bytes of the previous key and appends its own), so a chain of long shared
prefixes costs its stored bytes, not the sum of the keys' lengths. A key is never longer than
its block: each of its bytes is a distinct stored suffix byte of an entry up to it in the same
block (a block starts from the empty key, and `shared` may not exceed the previous key)."""
import struct

from fastcells._formats import FormatError
from fastcells._formats.crc32c import crc32c, unmask
from fastcells._formats.protobuf import varint


_TABLE_MAGIC = 0xdb4775248b80fb57
_FOOTER_LEN = 48            # two BlockHandles (<= 20 bytes each) padded to 40, then the magic
_BLOCK_TRAILER = 5          # 1 byte compression type, 4 bytes masked crc32c


def _check_extent(buf, offset, size, what):
    """FormatError unless the block at (offset, size) and its trailer end before the footer."""
    room = len(buf) - _FOOTER_LEN
    if offset + size + _BLOCK_TRAILER > room:
        raise FormatError(f"the {what} block (offset {offset}, size {size}) runs past the end of "
                          f"the file's blocks ({room} bytes before the footer): truncated?")


def _read_block(buf, offset, size, what, verify):
    """The contents of the table block at (offset, size) (a memoryview into `buf`), its trailer
    checked."""
    _check_extent(buf, offset, size, what)
    end = offset + size
    ctype = buf[end]
    if ctype != 0:
        kind = {1: "snappy"}.get(ctype, f"type {ctype}")
        raise FormatError(f"the {what} block is compressed ({kind}); only uncompressed index "
                          f"blocks (what TF writes) are supported")
    if verify:
        stored = struct.unpack_from("<I", buf, end + 1)[0]
        if crc32c(buf[offset:end + 1]) != unmask(stored):
            raise FormatError(f"the {what} block at offset {offset} fails its crc32c check")
    return buf[offset:end]


def iter_block(block, what):
    """(key, value) of each entry of one block, in order. key: a bytearray rebuilt in place
    for each entry (valid until the next one; copy it with bytes(key) to keep it); value: a
    memoryview into `block`. The restart array is bounds-checked, entries are read in order."""
    block = memoryview(block)
    n = len(block)
    if n < 4:
        raise FormatError(f"the {what} block is too short ({n} bytes)")
    num_restarts = struct.unpack_from("<I", block, n - 4)[0]
    if num_restarts > (n - 4) // 4:
        raise FormatError(f"the {what} block claims {num_restarts} restart points, more than "
                          f"fit in its {n} bytes")
    limit = n - 4 - 4 * num_restarts
    entries = block[:limit]                 # entry varints may not run into the restart array
    pos, key = 0, bytearray()
    while pos < limit:
        start = pos
        where = f"the entry at byte {start} of the {what} block"
        shared, pos = varint(entries, pos, f"{where}: its shared length", bits=32)
        unshared, pos = varint(entries, pos, f"{where}: its key length", bits=32)
        vlen, pos = varint(entries, pos, f"{where}: its value length", bits=32)
        if shared > len(key):
            raise FormatError(f"{where} shares {shared} bytes of a previous key of "
                              f"{len(key)} bytes")
        if unshared + vlen > limit - pos:
            raise FormatError(f"{where} claims {unshared} key and {vlen} value bytes, past the "
                              f"end of the block's entries ({limit - pos} bytes left)")
        del key[shared:]
        key += entries[pos:pos + unshared]
        pos += unshared
        yield key, entries[pos:pos + vlen]
        pos += vlen


def read_handle(buf, pos=0):
    """(offset, size, next position) of the BlockHandle (two varint64s) at buf[pos]."""
    offset, pos = varint(buf, pos, "a block handle's offset")
    size, pos = varint(buf, pos, "a block handle's size")
    return offset, size, pos


def iter_table(buf, verify):
    """(key, value) of every entry of the table in `buf` (bytes-like), in the order of the
    index; key and value as iter_block gives them (key valid until the next entry). verify:
    check every block read against its crc32c. An index entry repeating a block already read
    adds nothing (it is read once); blocks overlapping each other or the index block, handles
    past the end, a bad magic number or crc are FormatError."""
    buf = memoryview(buf)
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
    index = _read_block(buf, ioff, isize, "index", verify)
    handles, seen = [], set()
    for k, (_, hv) in enumerate(iter_block(index, "index")):
        try:
            off, size, _ = read_handle(hv)
        except FormatError as e:
            raise FormatError(f"index entry {k}: {e}") from None
        _check_extent(buf, off, size, "data")
        if (off, size) not in seen:                           # each distinct block once
            seen.add((off, size))
            handles.append((off, size))
    # Blocks (with their trailers) may not overlap each other or the index block: so the blocks
    # read total at most the file's size.
    extents = sorted([(off, size, "data") for off, size in handles] + [(ioff, isize, "index")])
    for (a_off, a_size, a_kind), (b_off, b_size, b_kind) in zip(extents, extents[1:]):
        if b_off < a_off + a_size + _BLOCK_TRAILER:
            raise FormatError(f"the {a_kind} block (offset {a_off}, size {a_size}) and the "
                              f"{b_kind} block (offset {b_off}, size {b_size}) overlap (not a "
                              f"table TF wrote)")
    for off, size in handles:
        yield from iter_block(_read_block(buf, off, size, "data", verify), "data")


def read_table(buf, verify):
    """{key bytes: value bytes} of the whole table (every key materialised: for trusted or
    small tables; iter_table streams them)."""
    return {bytes(k): bytes(v) for k, v in iter_table(buf, verify)}
