"""The input-projection GEMM alone (float32): fastcells' packed GEMM beside NumPy (OpenBLAS
sgemm) at the same thread count; one group per (M, K, N, threads), GFLOP/s of both in the summary.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE pytest bench/test_bench_gemm.py --benchmark-only

(This machine may set OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE for old OpenBLAS builds and
they slow NumPy; unset them for this command only, never in tests or CI.)

    fastcells  fastcells._core.PackedMatrix(b).matmul(a, out): b [K,N] packed once outside the
               timing (as a cell packs its kernel once), out [M,N] preallocated
    numpy      np.matmul(a, b, out=out) (a @ b without the allocation)

Sizes: 512^3, 1024^3, 2048^3 and the tall-skinny input projection of a sequence, M = T*B = 6400,
K = I = 512, N = 4H = 2048. Threads: 1 and fastcells' default (the cores this process may use).
NumPy's thread count is set with threadpoolctl (pip install threadpoolctl); without it the numpy
benchmark runs only where OPENBLAS_NUM_THREADS (else the core count) equals the group's thread
count, and skips elsewhere with that reason: then run once per thread count, e.g.
`OPENBLAS_NUM_THREADS=1 env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE pytest ... -k t1`.

Both results are checked against a float64 product before timing, within the worst-case float32
bound K * eps32 * max|a| * max|b| (a wrong kernel is off by O(1)); speeds are never asserted.
fastcells runs first in each group and is warmed up for 0.25 s (OpenBLAS's threads spin ~100 ms
after a call). The summary's ratios come from timing each group again round robin after the
tests (bench/conftest.py; make_runner builds the runners both use).
"""
import contextlib
import dataclasses
import functools
import os

import numpy as np
import pytest

pytest.importorskip("pytest_benchmark", reason="pip install pytest-benchmark (the bench extra)")

import fastcells  # noqa: E402
from fastcells.benchmarks import (Runner, blas_note, cpu_snapshot, other_cores,  # noqa: E402
                                  warm_up)

try:
    from threadpoolctl import threadpool_limits
except ImportError:                      # the numpy benchmarks skip where they cannot be set
    threadpool_limits = None

DTYPE = np.float32
PEERS = ("fastcells", "numpy")
BASELINE = "fastcells"
SUITE = {"name": "gemm", "title": "input-projection GEMM (float32)", "baseline": BASELINE,
         "peers": PEERS, "unit": "ms", "peer_gflops": True,
         "note": blas_note() or "OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset (NumPy timed fairly)"}


@dataclasses.dataclass(frozen=True)
class GemmCase:
    """out [M,N] = a [M,K] @ b [K,N], float32, at `threads` threads."""
    M: int
    K: int
    N: int
    threads: int

    @property
    def id(self):
        return f"gemm-M{self.M}-K{self.K}-N{self.N}-t{self.threads}"

    @property
    def flops(self):
        return 2 * self.M * self.K * self.N


SIZES = ((512, 512, 512), (1024, 1024, 1024), (2048, 2048, 2048), (6400, 512, 2048))
THREADS = sorted({1, fastcells.get_num_threads()})
CASES = [GemmCase(M, K, N, t) for t in THREADS for M, K, N in SIZES]
PARAMS = [pytest.param(case, peer, id=f"{case.id}-{peer}") for case in CASES for peer in PEERS]


@functools.lru_cache(maxsize=1)
def operands(case):
    """(a [M,K], b [K,N], float64 a @ b, atol) for `case`, seeded."""
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (case.M, case.K)).astype(DTYPE)
    b = rng.uniform(-1, 1, (case.K, case.N)).astype(DTYPE)
    want = a.astype(np.float64) @ b.astype(np.float64)
    atol = case.K * np.finfo(DTYPE).eps * float(np.abs(a).max()) * float(np.abs(b).max())
    return a, b, want, atol


def _numpy_threads():
    return int(os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")
               or os.cpu_count())


@contextlib.contextmanager
def threads(n):
    """fastcells and (with threadpoolctl) OpenBLAS at n threads, restored afterwards."""
    saved = fastcells.get_num_threads()
    fastcells.set_num_threads(n)
    try:
        with (threadpool_limits(n, user_api="blas") if threadpool_limits is not None
              else contextlib.nullcontext()):
            yield
    finally:
        fastcells.set_num_threads(saved)


def make_runner(peer, case):
    """The Runner of `peer` on `case` (its subject is the case itself): fn writes a @ b into a
    preallocated out, inside threads(case.threads); fastcells' b packed once, here."""
    fn, _out = _product(peer, case)
    return Runner(fn, context=functools.partial(threads, case.threads),
                  checked="float64 product")


def _product(peer, case):
    """(fn, out): fn() writes a @ b into out, by `peer`; fastcells' b packed once, here."""
    a, b, _want, _atol = operands(case)
    out = np.empty((case.M, case.N), DTYPE)
    if peer == "fastcells":
        packed = fastcells._core.PackedMatrix(b)           # packing: once, not timed
        return functools.partial(packed.matmul, a, out), out
    return functools.partial(np.matmul, a, b, out=out), out


@pytest.mark.parametrize(("case", "peer"), PARAMS)
def test_gemm(benchmark, bench_results, case, peer):
    benchmark.group = case.id
    benchmark.extra_info.update(peer=peer, baseline=BASELINE, M=case.M, K=case.K, N=case.N,
                                threads=case.threads, flops=case.flops)
    if peer == "numpy" and threadpool_limits is None and _numpy_threads() != case.threads:
        pytest.skip(f"numpy: OpenBLAS runs {_numpy_threads()} thread(s), not {case.threads}; "
                    f"pip install threadpoolctl, or set OPENBLAS_NUM_THREADS={case.threads}")
    _a, _b, want, atol = operands(case)
    fn, out = _product(peer, case)
    before = cpu_snapshot()
    with threads(case.threads):
        fn()
        err = np.abs(out - want)
        assert (err <= atol).all(), (
            f"{case.id} {peer}: out{list(np.unravel_index(err.argmax(), err.shape))} off by "
            f"{err.max():.3g} > atol {atol:.3g} (K * eps32 * max|a| * max|b|) from the float64 "
            f"product; shape {out.shape}")
        warm_up(fn, 0.25 if peer == BASELINE else 0.1)
        benchmark(fn)
    others = other_cores(before, cpu_snapshot())
    benchmark.extra_info["other_cores"] = others
    if peer == "fastcells" or threadpool_limits is not None:    # the round robin sets threads
        bench_results.record(case, peer, benchmark, others, suite=SUITE,
                             compare=(lambda c: c, make_runner))
    else:
        bench_results.record(case, peer, benchmark, others, suite=SUITE)
