"""TF checkpoints (tensor bundles) read with NumPy alone: load_tf_checkpoint. The bundle's
.index is an SSTable whose values are protobuf messages (BundleHeaderProto under the empty key,
a BundleEntryProto per tensor); the file formats themselves are in fastcells._formats.

A checkpoint is read as a hostile file: memory and time are bounded by the files' sizes
whatever they claim (the bounds are stated in load_tf_checkpoint's docstring), and anything
malformed is a ValueError naming the file and the field or tensor."""
from __future__ import annotations

import math
import os
import sys
from typing import Dict, Optional, Union

import numpy as np

from fastcells._formats import FormatError
from fastcells._formats.crc32c import crc32c, unmask
from fastcells._formats.protobuf import read_message
from fastcells._formats.sstable import iter_table


# TF DataType enum -> NumPy dtype (the subset read here; DT_STRING etc. are skipped)
_TF_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8,
              9: np.int64, 10: np.bool_, 17: np.uint16, 19: np.float16, 22: np.uint32,
              23: np.uint64}
_TF_DTYPE_NAMES = {0: "invalid", 7: "string", 8: "complex64", 14: "bfloat16",
                   18: "complex128", 20: "resource", 21: "variant"}
_TF_SKIPPED = (7, 20, 21)               # string, resource, variant: not weights

# The messages of tensorflow/core/protobuf/tensor_bundle.proto and tensor_shape.proto, as far
# as they are read: field number -> (name, kind[, "repeated"])
_HEADER = {1: ("num_shards", "int32"), 2: ("endianness", "enum"), 3: ("version", "bytes")}
_ENTRY = {1: ("dtype", "enum"), 2: ("shape", "bytes"), 3: ("shard_id", "int32"),
          4: ("offset", "int64"), 5: ("size", "int64"), 6: ("crc32c", "fixed32"),
          7: ("slices", "bytes", "repeated")}
_SHAPE = {2: ("dim", "bytes", "repeated"), 3: ("unknown_rank", "bool")}
_DIM = {1: ("size", "int64"), 2: ("name", "bytes")}

_MAX_RANK = 64 if np.lib.NumpyVersion(np.__version__) >= "2.0.0" else 32   # NumPy's limit

# The tensor names returned total at most _NAME_BYTES_PER_INDEX_BYTE bytes per byte of the
# .index file plus _NAME_BYTES_FREE: a real index stores each name's distinct suffix plus a
# >= 12-byte entry (3 varints, a >= 8-byte BundleEntryProto), so this admits 768-byte names
# differing in one byte each; past it the index is a prefix-compression bomb (a few KB of
# entries sharing one long prefix, each a full-length name once materialised).
_NAME_BYTES_PER_INDEX_BYTE = 64
_NAME_BYTES_FREE = 1 << 20


def _shown(key):
    """A key (bytes-like, or a name already decoded) for an error message: cut to 200
    bytes."""
    if isinstance(key, str):
        key = key.encode("utf-8", "replace")
    text = bytes(key[:200]).decode("utf-8", "replace")
    return repr(text) if len(key) <= 200 else f"{text!r}... ({len(key)} bytes)"


def _shape(buf, what):
    """A TensorShapeProto -> tuple of ints (each >= 0, at most NumPy's rank)."""
    f = read_message(buf, _SHAPE, what)
    if f.get("unknown_rank"):
        raise FormatError(f"{what}: a tensor of unknown rank")
    dims = f.get("dim", [])
    if len(dims) > _MAX_RANK:
        raise FormatError(f"{what}: rank {len(dims)}, more than NumPy's {_MAX_RANK}")
    sizes = []
    for k, d in enumerate(dims):
        size = read_message(d, _DIM, f"{what} dim {k}").get("size", 0)
        if size < 0:
            raise FormatError(f"{what}: dim {k} is negative ({size})")
        sizes.append(size)
    return tuple(sizes)


def _tensor_meta(key, value, big_endian, num_shards):
    """(dtype in the file's byte order, shape, shard, offset, size, masked crc or None) of one
    BundleEntryProto, or None for a tensor that is not a weight (string, resource, variant);
    every field checked against the others (not yet against the shard's size)."""
    what = f"tensor {_shown(key)}"
    f = read_message(value, _ENTRY, what)
    if "slices" in f:
        raise FormatError(f"{what} is partitioned (saved in slices), which is not supported")
    code = f.get("dtype", 0)
    if code not in _TF_DTYPES:
        if code in _TF_SKIPPED:
            return None
        raise FormatError(f"{what} has dtype {_TF_DTYPE_NAMES.get(code, code)}, which is not "
                          f"supported")
    shape = _shape(f["shape"], f"{what} shape") if "shape" in f else ()
    shard, offset, size = (f.get(k, 0) for k in ("shard_id", "offset", "size"))
    dt = np.dtype(_TF_DTYPES[code]).newbyteorder(">" if big_endian else "<")
    if offset < 0 or size < 0:
        raise FormatError(f"{what}: offset {offset}, size {size} (both must be >= 0)")
    want = math.prod(shape) * dt.itemsize
    if size != want:
        raise FormatError(f"{what}: size {size} bytes stored for shape {shape} {dt.name} "
                          f"({want} bytes expected)")
    if math.prod(d for d in shape if d) * dt.itemsize > sys.maxsize:
        raise FormatError(f"{what}: shape {shape} {dt.name} is too big for NumPy")
    if not 0 <= shard < num_shards:
        raise FormatError(f"{what}: shard_id {shard} is out of range (num_shards "
                          f"{num_shards})")
    return dt, shape, shard, offset, size, f.get("crc32c")


def _read_index(index_path, scope, verify_crc):
    """(num_shards, [(name, dtype, shape, shard, offset, size, crc)]) of the tensors under
    `scope` (bytes with a trailing slash, or None for all)."""
    with open(index_path, "rb") as fh:
        buf = fh.read()
    name_budget = _NAME_BYTES_PER_INDEX_BYTE * len(buf) + _NAME_BYTES_FREE
    header, raw = None, []
    for key, value in iter_table(buf, verify_crc):
        if not key:
            header = bytes(value)
        elif scope is None or key.startswith(scope):
            raw.append((bytes(key), bytes(value)))   # only keys that can be returned
            name_budget -= len(key)
            if name_budget < 0:
                raise FormatError(
                    f"the tensor names total more than {_NAME_BYTES_PER_INDEX_BYTE} bytes per "
                    f"byte of the index plus {_NAME_BYTES_FREE} (at {_shown(key)}): a "
                    f"prefix-compression bomb, not a checkpoint")
    if header is None:
        raise FormatError("no bundle header entry (the empty key)")
    hf = read_message(header, _HEADER, "the bundle header")
    num_shards = hf.get("num_shards", 1)
    if num_shards < 1:
        raise FormatError(f"the bundle header: num_shards {num_shards} (>= 1 expected)")
    endianness = hf.get("endianness", 0)
    if endianness not in (0, 1):
        raise FormatError(f"the bundle header: endianness {endianness} (0 little or 1 big "
                          f"expected)")
    metas = []
    for key, value in raw:
        meta = _tensor_meta(key, value, endianness == 1, num_shards)
        if meta is not None:
            metas.append((key.decode("utf-8", "replace"),) + meta)
    return num_shards, metas


def _read_shard(path, metas, verify_crc):
    """{name: array} of the tensors `metas` stored in the shard at `path`: their extents
    checked against the file's size and each other before anything is read, then each read by
    seek and readinto into its own array (never the whole shard)."""
    with open(path, "rb") as fh:
        file_size = os.fstat(fh.fileno()).st_size
        for name, dt, shape, shard, offset, size, crc in metas:
            if offset + size > file_size:
                raise ValueError(f"{path}: tensor {_shown(name)} (offset {offset}, "
                                 f"{size} bytes) runs past the end of the file ({file_size} "
                                 f"bytes): truncated?")
        # TF's BundleWriter appends each tensor at the end of its shard, so non-empty extents
        # never overlap; refusing overlaps bounds the bytes read by the shard's size.
        spans = sorted((offset, size, name) for name, _, _, _, offset, size, _ in metas if size)
        for (a_off, a_size, a_name), (b_off, _, b_name) in zip(spans, spans[1:]):
            if b_off < a_off + a_size:
                raise ValueError(f"{path}: tensors {_shown(a_name)} and "
                                 f"{_shown(b_name)} overlap (offsets {a_off} and "
                                 f"{b_off}), which TF never writes")
        out = {}
        for name, dt, shape, shard, offset, size, crc in metas:
            a = np.empty(shape, dtype=dt)                  # the file's byte order
            raw = a.reshape(-1).view(np.uint8)             # aliases a
            fh.seek(offset)
            got = fh.readinto(raw)
            if got != size:
                raise ValueError(f"{path}: tensor {_shown(name)}: {got} of {size} "
                                 f"bytes read (the file shrank while read?)")
            if verify_crc and crc is not None and crc32c(raw) != unmask(crc):
                raise ValueError(f"{path}: tensor {_shown(name)} fails its crc32c "
                                 f"check (corrupt data)")
            if not dt.isnative:
                a.byteswap(inplace=True)                       # to native order, no copy
                a = a.view(dt.newbyteorder("="))
            out[name] = a
    return out


def load_tf_checkpoint(prefix: Union[str, os.PathLike], scope: Optional[str] = None,
                       verify_crc: bool = True) -> Dict[str, np.ndarray]:
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

    Files are read as untrusted, with bounds that what TF writes always meets: each index
    block is read once however often the index names it, and blocks may not overlap; tensors
    (non-empty) may not overlap within their shard and must lie inside it, and only their
    bytes are read (seek and read, never a whole shard); the names returned total at most 64
    bytes per byte of the .index plus 1 MiB (keys outside `scope` are never materialised). So
    memory is at most the .index, the names and the arrays returned, and time is linear in
    the files' sizes.

    Parameters
    ----------
    prefix : str or os.PathLike
        The checkpoint prefix, a directory with a ``checkpoint`` file, or the ``.index`` path.
    scope : str, optional
        Keep only the names under it (a non-str is a TypeError).
    verify_crc : bool, optional
        Check every index block and tensor against its crc32c (default True).

    Returns
    -------
    dict of str to numpy.ndarray
        ``{variable name: array}`` in native byte order.

    Raises
    ------
    FileNotFoundError
        For missing files.
    ValueError
        Naming the file and what is wrong (the field, the tensor) for truncated, corrupt or
        inconsistent ones.

    Examples
    --------
    >>> from fastcells.convert import load_tf_checkpoint
    >>> weights = load_tf_checkpoint("train/model.ckpt-1000")   # doctest: +SKIP
    >>> cell.set_weights(weights)                               # doctest: +SKIP
    >>> load_tf_checkpoint("no/such/model.ckpt")                 # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: prefix: no checkpoint index 'no/such/model.ckpt.index' ...
    """
    if scope is not None and not isinstance(scope, str):
        raise TypeError(f"scope: expected a str or None, got {type(scope).__name__}")
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
    head = None if scope is None else scope.strip("/").encode() + b"/"
    try:
        num_shards, metas = _read_index(index_path, head, verify_crc)
    except FormatError as e:
        raise ValueError(f"{index_path}: {e}") from None
    by_shard = {}
    for meta in metas:
        by_shard.setdefault(meta[3], []).append(meta)
    arrays = {}
    for shard, shard_metas in by_shard.items():
        path = f"{prefix}.data-{shard:05d}-of-{num_shards:05d}"
        if not os.path.exists(path):
            raise FileNotFoundError(f"checkpoint data shard {path!r} is missing (tensor "
                                    f"{_shown(shard_metas[0][0])} is stored there)")
        arrays.update(_read_shard(path, shard_metas, verify_crc))
    return {meta[0]: arrays[meta[0]] for meta in metas}
