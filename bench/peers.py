"""Peer adapters for the pytest-benchmark suite. Defined once, in fastcells._bench (which
`python -m fastcells bench` uses too); see its docstring for what each peer runs.

make_runner(peer, make_subject(case)) -> Runner: `runner.fn()` does ONE cell step at batch B and
must be called (and timed) inside `runner.context()`. The runner has already been checked
numerically (against fastcells' output, or for torch's reset-after GRU against the NumPy
reset-after oracle); a peer that cannot run here raises Unavailable(reason).
"""
from fastcells._bench import (BASELINE, PEERS, Runner, Subject, Unavailable, assert_close,
                              case_atol, cpu_snapshot, make_runner, make_subject, other_cores,
                              warm_up)

__all__ = ["BASELINE", "PEERS", "PEER_NAMES", "Runner", "Subject", "Unavailable", "assert_close",
           "case_atol", "cpu_snapshot", "make_runner", "make_subject", "other_cores", "warm_up"]

PEER_NAMES = tuple(PEERS)
