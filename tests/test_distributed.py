"""A real distributed engine: Dask's LocalCluster with two worker processes (one thread each)
runs dynamic_rnn of a pickled cell, and a converted PyTorch model, over chunks of a batch; the
chunks put together must equal the whole batch computed in this process, bit for bit (rows are
independent: a row's numbers do not depend on the batch it is computed in).

This is the recipe of docs/deploying.md: build the cell once in the driver, scatter it (it is
pickled as configuration + raw weights; each worker packs it for its own CPU on first use), and
map a function over the chunks. Skipped when dask.distributed is not installed.
"""
import importlib.util
import logging
import os

import numpy as np
import pytest

from conftest import assert_identical  # noqa: E402
import fastcells
from fastcells import nn

distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")

HAS_TORCH = importlib.util.find_spec("torch") is not None
# (start, size) of each chunk of the batch: unequal sizes, around the kernels' 6-row tile
CHUNKS = [(0, 5), (5, 7), (12, 1), (13, 12)]
BATCH = 25


def run_chunk(cell, x, lengths):
    """On a worker: dynamic_rnn of `cell` over one chunk [b, T, I]; also says where it ran."""
    outputs, state = nn.dynamic_rnn(cell, x, lengths, dtype=cell.dtype)
    return outputs, state, os.getpid()


def run_model(model, x):
    """On a worker: a converted torch.nn.LSTM over one chunk (L, b, I)."""
    out, (h_n, c_n) = model(x)
    return out, h_n, c_n, os.getpid()


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None,
        silence_logs=logging.ERROR, env={"FASTCELLS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})
    with cluster, distributed.Client(cluster) as c:
        c.wait_for_workers(2, timeout=60)
        yield c


def _workers(client):
    return sorted(client.scheduler_info()["workers"])


def _concat(parts, axis):
    """Chunks' nested results -> one, concatenated along the batch `axis`."""
    first = parts[0]
    if isinstance(first, tuple):
        items = [_concat([p[k] for p in parts], axis) for k in range(len(first))]
        return type(first)(*items) if hasattr(first, "_fields") else tuple(items)
    return np.concatenate(parts, axis=axis)




@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_dask_maps_dynamic_rnn_over_chunks(client, dtype):
    rng = np.random.default_rng(0)
    cell = fastcells.MultiRNNCell([
        fastcells.LSTMCell(40, use_peepholes=True, num_proj=16, cell_clip=2.0, dtype=dtype,
                           seed=1),
        fastcells.GRUCell(24, reset_after=True, dtype=dtype, seed=2)])
    cell.build(8)
    x = rng.standard_normal((BATCH, 11, 8)).astype(dtype)
    lengths = rng.integers(0, 12, BATCH)
    want = nn.dynamic_rnn(cell, x, lengths, dtype=dtype)
    workers = _workers(client)
    shared = client.scatter(cell, broadcast=True)         # pickled once, sent to every worker
    futures = [client.submit(run_chunk, shared, x[a:a + n], lengths[a:a + n],
                             workers=[workers[k % 2]], pure=False)
               for k, (a, n) in enumerate(CHUNKS)]
    parts = client.gather(futures)
    pids = {p[2] for p in parts}
    assert len(pids) == 2 and os.getpid() not in pids, "two worker processes compute"
    got = (_concat([p[0] for p in parts], 0), _concat([p[1] for p in parts], 0))
    assert_identical(got, want, "dynamic_rnn on the cluster")


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_dask_maps_a_converted_torch_model_over_chunks(client):
    import torch
    from fastcells.convert import from_torch
    torch.manual_seed(0)
    model = from_torch(torch.nn.LSTM(6, 10, num_layers=2, bidirectional=True, proj_size=4))
    x = np.random.default_rng(1).standard_normal((9, BATCH, 6)).astype(np.float32)  # (L, N, I)
    out, (h_n, c_n) = model(x)
    workers = _workers(client)
    shared = client.scatter(model, broadcast=True)
    futures = [client.submit(run_model, shared, x[:, a:a + n], workers=[workers[k % 2]],
                             pure=False) for k, (a, n) in enumerate(CHUNKS)]
    parts = client.gather(futures)
    assert len({p[3] for p in parts}) == 2
    got = tuple(np.concatenate([p[k] for p in parts], axis=1) for k in range(3))
    assert_identical(got, (out, h_n, c_n), "the torch model on the cluster")
