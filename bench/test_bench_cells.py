"""One cell call (float32), fastcells beside its peers: one benchmark group per case of
fastcells.benchmarks.cells.grid(), one test per (case, peer), all in the same run.

    pytest bench/ --benchmark-only
    FASTCELLS_BENCH_FULL=1 pytest bench/ --benchmark-only      the bigger grid

Every runner is checked numerically before it is timed (see fastcells.benchmarks.cells:
fastcells against the float64 oracle, the other peers against fastcells' output); those checks
assert. Speeds are never asserted: read the ratios off the summary table (the machines are
shared and noisy).
"""
import pytest

pytest.importorskip("pytest_benchmark", reason="pip install pytest-benchmark (the bench extra)")

from fastcells.benchmarks import full_grid_requested  # noqa: E402
from fastcells.benchmarks.cells import PEERS, grid, make_runner, make_subject  # noqa: E402

CASES = grid(full=full_grid_requested())
PARAMS = [pytest.param(case, peer, id=f"{case.id}-{peer}") for case in CASES for peer in PEERS]


@pytest.mark.parametrize(("case", "peer"), PARAMS)
def test_cell_step(benchmark, bench_peer, case, peer):
    benchmark.group = case.id
    benchmark.extra_info.update(peer=peer, kind=case.kind, B=case.B, I=case.I, H=case.H,
                                flops=case.flops)
    bench_peer(case, peer, make_subject, make_runner)
