"""One cell call, fastcells beside its peers: the shape grid, the peer adapters, and a table.

    python -m fastcells bench   (or: python -c "import fastcells.benchmarks.cells as b; b.run()")

This module is the one place for the one-cell-call benchmark facts; the pytest-benchmark suite
bench/test_bench_cells.py imports the grid and the adapters from here.

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

FLOPs per step: LSTM 8*B*H*(I+H), GRU 6*B*H*(I+H), RNN 2*B*H*(I+H).

Timing (``run``): _harness.round_robin (rotated rounds, each peer's time the minimum over rounds
of its round's median); each row's floor on this machine from the limits the same run measures
(``floor``, fastcells.benchmarks._limits).
"""
import dataclasses
import functools
import itertools
import sys
import timeit

import numpy as np

import fastcells
from fastcells import convert, reference
from fastcells.benchmarks import _harness, _limits
from fastcells.benchmarks._harness import (DTYPE, FORGET_BIAS, GATES, SEED, Runner, Unavailable,
                                           assert_close, case_atol, import_torch,
                                           time_peers, warm_up)
from fastcells.cells._oracle import oracle_step

__all__ = ["Case", "KINDS", "grid", "PEERS", "BASELINE", "Subject", "make_subject",
           "make_runner", "floor", "empty_call", "run"]


# ---------------------------------------------------------------------------------------------
# The grid
# ---------------------------------------------------------------------------------------------

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
        return 2 * GATES[self.kind] * self.B * self.H * (self.I + self.H)

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
    want_output, want_state = oracle_step(cell, np.float64)(x, state)
    want = {"output": want_output, **_leaves(case.kind, want_state)}
    assert_close(f"{case.id} fastcells cell(x, state) vs float64 reference", expected, want,
                 atol=case_atol(case))
    return Subject(case, cell, weights, x, state, expected)


# ---------------------------------------------------------------------------------------------
# The peers
# ---------------------------------------------------------------------------------------------

def _check(s, peer, output, state):
    """Asserts a peer's first (output, new state) against fastcells' cell(x, state)."""
    assert_close(f"{s.case.id} {peer}", {"output": output, **_leaves(s.case.kind, state)},
                 s.expected, atol=case_atol(s.case))


def _fastcells_call(s):
    cell, x, state = s.cell, s.x, s.state

    def fn():
        return cell(x, state)

    _check(s, "fastcells-call", *fn())
    return Runner(fn, checked="float64 reference (fastcells.reference)")


def _fastcells_step_(s):
    cell, x = s.cell, s.x
    state = _copy_state(s.case.kind, s.state)      # evolves in place from here on

    def fn():
        return cell.step_(x, state)

    _check(s, "fastcells-step_", fn(), state)
    return Runner(fn, checked="fastcells-call")


def _numpy_reference(s):
    step, x, state = oracle_step(s.cell, DTYPE), s.x, s.state    # float32 weights and math

    def fn():
        return step(x, state)

    _check(s, "numpy-reference", *fn())
    return Runner(fn, checked="fastcells-call")


def _torch_cell(s):
    torch = import_torch()
    torch.set_num_threads(fastcells.get_num_threads())
    kind, (I, H) = s.case.kind, (s.case.I, s.case.H)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, DTYPE))   # noqa: E731
    x = t(s.x)
    with torch.inference_mode():
        if kind != "gru":
            # the same math on the same weights, in torch's layout (fastcells.convert: gate
            # blocks reordered, forget_bias folded into the f bias)
            module = {"lstm": torch.nn.LSTMCell, "rnn": torch.nn.RNNCell,
                      "gru_ra": torch.nn.GRUCell}[kind](I, H)
            params = convert.to_torch_state_dict(s.cell)
            hc = (t(s.state[1]), t(s.state[0])) if kind == "lstm" else t(s.state)
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
make_runner = functools.partial(_harness.make_runner, PEERS)   # (peer, subject) -> Runner


# ---------------------------------------------------------------------------------------------
# The plain-text table (no pytest-benchmark needed)
# ---------------------------------------------------------------------------------------------

def _fmt_us(seconds):
    if seconds is None:
        return "-"
    us = seconds * 1e6
    return f"{us:.2f}" if us < 100 else f"{us:.1f}" if us < 1000 else f"{us:.0f}"


def floor(case, limits, empty_call):
    """The Floor of `case` on `limits` (_limits.row_floor): its FLOPs, the whole packed kernel
    and bias ([I+H+1, G*H] float32, columns padded to the panels) read once by the call, plus
    `empty_call` seconds."""
    tile_cols = fastcells._core.kernel_tile(limits.isa, DTYPE)[1]
    cols = -(-GATES[case.kind] * case.H // tile_cols) * tile_cols
    weight_bytes = (case.I + case.H + 1) * cols * 4
    return _limits.row_floor(limits, case.B, case.flops, weight_bytes, 1, 0, empty_call)


def empty_call(case, min_seconds=0.005):
    """Seconds of fastcells' cell(x, state) of `case`'s kind at I = H = B = 1: the fixed cost
    of a call (median of 5 samples)."""
    tiny = Case(case.kind, 1, 1, 1)
    fn = _fastcells_call(make_subject(tiny)).fn
    warm_up(fn, 0.02)
    number = _harness.calls_per_sample(fn, min_seconds)
    return _harness.median(timeit.repeat(fn, number=number, repeat=5)) / number


def run(out=sys.stdout, quick=False, cases=None, rounds=None):
    """Prints the machine line, the limits measured by this run, then per case: microseconds
    per call of every peer (round robin, minimum of medians), the ratio peer time / fastcells
    cell(x, state) time (> 1: fastcells is faster), fastcells' GFLOP/s, its floor (us), what
    bounds it, % of floor, and how busy the rest of the machine was meanwhile. quick=True:
    fewer, shorter rounds (~15 s; rounds overrides). Returns {case.id: {peer: seconds or None,
    "other_cores", "floor_s", "bound"}, "limits": Limits}."""
    min_seconds, repeat, warm_seconds, samples = _harness.table_timing(
        quick, rounds, 7, turn_seconds=(0.002, 0.01), warm_seconds=(0.02, 0.1))
    cases = grid() if cases is None else cases
    threads = fastcells.get_num_threads()
    try:
        torch_note = f"torch {import_torch().__version__}"
    except Unavailable as e:
        torch_note = str(e)
    limits = _limits.print_limits(out, threads, quick, [
        f"fastcells {fastcells.__version__}: one cell call, float32",
        f"peers: NumPy {np.__version__} (fastcells.reference), {torch_note} "
        f"(torch.nn.*Cell, inference_mode, {threads} thread(s))"])
    print(f"per peer: {warm_seconds * 1e3:g} ms warm-up, then {repeat} round-robin rounds (each "
          f"times every peer once, in a rotated order) of {samples} samples of >= "
          f"{min_seconds * 1e3:g} ms (back-to-back calls); a peer's time is the minimum over "
          f"rounds of its round's median", file=out)
    print("x = peer time / call time (> 1: fastcells cell(x, state) is faster); GFLOP/s of call",
          file=out)
    print(f"floor = the least time on this machine: B <= {_limits.BANDWIDTH_BOUND_MAX_BATCH} "
          f"each thread's share of the packed weights at the bandwidth of the level it fits "
          f"(bound bw L2/L3/DRAM), else FLOPs / (threads x fp32 peak) (fma); + an empty call "
          f"(I=H=B=1); %floor = floor / call time", file=out)
    print("gru = TF's GRUCell (reset-before): torch.nn.GRUCell is reset-after, so it runs its "
          "own weights (same FLOPs); gru_ra = GRUCell(reset_after=True), torch's math; every "
          "other torch row computes fastcells' math on the same weights, checked before timing",
          file=out)
    _harness.print_disturbance_legend(out)
    header = (f"{'case':<24}{'call us':>9}{'step_ us':>10}{'numpy us':>10}{'torch us':>10}"
              f"{'step_ x':>9}{'numpy x':>9}{'torch x':>9}{'GFLOP/s':>9}{'floor us':>10}"
              f"{'bound':>8}{'%floor':>7}{'other':>7}")
    _harness.print_header(out, header)
    results = {"limits": limits}
    empty_of = _harness.memo_by(lambda case: case.kind, empty_call)
    for case in cases:
        row_floor = floor(case, limits, empty_of(case))
        times, others = time_peers(make_subject(case), PEERS, min_seconds, repeat,
                                   lambda peer: warm_seconds, samples=samples)
        results[case.id] = dict(times, other_cores=others, floor_s=row_floor.seconds,
                                bound=row_floor.bound)
        base = times[BASELINE]
        ratio = lambda p: "-" if times[p] is None else f"{times[p] / base:.2f}"   # noqa: E731
        print(f"{case.id:<24}{_fmt_us(base):>9}{_fmt_us(times['fastcells-step_']):>10}"
              f"{_fmt_us(times['numpy-reference']):>10}{_fmt_us(times['torch-cell']):>10}"
              f"{ratio('fastcells-step_'):>9}{ratio('numpy-reference'):>9}"
              f"{ratio('torch-cell'):>9}{case.flops / base / 1e9:>9.1f}"
              f"{_fmt_us(row_floor.seconds):>10}{row_floor.bound:>8}"
              f"{row_floor.percent(base):>7.1f}"
              f"{'-' if others is None else f'{others:.1f}':>7}", file=out, flush=True)
    make_subject.cache_clear()
    return results
