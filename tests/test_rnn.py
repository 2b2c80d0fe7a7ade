"""The sequence runners (fastcells.nn.dynamic_rnn, static_rnn, bidirectional_dynamic_rnn)
against fastcells.reference.

Every cell type and option, float32 and float64, batch-major and time-major, lengths None /
random with 0 and T in them, zero or given initial states, over B in {1, 2, 7, 13}, T in
{1, 2, 17} and U at 16/64 edges (15, 16, 17, 65); MultiRNNCell stacks of 1-3 mixed layers (both
state forms, nested), bidirectional with different cells on each side; static_rnn against
dynamic_rnn; the runners against stepping the cell by hand (the same arithmetic: equal, or
within 1 ulp); thread counts 1 and 2 bit-identical; one native call per runner call and no
Python per step on the fast path; the slow path (custom activations, user cells, overridden
__call__); read-only, non-contiguous and converted inputs; the caller's arrays untouched; errors.

The reference runs in float64 on the same (dtype-rounded) weights, inputs and states.
Tolerances: float32 within RTOL_F32 norm-wise and ATOL_F32 + RTOL_F32*|ref| elementwise;
float64 within TOL_F64 both ways. The ISA is picked when a cell is packed, from
_core.default_isa(): run this file with FASTCELLS_ISA=scalar, avx2, avx512 to cover each path.
"""
import zlib

import numpy as np
import pytest

import fastcells
from fastcells import _core, nn, reference, rnn
from fastcells._nest import flatten
from fastcells.cells import (BasicLSTMCell, BasicRNNCell, GRUCell, LSTMCell, LSTMStateTuple,
                             MultiRNNCell, RNNCell)
from fastcells.cells._fused import FusedCell, SingleStateCell
from fastcells.cells._kinds import LSTMBase

from conftest import (ATOL_F32, CONFIGS, DTYPE_IDS, DTYPES, RTOL_F32, TOL_F64,  # noqa: F401,E402
                      assert_close, flat, oracle_step, randomize, record_run_sequences,
                      scaled_tanh)

# the configurations of the runner tests (conftest.CONFIGS)
RUNNER_CONFIGS = sorted([
    "rnn", "rnn-relu", "rnn-sigmoid", "rnn-linear", "rnn-nn.relu", "rnn-np.tanh", "rnn-custom",
    "basic_lstm", "basic_lstm-fb0-concat", "basic_lstm-relu", "lstm", "lstm-peep", "lstm-clip",
    "lstm-proj", "lstm-proj-projclip", "lstm-all", "lstm-all-concat", "lstm-custom", "gru",
    "gru-relu", "gru-custom"])
FUSED_CONFIGS = [k for k in RUNNER_CONFIGS if not k.endswith("custom")]

# (B, T, U, I, time_major, lengths, initial state): every B, T and U listed in the module
# docstring appears, with both layouts, each lengths mode and each initial-state mode
CASES = [
    (1, 1, 15, 3, False, "none", "zero"),
    (2, 17, 16, 5, True, "random", "given"),
    (7, 2, 17, 1, False, "random", "given"),
    (13, 17, 65, 16, True, "none", "zero"),
    (13, 17, 17, 7, False, "random", "zero"),
    (7, 17, 65, 33, False, "random", "given"),
]
CASE_IDS = ["B%d-T%d-U%d-I%d-%s-%s-%s" % (B, T, U, I, "tm" if tm else "bm", ln, st)
            for B, T, U, I, tm, ln, st in CASES]


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

def make(config, U, dtype, I, seed=0):
    rng = np.random.default_rng(seed)
    return randomize(CONFIGS[config](U, dtype, seed), rng, I)


def random_state(cell, B, rng):
    """A random state in the cell's structure (c ~ N(0,1), h in (-1, 1))."""
    dt = cell.dtype
    if isinstance(cell, MultiRNNCell):
        parts = [random_state(c, B, rng) for c in cell.cells]
        return tuple(parts) if cell.state_is_tuple else np.concatenate(parts, axis=1)
    if isinstance(cell, (BasicLSTMCell, LSTMCell)):
        U, P = cell.num_units, cell.output_size
        c = rng.standard_normal((B, U)).astype(dt)
        h = rng.uniform(-1, 1, (B, P)).astype(dt)
        return LSTMStateTuple(c, h) if cell.state_is_tuple else np.concatenate([c, h], axis=1)
    return rng.uniform(-1, 1, (B, cell.state_size)).astype(dt)


def random_lengths(B, T, rng):
    """Random lengths in [0, T] with 0 and T both present when B >= 2."""
    lengths = rng.integers(0, T + 1, B)
    if B >= 2:
        lengths[rng.permutation(B)[:2]] = [0, T]
    return lengths


def f64(s):
    """A state or array, float64, same structure."""
    if s is None:
        return None
    if isinstance(s, (tuple, list)):
        items = [f64(v) for v in s]
        return type(s)(*items) if hasattr(s, "_fields") else type(s)(items)
    return np.asarray(s, dtype=np.float64)


def zero_like_state(cell, B):
    return f64(cell.zero_state(B, cell.dtype))


def assert_equal(actual, expected, what="", maxulp=0):
    """Same structure (types included) and the same numbers (bit-identical, or within maxulp)."""
    assert_same_structure(actual, expected, what)
    for k, (a, e) in enumerate(zip(flat(actual), flat(expected))):
        assert a.dtype == e.dtype and a.shape == e.shape, \
            f"{what}[{k}]: {a.dtype}{a.shape} vs {e.dtype}{e.shape}"
        if maxulp:
            np.testing.assert_array_max_ulp(a, e, maxulp=maxulp)
        else:
            np.testing.assert_array_equal(a, e, err_msg=f"{what}[{k}]")


def assert_same_structure(actual, expected, what=""):
    if isinstance(expected, tuple):
        assert type(actual) is type(expected), f"{what}: {type(actual)} vs {type(expected)}"
        assert len(actual) == len(expected), f"{what}: length {len(actual)} vs {len(expected)}"
        for k, (a, e) in enumerate(zip(actual, expected)):
            assert_same_structure(a, e, f"{what}[{k}]")
    else:
        assert isinstance(actual, np.ndarray), f"{what}: {type(actual)}"


def by_hand(cell, x, lengths, state, time_major=False):
    """dynamic_rnn by stepping the cell in a Python loop, with TF's masking, in the cell dtype."""
    xs = x if time_major else x.swapaxes(0, 1)
    T, B = xs.shape[:2]
    lengths = np.full(B, T) if lengths is None else np.asarray(lengths)
    outs = []
    for t in range(T):
        out, new = cell(xs[t], state)
        valid = (t < lengths)[:, None]
        outs.append(np.where(valid, out, 0).astype(cell.dtype))
        leaves = [np.where(valid, n, o) for n, o in zip(flat(new), flat(state))]
        state = pack_as(new, leaves)
    return np.stack(outs, axis=0 if time_major else 1), state


def pack_as(structure, leaves):
    it = iter(leaves)

    def build(s):
        if isinstance(s, (tuple, list)):
            items = [build(v) for v in s]
            return type(s)(*items) if hasattr(s, "_fields") else type(s)(items)
        return next(it)
    return build(structure)


def snapshot(*objs):
    return [a.copy() for o in objs for a in flat(o) if isinstance(a, np.ndarray)]


def assert_unchanged(before, *objs):
    after = [a for o in objs for a in flat(o) if isinstance(a, np.ndarray)]
    assert len(before) == len(after)
    for b, a in zip(before, after):
        np.testing.assert_array_equal(a, b, err_msg="a caller's array was modified")


def no_shared_memory(result, *objs):
    inputs = [a for o in objs for a in flat(o) if isinstance(a, np.ndarray)]
    for r in flat(result):
        for a in inputs:
            assert not np.shares_memory(r, a), "a result shares memory with an argument"


@pytest.fixture
def restore_threads():
    n = fastcells.get_num_threads()
    yield
    fastcells.set_num_threads(n)


@pytest.fixture
def count_calls(monkeypatch):
    """Counts _core.run_sequences calls (the attribute rnn.py looks up) and makes any Python
    per-step computation of a fastcells cell raise."""
    calls = record_run_sequences(
        monkeypatch, lambda T, B, stacks, time_major=False: [len(s) for s in stacks])

    def forbidden(*args, **kwargs):
        raise AssertionError("a cell was stepped from Python on the fast path")

    for klass in (SingleStateCell, LSTMBase, MultiRNNCell):
        monkeypatch.setattr(klass, "__call__", forbidden)
        monkeypatch.setattr(klass, "step_", forbidden)
    monkeypatch.setattr(FusedCell, "_compute", forbidden)
    return calls


# ---------------------------------------------------------------------------------------------
# dynamic_rnn: every cell and option against the reference
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("config", RUNNER_CONFIGS)
def test_dynamic_rnn_matches_reference(config, case, dtype):
    B, T, U, I, time_major, lengths_mode, state_mode = case
    seed = zlib.crc32(("%s/%d" % (config, CASES.index(case))).encode())
    rng = np.random.default_rng(seed)
    cell = make(config, U, dtype, I, seed)
    x = rng.uniform(-1.5, 1.5, (T, B, I) if time_major else (B, T, I)).astype(dtype)
    lengths = random_lengths(B, T, rng) if lengths_mode == "random" else None
    init = random_state(cell, B, rng) if state_mode == "given" else None
    before = snapshot(x, init)
    out, state = nn.dynamic_rnn(cell, x, sequence_length=lengths, initial_state=init,
                                dtype=None if init is not None else dtype, time_major=time_major)
    assert_unchanged(before, x, init)
    no_shared_memory((out, state), x, init)
    want_out, want_state = reference.dynamic_rnn(
        oracle_step(cell), f64(x), f64(init) if init is not None else zero_like_state(cell, B),
        sequence_length=lengths, time_major=time_major)
    assert out.shape == ((T, B) if time_major else (B, T)) + (cell.output_size,)
    assert_same_structure(state, cell.zero_state(B), "final_state")
    assert_close(out, want_out, dtype, f"{config} outputs")
    assert_close(state, want_state, dtype, f"{config} final_state")
    if lengths is not None:                      # exactly zero past each row's length
        xs_out = out if time_major else out.swapaxes(0, 1)
        for b, n in enumerate(lengths):
            assert not np.any(xs_out[n:, b]), f"row {b}: non-zero output past length {n}"


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("config", FUSED_CONFIGS)
def test_dynamic_rnn_equals_stepping_by_hand(config, dtype):
    """The sequence driver uses the per-step kernels' arithmetic: the same numbers (<= 1 ulp)."""
    rng = np.random.default_rng(7)
    for B, T, U, I in [(13, 17, 17, 5), (2, 17, 65, 16), (1, 2, 16, 1)]:
        cell = make(config, U, dtype, I, 3)
        x = rng.uniform(-1.5, 1.5, (B, T, I)).astype(dtype)
        lengths = random_lengths(B, T, rng)
        init = random_state(cell, B, rng)
        got = nn.dynamic_rnn(cell, x, sequence_length=lengths, initial_state=init)
        want = by_hand(cell, x, lengths, init)
        assert_equal(got, want, f"{config} B{B} T{T} U{U}", maxulp=1)
        got = nn.dynamic_rnn(cell, x, dtype=dtype)
        want = by_hand(cell, x, None, cell.zero_state(B))
        assert_equal(got, want, f"{config} B{B} T{T} U{U} zero state", maxulp=1)


@pytest.mark.parametrize("config", ["basic_lstm", "lstm-all-concat", "gru", "rnn-custom"])
def test_time_major_only_transposes(config):
    rng = np.random.default_rng(1)
    cell = make(config, 17, np.float32, 4)
    x = rng.uniform(-1, 1, (7, 17, 4)).astype(np.float32)
    lengths = random_lengths(7, 17, rng)
    init = random_state(cell, 7, rng)
    out_b, st_b = nn.dynamic_rnn(cell, x, lengths, init)
    out_t, st_t = nn.dynamic_rnn(cell, x.transpose(1, 0, 2), lengths, init, time_major=True)
    assert_equal(out_t.transpose(1, 0, 2).copy(), out_b)
    assert_equal(st_t, st_b)


def test_length_zero_returns_the_initial_state_and_zero_outputs():
    rng = np.random.default_rng(2)
    for config in ["lstm-all", "gru", "lstm-custom", "basic_lstm-fb0-concat"]:
        cell = make(config, 16, np.float64, 3)
        x = rng.standard_normal((3, 5, 3))
        init = random_state(cell, 3, rng)
        out, state = nn.dynamic_rnn(cell, x, sequence_length=[0, 0, 0], initial_state=init)
        assert not out.any()
        assert_equal(state, init, config)
        no_shared_memory(state, init)


def test_finished_rows_ignore_nan_inputs():
    """Past its length a row's input does not matter (TF discards it with where)."""
    rng = np.random.default_rng(3)
    for config in ["lstm-peep", "gru", "rnn-custom"]:
        cell = make(config, 15, np.float32, 4)
        x = rng.standard_normal((4, 6, 4)).astype(np.float32)
        lengths = np.array([6, 2, 0, 4])
        for b, n in enumerate(lengths):
            x[b, n:] = np.nan
        out, state = nn.dynamic_rnn(cell, x, lengths, dtype=np.float32)
        assert np.all(np.isfinite(out)) and all(np.all(np.isfinite(s)) for s in flat(state))
        x[np.isnan(x)] = 0
        assert_equal((out, state), nn.dynamic_rnn(cell, x, lengths, dtype=np.float32), config)


def test_nan_in_nan_out():
    cell = make("lstm", 16, np.float64, 3)
    x = np.zeros((2, 4, 3))
    x[0, 1, 0] = np.nan
    out, state = nn.dynamic_rnn(cell, x, dtype=np.float64)
    assert np.all(np.isnan(out[0, 1:])) and not np.any(np.isnan(out[1]))
    assert np.all(np.isnan(state.c[0])) and not np.any(np.isnan(state.c[1]))


# ---------------------------------------------------------------------------------------------
# MultiRNNCell stacks
# ---------------------------------------------------------------------------------------------

STACKS = {
    "1-lstm-proj": lambda dt, t: [LSTMCell(17, num_proj=5, use_peepholes=True,
                                           state_is_tuple=t, dtype=dt, seed=1)],
    "2-gru-lstm": lambda dt, t: [GRUCell(16, dtype=dt, seed=2),
                                 BasicLSTMCell(15, state_is_tuple=t, dtype=dt, seed=3)],
    "3-lstm-rnn-gru": lambda dt, t: [LSTMCell(65, cell_clip=0.5, num_proj=17, proj_clip=0.5,
                                              state_is_tuple=t, dtype=dt, seed=4),
                                     BasicRNNCell(16, activation="relu", dtype=dt, seed=5),
                                     GRUCell(17, dtype=dt, seed=6)],
    "2-custom-lstm": lambda dt, t: [GRUCell(15, activation=scaled_tanh, dtype=dt, seed=7),
                                    LSTMCell(16, state_is_tuple=t, dtype=dt, seed=8)],
}


@pytest.mark.parametrize("as_tuple", [True, False], ids=["tuple", "concat"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("stack", sorted(STACKS))
def test_multi_rnn_cell_matches_reference(stack, dtype, as_tuple):
    rng = np.random.default_rng(11)
    multi = randomize(MultiRNNCell(STACKS[stack](dtype, as_tuple), state_is_tuple=as_tuple),
                      rng, 6)
    for B, T, time_major in [(7, 17, False), (2, 2, True)]:
        x = rng.uniform(-1, 1, (T, B, 6) if time_major else (B, T, 6)).astype(dtype)
        lengths = random_lengths(B, T, rng)
        init = random_state(multi, B, rng)
        before = snapshot(x, init)
        out, state = nn.dynamic_rnn(multi, x, lengths, init, time_major=time_major)
        assert_unchanged(before, x, init)
        want = reference.dynamic_rnn(oracle_step(multi), f64(x), f64(init), lengths, time_major)
        assert_same_structure(state, init, "final_state")
        assert_close((out, state), want, dtype, stack)
        want_hand = by_hand(multi, x, lengths, init, time_major)
        assert_equal((out, state), want_hand, stack, maxulp=1)


@pytest.mark.parametrize("inner_tuple", [True, False], ids=["inner-tuple", "inner-concat"])
def test_multi_rnn_cell_nested_and_shared(inner_tuple):
    rng = np.random.default_rng(12)
    dt = np.float64
    inner = MultiRNNCell([GRUCell(16, dtype=dt, seed=1),
                          LSTMCell(16, num_proj=16, state_is_tuple=False, dtype=dt, seed=2)],
                         state_is_tuple=inner_tuple)
    shared = LSTMCell(16, dtype=dt, seed=3)
    with pytest.warns(UserWarning):
        multi = MultiRNNCell([BasicLSTMCell(16, dtype=dt, seed=4), inner, shared, shared])
    x = rng.standard_normal((5, 9, 16))
    lengths = random_lengths(5, 9, rng)
    out, state = nn.dynamic_rnn(multi, x, lengths, dtype=dt)         # builds every layer
    assert multi.built
    assert len(state) == 4 and isinstance(state[1], tuple) == inner_tuple
    want = reference.dynamic_rnn(oracle_step(multi), x, zero_like_state(multi, 5), lengths)
    assert_close((out, state), want, dt, "nested/shared")
    init = random_state(multi, 5, rng)
    got = nn.dynamic_rnn(multi, x, lengths, init)
    assert_equal(got, by_hand(multi, x, lengths, init), "nested/shared", maxulp=1)


# ---------------------------------------------------------------------------------------------
# static_rnn
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("config", ["lstm-all", "lstm-all-concat", "gru", "rnn-relu",
                                    "lstm-custom", "multi"])
def test_static_rnn_equals_dynamic_rnn(config):
    rng = np.random.default_rng(13)
    if config == "multi":
        cell = randomize(MultiRNNCell([GRUCell(16, seed=1), LSTMCell(17, num_proj=4, seed=2)]),
                         rng, 3)
    else:
        cell = make(config, 17, np.float32, 3)
    B, T = 7, 17
    x = rng.uniform(-1, 1, (B, T, 3)).astype(np.float32)
    lengths = random_lengths(B, T, rng)
    init = random_state(cell, B, rng)
    xs = [x[:, t] for t in range(T)]
    outs, state = nn.static_rnn(cell, xs, initial_state=init, sequence_length=lengths)
    assert isinstance(outs, list) and len(outs) == T
    out_d, state_d = nn.dynamic_rnn(cell, x, lengths, init)
    for t in range(T):
        assert_equal(outs[t], out_d[:, t].copy(), f"outputs[{t}]")
    assert_equal(state, state_d, "final_state")
    want_outs, want_state = reference.static_rnn(oracle_step(cell), [f64(v) for v in xs], f64(init),
                                                 lengths)
    assert_close((tuple(outs), state), (tuple(want_outs), want_state), np.float32, config)
    outs2, _ = nn.static_rnn(cell, tuple(xs), dtype=np.float32)       # zero state, tuple input
    assert len(outs2) == T and outs2[0].shape == (B, cell.output_size)


# ---------------------------------------------------------------------------------------------
# bidirectional_dynamic_rnn
# ---------------------------------------------------------------------------------------------

BIDI = {
    "lstm-gru": lambda dt: (LSTMCell(17, use_peepholes=True, num_proj=5, dtype=dt, seed=1),
                            GRUCell(16, dtype=dt, seed=2)),
    "multi-rnn": lambda dt: (MultiRNNCell([GRUCell(15, dtype=dt, seed=3),
                                           LSTMCell(16, state_is_tuple=False, dtype=dt, seed=4)]),
                             BasicRNNCell(65, dtype=dt, seed=5)),
    "gru-multi": lambda dt: (GRUCell(17, dtype=dt, seed=6),
                             MultiRNNCell([BasicLSTMCell(16, dtype=dt, seed=7),
                                           LSTMCell(15, cell_clip=0.5, dtype=dt, seed=8),
                                           GRUCell(16, dtype=dt, seed=9)])),
    "lstm-custom": lambda dt: (BasicLSTMCell(16, dtype=dt, seed=10),
                               GRUCell(17, activation=scaled_tanh, dtype=dt, seed=11)),
    "custom-custom": lambda dt: (BasicRNNCell(16, activation=scaled_tanh, dtype=dt, seed=12),
                                 LSTMCell(15, activation=scaled_tanh, dtype=dt, seed=13)),
}


@pytest.mark.parametrize("time_major", [False, True], ids=["bm", "tm"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("pair", sorted(BIDI))
def test_bidirectional_matches_reference(pair, dtype, time_major):
    rng = np.random.default_rng(14)
    cell_fw, cell_bw = BIDI[pair](dtype)
    randomize(cell_fw, rng, 4)
    randomize(cell_bw, rng, 4)
    for B, T, lengths_mode, states in [(13, 17, "random", True), (1, 1, "none", False),
                                       (2, 17, "none", True), (7, 2, "random", False)]:
        x = rng.uniform(-1, 1, (T, B, 4) if time_major else (B, T, 4)).astype(dtype)
        lengths = random_lengths(B, T, rng) if lengths_mode == "random" else None
        init_fw = random_state(cell_fw, B, rng) if states else None
        init_bw = random_state(cell_bw, B, rng) if states else None
        before = snapshot(x, init_fw, init_bw)
        got = nn.bidirectional_dynamic_rnn(cell_fw, cell_bw, x, lengths, init_fw, init_bw,
                                           dtype=dtype, time_major=time_major)
        assert_unchanged(before, x, init_fw, init_bw)
        no_shared_memory(got, x, init_fw, init_bw)
        (out_fw, out_bw), (st_fw, st_bw) = got
        want = reference.bidirectional_dynamic_rnn(
            oracle_step(cell_fw), oracle_step(cell_bw), f64(x),
            f64(init_fw) if states else zero_like_state(cell_fw, B),
            f64(init_bw) if states else zero_like_state(cell_bw, B), lengths, time_major)
        assert_same_structure(st_fw, cell_fw.zero_state(B), "state_fw")
        assert_same_structure(st_bw, cell_bw.zero_state(B), "state_bw")
        assert_close(((out_fw, out_bw), (st_fw, st_bw)), want, dtype, f"{pair} B{B} T{T}")


def test_bidirectional_backward_is_dynamic_rnn_on_reversed_input():
    """out_bw = reverse(dynamic_rnn(cell_bw, reverse(x))) and the same state, bit for bit."""
    rng = np.random.default_rng(15)
    cell_fw, cell_bw = BIDI["gru-multi"](np.float32)
    randomize(cell_fw, rng, 4)
    randomize(cell_bw, rng, 4)
    x = rng.uniform(-1, 1, (13, 17, 4)).astype(np.float32)
    lengths = random_lengths(13, 17, rng)
    (out_fw, out_bw), (st_fw, st_bw) = nn.bidirectional_dynamic_rnn(
        cell_fw, cell_bw, x, lengths, dtype=np.float32)
    assert_equal((out_fw, st_fw), nn.dynamic_rnn(cell_fw, x, lengths, dtype=np.float32))
    rev_out, rev_st = nn.dynamic_rnn(cell_bw, reference.reverse_sequence(x, lengths), lengths,
                                     dtype=np.float32)
    assert_equal((out_bw, st_bw), (reference.reverse_sequence(rev_out, lengths), rev_st))


# ---------------------------------------------------------------------------------------------
# One native call per runner call, no Python per step
# ---------------------------------------------------------------------------------------------

def test_one_native_call_dynamic(count_calls):
    rng = np.random.default_rng(16)
    for cell in [make("lstm-all", 16, np.float32, 3), make("gru", 17, np.float32, 3),
                 make("basic_lstm-fb0-concat", 15, np.float32, 3)]:
        del count_calls[:]
        nn.dynamic_rnn(cell, rng.standard_normal((7, 17, 3)).astype(np.float32),
                       [17, 0, 5, 1, 2, 3, 4], dtype=np.float32)
        assert count_calls == [[1]]
    multi = MultiRNNCell([GRUCell(16, seed=1), LSTMCell(17, state_is_tuple=False, seed=2),
                          BasicRNNCell(15, seed=3)], state_is_tuple=False)
    del count_calls[:]
    nn.dynamic_rnn(multi, rng.standard_normal((7, 17, 3)).astype(np.float32),
                   dtype=np.float32)                                        # builds too
    assert count_calls == [[3]]


def test_one_native_call_static_and_bidirectional(count_calls):
    rng = np.random.default_rng(17)
    cell = LSTMCell(16, num_proj=4, seed=1)
    nn.static_rnn(cell, [rng.standard_normal((2, 3)).astype(np.float32) for _ in range(17)],
                  dtype=np.float32)
    assert count_calls == [[1]]
    del count_calls[:]
    fw = MultiRNNCell([GRUCell(16, seed=2), LSTMCell(15, seed=3)])
    bw = BasicLSTMCell(17, seed=4)
    nn.bidirectional_dynamic_rnn(fw, bw, rng.standard_normal((13, 17, 3)).astype(np.float32),
                                 dtype=np.float32,
                                 sequence_length=random_lengths(13, 17, rng))
    assert count_calls == [[2, 1]]                    # both directions in one call


def test_slow_path_for_a_custom_activation(monkeypatch):
    """The custom-activation cell runs through the Python loop; in a bidirectional pair the
    other direction still runs natively."""
    rng = np.random.default_rng(18)
    calls = record_run_sequences(monkeypatch, lambda *args: args)
    custom = make("gru-custom", 16, np.float64, 3)
    x = rng.standard_normal((2, 5, 3))
    nn.dynamic_rnn(custom, x, dtype=np.float64)
    assert calls == []
    nn.bidirectional_dynamic_rnn(make("lstm", 16, np.float64, 3), custom, x, dtype=np.float64)
    assert len(calls) == 1 and len(calls[0][2]) == 1


# ---------------------------------------------------------------------------------------------
# The slow path: user cells and overridden __call__
# ---------------------------------------------------------------------------------------------

class MinimalRNN(RNNCell):
    """A user cell: h' = tanh(x @ W + h) with a tuple state (h, count)."""

    def __init__(self, units, dtype=None):
        super().__init__(dtype=dtype)
        self.units = units

    @property
    def state_size(self):
        return (self.units, 1)

    @property
    def output_size(self):
        return self.units

    def build(self, input_shape):
        rng = np.random.default_rng(0)
        self.w = rng.standard_normal((input_shape[-1], self.units)).astype(self.dtype) * 0.3
        self._built = True

    def call(self, x, state):
        h, n = state
        h = np.tanh(x @ self.w + h)
        return h, (h, n + 1)


def test_user_cell_runs_through_the_slow_path():
    rng = np.random.default_rng(19)
    cell = MinimalRNN(4, dtype=np.float64)
    x = rng.standard_normal((3, 6, 2))
    lengths = np.array([6, 0, 3])
    out, (h, n) = nn.dynamic_rnn(cell, x, lengths, dtype=np.float64)
    np.testing.assert_array_equal(n[:, 0], lengths)
    want = reference.dynamic_rnn(cell, x, cell.zero_state(3), lengths)
    assert_equal((out, (h, n)), want)
    multi = MultiRNNCell([LSTMCell(5, dtype=np.float64, seed=1), MinimalRNN(3, np.float64)])
    out, state = nn.dynamic_rnn(multi, x, lengths, dtype=np.float64)
    want = reference.dynamic_rnn(multi, x, multi.zero_state(3), lengths)
    assert_equal((out, state), want)
    outs, _ = nn.static_rnn(multi, list(x.swapaxes(0, 1)), dtype=np.float64,
                            sequence_length=lengths)
    assert_equal(np.stack(outs, 1), out)


def test_overridden_call_is_honoured():
    class Halved(GRUCell):
        def __call__(self, inputs, state, scope=None):
            out, new = super().__call__(inputs, state)
            return out * 0.5, new

    rng = np.random.default_rng(20)
    cell = Halved(16, dtype=np.float64, seed=1)
    x = rng.standard_normal((2, 4, 3))
    out, state = nn.dynamic_rnn(cell, x, dtype=np.float64)
    want = reference.dynamic_rnn(cell, x, cell.zero_state(2))
    assert_equal((out, state), want)


# ---------------------------------------------------------------------------------------------
# Threads, building, inputs
# ---------------------------------------------------------------------------------------------

def test_threads_1_and_2_bit_identical(restore_threads):
    rng = np.random.default_rng(21)
    lstm = make("lstm-all", 65, np.float32, 16)
    multi = randomize(MultiRNNCell([GRUCell(65, seed=1), LSTMCell(17, seed=2)]), rng, 16)
    x = rng.standard_normal((13, 17, 16)).astype(np.float32)
    lengths = random_lengths(13, 17, rng)
    results = []
    for n in (1, 2):
        fastcells.set_num_threads(n)
        results.append((nn.dynamic_rnn(lstm, x, lengths, dtype=np.float32),
                        nn.dynamic_rnn(multi, x.transpose(1, 0, 2), lengths, dtype=np.float32,
                                       time_major=True),
                        nn.bidirectional_dynamic_rnn(lstm, multi, x, lengths, dtype=np.float32)))
    assert_equal(results[0], results[1], "threads 1 vs 2")


TEAM_CONFIGS = {k: CONFIGS[k] for k in ("rnn", "basic_lstm", "lstm-all", "lstm-proj", "gru",
                                        "gru-reset_after")}


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("B, T, U", [(1, 9, 130), (64, 6, 8), (37, 5, 40)],
                         ids=["panels-B1-U130", "rows-B64-U8", "B37-U40"])
@pytest.mark.parametrize("config", sorted(TEAM_CONFIGS))
def test_threads_share_every_step(config, B, T, U, dtype, restore_threads):
    """Two threads share each step of one layer, by panels (one row, wide layer) or by rows
    (a layer of one panel, many rows), meeting at a barrier per step: forward and reverse,
    ragged lengths; equal to the reference, bit-identical to one thread."""
    rng = np.random.default_rng(22)
    cell = randomize(TEAM_CONFIGS[config](U, dtype, 4), rng, 6)
    x = rng.uniform(-1.5, 1.5, (B, T, 6)).astype(dtype)
    lengths = random_lengths(B, T, rng)
    cell.build((None, 6))
    results = []
    for n in (1, 2):
        fastcells.set_num_threads(n)
        runs = []
        for reverse in (False, True):
            layer = {"cell": cell._packed, "x": x, "lengths": lengths.astype(np.int64),
                     "out": np.full((B, T, cell.output_size), np.nan, dtype),
                     "h_final": np.full((B, cell.output_size), np.nan, dtype),
                     "c_final": np.full((B, U), np.nan, dtype) if "lstm" in config else None,
                     "h0": None, "c0": None, "reverse": reverse}
            _core.run_sequences(T, B, [[layer]])
            runs.append((layer["out"], layer["h_final"]) +
                        ((layer["c_final"],) if "lstm" in config else ()))
        results.append(tuple(runs))
    assert_equal(results[0], results[1], "threads 1 vs 2")
    step, zero = oracle_step(cell), zero_like_state(cell, B)
    want_fw = reference.dynamic_rnn(step, f64(x), zero, sequence_length=lengths)
    out_bw, state_bw = reference.dynamic_rnn(step, reference.reverse_sequence(f64(x), lengths),
                                             zero, sequence_length=lengths)
    want_bw = (reference.reverse_sequence(out_bw, lengths), state_bw)
    for (out, h, *c), (want_out, want_state) in zip(results[1], (want_fw, want_bw)):
        want_h, want_c = (want_state.h, want_state.c) if "lstm" in config else (want_state, None)
        assert_close((out, h) + tuple(c), (want_out, want_h) + ((want_c,) if c else ()), dtype,
                     config)


def test_sequences_from_many_threads():
    """Several Python threads running sequences at once (one gets the thread pool, the others
    run alone) give the numbers a single thread gives."""
    import threading
    rng = np.random.default_rng(23)
    cells_ = [make("lstm-proj", 130, np.float32, 8, seed=1), make("gru", 130, np.float32, 8),
              TEAM_CONFIGS["gru-reset_after"](40, np.float32, 2)]
    randomize(cells_[2], rng, 8)
    xs = [rng.standard_normal((B, 9, 8)).astype(np.float32) for B in (1, 37, 64)]
    jobs = [(cell, x) for cell in cells_ for x in xs]
    expected = [nn.dynamic_rnn(cell, x, dtype=np.float32) for cell, x in jobs]
    results = [None] * len(jobs)

    def work(k):
        for _ in range(10):
            results[k] = nn.dynamic_rnn(*jobs[k], dtype=np.float32)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k, (got, want) in enumerate(zip(results, expected)):
        assert_equal(got, want, f"job {k}")


def test_cells_use_the_default_isa():
    """Which kernels this run covers (FASTCELLS_ISA=scalar|avx2|avx512 picks them)."""
    cell = GRUCell(16, seed=1)
    nn.dynamic_rnn(cell, np.zeros((2, 3, 4), np.float32), dtype=np.float32)
    assert cell._packed.isa == _core.default_isa()
    assert cell._packed.isa in _core.available_isas()


def test_unbuilt_cells_are_built_as_by_a_first_call():
    rng = np.random.default_rng(22)
    x = rng.standard_normal((2, 3, 5)).astype(np.float32)
    a = MultiRNNCell([LSTMCell(16, num_proj=7, seed=1), GRUCell(17, seed=2)])
    b = MultiRNNCell([LSTMCell(16, num_proj=7, seed=1), GRUCell(17, seed=2)])
    nn.dynamic_rnn(a, x, dtype=np.float32)
    b(x[:, 0], b.zero_state(2))
    assert a.cells[0].input_size == 5 and a.cells[1].input_size == 7
    for name, w in b.get_weights().items():
        np.testing.assert_array_equal(a.get_weights()[name], w, err_msg=name)
    fw, bw = GRUCell(15, seed=3), BasicRNNCell(16, seed=4)
    nn.bidirectional_dynamic_rnn(fw, bw, x, dtype=np.float32)
    assert fw.input_size == 5 and bw.input_size == 5


@pytest.mark.parametrize("config", ["lstm-all-concat", "gru-custom"])
def test_inputs_read_only_non_contiguous_and_converted(config):
    rng = np.random.default_rng(23)
    cell = make(config, 16, np.float32, 3)
    big = rng.uniform(-1, 1, (14, 40, 6)).astype(np.float32)
    x = np.ascontiguousarray(big[::2, ::2, ::2])               # [7, 20, 3]
    lengths = random_lengths(7, 20, rng)
    init = random_state(cell, 7, rng)
    want = nn.dynamic_rnn(cell, x, lengths, init)
    views = {"strided batch": np.stack([x, x], axis=1).reshape(14, 20, 3)[::2],
             "strided time": np.repeat(x, 2, axis=1)[:, ::2],
             "last axis strided": big[::2, ::2, ::2],
             "negative strides": np.ascontiguousarray(x[::-1, ::-1])[::-1, ::-1],
             "fortran": np.asfortranarray(x),
             "time-major view": np.ascontiguousarray(x.transpose(1, 0, 2)).transpose(1, 0, 2)}
    ro = x.copy()
    ro.flags.writeable = False
    views["read-only"] = ro
    for name, v in views.items():
        np.testing.assert_array_equal(v, x)
        assert_equal(nn.dynamic_rnn(cell, v, lengths, init), want, name)
    # read-only, non-contiguous state arrays
    ro_init = flatten(init)
    for a in ro_init:
        a.flags.writeable = False
    assert_equal(nn.dynamic_rnn(cell, x, lengths, init), want, "read-only state")
    # lists and integer arrays convert to the cell's dtype; lengths as a list, int32 or uint8
    xi = rng.integers(-2, 3, (7, 20, 3))
    want_i = nn.dynamic_rnn(cell, xi.astype(np.float32), lengths, init)
    assert_equal(nn.dynamic_rnn(cell, xi, lengths.astype(np.int32), init), want_i, "int")
    assert_equal(nn.dynamic_rnn(cell, xi.tolist(), lengths.tolist(), init), want_i, "list")
    assert_equal(nn.dynamic_rnn(cell, xi, lengths.astype(np.uint8), init), want_i, "uint8")


def test_state_forms_and_non_contiguous_states():
    rng = np.random.default_rng(24)
    cell = make("lstm-proj", 17, np.float64, 3)
    x = rng.standard_normal((7, 5, 3))
    init = random_state(cell, 7, rng)
    want = nn.dynamic_rnn(cell, x, initial_state=init)
    # a plain (c, h) tuple or list; non-contiguous rows; lists
    c_big = np.zeros((14, 17))
    c_big[::2] = init.c
    h_f = np.asfortranarray(init.h)
    for state in [tuple(init), list(init), LSTMStateTuple(c_big[::2], h_f),
                  LSTMStateTuple(init.c.tolist(), init.h)]:
        out, st = nn.dynamic_rnn(cell, x, initial_state=state)
        assert type(st) is LSTMStateTuple
        assert_equal((out, st), want)


def test_batch_zero():
    cell = make("lstm-all", 16, np.float32, 3)
    out, state = nn.dynamic_rnn(cell, np.zeros((0, 4, 3), np.float32), sequence_length=[],
                                dtype=np.float32)
    assert out.shape == (0, 4, 5) and state.c.shape == (0, 16) and state.h.shape == (0, 5)


def test_tf_only_arguments_are_accepted():
    rng = np.random.default_rng(25)
    cell = make("gru", 16, np.float32, 3)
    x = rng.standard_normal((2, 4, 3)).astype(np.float32)
    want = nn.dynamic_rnn(cell, x, dtype=np.float32)
    got = nn.dynamic_rnn(cell, x, dtype="float32", parallel_iterations=32, swap_memory=True,
                         scope="encoder")
    assert_equal(got, want)
    nn.static_rnn(cell, list(x.swapaxes(0, 1)), dtype=np.float32, scope="s")
    nn.bidirectional_dynamic_rnn(cell, cell, x, dtype=np.float32, parallel_iterations=4,
                                 swap_memory=True, scope="b")
    assert nn.dynamic_rnn is rnn.dynamic_rnn and nn.static_rnn is rnn.static_rnn
    assert nn.bidirectional_dynamic_rnn is rnn.bidirectional_dynamic_rnn


# ---------------------------------------------------------------------------------------------
# Errors: the type, and a message naming the argument, the expected and the got
# ---------------------------------------------------------------------------------------------

def _err(exc_type, match, fn, *args, **kwargs):
    with pytest.raises(exc_type, match=match) as info:
        fn(*args, **kwargs)
    text = str(info.value)
    assert "expected" in text and "got" in text, text


def test_errors_inputs():
    lstm = make("lstm", 16, np.float32, 3)
    x = np.zeros((2, 4, 3), np.float32)
    _err(ValueError, "^inputs", nn.dynamic_rnn, lstm, np.zeros((2, 3), np.float32),
         dtype=np.float32)
    _err(ValueError, "^inputs", nn.dynamic_rnn, lstm, np.zeros((2, 4, 4), np.float32),
         dtype=np.float32)
    _err(ValueError, "^inputs", nn.dynamic_rnn, lstm, np.zeros((2, 0, 3), np.float32),
         dtype=np.float32)
    _err(ValueError, "^inputs", nn.dynamic_rnn, lstm, np.zeros((0, 2, 3), np.float32),
         dtype=np.float32, time_major=True)
    _err(TypeError, "^inputs", nn.dynamic_rnn, lstm, x.astype(np.float64), dtype=np.float32)
    _err(TypeError, "^inputs", nn.dynamic_rnn, lstm, x.astype(np.complex64), dtype=np.float32)
    _err(ValueError, "^inputs", nn.dynamic_rnn, MultiRNNCell([lstm]),
         np.zeros((2, 4, 5), np.float32), dtype=np.float32)
    _err(ValueError, "^inputs", nn.bidirectional_dynamic_rnn, GRUCell(4), lstm,
         np.zeros((2, 4, 5), np.float32), dtype=np.float32)
    _err(TypeError, "^inputs", nn.static_rnn, lstm, x.swapaxes(0, 1), dtype=np.float32)
    _err(ValueError, "^inputs", nn.static_rnn, lstm, [], dtype=np.float32)
    _err(ValueError, r"^inputs\[1\]", nn.static_rnn, lstm, [x[:, 0], x[:1, 0]], dtype=np.float32)
    _err(ValueError, r"^inputs\[0\]", nn.static_rnn, lstm, [x], dtype=np.float32)
    _err(TypeError, r"^inputs\[0\]", nn.static_rnn, lstm, [x[:, 0].astype(np.float64)],
         dtype=np.float32)
    built_for_9 = GRUCell(4)
    built_for_9.build(9)
    _err(ValueError, "^cell", nn.dynamic_rnn, MultiRNNCell([GRUCell(5), built_for_9]), x,
         dtype=np.float32)
    _err(TypeError, "^cell", nn.dynamic_rnn, "lstm", x, dtype=np.float32)
    _err(TypeError, "^cell_bw", nn.bidirectional_dynamic_rnn, lstm, object(), x,
         dtype=np.float32)


def test_errors_dtype():
    lstm = make("lstm", 16, np.float32, 3)
    x = np.zeros((2, 4, 3), np.float32)
    _err(ValueError, "^dtype", nn.dynamic_rnn, lstm, x)
    _err(ValueError, "^dtype", nn.static_rnn, lstm, list(x.swapaxes(0, 1)))
    _err(ValueError, "^dtype", nn.bidirectional_dynamic_rnn, lstm, lstm, x,
         initial_state_fw=lstm.zero_state(2))
    _err(TypeError, "^dtype", nn.dynamic_rnn, lstm, x, dtype=np.float64)
    _err(TypeError, "^dtype", nn.dynamic_rnn, lstm, x, dtype=np.int32)
    _err(TypeError, "^dtype", nn.dynamic_rnn, lstm, x, initial_state=lstm.zero_state(2),
         dtype=np.float64)
    _err(TypeError, "^cell_bw", nn.bidirectional_dynamic_rnn, lstm,
         GRUCell(4, dtype=np.float64), x, initial_state_fw=lstm.zero_state(2),
         initial_state_bw=np.zeros((2, 4)))
    nn.dynamic_rnn(lstm, x, initial_state=lstm.zero_state(2))          # dtype may be None


def test_errors_sequence_length():
    gru = make("gru", 16, np.float32, 3)
    x = np.zeros((3, 4, 3), np.float32)
    for bad, exc in [([1.0, 2.0, 3.0], TypeError), (np.array([1, 2, 3.5]), TypeError),
                     (np.array([True, False, True]), TypeError), (["a", "b", "c"], TypeError),
                     ([1, 2], ValueError), ([[1, 2, 3]], ValueError), (3, ValueError),
                     ([1, -1, 2], ValueError), ([1, 5, 2], ValueError),
                     (np.array([1, 2, 2**40], np.uint64), ValueError)]:
        _err(exc, "^sequence_length", nn.dynamic_rnn, gru, x, sequence_length=bad,
             dtype=np.float32)
    _err(ValueError, "^sequence_length", nn.bidirectional_dynamic_rnn, gru, gru, x,
         sequence_length=[0, 4, 5], dtype=np.float32)
    _err(ValueError, "^sequence_length", nn.static_rnn, gru, list(x.swapaxes(0, 1)),
         sequence_length=[0, 4, 5], dtype=np.float32)


def test_errors_initial_state():
    lstm = make("lstm-proj", 16, np.float32, 3)            # c [B,16], h [B,9]
    concat = make("lstm-all-concat", 16, np.float32, 3)    # [B, 19]
    gru = make("gru", 16, np.float32, 3)
    multi = MultiRNNCell([gru, make("basic_lstm", 16, np.float32, 16)])
    x = np.zeros((2, 4, 3), np.float32)
    z = np.zeros
    f = np.float32
    for cell, bad in [(lstm, z((2, 25), f)), (lstm, (z((2, 16), f),)),
                      (lstm, (z((2, 16), f), z((2, 16), f))), (lstm, (z((3, 16), f), z((3, 9), f))),
                      (lstm, (z((2, 16), f), z((2, 9, 1), f))), (concat, z((2, 20), f)),
                      (concat, LSTMStateTuple(z((2, 16), f), z((2, 3), f))), (gru, z((1, 16), f)),
                      (gru, (z((2, 16), f),)), (gru, z((2,), f)), (multi, (z((2, 16), f),)),
                      (multi, z((2, 48), f)), (multi, (z((2, 16), f), z((2, 32), f)))]:
        _err(ValueError, "^initial_state", nn.dynamic_rnn, cell, x, initial_state=bad)
    _err(TypeError, "^initial_state", nn.dynamic_rnn, gru, x, initial_state=z((2, 16)))
    _err(TypeError, r"^initial_state\.c", nn.dynamic_rnn, lstm, x,
         initial_state=(z((2, 16)), z((2, 9), f)))
    _err(ValueError, "^initial_state_bw", nn.bidirectional_dynamic_rnn, gru, lstm, x,
         initial_state_fw=z((2, 16), f), initial_state_bw=z((2, 16), f))
    _err(ValueError, "^initial_state_fw", nn.bidirectional_dynamic_rnn, gru, lstm, x,
         initial_state_fw=z((3, 16), f), dtype=f)
    _err(ValueError, "^initial_state", nn.static_rnn, gru, list(x.swapaxes(0, 1)),
         initial_state=z((3, 16), f))


def test_errors_leave_cells_usable():
    gru = GRUCell(16, seed=1)
    with pytest.raises(ValueError):
        nn.dynamic_rnn(gru, np.zeros((2, 4, 3), np.float32), sequence_length=[9, 9],
                       dtype=np.float32)
    assert not gru.built                      # nothing was built before the arguments passed
    out, _ = nn.dynamic_rnn(gru, np.zeros((2, 4, 5), np.float32), dtype=np.float32)
    assert gru.input_size == 5 and out.shape == (2, 4, 16)


def test_broadcast_inputs_and_states():
    """Zero strides (np.broadcast_to) are read as they are, or copied where the bridge needs it."""
    rng = np.random.default_rng(26)
    cell = make("lstm-proj", 17, np.float32, 3)
    lengths = [6, 2, 0, 4]
    for x in [np.broadcast_to(rng.standard_normal((1, 6, 3)).astype(np.float32), (4, 6, 3)),
              np.broadcast_to(rng.standard_normal((4, 1, 3)).astype(np.float32), (4, 6, 3))]:
        c = np.broadcast_to(np.float32(0.5), (4, 17))
        h = np.broadcast_to(rng.standard_normal(9).astype(np.float32), (4, 9))
        got = nn.dynamic_rnn(cell, x, lengths, (c, h))
        want = nn.dynamic_rnn(cell, x.copy(), lengths, LSTMStateTuple(c.copy(), h.copy()))
        assert_equal(got, want, "broadcast")
