"""One cell call (float32), fastcells beside its peers: one benchmark group per case of
bench/shapes.py, one test per (case, peer) of bench/peers.py, all in the same run.

    pytest bench/ --benchmark-only

Every runner is checked numerically before it is timed (see fastcells._bench: fastcells against
the float64 oracle, the other peers against fastcells' output); those checks assert. Speeds are
never asserted: read the ratios off the summary table (the machines are shared and noisy).
"""
import pytest

pytest.importorskip("pytest_benchmark", reason="pip install pytest-benchmark (the bench extra)")

from peers import (PEER_NAMES, Unavailable, cpu_snapshot, make_runner,  # noqa: E402
                   make_subject, other_cores, warm_up)
from shapes import CASES  # noqa: E402

PARAMS = [pytest.param(case, peer, id=f"{case.id}-{peer}") for case in CASES
          for peer in PEER_NAMES]


@pytest.mark.parametrize(("case", "peer"), PARAMS)
def test_cell_step(benchmark, bench_results, case, peer):
    benchmark.group = case.id
    benchmark.extra_info.update(peer=peer, kind=case.kind, B=case.B, I=case.I, H=case.H,
                                flops=case.flops)
    subject = make_subject(case)          # asserts fastcells against the float64 oracle
    try:
        runner = make_runner(peer, subject)   # asserts this peer's first output
    except Unavailable as e:
        pytest.skip(f"{peer}: {e}")
    benchmark.extra_info["checked_against"] = runner.checked
    before = cpu_snapshot()
    with runner.context():
        warm_up(runner.fn)                # see fastcells._bench.warm_up: why, besides caches
        benchmark(runner.fn)
    others = other_cores(before, cpu_snapshot())
    benchmark.extra_info["other_cores"] = others
    bench_results.record(case, peer, benchmark, others)
