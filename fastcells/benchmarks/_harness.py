"""What the benchmark suites share: the numerical check every runner passes before it is
timed, the Runner / Unavailable protocol of the peers, warm-up and timing, the load the rest
of the machine put on a run, and the per-case timing loop of the plain-text tables.

    Runner(fn, context, checked)   fn: zero-argument callable, timed inside context()
    Unavailable(reason)            a peer that cannot run here
    assert_close(what, got, want, rtol, atol)    dicts name -> array
    case_atol(case)                the absolute tolerance for a reduction over I+H terms
    warm_up, wait_for_idle_threads, time_call, cpu_snapshot, other_cores, time_peers
"""
import contextlib
import dataclasses
import math
import os
import time
import timeit

import numpy as np

DTYPE = np.float32
SEED = 0
FORGET_BIAS = 1.0                # TF's default, kept; folded into torch's / ONNX's f bias
# float32 check of every runner before it is timed: rtol 1e-5, atol 1e-6 for a product over up
# to ATOL_TERMS terms, atol growing linearly with the reduction length I+H beyond that (as the
# float32 worst-case bound K*eps does). Measured, two correct float32 computations of one RNN step
# at I=H=1024 differ by 3.5e-6 (fastcells vs NumPy) and NumPy float32 is 2.1e-6 off float64,
# so a flat 1e-6 fails on rounding alone; a wrong gate order or weight layout is off by > 1e-2.
RTOL, ATOL, ATOL_TERMS = 1e-5, 1e-6, 256
# the environment variable asking the pytest suites for the bigger grids
FULL_GRID_ENV = "FASTCELLS_BENCH_FULL"
# products of H columns per step and row (FLOPs = 2 * that * H * (I+H)): LSTM 8*B*H*(I+H),
# GRU 6*B*H*(I+H), RNN 2*B*H*(I+H)
GATES = {"lstm": 4, "gru": 3, "gru_ra": 3, "rnn": 1}


def case_atol(case):
    """The absolute tolerance of `case`'s checks: ATOL, scaled by (I+H)/ATOL_TERMS when larger."""
    return ATOL * max(1.0, (case.I + case.H) / ATOL_TERMS)


def assert_close(what, got, want, rtol=RTOL, atol=ATOL):
    """Asserts every array of `want` (dict name -> array) is matched in `got` within rtol/atol,
    with a message naming the benchmark, the array, the worst index, the values and the shape."""
    for name, w in want.items():
        g = np.asarray(got[name], np.float64)
        w = np.asarray(w, np.float64)
        assert g.shape == w.shape, f"{what}: {name} has shape {g.shape}, expected {w.shape}"
        excess = np.abs(g - w) - (atol + rtol * np.abs(w))
        if not (excess <= 0).all():                     # also catches NaN
            k = np.unravel_index(np.nanargmax(np.where(np.isnan(excess), np.inf, excess)),
                                 w.shape)
            raise AssertionError(
                f"{what}: {name}{[int(i) for i in k]} = {float(g[k])!r}, expected "
                f"{float(w[k])!r} "
                f"(|diff| {abs(g[k] - w[k]):.3g} > atol {atol} + rtol {rtol} * |expected|; "
                f"shape {w.shape}; max |diff| {np.nanmax(np.abs(g - w)):.3g})")


class Unavailable(Exception):
    """The peer cannot run here; str() is the reason (for pytest.skip and the table)."""


@dataclasses.dataclass
class Runner:
    """fn: zero-argument callable doing one call of the benchmarked work; call it (and time it)
    inside `context()`; `checked`: what its first output was checked against."""
    fn: object
    context: object = contextlib.nullcontext
    checked: str = ""


def import_torch():
    """torch, or Unavailable with the reason (it is an optional peer)."""
    try:
        import torch
    except ImportError as e:
        raise Unavailable(f"torch is not importable ({e}); it is an optional peer (pin a CPU "
                          f"build, e.g. pip install torch==2.13.0)") from None
    return torch


def wait_for_idle_threads(max_seconds=1.0, window=0.02, busy_fraction=0.05):
    """Sleeps until this process's other threads are idle: less than `busy_fraction` of a core
    used over a `window` of seconds, at most `max_seconds` in all. Worker threads that a library
    leaves spinning after its last call (OpenBLAS after the NumPy checks: 140 ms measured here;
    torch's OpenMP pool) would otherwise take the core the next peer's threads need."""
    end = timeit.default_timer() + max_seconds
    while timeit.default_timer() < end:
        cpu = time.process_time()
        time.sleep(window)
        if time.process_time() - cpu < busy_fraction * window:
            return


def warm_up(fn, seconds=0.1):
    """Waits for idle threads (wait_for_idle_threads), then calls fn() back to back for
    `seconds` (at least twice): caches and thread pools get hot."""
    wait_for_idle_threads()
    end = timeit.default_timer() + seconds
    fn()
    fn()
    while timeit.default_timer() < end:
        fn()


def time_call(fn, min_seconds=0.02, repeat=5):
    """Best-of-`repeat` seconds per call of `fn()`, each repeat a loop lasting >= min_seconds."""
    number, elapsed = 1, 0.0
    while True:                                    # calibrate, as timeit's autorange
        elapsed = timeit.timeit(fn, number=number)
        if elapsed >= min_seconds / 4:
            break
        number *= 4 if elapsed < min_seconds / 40 else 2
    number = max(1, math.ceil(number * min_seconds / elapsed))
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


def cpu_snapshot():
    """(CPU seconds all processes have used, this process's CPU seconds, wall seconds), or None
    where /proc/stat is missing (not Linux). Two snapshots give `other_cores`."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    busy = sum(v[:3]) + sum(v[5:8])       # user nice system, irq softirq steal (not idle, iowait)
    own = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), own.user + own.system, timeit.default_timer()


def other_cores(before, after):
    """Cores used on average between two cpu_snapshot()s by everything but this process
    (other processes, and the hypervisor's steal): above ~0.2 the timings were disturbed."""
    if before is None or after is None or after[2] <= before[2]:
        return None
    return max(0.0, ((after[0] - before[0]) - (after[1] - before[1])) / (after[2] - before[2]))


def blas_note():
    """A line warning that OpenBLAS tuning variables are set (they can slow NumPy), or ""."""
    noted = [k for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ]
    if noted:
        return (f"note: {' and '.join(noted)} set in the environment; they can slow NumPy (unset "
                f"them for this command only to time NumPy fairly)")
    return ""


def time_peers(subject, peers, min_seconds, repeat, warm_seconds, slow_call=None):
    """Times every peer on `subject`, in the order of `peers` ({name: make(subject) ->
    Runner}; an Unavailable peer gets None). warm_seconds(peer): its warm-up; slow_call:
    (seconds, repeat), fewer repeats for a peer whose single call takes longer.
    Returns ({peer: seconds per call or None}, other_cores during the whole case)."""
    times = {}
    before = cpu_snapshot()
    for peer, make in peers.items():
        try:
            runner = make(subject)
        except Unavailable:
            times[peer] = None
            continue
        with runner.context():
            warm_up(runner.fn, warm_seconds(peer))
            n = repeat
            if slow_call is not None and timeit.timeit(runner.fn, number=1) >= slow_call[0]:
                n = slow_call[1]
            times[peer] = time_call(runner.fn, min_seconds, n)
        del runner
    return times, other_cores(before, cpu_snapshot())


def full_grid_requested():
    """True when FASTCELLS_BENCH_FULL is set to anything but "" or "0"."""
    return os.environ.get(FULL_GRID_ENV, "") not in ("", "0")


def make_runner(peers, peer, subject):
    """The checked Runner of `peer` (a key of `peers`, {name: make(subject) -> Runner}) for
    `subject`; raises Unavailable. Each suite binds its own PEERS (functools.partial)."""
    return peers[peer](subject)
