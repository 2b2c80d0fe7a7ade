"""The benchmarks, in one place (shipped, so that ``python -m fastcells bench`` and
``bench-seq`` run from an installed wheel; the pytest-benchmark suites in the repository's
bench/ import them from here):

    fastcells.benchmarks.cells       one cell call: grid, peers, table (python -m fastcells bench)
    fastcells.benchmarks.sequences   a whole sequence forward (python -m fastcells bench-seq)
    fastcells.benchmarks.quantized   the same at fp32 / bf16 / int8 beside onnxruntime's and
                                     torch's fp32 and dynamic int8, with accuracy (python -m
                                     fastcells bench-seq --precision fp32,bf16,int8)
    fastcells.benchmarks._harness    what both share: checks, Runner / Unavailable, warm-up,
                                     the round robin every comparison is timed by (the minimum
                                     over rounds of each round's median), the load of the rest
                                     of the machine
    fastcells.benchmarks._limits     the machine line, the limits a run measures (multiply-add
                                     peaks, GEMM rates, cache bandwidths) and a row's floor

Every peer is checked numerically before it is timed; no timing is asserted anywhere. torch,
onnx and onnxruntime are optional peers, imported only when their runner is made.
"""
from fastcells.benchmarks._harness import (FULL_GRID_ENV, Runner, Unavailable,  # noqa: F401
                                           assert_close, blas_note, case_atol, cpu_snapshot,
                                           full_grid_requested, other_cores, time_call,
                                           warm_up)
