"""load_tf_checkpoint on hostile files: checkpoints built here by a small tensor-bundle writer
(an SSTable of uncompressed blocks, protobuf values, masked crc32c, as TF writes them), then
broken on purpose. Every malformed file must raise ValueError naming the file and the field or
tensor; the two blow-ups (a prefix-compression bomb, an index naming one block many times) and
the shard reads are bounded in memory (tracemalloc peak) and time; seeded random mutations of
the fixture files give a result or a ValueError, each fast.

Bounds: time < 2 s for the blow-up cases (linear work takes milliseconds; the quadratic work
before took seconds to minutes); peak traced memory as stated per test, from the files'
sizes."""
import os
import re
import shutil
import struct
import time
import tracemalloc

import numpy as np
import pytest

from fastcells._formats import crc32c as crc
from fastcells._formats import sstable
from fastcells.convert import load_tf_checkpoint

HERE = os.path.dirname(os.path.abspath(__file__))
CKPT = os.path.join(HERE, "data", "tf_ckpt")
FIXTURES = ["basic_lstm", "multi_gru_lstm", "bidir_gru_f64", "sharded_rnn", "tf2_object"]
TIME_LIMIT = 2.0                        # seconds, for the cases that used to blow up

# ---------------------------------------------------------------------------------------------
# A tensor-bundle writer: protobuf fields, SSTable blocks and tables, checkpoints
# ---------------------------------------------------------------------------------------------

DT_FLOAT, DT_DOUBLE, DT_INT32, DT_STRING, DT_BOOL, DT_INT64 = 1, 2, 3, 7, 10, 9
NP_TO_TF = {np.dtype(np.float32): 1, np.dtype(np.float64): 2, np.dtype(np.int32): 3,
            np.dtype(np.uint8): 4, np.dtype(np.int16): 5, np.dtype(np.int8): 6,
            np.dtype(np.int64): 9, np.dtype(np.bool_): 10, np.dtype(np.uint16): 17,
            np.dtype(np.float16): 19, np.dtype(np.uint32): 22, np.dtype(np.uint64): 23}


def uvarint(n):
    n &= (1 << 64) - 1                  # negatives as protobuf writes them: 10 bytes
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def f_varint(number, value):
    return uvarint(number << 3 | 0) + uvarint(value)


def f_bytes(number, payload):
    return uvarint(number << 3 | 2) + uvarint(len(payload)) + payload


def f_fixed32(number, value):
    return uvarint(number << 3 | 5) + struct.pack("<I", value)


def f_fixed64(number, value):
    return uvarint(number << 3 | 1) + struct.pack("<Q", value)


def mask(c):
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def shape_proto(shape):
    return b"".join(f_bytes(2, f_varint(1, d)) for d in shape)


def entry_proto(dtype=DT_FLOAT, shape=(), shard=0, offset=0, size=None, crc32c=None):
    """A BundleEntryProto; size defaults to the shape's byte count at 4 bytes per element."""
    if size is None:
        size = int(np.prod(shape, dtype=np.int64)) * 4
    out = f_varint(1, dtype) + f_bytes(2, shape_proto(shape))
    out += (f_varint(3, shard) if shard else b"") + (f_varint(4, offset) if offset else b"")
    out += f_varint(5, size) if size else b""
    return out + (f_fixed32(6, crc32c) if crc32c is not None else b"")


def header_proto(num_shards=1, endianness=0):
    return f_varint(1, num_shards) + (f_varint(2, endianness) if endianness else b"") + \
        f_bytes(3, f_varint(1, 1))


def raw_block(triples, restarts=(0,)):
    """A block from explicit (shared, suffix, value) entries and restart offsets."""
    body = b"".join(uvarint(s) + uvarint(len(k)) + uvarint(len(v)) + k + v
                    for s, k, v in triples)
    return body + b"".join(struct.pack("<I", r) for r in restarts) + \
        struct.pack("<I", len(restarts))


def block(entries, restart_interval=16):
    """A block of sorted (key, value) entries, prefix-compressed as LevelDB's BlockBuilder."""
    triples, restarts, prev, pos = [], [], b"", 0
    for k, (key, value) in enumerate(entries):
        shared = 0
        if k % restart_interval:
            while shared < min(len(prev), len(key)) and prev[shared] == key[shared]:
                shared += 1
        else:
            restarts.append(pos)
        triples.append((shared, key[shared:], value))
        pos += len(uvarint(shared) + uvarint(len(key) - shared) + uvarint(len(value))) + \
            len(key) - shared + len(value)
        prev = key
    return raw_block(triples, restarts or [0])


def table(data_blocks, index=None):
    """An SSTable file: data_blocks (contents) each with its trailer, an empty metaindex, the
    index block and the footer. index: [(key, block number or (offset, size))] (default one
    entry per block, in order)."""
    out, handles = bytearray(), []
    for contents in data_blocks:
        handles.append((len(out), len(contents)))
        out += contents + b"\x00" + struct.pack("<I", mask(crc.crc32c(contents + b"\x00")))
    if index is None:
        index = [(b"\xff" * (k + 1), k) for k in range(len(data_blocks))]
    index_entries = [(key, uvarint(h[0]) + uvarint(h[1]))
                     for key, ref in index
                     for h in [handles[ref] if isinstance(ref, int) else ref]]
    meta, index_block = raw_block([]), block(index_entries, restart_interval=1)
    meta_handle = (len(out), len(meta))
    out += meta + b"\x00" + struct.pack("<I", mask(crc.crc32c(meta + b"\x00")))
    index_handle = (len(out), len(index_block))
    out += index_block + b"\x00" + struct.pack("<I", mask(crc.crc32c(index_block + b"\x00")))
    handles_bytes = b"".join(uvarint(a) + uvarint(b) for a, b in (meta_handle, index_handle))
    return bytes(out + handles_bytes.ljust(40, b"\x00") + struct.pack("<Q", 0xdb4775248b80fb57))


def write_checkpoint(d, tensors, num_shards=1, big_endian=False, block_entries=64):
    """Writes model.index and model.data-*: tensors {name: array} or {name: (array, shard)};
    returns the prefix."""
    shards = [bytearray() for _ in range(num_shards)]
    entries = [(b"", header_proto(num_shards, 1 if big_endian else 0))]
    for name in sorted(tensors):
        a, shard = tensors[name] if isinstance(tensors[name], tuple) else (tensors[name], 0)
        a = np.asarray(a)
        raw = a.astype(a.dtype.newbyteorder(">" if big_endian else "<")).tobytes()
        value = f_varint(1, NP_TO_TF[a.dtype]) + f_bytes(2, shape_proto(a.shape))
        value += f_varint(3, shard) + f_varint(4, len(shards[shard])) + f_varint(5, len(raw))
        value += f_fixed32(6, mask(crc.crc32c(raw)))
        shards[shard] += raw
        entries.append((name.encode(), value))
    blocks = [block(entries[k:k + block_entries]) for k in range(0, len(entries), block_entries)]
    write_files(d, table(blocks), shards)
    return str(d / "model")


def write_files(d, index_bytes, shards=(b"",)):
    (d / "model.index").write_bytes(index_bytes)
    for k, blob in enumerate(shards):
        (d / f"model.data-{k:05d}-of-{len(shards):05d}").write_bytes(bytes(blob))
    return str(d / "model")


def index_with(entries):
    """One block of (key, value) entries under the default header (sorted by key)."""
    return table([block(sorted([(b"", header_proto())] + list(entries)))])


def _call(fn):
    try:
        return fn()
    except Exception as e:              # noqa: BLE001 - returned for the test to assert on
        return e


def measure(fn):
    """(result or exception, peak traced bytes, seconds) of fn(): timed on a first call
    without tracing (tracemalloc slows allocation-heavy code several-fold), the peak taken
    on a second, traced call."""
    t0 = time.perf_counter()
    _call(fn)
    seconds = time.perf_counter() - t0
    tracemalloc.start()
    try:
        result = _call(fn)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return result, peak, seconds


# ---------------------------------------------------------------------------------------------
# The writer is right: what it writes loads back exactly, as the fixtures do
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("big_endian", [False, True])
def test_written_checkpoint_loads_back(tmp_path, big_endian):
    rng = np.random.default_rng(0)
    tensors = {"a/kernel": rng.standard_normal((5, 8)).astype(np.float32),
               "a/bias": rng.standard_normal(8),
               "b/steps": np.arange(6, dtype=np.int64).reshape(2, 3),
               "b/mask": np.array([True, False, True]),
               "b/empty": np.zeros((0, 4), np.float32),
               "b/scalar": np.float16(1.5)}
    tensors.update({f"many/v{k:03d}": np.full(3, k, np.int32) for k in range(100)})  # 2 blocks
    prefix = write_checkpoint(tmp_path, tensors, big_endian=big_endian)
    got = load_tf_checkpoint(prefix)
    assert sorted(got) == sorted(tensors)
    for name, want in tensors.items():
        want = np.asarray(want)
        assert got[name].dtype == want.dtype and got[name].dtype.isnative, name
        assert got[name].shape == want.shape and got[name].flags.writeable, name
        np.testing.assert_array_equal(got[name], want, err_msg=name)
    assert sorted(load_tf_checkpoint(prefix, scope="b")) == \
        ["b/empty", "b/mask", "b/scalar", "b/steps"]


def test_written_two_shards_load_back(tmp_path):
    tensors = {"x/w": (np.arange(6, dtype=np.float32), 0), "y/w": (np.arange(4.0), 1)}
    got = load_tf_checkpoint(write_checkpoint(tmp_path, tensors, num_shards=2))
    np.testing.assert_array_equal(got["x/w"], tensors["x/w"][0])
    np.testing.assert_array_equal(got["y/w"], tensors["y/w"][0])


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_index_rewritten_by_the_writer_reads_the_same(tmp_path, name):
    src = os.path.join(CKPT, name)
    for f in os.listdir(src):
        shutil.copy(os.path.join(src, f), tmp_path / f)
    want = load_tf_checkpoint(str(tmp_path / "model"))
    entries = sstable.read_table((tmp_path / "model.index").read_bytes(), True)
    (tmp_path / "model.index").write_bytes(table([block(sorted(entries.items()))]))
    got = load_tf_checkpoint(str(tmp_path / "model"))
    assert sorted(got) == sorted(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


# ---------------------------------------------------------------------------------------------
# Blow-ups: memory and time bounded by the files' sizes
# ---------------------------------------------------------------------------------------------

def prefix_bomb(head, long_len=20000, count=6000, value=None):
    """Block entries: one key `head` + long_len bytes, then `count` keys sharing all of it and
    adding 2 bytes each (sorted): ~13 bytes stored per key of long_len + 2 bytes."""
    value = entry_proto(DT_FLOAT, (0,)) if value is None else value
    stem = head + b"x" * long_len
    triples = [(0, stem + b"\x00\x00", value)]
    triples += [(len(stem), struct.pack(">H", k), value) for k in range(1, count)]
    return triples


def test_prefix_compression_bomb_is_refused_in_bounded_memory(tmp_path):
    triples = [(0, b"", header_proto())] + prefix_bomb(b"junk/")
    index = table([raw_block(triples)])
    prefix = write_files(tmp_path, index)
    # 6000 names of 20 KB each would be 120 MB (240 MB as bytes and str); the cap is 64 bytes
    # per index byte + 1 MiB, ~6 MB for this ~100 KB index
    assert len(index) < 120_000
    err, peak, seconds = measure(lambda: load_tf_checkpoint(prefix))
    assert isinstance(err, ValueError), err
    assert re.search(r"model\.index: .*prefix-compression bomb", str(err)), err
    assert "'junk/xxx" in str(err) and "(20007 bytes)" in str(err)   # the key, shortened
    assert peak < 64 * len(index) + (4 << 20), peak
    assert seconds < TIME_LIMIT, seconds


@pytest.mark.parametrize("dtype", [DT_FLOAT, DT_STRING])
def test_prefix_bomb_outside_the_scope_is_never_materialised(tmp_path, dtype):
    weight = np.arange(3, dtype=np.float32)
    triples = [(0, b"", header_proto())]
    triples += prefix_bomb(b"junk/", value=entry_proto(dtype, (0,)))
    triples += [(0, b"w/kernel", entry_proto(DT_FLOAT, (3,), size=12,
                                             crc32c=mask(crc.crc32c(weight.tobytes()))))]
    index = table([raw_block(triples)])
    prefix = write_files(tmp_path, index, [weight.tobytes()])
    got, peak, seconds = measure(lambda: load_tf_checkpoint(prefix, scope="w"))
    assert not isinstance(got, Exception), got
    assert list(got) == ["w/kernel"]
    np.testing.assert_array_equal(got["w/kernel"], weight)
    assert peak < 2 * len(index) + (1 << 20), peak     # the index, one key buffer, a little
    assert seconds < TIME_LIMIT, seconds


def test_index_naming_one_block_many_times_reads_it_once(tmp_path):
    names = [f"t/{k:05d}".encode() for k in range(4200)]
    data = block([(b"", header_proto())] + [(n, entry_proto(DT_FLOAT, (0,))) for n in names])
    assert len(data) > 50_000
    once = write_files(tmp_path, table([data]))
    want = load_tf_checkpoint(once)
    index = table([data], index=[(b"\xff" + struct.pack(">H", k), 0) for k in range(1000)])
    prefix = write_files(tmp_path, index)
    got, peak, seconds = measure(lambda: load_tf_checkpoint(prefix))
    assert not isinstance(got, Exception), got
    assert sorted(got) == sorted(want) == sorted(n.decode() for n in names)
    assert seconds < TIME_LIMIT, seconds
    assert peak < 2 * len(index) + 4200 * 400 + (1 << 20), peak   # index + 4200 empty arrays


def test_overlapping_blocks_are_refused(tmp_path):
    data = block([(b"", header_proto())] + [(f"t/{k:05d}".encode(), entry_proto(DT_FLOAT, (0,)))
                                            for k in range(2500)])
    size = len(data)
    index = table([data], index=[(b"\xff" + struct.pack(">H", k), (k, size - k))
                                 for k in range(1000)])
    err, _, seconds = measure(lambda: load_tf_checkpoint(write_files(tmp_path, index),
                                                         verify_crc=False))
    assert isinstance(err, ValueError) and re.search(r"model\.index: .*overlap", str(err)), err
    assert seconds < TIME_LIMIT, seconds


def test_a_data_block_overlapping_the_index_block_is_refused(tmp_path):
    raw = table([block([(b"", header_proto())])])
    footer = raw[-48:]
    _, _, pos = sstable.read_handle(footer)
    ioff, isize, _ = sstable.read_handle(footer, pos)
    index = table([block([(b"", header_proto())])], index=[(b"\xff", (ioff, isize))])
    with pytest.raises(ValueError, match=r"model\.index: .*index block .*overlap"):
        load_tf_checkpoint(write_files(tmp_path, index), verify_crc=False)


def test_tensors_sharing_one_extent_are_refused_fast(tmp_path):
    shape = (12500,)                                      # 50 KB of float32
    blob = np.zeros(shape, np.float32).tobytes()
    entries = [(f"t/{k:04d}".encode(), entry_proto(DT_FLOAT, shape)) for k in range(1000)]
    prefix = write_files(tmp_path, index_with(entries), [blob])
    err, peak, seconds = measure(lambda: load_tf_checkpoint(prefix))
    assert isinstance(err, ValueError), err
    assert re.search(r"model\.data-00000-of-00001: tensors 't/0000' and 't/0001' overlap",
                     str(err)), err
    assert peak < 4 * len(blob) + (1 << 20), peak         # nothing read, nothing copied 1000x
    assert seconds < TIME_LIMIT, seconds


def test_overlapping_tensor_extents_are_refused(tmp_path):
    entries = [(b"a", entry_proto(DT_FLOAT, (4,), offset=0)),
               (b"b", entry_proto(DT_FLOAT, (4,), offset=12)),
               (b"e", entry_proto(DT_FLOAT, (0,), offset=12))]     # empty: may sit anywhere
    with pytest.raises(ValueError, match=r"data-00000-of-00001: tensors 'a' and 'b' overlap"):
        load_tf_checkpoint(write_files(tmp_path, index_with(entries), [bytes(28)]))
    entries[1] = (b"b", entry_proto(DT_FLOAT, (4,), offset=16))          # adjacent is fine
    got = load_tf_checkpoint(write_files(tmp_path, index_with(entries), [bytes(32)]))
    assert sorted(got) == ["a", "b", "e"]


def test_a_small_tensor_of_a_huge_shard_reads_only_its_bytes(tmp_path):
    weight = np.arange(16, dtype=np.float32)
    entries = [(b"w", entry_proto(DT_FLOAT, (16,), crc32c=mask(crc.crc32c(weight.tobytes()))))]
    prefix = write_files(tmp_path, index_with(entries), [weight.tobytes()])
    with open(tmp_path / "model.data-00000-of-00001", "r+b") as fh:
        fh.truncate(64 << 20)                             # 64 MB, sparse on most filesystems
    got, peak, _ = measure(lambda: load_tf_checkpoint(prefix))
    assert not isinstance(got, Exception), got
    np.testing.assert_array_equal(got["w"], weight)
    assert peak < 1 << 20, peak                           # not the shard's 64 MB


def test_an_extent_past_the_shard_end_is_refused_before_reading(tmp_path):
    entries = [(b"big", entry_proto(DT_FLOAT, (1 << 28,)))]          # claims 1 GiB
    err, peak, _ = measure(lambda: load_tf_checkpoint(
        write_files(tmp_path, index_with(entries), [bytes(64)])))
    assert isinstance(err, ValueError), err
    assert re.search(r"model\.data-00000-of-00001: tensor 'big' \(offset 0, 1073741824 bytes\) "
                     r"runs past the end of the file \(64 bytes\)", str(err)), err
    assert peak < 1 << 20, peak


# ---------------------------------------------------------------------------------------------
# Every malformed field: ValueError naming the file and the field or tensor
# ---------------------------------------------------------------------------------------------

SHAPE_23 = f_bytes(2, shape_proto((2, 3)))

# (case, the value of tensor b"t" (shape (2,3) float32 unless broken), message pattern)
BAD_ENTRIES = [
    ("dtype as bytes", f_bytes(1, b"\x01") + SHAPE_23, r"tensor 't'.*field 1 \(dtype\).*wire"),
    ("shape as varint", f_varint(1, 1) + f_varint(2, 6), r"tensor 't'.*field 2 \(shape\).*wire"),
    ("dim as fixed32", f_varint(1, 1) + f_bytes(2, f_fixed32(2, 3)),
     r"tensor 't' shape.*field 2 \(dim\).*wire"),
    ("dim size as bytes", f_varint(1, 1) + f_bytes(2, f_bytes(2, f_bytes(1, b"x"))),
     r"tensor 't' shape dim 0.*field 1 \(size\).*wire"),
    ("shard_id as bytes", f_varint(1, 1) + SHAPE_23 + f_bytes(3, b"\x00"),
     r"tensor 't'.*field 3 \(shard_id\).*wire"),
    ("offset as fixed64", f_varint(1, 1) + SHAPE_23 + f_fixed64(4, 0),
     r"tensor 't'.*field 4 \(offset\).*wire"),
    ("size as fixed32", f_varint(1, 1) + SHAPE_23 + f_fixed32(5, 24),
     r"tensor 't'.*field 5 \(size\).*wire"),
    ("crc32c as varint", f_varint(1, 1) + SHAPE_23 + f_varint(5, 24) + f_varint(6, 1),
     r"tensor 't'.*field 6 \(crc32c\).*wire"),
    ("slices as varint", f_varint(1, 1) + SHAPE_23 + f_varint(7, 1),
     r"tensor 't'.*field 7 \(slices\).*wire"),
    ("truncated varint", f_varint(1, 1) + SHAPE_23 + b"\x28\x80",
     r"tensor 't'.*field 5.*truncated"),
    ("truncated key", f_varint(1, 1) + SHAPE_23 + b"\xa8", r"tensor 't'.*field key.*truncated"),
    ("length past the end", f_varint(1, 1) + b"\x12\x10\x08",
     r"tensor 't'.*field 2 claims 16 bytes"),
    ("11-byte varint", b"\x08" + b"\xff" * 10 + b"\x01", r"tensor 't'.*longer than 10 bytes"),
    ("varint over 64 bits", b"\x08" + b"\xff" * 9 + b"\x7f", r"tensor 't'.*overflows 64 bits"),
    ("group wire type", b"\x0b" + SHAPE_23, r"tensor 't'.*wire type 3"),
    ("field number 0", b"\x00\x01" + SHAPE_23, r"tensor 't'.*field number 0"),
    ("negative dim", entry_proto(DT_FLOAT, (2, -3), size=0), r"tensor 't' shape.*dim 1.*-3"),
    ("dims overflowing int64", entry_proto(DT_FLOAT, (1 << 40, 1 << 40), size=0),
     r"tensor 't'.*size 0 bytes stored .*4835703278458516698824704 bytes expected"),
    ("dims too big for NumPy", entry_proto(DT_FLOAT, (1 << 62, 0), size=0),
     r"tensor 't'.*too big for NumPy"),
    ("rank 65", entry_proto(DT_FLOAT, (1,) * 65, size=4), r"tensor 't' shape.*rank 65"),
    ("unknown rank", f_varint(1, 1) + f_bytes(2, f_varint(3, 1)), r"tensor 't' shape.*unknown"),
    ("dtype invalid", entry_proto(0, (2, 3)), r"tensor 't' has dtype invalid"),
    ("dtype unknown", entry_proto(99, (2, 3)), r"tensor 't' has dtype 99"),
    ("dtype bfloat16", entry_proto(14, (2, 3)), r"tensor 't' has dtype bfloat16"),
    ("dtype int32 too big", entry_proto(1 << 40, (2, 3)),
     r"tensor 't'.*field 1 \(dtype\) = 1099511627776 does not fit in enum"),
    ("size mismatch", entry_proto(DT_FLOAT, (2, 3), size=20),
     r"tensor 't': size 20 bytes stored for shape \(2, 3\) float32 \(24 bytes expected\)"),
    ("dtype size mismatch", entry_proto(DT_DOUBLE, (2, 3), size=24),
     r"tensor 't': size 24 .* float64 \(48 bytes expected\)"),
    ("negative size", entry_proto(DT_FLOAT, (2, 3), size=-24), r"tensor 't': offset 0, size -24"),
    ("negative offset", entry_proto(DT_FLOAT, (2, 3), offset=-1), r"tensor 't': offset -1"),
    ("shard out of range", entry_proto(DT_FLOAT, (2, 3), shard=1),
     r"tensor 't': shard_id 1 is out of range \(num_shards 1\)"),
    ("negative shard", entry_proto(DT_FLOAT, (2, 3), shard=-1), r"tensor 't': shard_id -1"),
    ("shard over int32", entry_proto(DT_FLOAT, (2, 3), shard=1 << 33),
     r"tensor 't'.*shard_id.*int32"),
    ("partitioned", entry_proto(DT_FLOAT, (2, 3)) + f_bytes(7, b""), r"tensor 't' is partitioned"),
]


@pytest.mark.parametrize("case,value,pattern", BAD_ENTRIES, ids=[c[0] for c in BAD_ENTRIES])
def test_malformed_entry_is_a_value_error_naming_file_and_field(tmp_path, case, value, pattern):
    prefix = write_files(tmp_path, index_with([(b"t", value)]), [bytes(48)])
    with pytest.raises(ValueError) as info:
        load_tf_checkpoint(prefix)
    msg = str(info.value)
    assert msg.startswith(str(tmp_path / "model.index") + ": "), msg
    assert re.search(pattern, msg), (case, msg)


BAD_HEADERS = [
    ("num_shards as bytes", f_bytes(1, b"\x01"), r"bundle header.*field 1 \(num_shards\).*wire"),
    ("num_shards negative", f_varint(1, -1), r"bundle header: num_shards -1"),
    ("endianness 7", f_varint(1, 1) + f_varint(2, 7), r"bundle header: endianness 7"),
    ("endianness as fixed32", f_varint(1, 1) + f_fixed32(2, 1),
     r"bundle header.*field 2 \(endianness\).*wire"),
    ("version as varint", f_varint(1, 1) + f_varint(3, 1),
     r"bundle header.*field 3 \(version\).*wire"),
    ("truncated", f_varint(1, 1) + b"\x12\x05ab", r"bundle header.*field 2 claims 5 bytes"),
]


@pytest.mark.parametrize("case,header,pattern", BAD_HEADERS, ids=[c[0] for c in BAD_HEADERS])
def test_malformed_header_is_a_value_error_naming_file_and_field(tmp_path, case, header,
                                                                  pattern):
    index = table([block([(b"", header), (b"t", entry_proto(DT_FLOAT, (2, 3)))])])
    with pytest.raises(ValueError) as info:
        load_tf_checkpoint(write_files(tmp_path, index, [bytes(24)]))
    msg = str(info.value)
    assert msg.startswith(str(tmp_path / "model.index") + ": "), msg
    assert re.search(pattern, msg), (case, msg)


def _footer_handles(raw):
    footer = raw[-48:]
    moff, msize, pos = sstable.read_handle(footer)
    ioff, isize, _ = sstable.read_handle(footer, pos)
    return (moff, msize), (ioff, isize)


def _table_cases():
    """(case, index bytes, verify_crc, message pattern) of broken tables."""
    good = table([block([(b"", header_proto()), (b"t", entry_proto(DT_FLOAT, (2, 3)))])])
    (_, _), (ioff, isize) = _footer_handles(good)
    cases = []
    bad = bytearray(good)
    bad[-1] ^= 0x01
    cases.append(("bad magic", bytes(bad), True, r"no table magic"))
    bad = bytearray(good)
    bad[3] ^= 0x01
    cases.append(("bad data block crc", bytes(bad), True, r"data block at offset 0 fails its "
                                                          r"crc32c"))
    bad = bytearray(good)
    bad[ioff] ^= 0x40
    cases.append(("bad index block crc", bytes(bad), True, r"index block .* crc32c"))
    cases.append(("too short", good[-30:], True, r"too short for a table"))
    cases.append(("no header", table([block([(b"t", entry_proto(DT_FLOAT, (2, 3)))])]), True,
                  r"no bundle header"))
    cases.append(("handle past the end", table([block([(b"", header_proto())])],
                                               index=[(b"\xff", (0, 1 << 40))]),
                  True, r"data block \(offset 0, size 1099511627776\) runs past"))
    cases.append(("truncated handle", table([], index=[(b"\xff", (0, 0))]).replace(
        b"\xff\x00\x00", b"\xff\x00\x80"), False, r"index entry 0: a block handle's size .*"
                                                  r"truncated"))
    cases.append(("shared past the previous key",
                  table([raw_block([(0, b"", header_proto()), (5, b"t", b"")])]), True,
                  r"entry at byte \d+ of the data block shares 5 bytes of a previous key of "
                  r"0 bytes"))
    cases.append(("entry past the block", table([raw_block([(0, b"", header_proto())])[:-8] +
                                                 b"\x00\x09\x00" + struct.pack("<II", 0, 1)]),
                  True, r"claims 9 key and 0 value bytes, past the end"))
    cases.append(("entry varint into the restarts",
                  table([raw_block([(0, b"", header_proto())])[:-8] + b"\x00\x80" +
                         struct.pack("<II", 0, 1)]),
                  True, r"entry at byte \d+ of the data block: its key length runs past"))
    cases.append(("entry varint over 32 bits",
                  table([b"\x00" + b"\xff" * 4 + b"\x1f" + struct.pack("<II", 0, 1)]),
                  True, r"its key length overflows 32 bits"))
    cases.append(("too many restarts", table([b"\x00\x00\x00" + struct.pack("<I", 1000)]), True,
                  r"data block claims 1000 restart points"))
    cases.append(("block too short", table([b"\x00"]), True, r"data block is too short"))
    snappy = bytearray(good)
    snappy[ioff + isize] = 1
    cases.append(("compressed", bytes(snappy), False, r"compressed \(snappy\)"))
    return cases


TABLE_CASES = _table_cases()


@pytest.mark.parametrize("case,index,verify,pattern", TABLE_CASES,
                         ids=[c[0] for c in TABLE_CASES])
def test_malformed_table_is_a_value_error_naming_file_and_what(tmp_path, case, index, verify,
                                                               pattern):
    with pytest.raises(ValueError) as info:
        load_tf_checkpoint(write_files(tmp_path, index, [bytes(24)]), verify_crc=verify)
    msg = str(info.value)
    assert msg.startswith(str(tmp_path / "model.index") + ": "), msg
    assert re.search(pattern, msg), (case, msg)


def test_bad_tensor_crc_names_the_shard_and_tensor(tmp_path):
    prefix = write_checkpoint(tmp_path, {"w/kernel": np.arange(6, dtype=np.float32)})
    data = tmp_path / "model.data-00000-of-00001"
    blob = bytearray(data.read_bytes())
    blob[5] ^= 0x10
    data.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match=r"model\.data-00000-of-00001: tensor 'w/kernel' fails "
                                         r"its crc32c"):
        load_tf_checkpoint(prefix)
    assert load_tf_checkpoint(prefix, verify_crc=False)["w/kernel"][1] != 1.0   # as stored


def test_long_names_in_messages_are_shortened(tmp_path):
    name = b"n" * 5000
    with pytest.raises(ValueError) as info:
        load_tf_checkpoint(write_files(tmp_path, index_with([(name, entry_proto(99, ()))])))
    assert "(5000 bytes)" in str(info.value) and len(str(info.value)) < 600


def test_scope_must_be_a_string(tmp_path):
    prefix = write_checkpoint(tmp_path, {"w": np.zeros(2, np.float32)})
    with pytest.raises(TypeError, match="scope: expected a str or None, got bytes"):
        load_tf_checkpoint(prefix, scope=b"w")


# ---------------------------------------------------------------------------------------------
# Fuzz: seeded random mutations of the fixture files
# ---------------------------------------------------------------------------------------------

def _mutate(rng, blob):
    blob = bytearray(blob)
    kind = rng.integers(5)
    if kind == 0:                                             # flip 1-3 bits
        for _ in range(rng.integers(1, 4)):
            pos = rng.integers(len(blob))
            blob[pos] ^= 1 << int(rng.integers(8))
    elif kind == 1:                                           # truncate
        del blob[rng.integers(len(blob)):]
    elif kind == 2:                                           # insert random bytes
        pos = rng.integers(len(blob) + 1)
        blob[pos:pos] = rng.integers(0, 256, rng.integers(1, 9), dtype=np.uint8).tobytes()
    elif kind == 3:                                           # overwrite with 0x00 / 0xff / 0x80
        pos = rng.integers(len(blob))
        blob[pos:pos + int(rng.integers(1, 12))] = bytes([int(rng.choice([0, 0xFF, 0x80]))]) * \
            int(rng.integers(1, 12))
    else:                                                     # delete a few bytes
        pos = rng.integers(len(blob))
        del blob[pos:pos + int(rng.integers(1, 9))]
    return bytes(blob)


@pytest.mark.parametrize("name", FIXTURES)
def test_fuzzed_fixtures_give_a_result_or_a_value_error(tmp_path, name):
    src = os.path.join(CKPT, name)
    files = sorted(f for f in os.listdir(src) if f.startswith("model."))
    originals = {}
    for f in files:
        with open(os.path.join(src, f), "rb") as fh:
            originals[f] = fh.read()
    rng = np.random.default_rng(sum(map(ord, name)))
    outcomes, slowest = {"ok": 0, "ValueError": 0, "FileNotFoundError": 0}, 0.0
    for trial in range(60):
        for f, blob in originals.items():
            (tmp_path / f).write_bytes(blob)
        # the index 3 times in 4 (its parsers are the larger surface), a data shard otherwise;
        # half the index mutations are inside one entry's value, the table rebuilt around it
        # with valid crcs so that the protobuf reading is reached even when crcs are checked
        target = "model.index" if rng.integers(4) else str(rng.choice(files[:-1]))
        verify = bool(rng.integers(2))
        if target == "model.index" and rng.integers(2):
            entries = sorted(sstable.read_table(originals[target], True).items())
            k = int(rng.integers(len(entries)))
            entries[k] = (entries[k][0], _mutate(rng, entries[k][1]) if entries[k][1] else b"")
            mutated, verify = table([block(entries)]), True
        else:
            mutated = _mutate(rng, originals[target])
        (tmp_path / target).write_bytes(mutated)
        t0 = time.perf_counter()
        try:
            got = load_tf_checkpoint(str(tmp_path / "model"), verify_crc=verify)
            assert all(isinstance(a, np.ndarray) for a in got.values())
            outcomes["ok"] += 1
        except ValueError as e:
            assert str(tmp_path) in str(e), (trial, target, str(e))     # names the file
            outcomes["ValueError"] += 1
        except FileNotFoundError as e:      # the index now names a shard that is not there
            assert "data shard" in str(e), (trial, target, str(e))
            outcomes["FileNotFoundError"] += 1
        slowest = max(slowest, time.perf_counter() - t0)
    assert slowest < 1.0, slowest
    assert outcomes["ValueError"] > 10, outcomes                        # the fuzz bites
