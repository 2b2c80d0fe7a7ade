"""The named grid of benchmark shapes. Defined once, in fastcells._bench (which
`python -m fastcells bench` uses too); this module only picks the grid for the pytest suite.

    FASTCELLS_BENCH_FULL=1 pytest bench/ --benchmark-only      the bigger grid

Case(kind, B, I, H): one cell call, x [B,I], state [B,H], float32; `case.id` such as
"lstm-B1-I128-H128" is the benchmark group; `case.flops` = LSTM 8*B*H*(I+H), GRU 6*B*H*(I+H),
RNN 2*B*H*(I+H).
"""
import os

from fastcells._bench import KINDS, Case, grid

__all__ = ["Case", "KINDS", "FULL", "CASES", "grid"]

FULL = os.environ.get("FASTCELLS_BENCH_FULL", "") not in ("", "0")
CASES = grid(full=FULL)
