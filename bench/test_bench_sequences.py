"""A whole sequence forward (float32), fastcells beside its peers: one benchmark group per
SeqCase of fastcells.benchmarks.sequences.grid(), one test per (case, peer), all in the same run.

    pytest bench/test_bench_sequences.py --benchmark-only                 (~3 min on 2 cores)
    FASTCELLS_BENCH_FULL=1 pytest bench/test_bench_sequences.py --benchmark-only
    python -m fastcells bench-seq       the same as a table, with % peak

Peers (see fastcells.benchmarks.sequences): fastcells (nn.dynamic_rnn), numpy-loop, torch
(nn.LSTM/GRU/RNN, packed sequences for variable lengths), torch-cell-loop, onnxruntime (one LSTM/GRU/RNN node; its
time includes the [B,T,I] -> [T,B,I] input copy). Every runner is checked numerically before it
is timed (fastcells against the float64 oracle, the others against fastcells); those checks
assert. Speeds are never asserted: read the ratios off the summary table.

The summary's ratios and floors come from timing each group again round robin after the tests
(bench/conftest.py). fastcells is the first test of each group and is warmed up for 0.25 s: OpenBLAS, torch and
onnxruntime leave worker threads spinning for ~100 ms after a call, which would take the second
core away from it.
"""
import pytest

pytest.importorskip("pytest_benchmark", reason="pip install pytest-benchmark (the bench extra)")

from fastcells.benchmarks import full_grid_requested  # noqa: E402
from fastcells.benchmarks.sequences import (BASELINE, PEERS, empty_call, floor,  # noqa: E402
                                            grid, make_runner, make_subject)

SUITE = {"name": "sequence", "title": "whole sequence forward", "baseline": BASELINE,
         "peers": tuple(PEERS), "unit": "ms",
         "floor": lambda case, limits: floor(case, limits, empty_call(case))}
CASES = grid(full=full_grid_requested())
PARAMS = [pytest.param(case, peer, id=f"{case.id}-{peer}") for case in CASES for peer in PEERS]


@pytest.mark.parametrize(("case", "peer"), PARAMS)
def test_sequence(benchmark, bench_peer, case, peer):
    benchmark.group = case.id
    benchmark.extra_info.update(peer=peer, baseline=BASELINE, kind=case.kind, B=case.B, I=case.I,
                                H=case.H, T=case.T, variable_lengths=case.variable_lengths,
                                flops=case.flops)
    bench_peer(case, peer, make_subject, make_runner,
               warm_seconds=0.25 if peer == BASELINE else 0.1, suite=SUITE)
