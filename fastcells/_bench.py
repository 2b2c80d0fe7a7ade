"""One cell call, fastcells beside its peers: the shape grid, the peer adapters, and a table.

    python -m fastcells bench            (or: python -c "import fastcells._bench as b; b.run()")

This module is the one place for the benchmark facts; the pytest-benchmark suite in the
repository's bench/ (bench/shapes.py, bench/peers.py) imports the grid and the adapters from here.

Grid: per-cell-call cases ``Case(kind, B, I, H)``, float32; ``grid()`` is the default grid,
``grid(full=True)`` (or FASTCELLS_BENCH_FULL=1 for the pytest suite) a bigger one.

Peers (``PEERS``): each ``make_runner(peer, subject)`` returns a ``Runner`` whose ``fn`` is a
zero-argument callable doing ONE cell step at batch B, to be called inside ``runner.context()``.
Every runner is checked once numerically before it is returned (float32: rtol 1e-5, atol 1e-6
scaled up with I+H beyond 256 terms, see case_atol);
a peer that cannot run raises ``Unavailable`` with the reason.

    fastcells-call    cell(x, state)          new arrays
    fastcells-step_   cell.step_(x, state)    in place, no allocation
    numpy-reference   fastcells.reference.*_cell on the same weights (float32 NumPy)
    torch-cell        torch.nn.LSTMCell / GRUCell / RNNCell under torch.inference_mode(), with
                      torch.set_num_threads(fastcells.get_num_threads()); LSTM and RNN weights are
                      converted from the TF layout (same math). torch's GRU is reset-after, which
                      no weights of TF's reset-before GRUCell can reproduce: for kind "gru" it runs
                      with its own weights (same FLOPs) and is checked against
                      fastcells.reference.gru_cell_reset_after instead; kind "gru_ra" is fastcells'
                      GRUCell(reset_after=True), the same math as torch's, on the same weights.

FLOPs per step (BENCH.md): LSTM 8*B*H*(I+H), GRU 6*B*H*(I+H), RNN 2*B*H*(I+H).
"""
import contextlib
import dataclasses
import functools
import itertools
import math
import os
import sys
import time
import timeit

import numpy as np

import fastcells
from fastcells import convert, reference
from fastcells._core import _GRU_RA_NAMES   # reference.gru_cell_reset_after's weight order

__all__ = ["Case", "grid", "PEERS", "Subject", "make_subject", "Runner", "Unavailable",
           "make_runner", "assert_close", "case_atol", "wait_for_idle_threads", "warm_up",
           "time_call", "cpu_snapshot", "other_cores", "run"]

DTYPE = np.float32
# float32 check of every runner before it is timed: rtol 1e-5, atol 1e-6 for a product over up
# to ATOL_TERMS terms, atol growing linearly with the reduction length I+H beyond that (as the
# float32 worst-case bound K*eps does). Measured, two correct float32 computations of one RNN step
# at I=H=1024 differ by 3.5e-6 (fastcells vs NumPy) and NumPy float32 is 2.1e-6 off float64,
# so a flat 1e-6 fails on rounding alone; a wrong gate order or weight layout is off by > 1e-2.
RTOL, ATOL, ATOL_TERMS = 1e-5, 1e-6, 256
FORGET_BIAS = 1.0                # TF's default; folded into torch's f bias
SEED = 0

# ---------------------------------------------------------------------------------------------
# The grid
# ---------------------------------------------------------------------------------------------

_GATES = {"lstm": 4, "gru": 3, "gru_ra": 3, "rnn": 1}   # products of H columns per step
                                                         # (FLOPs = 2*that)


@dataclasses.dataclass(frozen=True)
class Case:
    """One cell call: kind in lstm|gru|gru_ra|rnn, x [B,I], state [B,H], float32 (gru: TF's
    GRUCell, reset-before; gru_ra: GRUCell(reset_after=True))."""
    kind: str
    B: int
    I: int
    H: int

    @property
    def id(self):
        return f"{self.kind}-B{self.B}-I{self.I}-H{self.H}"

    @property
    def flops(self):
        """LSTM 8*B*H*(I+H), GRU 6*B*H*(I+H), RNN 2*B*H*(I+H) (the products only)."""
        return 2 * _GATES[self.kind] * self.B * self.H * (self.I + self.H)

    def __str__(self):
        return self.id


KINDS = ("lstm", "gru", "gru_ra", "rnn")


def grid(full=False):
    """The named cases, grouped by kind, then B, then H.

    default: every kind x B in {1, 8, 64} x I=H in {128, 256, 512}, plus B=64 I=H=1024;
    full:    every kind x B in {1, 8, 16, 64, 256} x I=H in {128, 256, 512, 1024}."""
    batches, sizes = ((1, 8, 16, 64, 256), (128, 256, 512, 1024)) if full else \
        ((1, 8, 64), (128, 256, 512))
    cases = []
    for kind in KINDS:
        cases += [Case(kind, B, H, H) for B, H in itertools.product(batches, sizes)]
        if not full:
            cases.append(Case(kind, 64, 1024, 1024))
    return cases


# ---------------------------------------------------------------------------------------------
# The subject: one fastcells cell, its weights, an input and a (non-zero) state
# ---------------------------------------------------------------------------------------------

_CLASSES = {"lstm": "BasicLSTMCell", "gru": "GRUCell", "gru_ra": "GRUCell", "rnn": "BasicRNNCell"}
_KWARGS = {"lstm": {"forget_bias": FORGET_BIAS}, "gru_ra": {"reset_after": True}}


@dataclasses.dataclass
class Subject:
    """What every peer of one case computes from: `cell` (built, TF-initialised weights, seed
    SEED), `weights` (cell.get_weights()), `x` [B,I], `state` (the cell's state structure, random
    values in [-1, 1)), and `expected`: name -> array of fastcells' cell(x, state), which every
    runner of the same math is checked against ("output", then "c", "h" or "h")."""
    case: Case
    cell: object
    weights: dict
    x: np.ndarray
    state: object
    expected: dict


def _leaves(kind, state):
    """State as a dict name -> array: LSTM (c, h), GRU/RNN h."""
    if kind == "lstm":
        c, h = state
        return {"c": c, "h": h}
    return {"h": state}


def _copy_state(kind, state):
    if kind == "lstm":
        return type(state)(*(np.array(a) for a in state))
    return np.array(state)


def _reference_step(kind, x, state, w):
    """fastcells.reference on the subject's weights; returns the dict of `Subject.expected`."""
    if kind == "lstm":
        c, h = reference.lstm_cell(x, state[0], state[1], w["kernel"], w["bias"],
                                   forget_bias=FORGET_BIAS)
        return {"output": h, "c": c, "h": h}
    if kind == "gru":
        h = reference.gru_cell(x, state, w["gates/kernel"], w["gates/bias"],
                               w["candidate/kernel"], w["candidate/bias"])
    elif kind == "gru_ra":
        h = reference.gru_cell_reset_after(x, state, *(w[n] for n in _GRU_RA_NAMES))
    else:
        h = reference.rnn_cell(x, state, w["kernel"], w["bias"])
    return {"output": h, "h": h}


@functools.lru_cache(maxsize=1)
def make_subject(case):
    """Builds the subject of `case` (the last one is cached, so the peers of a case share it).
    Checks fastcells' cell(x, state) against the float64 NumPy oracle first."""
    cls = getattr(fastcells, _CLASSES[case.kind])
    cell = cls(case.H, dtype=DTYPE, seed=SEED, **_KWARGS.get(case.kind, {}))
    cell.build(case.I)
    weights = {k: np.array(v) for k, v in cell.get_weights().items()}
    rng = np.random.default_rng(SEED + 1)
    x = rng.standard_normal((case.B, case.I)).astype(DTYPE)
    state = cell.zero_state(case.B, DTYPE)
    for a in _leaves(case.kind, state).values():
        a[...] = rng.uniform(-1.0, 1.0, a.shape)
    output, new_state = cell(x, state)
    expected = {"output": output, **_leaves(case.kind, new_state)}
    f64 = lambda a: np.asarray(a, np.float64)                         # noqa: E731
    want = _reference_step(case.kind, f64(x),
                           type(state)(*map(f64, state)) if case.kind == "lstm" else f64(state),
                           {k: f64(v) for k, v in weights.items()})
    assert_close(f"{case.id} fastcells cell(x, state) vs float64 reference", expected, want,
                 atol=case_atol(case))
    return Subject(case, cell, weights, x, state, expected)


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


# ---------------------------------------------------------------------------------------------
# The peers
# ---------------------------------------------------------------------------------------------

class Unavailable(Exception):
    """The peer cannot run here; str() is the reason (for pytest.skip and the table)."""


@dataclasses.dataclass
class Runner:
    """fn: zero-argument callable doing one cell step; call it (and time it) inside
    `context()`; `checked`: what its first output was checked against."""
    fn: object
    context: object = contextlib.nullcontext
    checked: str = ""


def _fastcells_call(s):
    cell, x, state = s.cell, s.x, s.state

    def fn():
        return cell(x, state)

    out, new = fn()
    assert_close(f"{s.case.id} fastcells-call", {"output": out, **_leaves(s.case.kind, new)},
                 s.expected, atol=case_atol(s.case))
    return Runner(fn, checked="float64 reference (fastcells.reference)")


def _fastcells_step_(s):
    cell, x = s.cell, s.x
    state = _copy_state(s.case.kind, s.state)      # evolves in place from here on

    def fn():
        return cell.step_(x, state)

    out = fn()
    assert_close(f"{s.case.id} fastcells-step_", {"output": out, **_leaves(s.case.kind, state)},
                 s.expected, atol=case_atol(s.case))
    return Runner(fn, checked="fastcells-call")


def _numpy_reference(s):
    kind, x, w, state = s.case.kind, s.x, s.weights, s.state
    if kind == "lstm":
        c, h = state
        k, b = w["kernel"], w["bias"]

        def fn():
            return reference.lstm_cell(x, c, h, k, b, forget_bias=FORGET_BIAS)

        c_new, h_new = fn()
        got = {"output": h_new, "c": c_new, "h": h_new}
    else:
        if kind == "gru":
            args = (w["gates/kernel"], w["gates/bias"], w["candidate/kernel"],
                    w["candidate/bias"])
            step = reference.gru_cell
        elif kind == "gru_ra":
            args = tuple(w[n] for n in _GRU_RA_NAMES)
            step = reference.gru_cell_reset_after
        else:
            args = (w["kernel"], w["bias"])
            step = reference.rnn_cell

        def fn():
            return step(x, state, *args)

        h_new = fn()
        got = {"output": h_new, "h": h_new}
    assert_close(f"{s.case.id} numpy-reference", got, s.expected,
                 atol=case_atol(s.case))
    return Runner(fn, checked="fastcells-call")


def _import_torch():
    try:
        import torch
    except ImportError as e:
        raise Unavailable(f"torch is not importable ({e}); it is an optional peer (pin a CPU "
                          f"build, e.g. pip install torch==2.13.0 here: BENCH.md)") from None
    return torch


def _torch_cell(s):
    torch = _import_torch()
    torch.set_num_threads(fastcells.get_num_threads())
    kind, (B, I, H), w = s.case.kind, (s.case.B, s.case.I, s.case.H), s.weights
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, DTYPE))   # noqa: E731
    x = t(s.x)
    with torch.inference_mode():
        if kind == "lstm":
            # TF kernel [I+H,4H] blocks i,j,f,o -> torch i,f,g(=j),o, rows x@W_ih^T + h@W_hh^T;
            # forget_bias goes into the f bias (FRAMEWORKS.md 6.2).
            perm = lambda a: np.concatenate(                         # noqa: E731
                [a[..., 0:H], a[..., 2 * H:3 * H], a[..., H:2 * H], a[..., 3 * H:]], axis=-1)
            bias = np.array(w["bias"], np.float64)
            bias[2 * H:3 * H] += FORGET_BIAS
            module = torch.nn.LSTMCell(I, H)
            params = {"weight_ih": perm(w["kernel"][:I]).T, "weight_hh": perm(w["kernel"][I:]).T,
                      "bias_ih": perm(bias), "bias_hh": np.zeros(4 * H)}
            c, h = t(s.state[0]), t(s.state[1])
            hc = (h, c)
        elif kind == "rnn":
            module = torch.nn.RNNCell(I, H, nonlinearity="tanh")
            params = {"weight_ih": w["kernel"][:I].T, "weight_hh": w["kernel"][I:].T,
                      "bias_ih": w["bias"], "bias_hh": np.zeros(H)}
            hc = t(s.state)
        elif kind == "gru_ra":
            # the same math: fastcells' GRUCell(reset_after=True) weights in torch's layout
            module = torch.nn.GRUCell(I, H)
            params = convert.to_torch_state_dict(s.cell)
            hc = t(s.state)
        else:
            # torch.nn.GRUCell is reset-after (r * (h @ W_hn + b_hn)); TF's GRUCell, and so
            # fastcells', is reset-before ((r * h) @ W). No weights map one onto the other, so
            # torch runs its own (seeded) weights: the same FLOPs, checked against the
            # reset-after NumPy oracle below rather than against fastcells.
            torch.manual_seed(SEED)
            module = torch.nn.GRUCell(I, H)
            params = None
            hc = t(s.state)
        if params is not None:
            for name, value in params.items():
                getattr(module, name).copy_(t(value))
        module.eval()

        def fn():
            return module(x, hc)

        out = fn()
        if kind == "lstm":
            got = {"output": out[0].numpy(), "c": out[1].numpy(), "h": out[0].numpy()}
            want, checked = s.expected, "fastcells-call"
        elif kind in ("rnn", "gru_ra"):
            got = {"output": out.numpy(), "h": out.numpy()}
            want, checked = s.expected, "fastcells-call"
        else:
            got = {"output": out.numpy()}
            want = {"output": _torch_gru_oracle(module, s.x, s.state, H)}
            checked = "reference.gru_cell_reset_after (torch's own weights; torch GRU is " \
                      "reset-after)"
    assert_close(f"{s.case.id} torch-cell", got, want,
                 atol=case_atol(s.case))
    return Runner(fn, context=torch.inference_mode, checked=checked)


def _torch_gru_oracle(module, x, h, H):
    """reference.gru_cell_reset_after in float64 from torch.nn.GRUCell's weights (rows r, z, n;
    z is TF's u)."""
    g = lambda p: p.detach().numpy().astype(np.float64)               # noqa: E731
    w_ih, w_hh, b_ih, b_hh = (g(module.weight_ih), g(module.weight_hh), g(module.bias_ih),
                              g(module.bias_hh))
    return reference.gru_cell_reset_after(
        np.asarray(x, np.float64), np.asarray(h, np.float64),
        np.vstack([w_ih[:2 * H].T, w_hh[:2 * H].T]), b_ih[:2 * H] + b_hh[:2 * H],
        w_ih[2 * H:].T, b_ih[2 * H:], w_hh[2 * H:].T, b_hh[2 * H:])


PEERS = {
    "fastcells-call": _fastcells_call,
    "fastcells-step_": _fastcells_step_,
    "numpy-reference": _numpy_reference,
    "torch-cell": _torch_cell,
}
BASELINE = "fastcells-call"           # ratios are peer time / this peer's time


def make_runner(peer, subject):
    """The checked Runner of `peer` (a key of PEERS) for `subject`; raises Unavailable."""
    return PEERS[peer](subject)


# ---------------------------------------------------------------------------------------------
# The plain-text table (no pytest-benchmark needed)
# ---------------------------------------------------------------------------------------------

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


def _blas_note():
    noted = [k for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ]
    if noted:
        return (f"note: {' and '.join(noted)} set in the environment; they can slow NumPy (unset "
                f"them for this command only to time NumPy fairly)")
    return ""


def _fmt_us(seconds):
    if seconds is None:
        return "-"
    us = seconds * 1e6
    return f"{us:.2f}" if us < 100 else f"{us:.1f}" if us < 1000 else f"{us:.0f}"


def run(out=sys.stdout, quick=False, cases=None):
    """Prints ISA and threads, then per case: microseconds per call of every peer, the ratio
    peer time / fastcells cell(x, state) time (> 1: fastcells is faster), and fastcells'
    GFLOP/s, and how busy the rest of the machine was meanwhile. quick=True: fewer, shorter
    repeats (~15 s). Returns {case.id: {peer: seconds or None, "other_cores": float or None}}."""
    min_seconds, repeat, warm_seconds = (0.005, 3, 0.02) if quick else (0.025, 7, 0.1)
    cases = grid() if cases is None else cases
    threads = fastcells.get_num_threads()
    try:
        torch_note = f"torch {_import_torch().__version__}"
    except Unavailable as e:
        torch_note = str(e)
    print(f"fastcells {fastcells.__version__}: one cell call, float32, "
          f"isa {fastcells._core.default_isa()}, {threads} thread(s)", file=out)
    print(f"peers: NumPy {np.__version__} (fastcells.reference), {torch_note} "
          f"(torch.nn.*Cell, inference_mode, {threads} thread(s))", file=out)
    print(f"per peer: {warm_seconds * 1e3:g} ms warm-up, then best of {repeat} timeit repeats of "
          f">= {min_seconds * 1e3:g} ms each (back-to-back calls)", file=out)
    print("x = peer time / call time (> 1: fastcells cell(x, state) is faster); GFLOP/s of call",
          file=out)
    print("gru = TF's GRUCell (reset-before): torch.nn.GRUCell is reset-after, so it runs its "
          "own weights (same FLOPs); gru_ra = GRUCell(reset_after=True), torch's math; every "
          "other torch row computes fastcells' math on the same weights, checked before timing",
          file=out)
    print("other = cores busy with other processes (or hypervisor steal) while the row ran: "
          "above ~0.2 that row is disturbed; rerun it", file=out)
    note = _blas_note()
    if note:
        print(note, file=out)
    header = (f"{'case':<24}{'call us':>9}{'step_ us':>10}{'numpy us':>10}{'torch us':>10}"
              f"{'step_ x':>9}{'numpy x':>9}{'torch x':>9}{'GFLOP/s':>9}{'other':>7}")
    print("\n" + header + "\n" + "-" * len(header), file=out)
    results = {}
    for case in cases:
        subject = make_subject(case)
        times = {}
        before = cpu_snapshot()
        for peer in PEERS:
            try:
                runner = make_runner(peer, subject)
            except Unavailable:
                times[peer] = None
                continue
            with runner.context():
                warm_up(runner.fn, warm_seconds)
                times[peer] = time_call(runner.fn, min_seconds, repeat)
            del runner
        others = other_cores(before, cpu_snapshot())
        results[case.id] = dict(times, other_cores=others)
        base = times[BASELINE]
        ratio = lambda p: "-" if times[p] is None else f"{times[p] / base:.2f}"   # noqa: E731
        print(f"{case.id:<24}{_fmt_us(base):>9}{_fmt_us(times['fastcells-step_']):>10}"
              f"{_fmt_us(times['numpy-reference']):>10}{_fmt_us(times['torch-cell']):>10}"
              f"{ratio('fastcells-step_'):>9}{ratio('numpy-reference'):>9}"
              f"{ratio('torch-cell'):>9}{case.flops / base / 1e9:>9.1f}"
              f"{'-' if others is None else f'{others:.1f}':>7}", file=out, flush=True)
    make_subject.cache_clear()
    return results
