"""What the benchmark suites share: the numerical check every runner passes before it is
timed, the Runner / Unavailable protocol of the peers, warm-up and timing, the load the rest
of the machine put on a run, and the per-case timing loop of the plain-text tables.

    Runner(fn, context, checked)   fn: zero-argument callable, timed inside context()
    Unavailable(reason)            a peer that cannot run here
    assert_close(what, got, want, rtol, atol)    dicts name -> array
    case_atol(case)                the absolute tolerance for a reduction over I+H terms
    warm_up, wait_for_idle_threads, time_call, cpu_snapshot, other_cores
    rotations, median, minimum_of_medians, round_robin -> Comparison, time_peers
                                   the one place contenders are compared: round robin, each
                                   contender's figure the minimum over rounds of its medians
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


def table_timing(quick, rounds, default_rounds, turn_seconds=(0.005, 0.02),
                 warm_seconds=(0.05, 0.1)):
    """(min_seconds a turn, rounds, warm-up seconds, samples a turn) of a table's run; the pairs
    are (quick, default). quick=True: 3 rounds of 3 samples; else default_rounds of 5; rounds,
    where given, overrides either."""
    repeat, samples = (3, 3) if quick else (default_rounds, 5)
    return (turn_seconds[not quick], repeat if rounds is None else rounds,
            warm_seconds[not quick], samples)


def peer_versions(modules=("torch", "onnxruntime")):
    """["torch 2.x", "onnxruntime not installed", ...] for the table's header."""
    notes = []
    for mod in modules:
        try:
            notes.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            notes.append(f"{mod} not installed")
    return notes


def print_header(out, header, above=""):
    """A table's column header (after a blank line and `above`), underlined."""
    print("\n" + (above + "\n" if above else "") + header + "\n" + "-" * len(header), file=out)


def memo_by(key, fn):
    """fn(case) computed once per key(case) (e.g. each cell kind's empty call, once a table)."""
    done = {}

    def get(case):
        k = key(case)
        if k not in done:
            done[k] = fn(case)
        return done[k]
    return get


def print_disturbance_legend(out, unit="row"):
    """The legend of the tables' last column ("other"), then blas_note's warning if any."""
    print(f"other = cores busy with other processes (or hypervisor steal) while the {unit} ran: "
          f"above ~0.2 the {unit} is disturbed; rerun it", file=out)
    note = blas_note()
    if note:
        print(note, file=out)


def rotations(names, rounds):
    """The order of every round of a round robin over `names`: round r is `names` rotated to
    start at names[r % n], so each round times every contender once and each contender takes
    every position (first, after each other one) in turn."""
    names = list(names)
    n = len(names)
    return [names[r % n:] + names[:r % n] if n else [] for r in range(rounds)]


def median(values):
    """The median of a non-empty sequence (the mean of the middle two for an even count)."""
    v = sorted(values)
    if not v:
        raise ValueError("values: expected at least one sample, got none")
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else 0.5 * (v[mid - 1] + v[mid])


def minimum_of_medians(samples_by_round):
    """{name: [[seconds per call of each sample] for each round]} -> {name: the minimum over
    rounds of the median of that round's samples}: a round disturbed by the rest of the machine
    has a slower median and is passed over; one lucky sample cannot make a contender's figure."""
    return {name: min(median(samples) for samples in rounds)
            for name, rounds in samples_by_round.items()}


def calls_per_sample(fn, min_seconds, clock=timeit.default_timer):
    """How many back-to-back calls of fn() make one sample last >= min_seconds (timeit's
    autorange, measured with `clock`)."""
    number = 1
    while True:
        t0 = clock()
        for _ in range(number):
            fn()
        elapsed = clock() - t0
        if elapsed >= min_seconds / 4 or number >= 1 << 24:
            break
        number *= 4 if elapsed < min_seconds / 40 else 2
    return max(1, math.ceil(number * min_seconds / max(elapsed, 1e-12)))


@dataclasses.dataclass
class Comparison:
    """One round-robin run: `seconds` {name: minimum of medians, seconds per call},
    `samples` {name: [[seconds per call] per round]}, `orders` (each round's order),
    `other_cores` (cores the rest of the machine used meanwhile, or None)."""
    seconds: dict
    samples: dict
    orders: list
    other_cores: object = None

    def ratio(self, name, baseline):
        """seconds[name] / seconds[baseline], both from this same run (> 1: baseline faster)."""
        return self.seconds[name] / self.seconds[baseline]


def round_robin(runners, rounds, samples, min_seconds, warm_seconds=lambda name: 0.1,
                clock=timeit.default_timer, settle=wait_for_idle_threads, warm=warm_up,
                slow_call=None):
    """Times the contenders `runners` ({name: Runner}) against each other, alternating: every
    contender is warmed up (warm(fn, warm_seconds(name))) and calibrated to samples of >=
    min_seconds first; then `rounds` rounds, each timing every contender once in a rotated
    order (rotations), a turn being settle() (other libraries' threads go idle), one untimed
    call, then `samples` samples. slow_call: (seconds, samples) - fewer samples for a contender
    whose single call takes at least that long. The figure of each contender is the minimum
    over rounds of its round's median (minimum_of_medians), so every ratio compares times taken
    in the same rounds of the same run. Returns a Comparison."""
    numbers, counts = {}, {}
    before = cpu_snapshot()
    for name, runner in runners.items():
        with runner.context():
            warm(runner.fn, warm_seconds(name))
            numbers[name] = calls_per_sample(runner.fn, min_seconds, clock)
            counts[name] = samples
            if slow_call is not None and numbers[name] == 1:
                t0 = clock()
                runner.fn()
                if clock() - t0 >= slow_call[0]:
                    counts[name] = min(samples, slow_call[1])
    by_round = {name: [] for name in runners}
    orders = rotations(runners, rounds)
    for order in orders:
        for name in order:
            fn, number = runners[name].fn, numbers[name]
            settle()
            with runners[name].context():
                fn()
                taken = []
                for _ in range(counts[name]):
                    t0 = clock()
                    for _ in range(number):
                        fn()
                    taken.append((clock() - t0) / number)
            by_round[name].append(taken)
    return Comparison(minimum_of_medians(by_round), by_round, orders,
                      other_cores(before, cpu_snapshot()))


def time_peers(subject, peers, min_seconds, repeat, warm_seconds, slow_call=None, samples=5):
    """Times every peer on `subject` with round_robin (`repeat` rounds of `samples` samples
    of >= min_seconds), peers {name: make(subject) -> Runner} (an Unavailable peer gets None).
    warm_seconds(peer): its warm-up; slow_call: (seconds, samples) for slow peers.
    Returns ({peer: seconds per call (minimum of medians) or None}, other_cores during the
    whole case)."""
    runners, times = {}, {}
    for peer, make in peers.items():
        try:
            runners[peer] = make(subject)
        except Unavailable:
            times[peer] = None
    result = round_robin(runners, repeat, samples, min_seconds, warm_seconds,
                         slow_call=slow_call)
    times.update(result.seconds)
    return {peer: times[peer] for peer in peers}, result.other_cores


def full_grid_requested():
    """True when FASTCELLS_BENCH_FULL is set to anything but "" or "0"."""
    return os.environ.get(FULL_GRID_ENV, "") not in ("", "0")


def make_runner(peers, peer, subject):
    """The checked Runner of `peer` (a key of `peers`, {name: make(subject) -> Runner}) for
    `subject`; raises Unavailable. Each suite binds its own PEERS (functools.partial)."""
    return peers[peer](subject)
