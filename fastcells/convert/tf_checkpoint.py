"""TF checkpoints (tensor bundles) read with NumPy alone: load_tf_checkpoint. The bundle's
.index is an SSTable whose values are protobuf messages (BundleHeaderProto under the empty key,
a BundleEntryProto per tensor); the file formats themselves are in fastcells._formats."""
import os

import numpy as np

from fastcells._formats import FormatError
from fastcells._formats.crc32c import crc32c, unmask
from fastcells._formats.protobuf import message_fields
from fastcells._formats.sstable import read_table


# TF DataType enum -> NumPy dtype (the subset read here; DT_STRING etc. are skipped)
_TF_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8,
              9: np.int64, 10: np.bool_, 17: np.uint16, 19: np.float16, 22: np.uint32,
              23: np.uint64}
_TF_DTYPE_NAMES = {7: "string", 8: "complex64", 14: "bfloat16", 18: "complex128",
                   20: "resource", 21: "variant"}


def _shape(msg):
    """A TensorShapeProto -> tuple of ints."""
    f = message_fields(msg)
    if f.get(3, [0])[0]:
        raise FormatError("a tensor of unknown rank")
    dims = []
    for d in f.get(2, []):
        size = message_fields(d).get(1, [0])[0]
        if size >= 1 << 63:
            size -= 1 << 64
        if size < 0:
            raise FormatError(f"a negative dimension {size}")
        dims.append(size)
    return tuple(dims)


def load_tf_checkpoint(prefix, scope=None, verify_crc=True):
    """Reads a TensorFlow checkpoint with NumPy alone: ``{variable name: array}``.

    prefix: the checkpoint prefix as TF names it (``.../model.ckpt-1000``; the ``.index`` file
    and ``.data-XXXXX-of-NNNNN`` shards sit next to it), a directory holding a ``checkpoint``
    file (its latest checkpoint is read), or the path of the ``.index`` file itself.
    Names come without ``:0`` (``rnn/basic_lstm_cell/kernel``), so
    ``cell.set_weights(load_tf_checkpoint(p))`` restores a TF rnn_cell model (set_weights
    accepts the full names), and a MultiRNNCell takes the ``.../multi_rnn_cell/cell_k/...``
    names. scope: keep only the names under that scope (``"bidirectional_rnn/fw"`` for the
    forward cell of a bidirectional model, whose backward cell has the same short names).

    Supported: the tensor-bundle format that ``tf.compat.v1.train.Saver`` (V2, the default)
    and ``tf.train.Checkpoint`` write: an SSTable index with uncompressed blocks (what TF
    writes), one or more data shards, little- or big-endian bundles; tensors of dtype float32,
    float64, float16, int8/16/32/64, uint8/16/32/64 and bool. String tensors (such as
    tf.train.Checkpoint's ``_CHECKPOINTABLE_OBJECT_GRAPH``), variants and resources are
    skipped; partitioned (sliced) tensors, complex and bfloat16 tensors are a ValueError.
    With verify_crc (the default) every index block and every tensor is checked against its
    stored (masked) crc32c. V1 checkpoints (one file, no .index) are not supported.
    Raises FileNotFoundError for missing files and ValueError naming the file and what is
    wrong for truncated or corrupt ones.
    """
    prefix = os.fspath(prefix)
    if os.path.isdir(prefix):
        state = os.path.join(prefix, "checkpoint")
        latest = None
        if os.path.exists(state):
            with open(state, encoding="utf-8") as fh:
                for line in fh:
                    if line.startswith("model_checkpoint_path:"):
                        latest = line.split(":", 1)[1].strip().strip('"')
                        break
        if latest is None:
            indexes = sorted(p for p in os.listdir(prefix) if p.endswith(".index"))
            if len(indexes) != 1:
                raise FileNotFoundError(f"prefix: {prefix!r} is a directory without a "
                                        f"'checkpoint' file and with {len(indexes)} .index "
                                        f"files; give the checkpoint prefix")
            latest = indexes[0][:-len(".index")]
        prefix = latest if os.path.isabs(latest) else os.path.join(prefix, latest)
    if prefix.endswith(".index"):
        prefix = prefix[:-len(".index")]
    index_path = prefix + ".index"
    if not os.path.exists(index_path):
        raise FileNotFoundError(f"prefix: no checkpoint index {index_path!r} (give the prefix "
                                f"TF prints, e.g. '/path/model.ckpt-1000')")
    with open(index_path, "rb") as fh:
        buf = fh.read()
    try:
        entries = read_table(memoryview(buf), verify_crc)
        header = entries.pop(b"", None)
        if header is None:
            raise FormatError("no bundle header entry (the empty key)")
        hf = message_fields(header)
        num_shards = hf.get(1, [1])[0]
        big_endian = hf.get(2, [0])[0] == 1
        metas = []
        if scope is not None:
            head = scope.strip("/").encode() + b"/"
            entries = {k: v for k, v in entries.items() if k.startswith(head)}
        for key, value in entries.items():
            name = key.decode("utf-8", "replace")
            f = message_fields(value)
            if 7 in f:
                raise FormatError(f"tensor {name!r} is partitioned (saved in slices), which is "
                                  f"not supported")
            code = f.get(1, [0])[0]
            if code not in _TF_DTYPES:
                if code in (7, 20, 21):          # string, resource, variant: not weights
                    continue
                raise FormatError(f"tensor {name!r} has dtype "
                                  f"{_TF_DTYPE_NAMES.get(code, code)}, which is not supported")
            shape = _shape(f[2][0]) if 2 in f else ()
            shard, offset, size = (f.get(k, [0])[0] for k in (3, 4, 5))
            crc = f.get(6, [None])[0]
            dt = np.dtype(_TF_DTYPES[code]).newbyteorder(">" if big_endian else "<")
            want = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
            if size != want:
                raise FormatError(f"tensor {name!r}: {size} bytes stored for shape {shape} "
                                  f"{dt.name} ({want} bytes expected)")
            if not 0 <= shard < num_shards:
                raise FormatError(f"tensor {name!r} names shard {shard} of {num_shards}")
            metas.append((name, dt, shape, shard, offset, size, crc))
    except FormatError as e:
        raise ValueError(f"{index_path}: {e}") from None
    out, shards = {}, {}
    for name, dt, shape, shard, offset, size, crc in metas:
        if shard not in shards:
            path = f"{prefix}.data-{shard:05d}-of-{num_shards:05d}"
            if not os.path.exists(path):
                raise FileNotFoundError(f"checkpoint data shard {path!r} is missing (tensor "
                                        f"{name!r} is stored there)")
            with open(path, "rb") as fh:
                shards[shard] = (path, fh.read())
        path, data = shards[shard]
        if offset + size > len(data):
            raise ValueError(f"{path}: tensor {name!r} (offset {offset}, {size} bytes) runs "
                             f"past the end of the file ({len(data)} bytes): truncated?")
        raw = data[offset:offset + size]
        if verify_crc and crc is not None and crc32c(raw) != unmask(crc):
            raise ValueError(f"{path}: tensor {name!r} fails its crc32c check (corrupt data)")
        a = np.frombuffer(raw, dtype=dt).reshape(shape)
        out[name] = a.astype(dt.newbyteorder("="))       # a writeable native-order copy
    return out
