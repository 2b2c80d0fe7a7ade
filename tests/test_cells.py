"""The public cells (fastcells.cells, fastcells.nn.rnn_cell) against fastcells.reference.

Every cell and option, float32 and float64, over batch sizes {1,2,3,6,7,8,9,13,17,33}, units
{1,2,3,7,15,16,17,31,32,33,64,65} and input sizes {1,5,16,33} (a grid that covers each value, not
the full product); both state forms; read-only, non-contiguous and converted inputs; step_ (in
place) against __call__; 100-step sequences; sizes, zero states, weights, initializers,
MultiRNNCell. The reference runs in float64 on the same (dtype-rounded) weights and inputs.

Tolerances: float32 within RTOL_F32 norm-wise (||a-b|| / ||b||) and ATOL_F32 + RTOL_F32*|b|
elementwise; float64 within TOL_F64 both ways. Run the file again with FASTCELLS_ISA=scalar,
avx2, avx512 to cover every kernel path.
"""
import threading

import numpy as np
import pytest

import fastcells
from fastcells import activations, cells, nn, reference
from fastcells.cells import (BasicLSTMCell, BasicRNNCell, GRUCell, LSTMCell, LSTMStateTuple,
                             MultiRNNCell)

from conftest import (ATOL_F32, CONFIGS, DTYPE_IDS, DTYPES, RTOL_F32, TOL_F64,  # noqa: F401
                      assert_close, flat, oracle_step, randomize, scaled_tanh)

# the configurations of the step tests (conftest.CONFIGS)
CELL_CONFIGS = sorted([
    "rnn-default", "rnn-tanh", "rnn-relu", "rnn-sigmoid", "rnn-linear", "rnn-nn.relu",
    "rnn-np.tanh", "rnn-custom", "basic_lstm", "basic_lstm-fb0", "basic_lstm-fb-0.5",
    "basic_lstm-fb2.5-concat", "basic_lstm-nn.relu", "basic_lstm-custom", "lstm", "lstm-peep",
    "lstm-clip", "lstm-proj", "lstm-proj-projclip", "lstm-peep-clip-proj-projclip",
    "lstm-peep-proj-concat", "lstm-sigmoid-clip", "lstm-custom-peep-proj", "gru", "gru-relu",
    "gru-linear", "gru-custom"])


# (B, U, I): every required B, U and I appears at least once, with tile edges mixed in
SIZES = [(1, 1, 1), (2, 2, 5), (3, 3, 16), (7, 7, 33), (8, 15, 1), (9, 16, 5), (17, 17, 16),
         (33, 31, 33), (1, 32, 5), (8, 33, 16), (3, 64, 1), (9, 65, 33), (6, 16, 5),
         (13, 33, 16), (2, 64, 33), (17, 65, 5)]
SIZE_IDS = ["B%d-U%d-I%d" % s for s in SIZES]


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

def random_state(cell, B, rng):
    """A random state in the cell's structure (c ~ N(0,1), h in (-1, 1))."""
    def make(size, is_c):
        if is_c:
            return rng.standard_normal((B, size)).astype(cell.dtype)
        return rng.uniform(-1, 1, (B, size)).astype(cell.dtype)
    size = cell.state_size
    if isinstance(size, LSTMStateTuple):
        return LSTMStateTuple(make(size.c, True), make(size.h, False))
    if isinstance(size, tuple):
        return tuple(random_state(c, B, rng) for c in cell.cells)
    if isinstance(cell, (BasicLSTMCell, LSTMCell)):
        U = cell.num_units
        return np.concatenate([make(U, True), make(size - U, False)], axis=1)
    return make(size, False)


def assert_same_structure(actual, expected):
    assert type(actual) is type(expected) or (isinstance(actual, tuple)
                                              and isinstance(expected, tuple)), \
        f"structure: {type(actual)} vs {type(expected)}"
    if isinstance(expected, tuple):
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected):
            assert_same_structure(a, e)


def make(config, U, dtype, I, seed=0):
    rng = np.random.default_rng(seed)
    return randomize(CONFIGS[config](U, dtype, seed), rng, I), rng


# ---------------------------------------------------------------------------------------------
# one step: every cell and option against the reference
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
@pytest.mark.parametrize("config", CELL_CONFIGS)
def test_step_matches_reference(config, size, dtype):
    B, U, I = size
    cell, rng = make(config, U, dtype, I, seed=hash((config, size)) % 1000)
    x = rng.uniform(-2, 2, (B, I)).astype(dtype)
    state = random_state(cell, B, rng)
    saved = [a.copy() for a in flat(state)] + [x.copy()]

    out, new = cell(x, state)
    ref_out, ref_new = oracle_step(cell)(x, state)
    assert_close(out, ref_out, dtype, "output")
    assert_close(new, ref_new, dtype, "state")
    assert_same_structure(new, state)
    for a, b in zip(flat(state) + [x], saved):              # the caller's arrays are untouched
        np.testing.assert_array_equal(a, b)
    for a in flat(new) + [out]:                             # new arrays, not the caller's
        for b in flat(state) + [x]:
            assert not np.shares_memory(a, b)

    # step_ writes the same numbers into the state's own arrays
    inplace = type(state)(*[a.copy() for a in state]) if isinstance(state, tuple) \
        else state.copy()
    ids = [id(a) for a in flat(inplace)]
    got = cell.step_(x, inplace)
    assert [id(a) for a in flat(inplace)] == ids
    for a, b in zip(flat(inplace), flat(new)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(got, out)
    assert np.shares_memory(got, flat(inplace)[-1]), "step_ output is the state's h"


# ---------------------------------------------------------------------------------------------
# inputs: conversions, read-only, non-contiguous
# ---------------------------------------------------------------------------------------------

SMALL = ["rnn-relu", "basic_lstm", "lstm-peep-clip-proj-projclip", "lstm-peep-proj-concat",
         "gru", "rnn-custom", "lstm-custom-peep-proj"]


def variants(a):
    """The same values as `a` in other memory layouts."""
    B, n = a.shape
    wide = np.zeros((B, 2 * n + 1), a.dtype)
    wide[:, 1::2] = a
    tall = np.zeros((2 * B, n), a.dtype)
    tall[::2] = a
    rev = np.ascontiguousarray(a[::-1])[::-1]
    ro = a.copy()
    ro.flags.writeable = False
    raw = np.zeros(a.size * a.itemsize + 1, np.uint8)      # unaligned
    unaligned = raw[1:].view(a.dtype).reshape(a.shape)
    unaligned[...] = a
    return {"column-step": wide[:, 1::2], "row-step": tall[::2], "fortran": np.asfortranarray(a),
            "negative-stride": rev, "read-only": ro, "unaligned": unaligned}


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("config", SMALL)
def test_inputs_in_any_layout(config, dtype):
    B, U, I = 5, 17, 7
    cell, rng = make(config, U, dtype, I)
    x = rng.uniform(-2, 2, (B, I)).astype(dtype)
    state = random_state(cell, B, rng)
    out, new = cell(x, state)
    for name, xv in variants(x).items():
        o, s = cell(xv, state)
        np.testing.assert_array_equal(o, out, err_msg=f"inputs {name}")
        for a, b in zip(flat(s), flat(new)):
            np.testing.assert_array_equal(a, b, err_msg=f"inputs {name}")
    # the state in other layouts too (__call__ copies what it must)
    for name in ("column-step", "row-step", "fortran", "negative-stride", "read-only",
                 "unaligned"):
        sv = type(state)(*[variants(a)[name] for a in state]) if isinstance(state, tuple) \
            else variants(state)[name]
        o, s = cell(x, sv)
        np.testing.assert_array_equal(o, out, err_msg=f"state {name}")
        for a, b in zip(flat(s), flat(new)):
            np.testing.assert_array_equal(a, b, err_msg=f"state {name}")


@pytest.mark.parametrize("config", SMALL)
def test_step_inplace_with_strided_rows(config):
    """step_ accepts states whose rows are strided (last axis contiguous), e.g. a slice of a
    bigger buffer, and leaves the rest of the buffer alone."""
    dtype = np.float32
    B, U, I = 4, 9, 3
    cell, rng = make(config, U, dtype, I)
    x = rng.uniform(-2, 2, (B, I)).astype(dtype)
    state = random_state(cell, B, rng)
    out, new = cell(x, state)

    def strided(a):
        buf = np.full((2 * B, a.shape[1] + 3), 7.0, dtype)
        v = buf[::2, 1:1 + a.shape[1]]
        v[...] = a
        return buf, v
    if isinstance(state, tuple):
        bufs, views = zip(*[strided(a) for a in state])
        st = type(state)(*views)
    else:
        bufs, st = strided(state)
        bufs = [bufs]
    got = cell.step_(x, st)
    np.testing.assert_array_equal(got, out)
    for a, b in zip(flat(st), flat(new)):
        np.testing.assert_array_equal(a, b)
    for buf in bufs:
        assert np.all(buf[1::2] == 7.0) and np.all(buf[:, 0] == 7.0)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_lists_and_integer_arrays_are_converted(dtype):
    cell, rng = make("basic_lstm", 3, dtype, 2)
    x = np.array([[1, -2], [0, 3]])
    state = LSTMStateTuple(np.zeros((2, 3), np.int64), [[0, 1, 0], [1, 0, 0]])
    out, new = cell(x, state)
    ref_out, ref_new = oracle_step(cell)(x, (np.zeros((2, 3)), np.array(state.h, float)))
    assert out.dtype == np.dtype(dtype)
    assert_close(out, ref_out, dtype)
    assert_close(new, ref_new, dtype)
    out2, _ = cell(x.tolist(), (state.c.tolist(), state.h))      # plain tuple and lists
    np.testing.assert_array_equal(out2, out)
    out3, _ = cell(x.astype(bool), state)
    ref3, _ = oracle_step(cell)(x.astype(bool).astype(float), (state.c, state.h))
    assert_close(out3, ref3, dtype)


def test_plain_tuple_state_returns_lstm_state_tuple():
    cell, rng = make("lstm-proj", 4, np.float32, 3)
    x = rng.standard_normal((2, 3)).astype(np.float32)
    st = cell.zero_state(2)
    _, a = cell(x, tuple(st))
    _, b = cell(x, list(st))
    _, c = cell(x, st)
    assert type(a) is LSTMStateTuple and type(b) is LSTMStateTuple
    for u, v in zip(a + b, c + c):
        np.testing.assert_array_equal(u, v)
    h = cell.step_(x, list(cell.zero_state(2)))
    np.testing.assert_array_equal(h, c.h)


@pytest.mark.parametrize("config", ["rnn-relu", "basic_lstm", "lstm-peep-proj-concat", "gru",
                                    "gru-custom"])
def test_nan_in_nan_out_and_empty_batch(config):
    cell, rng = make(config, 5, np.float32, 3)
    x = np.full((2, 3), np.nan, np.float32)
    out, new = cell(x, cell.zero_state(2))
    assert np.all(np.isnan(out))
    out, new = cell(np.zeros((0, 3), np.float32), cell.zero_state(0))
    assert out.shape == (0, cell.output_size)
    assert [a.shape[0] for a in flat(new)] == [0] * len(flat(new))
    assert cell.step_(np.zeros((0, 3), np.float32), cell.zero_state(0)).shape[0] == 0


def test_zero_input_size():
    cell = BasicRNNCell(3, seed=0)
    cell.build(0)
    assert cell.get_weights()["kernel"].shape == (3, 3)
    h = np.ones((2, 3), np.float32)
    out, _ = cell(np.zeros((2, 0), np.float32), h)
    ref = reference.rnn_cell(np.zeros((2, 0)), h.astype(float),
                             cell.get_weights()["kernel"].astype(float), np.zeros(3))
    assert_close(out, ref, np.float32)


# ---------------------------------------------------------------------------------------------
# sequences
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("config", ["rnn-default", "rnn-relu", "basic_lstm",
                                    "basic_lstm-fb2.5-concat", "lstm-peep-clip-proj-projclip",
                                    "lstm-proj", "gru", "gru-custom"])
def test_100_step_sequence(config, dtype):
    """100 steps of float32 (or float64) against the float64 reference carried in float64."""
    B, U, I, T = 3, 33, 16, 100
    cell, rng = make(config, U, dtype, I)
    if config == "rnn-relu":                 # keep a relu recurrence bounded
        w = cell.get_weights()
        w["kernel"] *= 0.5
        cell.set_weights(w)
    xs = rng.uniform(-1, 1, (T, B, I)).astype(dtype)
    state = random_state(cell, B, rng)
    ref_state = [np.asarray(a, np.float64) for a in flat(state)]
    ref_state = type(state)(*ref_state) if isinstance(state, tuple) else ref_state[0]
    inplace = type(state)(*[a.copy() for a in state]) if isinstance(state, tuple) \
        else state.copy()
    outs, ref_outs = [], []
    for t in range(T):
        out, state = cell(xs[t], state)
        ref_out, ref_state = oracle_step(cell)(xs[t], ref_state)
        got = cell.step_(xs[t], inplace)
        np.testing.assert_array_equal(got, out, err_msg=f"step_ vs call at t={t}")
        outs.append(out.copy())
        ref_outs.append(ref_out)
    assert_close(np.stack(outs), np.stack(ref_outs), dtype, "outputs")
    assert_close(state, ref_state, dtype, "final state")
    for a, b in zip(flat(inplace), flat(state)):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------------------
# sizes, zero states, names
# ---------------------------------------------------------------------------------------------

def test_sizes_and_zero_states():
    cases = [
        (BasicRNNCell(7), 7, 7),
        (GRUCell(7), 7, 7),
        (BasicLSTMCell(7), LSTMStateTuple(7, 7), 7),
        (BasicLSTMCell(7, state_is_tuple=False), 14, 7),
        (LSTMCell(7), LSTMStateTuple(7, 7), 7),
        (LSTMCell(7, num_proj=3), LSTMStateTuple(7, 3), 3),
        (LSTMCell(7, num_proj=3, state_is_tuple=False), 10, 3),
    ]
    for cell, state_size, output_size in cases:
        assert cell.state_size == state_size and type(cell.state_size) is type(state_size)
        assert cell.output_size == output_size and type(cell.output_size) is int
        for dtype in (None, np.float32, "float32", np.dtype(np.float32)):
            z = cell.zero_state(4, dtype)
            assert_same_structure(z, cell.zero_state(4))
            sizes = state_size if isinstance(state_size, tuple) else (state_size,)
            for a, n in zip(flat(z), sizes):
                assert a.shape == (4, n) and a.dtype == np.float32 and not a.any()
                assert a.flags.writeable and a.flags.c_contiguous
        assert flat(cell.zero_state(4))[0] is not flat(cell.zero_state(4))[0]   # fresh arrays
        assert not cell.built                      # zero_state does not need the input size
    z = LSTMCell(5, num_proj=2, dtype=np.float64).zero_state(3, np.float64)
    assert isinstance(z, LSTMStateTuple) and z.c.shape == (3, 5) and z.h.shape == (3, 2)
    assert z.dtype == np.float64 and z.c.dtype == np.float64
    assert BasicRNNCell(3).get_initial_state(np.zeros((6, 2))).shape == (6, 3)
    assert BasicRNNCell(3).get_initial_state(batch_size=2).shape == (2, 3)


def test_default_names_dtypes_and_properties():
    assert BasicRNNCell(2).name == "basic_rnn_cell"
    assert BasicLSTMCell(2).name == "basic_lstm_cell"
    assert LSTMCell(2).name == "lstm_cell"
    assert GRUCell(2).name == "gru_cell"
    assert MultiRNNCell([GRUCell(2)]).name == "multi_rnn_cell"
    assert GRUCell(2, name="enc").name == "enc"
    assert BasicRNNCell(2).dtype == np.float32                   # dtype=None means float32
    assert BasicRNNCell(2, dtype=np.float64).dtype == np.float64
    assert BasicRNNCell(2, dtype="float64").dtype == np.float64
    c = LSTMCell(4, use_peepholes=True, num_proj=2, forget_bias=0.5, state_is_tuple=False,
                 num_unit_shards=2, num_proj_shards=3, reuse=True)
    assert (c.num_units, c.num_proj, c.use_peepholes, c.forget_bias, c.state_is_tuple) == \
        (4, 2, True, 0.5, False)
    assert c.input_size is None and not c.built and c.weights == [] and c.get_weights() == {}
    assert c.weight_names == ["kernel", "bias", "w_f_diag", "w_i_diag", "w_o_diag",
                              "projection/kernel"]
    assert MultiRNNCell([GRUCell(2, dtype=np.float64)]).dtype == np.float64
    # TF argument order is positional-compatible
    b = BasicLSTMCell(3, 0.0, False)
    assert b.forget_bias == 0.0 and b.state_is_tuple is False
    g = GRUCell(3, None, None, None, 0.25)
    g.build(1)
    assert np.all(g.get_weights()["gates/bias"] == 0.25)


def test_nn_namespace_mirrors_tf():
    rc = nn.rnn_cell
    for name in ("BasicRNNCell", "BasicLSTMCell", "LSTMCell", "GRUCell", "MultiRNNCell",
                 "LSTMStateTuple", "RNNCell"):
        assert getattr(rc, name) is getattr(cells, name)
    assert nn.tanh is activations.tanh and nn.relu is activations.relu
    assert nn.sigmoid is activations.sigmoid
    x = np.linspace(-30, 30, 101)
    np.testing.assert_allclose(nn.sigmoid(x), 1 / (1 + np.exp(-x)), rtol=1e-15)
    np.testing.assert_array_equal(nn.relu(x), np.maximum(x, 0))
    np.testing.assert_array_equal(nn.tanh(x), np.tanh(x))
    for name in ("BasicRNNCell", "BasicLSTMCell", "LSTMCell", "GRUCell", "MultiRNNCell",
                 "LSTMStateTuple"):
        if not hasattr(fastcells, name):
            pytest.skip(f"fastcells.{name} is not exported by fastcells/__init__.py yet")
        assert getattr(fastcells, name) is getattr(cells, name)


def test_activation_resolution():
    for given, fused in [(None, "tanh"), ("tanh", "tanh"), ("relu", "relu"),
                         ("sigmoid", "sigmoid"), ("linear", "linear"), (nn.tanh, "tanh"),
                         (nn.relu, "relu"), (nn.sigmoid, "sigmoid"), (activations.linear, "linear"),
                         (np.tanh, "tanh"), (scaled_tanh, None), (lambda v: v, None)]:
        name, fn = activations.resolve(given)
        assert name == fused, given
        assert callable(fn)
    # a wrapper that copies the attribute (functools.wraps) is not mistaken for the C kernel
    import functools

    @functools.wraps(nn.tanh)
    def doubled(v):
        return 2 * np.tanh(v)
    assert activations.resolve(doubled) == (None, doubled)
    assert BasicRNNCell(2, activation="relu").activation == "relu"


# ---------------------------------------------------------------------------------------------
# build, weights
# ---------------------------------------------------------------------------------------------

EXPECTED_WEIGHTS = {
    "rnn-default": lambda I, U: [("kernel", (I + U, U)), ("bias", (U,))],
    "basic_lstm": lambda I, U: [("kernel", (I + U, 4 * U)), ("bias", (4 * U,))],
    "lstm-peep-clip-proj-projclip": lambda I, U: [
        ("kernel", (I + 5, 4 * U)), ("bias", (4 * U,)), ("w_f_diag", (U,)), ("w_i_diag", (U,)),
        ("w_o_diag", (U,)), ("projection/kernel", (U, 5))],
    "gru": lambda I, U: [("gates/kernel", (I + U, 2 * U)), ("gates/bias", (2 * U,)),
                         ("candidate/kernel", (I + U, U)), ("candidate/bias", (U,))],
}
TF_NAMES = {"rnn-default": "basic_rnn_cell", "basic_lstm": "basic_lstm_cell",
            "lstm-peep-clip-proj-projclip": "lstm_cell", "gru": "gru_cell"}


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("config", sorted(EXPECTED_WEIGHTS))
def test_build_get_set_weights_round_trip(config, dtype):
    I, U = 6, 4
    cell = CONFIGS[config](U, dtype, 3)
    cell.build(I)
    expected = EXPECTED_WEIGHTS[config](I, U)
    w = cell.get_weights()
    assert [(n, a.shape) for n, a in w.items()] == expected          # names, order, shapes
    assert all(a.dtype == np.dtype(dtype) for a in w.values())
    assert [a.shape for a in cell.weights] == [s for _, s in expected]

    rng = np.random.default_rng(0)
    new = {n: rng.standard_normal(s) for n, s in expected}              # float64 in: converted
    scope = TF_NAMES[config]
    for names in (lambda n: n, lambda n: f"rnn/{scope}/{n}:0",
                  lambda n: f"enc/bidirectional_rnn/fw/{scope}/{n}"):
        fresh = CONFIGS[config](U, dtype, 4)                          # unbuilt: builds from kernel
        fresh.set_weights({names(n): a for n, a in new.items()})
        assert fresh.built and fresh.input_size == I
        got = fresh.get_weights()
        assert list(got) == [n for n, _ in expected]
        for n, a in new.items():
            np.testing.assert_array_equal(got[n], a.astype(dtype))
    # a list in creation order (as TF's set_weights), on a built cell
    cell.set_weights([new[n] for n, _ in expected])
    for n, a in cell.get_weights().items():
        np.testing.assert_array_equal(a, new[n].astype(dtype))
    # the numbers follow the weights: same output as a cell made from the same weights
    x = rng.standard_normal((3, I)).astype(dtype)
    st = random_state(cell, 3, rng)
    out, _ = cell(x, st)
    ref_out, _ = oracle_step(cell)(x, st)
    assert_close(out, ref_out, dtype)


def test_weights_cannot_change_behind_the_packed_copy():
    cell, rng = make("basic_lstm", 4, np.float32, 3)
    x = rng.standard_normal((2, 3)).astype(np.float32)
    st = cell.zero_state(2)
    before, _ = cell(x, st)
    w = cell.get_weights()
    w["kernel"][...] = 0                       # a copy: changes nothing
    for view in cell.weights:
        assert not view.flags.writeable
        with pytest.raises(ValueError):
            view[...] = 0
        with pytest.raises(ValueError):
            view.flags.writeable = True
    np.testing.assert_array_equal(cell(x, st)[0], before)
    src = {n: a.copy() for n, a in cell.get_weights().items()}
    cell.set_weights(src)
    src["kernel"][...] = 0                     # set_weights copied: changes nothing
    np.testing.assert_array_equal(cell(x, st)[0], before)
    src["kernel"] *= 0
    cell.set_weights(src)                      # and set_weights does take effect
    assert not np.array_equal(cell(x, st)[0], before)


def test_set_weights_non_strict_and_sharded_kernel():
    cell, rng = make("lstm-peep-clip-proj-projclip", 4, np.float32, 3)
    w = cell.get_weights()
    new_bias = rng.standard_normal(16).astype(np.float32)
    cell.set_weights({"rnn/lstm_cell/bias:0": new_bias}, strict=False)
    got = cell.get_weights()
    np.testing.assert_array_equal(got["bias"], new_bias)
    np.testing.assert_array_equal(got["kernel"], w["kernel"])
    # TF's num_unit_shards checkpoints: kernel/part_0, part_1 concatenated along axis 0
    fresh = LSTMCell(4, use_peepholes=True, num_proj=5)
    parts = {k: v for k, v in w.items() if k != "kernel"}
    parts["rnn/lstm_cell/kernel/part_1:0"] = w["kernel"][5:]
    parts["rnn/lstm_cell/kernel/part_0:0"] = w["kernel"][:5]
    fresh.set_weights(parts)
    np.testing.assert_array_equal(fresh.get_weights()["kernel"], w["kernel"])


def test_build_accepts_shapes():
    for arg in (5, (None, 5), [3, 5], np.array([2, 5]), np.int64(5)):
        c = GRUCell(2)
        c.build(arg)
        assert c.input_size == 5 and c.get_weights()["gates/kernel"].shape == (7, 4)
    c = GRUCell(2)
    c.build(inputs_shape=(None, 4))
    assert c.input_size == 4
    w = c.get_weights()
    c.build(4)                                 # same size again: a no-op, weights kept
    for a, b in zip(w.values(), c.get_weights().values()):
        np.testing.assert_array_equal(a, b)
    c = BasicRNNCell(3)
    c(np.zeros((2, 9), np.float32), c.zero_state(2))            # first call builds
    assert c.built and c.input_size == 9


# ---------------------------------------------------------------------------------------------
# initializers
# ---------------------------------------------------------------------------------------------

def test_default_initializers_follow_tf():
    I, U = 40, 30
    cell = LSTMCell(U, use_peepholes=True, num_proj=20, seed=1)
    cell.build(I)
    w = cell.get_weights()

    def check_glorot(a, fan_in, fan_out):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        assert np.abs(a).max() <= limit
        assert np.abs(a).max() > 0.9 * limit
        if a.size > 1000:
            assert abs(a.std() - limit / np.sqrt(3)) < 0.05 * limit
            assert abs(a.mean()) < 0.05 * limit
    check_glorot(w["kernel"], I + 20, 4 * U)                # over the full fused shape
    for n in ("w_f_diag", "w_i_diag", "w_o_diag"):
        check_glorot(w[n], U, U)                            # 1-D: fan_in = fan_out = U
    check_glorot(w["projection/kernel"], U, 20)
    assert not w["bias"].any()
    g = GRUCell(U, seed=2)
    g.build(I)
    gw = g.get_weights()
    check_glorot(gw["gates/kernel"], I + U, 2 * U)
    check_glorot(gw["candidate/kernel"], I + U, U)
    assert np.all(gw["gates/bias"] == 1.0) and not gw["candidate/bias"].any()
    for C, G in ((BasicRNNCell, 1), (BasicLSTMCell, 4)):
        c = C(U, seed=3)
        c.build(I)
        check_glorot(c.get_weights()["kernel"], I + U, G * U)
        assert not c.get_weights()["bias"].any()


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_seeds_are_reproducible(dtype):
    def weights(seed):
        c = LSTMCell(6, use_peepholes=True, num_proj=3, seed=seed, dtype=dtype)
        c.build(4)
        return c.get_weights()
    a, b, other = weights(7), weights(7), weights(8)
    for n in a:
        np.testing.assert_array_equal(a[n], b[n])
    assert not np.array_equal(a["kernel"], other["kernel"])
    gen = np.random.default_rng(7)                     # a Generator works as the seed too
    c = BasicRNNCell(3, seed=gen)
    c.build(2)
    assert c.get_weights()["kernel"].dtype == np.float32


def test_custom_initializers():
    calls = []

    def init(shape, dtype, rng):
        calls.append((shape, dtype))
        assert isinstance(rng, np.random.Generator)
        return np.full(shape, 0.125)
    c = LSTMCell(3, use_peepholes=True, num_proj=2, initializer=init, dtype=np.float64)
    c.build(4)
    assert calls == [((6, 12), np.float64), ((3,), np.float64), ((3,), np.float64),
                     ((3,), np.float64), ((3, 2), np.float64)]
    w = c.get_weights()
    assert np.all(w["kernel"] == 0.125) and np.all(w["projection/kernel"] == 0.125)
    assert not w["bias"].any()                   # TF: the LSTMCell bias is always zeros
    g = GRUCell(3, kernel_initializer=0.5, bias_initializer=-1.0)
    g.build(2)
    gw = g.get_weights()
    assert np.all(gw["gates/kernel"] == 0.5) and np.all(gw["candidate/kernel"] == 0.5)
    assert np.all(gw["gates/bias"] == -1.0) and np.all(gw["candidate/bias"] == -1.0)
    g2 = GRUCell(3, kernel_initializer=lambda s, d, r: r.standard_normal(s), seed=5)
    g3 = GRUCell(3, kernel_initializer=lambda s, d, r: r.standard_normal(s), seed=5)
    g2.build(2)
    g3.build(2)
    np.testing.assert_array_equal(g2.get_weights()["gates/kernel"],
                                  g3.get_weights()["gates/kernel"])


# ---------------------------------------------------------------------------------------------
# MultiRNNCell
# ---------------------------------------------------------------------------------------------

def stack(n, dtype, state_is_tuple=True, seed=0):
    makers = [lambda s: LSTMCell(7, use_peepholes=True, num_proj=5, cell_clip=0.9, dtype=dtype,
                                 seed=s, state_is_tuple=state_is_tuple),
              lambda s: GRUCell(9, dtype=dtype, seed=s),
              lambda s: BasicRNNCell(4, activation="relu", dtype=dtype, seed=s)]
    return MultiRNNCell([makers[k](seed + k) for k in range(n)], state_is_tuple=state_is_tuple)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("state_is_tuple", [True, False], ids=["tuple", "concat"])
@pytest.mark.parametrize("layers", [1, 2, 3])
def test_multi_rnn_cell(layers, state_is_tuple, dtype):
    B, I = 5, 6
    multi = stack(layers, dtype, state_is_tuple)
    rng = np.random.default_rng(layers)
    multi.build(I)
    for cell in multi.cells:
        randomize(cell, rng, None)
    assert multi.output_size == multi.cells[-1].output_size
    sizes = tuple(c.state_size for c in multi.cells)
    if state_is_tuple:
        assert multi.state_size == sizes
    else:
        assert multi.state_size == sum(sizes)
    z = multi.zero_state(B)
    assert_same_structure(z, multi.zero_state(B, dtype))
    x = rng.uniform(-2, 2, (B, I)).astype(dtype)
    state = random_state(multi, B, rng)
    saved = [a.copy() for a in flat(state)]
    out, new = multi(x, state)
    ref_out, ref_new = oracle_step(multi)(x, state)
    assert_close(out, ref_out, dtype, "output")
    assert_close(new, ref_new, dtype, "state")
    for a, b in zip(flat(state), saved):
        np.testing.assert_array_equal(a, b)
    # step_ chains in place
    inplace = [a.copy() for a in flat(state)]
    if state_is_tuple:
        it = iter(inplace)
        st = tuple(type(s)(*[next(it) for _ in s]) if isinstance(s, tuple) else next(it)
                   for s in state)
    else:
        st = inplace[0]
    got = multi.step_(x, st)
    np.testing.assert_array_equal(got, out)
    for a, b in zip(flat(st), flat(new)):
        np.testing.assert_array_equal(a, b)
    # weights: TF names cell_<k>/<cell name>/<weight>, round trip with full names
    w = multi.get_weights()
    prefixes = [f"cell_{k}/{c.name}/" for k, c in enumerate(multi.cells)]
    assert all(any(n.startswith(p) for p in prefixes) for n in w)
    assert len(w) == sum(len(c.get_weights()) for c in multi.cells)
    fresh = stack(layers, dtype, state_is_tuple, seed=100)
    fresh.set_weights({f"rnn/multi_rnn_cell/{n}:0": a for n, a in w.items()})
    o2, _ = fresh(x, state)
    np.testing.assert_array_equal(o2, out)
    fresh2 = stack(layers, dtype, state_is_tuple, seed=200)
    fresh2.set_weights(list(w.values()))
    np.testing.assert_array_equal(fresh2(x, state)[0], out)


def test_multi_rnn_cell_builds_layer_by_layer_and_shares_repeated_cells():
    m = MultiRNNCell([LSTMCell(8, num_proj=3), GRUCell(5)])
    m(np.zeros((2, 11), np.float32), m.zero_state(2))
    assert m.built and [c.input_size for c in m.cells] == [11, 3]
    assert list(m.get_weights())[0] == "cell_0/lstm_cell/kernel"
    shared = GRUCell(4, seed=0)
    with pytest.warns(UserWarning, match="same cell"):
        m = MultiRNNCell([shared, shared])
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    out, (s0, s1) = m(x, m.zero_state(3))
    h0, _ = shared(x, shared.zero_state(3))
    h1, _ = shared(h0, shared.zero_state(3))
    np.testing.assert_array_equal(out, h1)
    assert all(n.startswith("cell_0/") for n in m.get_weights())


def test_multi_rnn_cell_with_custom_rnn_cell():
    """A user subclass of RNNCell (TF style: state_size, output_size, call) stacks too."""
    class Doubler(nn.rnn_cell.RNNCell):
        @property
        def state_size(self):
            return 3

        @property
        def output_size(self):
            return 3

        def call(self, inputs, state):
            out = 2 * np.asarray(inputs, np.float32) + state
            return out, out
    d = Doubler()
    assert d.name == "doubler"
    m = MultiRNNCell([d, BasicRNNCell(2, seed=0)])
    x = np.ones((2, 3), np.float32)
    out, (s0, s1) = m(x, m.zero_state(2))
    np.testing.assert_array_equal(s0, 2 * x)
    st = m.zero_state(2)
    np.testing.assert_array_equal(m.step_(x, st), out)
    np.testing.assert_array_equal(st[0], 2 * x)


# ---------------------------------------------------------------------------------------------
# threads
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("config", ["lstm-peep-clip-proj-projclip", "gru"])
def test_one_cell_from_many_threads(config):
    """Calls from many Python threads at once: one gets the thread pool, the others run alone;
    the two-phase steps (projection, GRU) included."""
    cell, rng = make(config, 128, np.float32, 64)         # big enough for two threads
    xs = [rng.standard_normal((4, 64)).astype(np.float32) for _ in range(8)]
    st = random_state(cell, 4, rng)
    expected = [cell(x, st)[0] for x in xs]
    results = [None] * len(xs)

    def work(k):
        for _ in range(50):
            results[k] = cell(xs[k], st)[0]
    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, exp in zip(results, expected):
        np.testing.assert_array_equal(got, exp)


# ---------------------------------------------------------------------------------------------
# the hot path
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("config", ["rnn-default", "basic_lstm", "basic_lstm-fb2.5-concat",
                                    "lstm-peep-clip-proj-projclip", "gru"])
def test_well_formed_calls_take_the_fast_path(config):
    """Arrays of the cell dtype with the right shapes go straight to the C call: no conversion,
    no re-validation (the careful path is only for calls the bridge refuses)."""
    cell, rng = make(config, 8, np.float32, 5)
    x = rng.standard_normal((3, 5)).astype(np.float32)
    st = random_state(cell, 3, rng)
    expected_out, expected_state = cell(x, st)

    def refuse(*args):
        raise AssertionError("the careful path was taken")
    cell._call_checked = cell._step_checked = refuse
    out, new = cell(x, st)
    np.testing.assert_array_equal(out, expected_out)
    got = cell.step_(x, new)
    np.testing.assert_array_equal(got, cell.__class__.__call__(cell, x, expected_state)[0])


def test_the_bridge_reads_the_reset_after_gru_weights_in_the_table_order():
    """_core.PackedCell unpacks the reset-after GRU's weights by a name list of its own; it must
    be the cell table's (fastcells.cells._spec), the one place for those names."""
    from fastcells import _core
    from fastcells.cells._spec import GRU_RESET_AFTER
    assert tuple(_core._GRU_RA_NAMES) == GRU_RESET_AFTER.names
