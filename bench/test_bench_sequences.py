"""A whole sequence forward (float32), fastcells beside its peers: one benchmark group per
SeqCase of fastcells._bench_seq.grid(), one test per (case, peer), all in the same run.

    pytest bench/test_bench_sequences.py --benchmark-only                 (~3 min on 2 cores)
    FASTCELLS_BENCH_FULL=1 pytest bench/test_bench_sequences.py --benchmark-only
    python -c "import fastcells._bench_seq as b; b.run()"       the same as a table, with % peak

Peers (see fastcells._bench_seq): fastcells (nn.dynamic_rnn), numpy-loop, torch (nn.LSTM/GRU/RNN,
packed sequences for variable lengths), torch-cell-loop, onnxruntime (one LSTM/GRU/RNN node; its
time includes the [B,T,I] -> [T,B,I] input copy). Every runner is checked numerically before it
is timed (fastcells against the float64 oracle, the others against fastcells); those checks
assert. Speeds are never asserted: read the ratios off the summary table.

fastcells is the first test of each group and is warmed up for 0.25 s: OpenBLAS, torch and
onnxruntime leave worker threads spinning for ~100 ms after a call, which would take the second
core away from it.
"""
import pytest

pytest.importorskip("pytest_benchmark", reason="pip install pytest-benchmark (the bench extra)")

from fastcells._bench_seq import (BASELINE, PEERS, Unavailable, grid,  # noqa: E402
                                  make_runner, make_subject)
from peers import cpu_snapshot, other_cores, warm_up  # noqa: E402
from shapes import FULL  # noqa: E402

SUITE = {"name": "sequence", "title": "whole sequence forward", "baseline": BASELINE,
         "peers": tuple(PEERS), "unit": "ms"}
CASES = grid(full=FULL)
PARAMS = [pytest.param(case, peer, id=f"{case.id}-{peer}") for case in CASES for peer in PEERS]


@pytest.mark.parametrize(("case", "peer"), PARAMS)
def test_sequence(benchmark, bench_results, case, peer):
    benchmark.group = case.id
    benchmark.extra_info.update(peer=peer, baseline=BASELINE, kind=case.kind, B=case.B, I=case.I,
                                H=case.H, T=case.T, variable_lengths=case.variable_lengths,
                                flops=case.flops)
    subject = make_subject(case)          # asserts fastcells against the float64 oracle
    try:
        runner = make_runner(peer, subject)   # asserts this peer's first output
    except Unavailable as e:
        pytest.skip(f"{peer}: {e}")
    benchmark.extra_info["checked_against"] = runner.checked
    before = cpu_snapshot()
    with runner.context():
        warm_up(runner.fn, 0.25 if peer == BASELINE else 0.1)
        benchmark(runner.fn)
    others = other_cores(before, cpu_snapshot())
    benchmark.extra_info["other_cores"] = others
    bench_results.record(case, peer, benchmark, others, suite=SUITE)
