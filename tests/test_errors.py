"""Every error path of the cells (docs/api.md, "Errors"): the exception type, and a message that names
the argument (and, where there is one, the expected and the actual value)."""
import numpy as np
import pytest

from fastcells import nn
from fastcells.cells import (BasicLSTMCell, BasicRNNCell, GRUCell, LSTMCell, LSTMStateTuple,
                             MultiRNNCell)

CLASSES = [BasicRNNCell, BasicLSTMCell, LSTMCell, GRUCell]
F32 = np.float32


def built(cls, U=3, I=2, dtype=F32, **kw):
    cell = cls(U, dtype=dtype, seed=0, **kw)
    cell.build(I)
    return cell


# ---------------------------------------------------------------------------------------------
# constructors
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", CLASSES)
def test_constructor_arguments(cls):
    for bad in (0, -1):
        with pytest.raises(ValueError, match=r"num_units: expected an int >= 1, got %d" % bad):
            cls(bad)
    for bad in (2.5, "3", True, None, np.float64(3)):
        with pytest.raises(TypeError, match="num_units"):
            cls(bad)
    with pytest.raises(ValueError, match=r"activation: .*'softplus'"):
        cls(3, activation="softplus")
    with pytest.raises(TypeError, match="activation"):
        cls(3, activation=3)
    for bad in (np.int32, np.float16, "banana", np.complex128):
        with pytest.raises(TypeError, match="dtype: expected float32 or float64"):
            cls(3, dtype=bad)
    with pytest.raises(TypeError, match="name"):
        cls(3, name=5)
    with pytest.raises(TypeError, match="bogus"):
        cls(3, bogus=1)


def test_lstm_constructor_arguments():
    for cls in (BasicLSTMCell, LSTMCell):
        with pytest.raises(TypeError, match="forget_bias"):
            cls(3, forget_bias="1")
    with pytest.raises(ValueError, match="num_proj: expected an int >= 1, got 0"):
        LSTMCell(3, num_proj=0)
    with pytest.raises(TypeError, match="num_proj"):
        LSTMCell(3, num_proj=2.0)
    for arg in ("cell_clip", "proj_clip"):
        with pytest.raises(ValueError, match=arg):
            LSTMCell(3, num_proj=2, **{arg: -1.0})
        with pytest.raises(ValueError, match=arg):
            LSTMCell(3, num_proj=2, **{arg: float("nan")})
        with pytest.raises(TypeError, match=arg):
            LSTMCell(3, num_proj=2, **{arg: "0.5"})
    with pytest.raises(TypeError, match="initializer"):
        LSTMCell(3, initializer="glorot_uniform")
    for arg in ("kernel_initializer", "bias_initializer"):
        with pytest.raises(TypeError, match=arg):
            GRUCell(3, **{arg: "zeros"})


def test_initializer_results_are_checked():
    cell = LSTMCell(3, initializer=lambda shape, dtype, rng: np.zeros(2))
    with pytest.raises(ValueError, match=r"initializer: the initializer returned shape \(2,\)"):
        cell.build(4)
    assert not cell.built
    cell = GRUCell(3, bias_initializer=lambda shape, dtype, rng: np.full(shape, "a"))
    with pytest.raises(TypeError, match="bias_initializer"):
        cell.build(4)


# ---------------------------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", CLASSES)
def test_build_arguments(cls):
    for bad in (None, (None, None), [], (4, None)):
        with pytest.raises(ValueError, match="input_size: the input size .* must be known"):
            cls(3).build(bad)
    with pytest.raises(ValueError, match="inputs_shape"):
        cls(3).build(inputs_shape=(None, None))
    with pytest.raises(TypeError, match="input_size"):
        cls(3).build("abc")
    with pytest.raises(TypeError, match="input_size"):
        cls(3).build(2.5)
    with pytest.raises(ValueError, match="input_size: expected an int >= 0, got -1"):
        cls(3).build(-1)
    cell = built(cls, I=5)
    with pytest.raises(ValueError, match="input_size: .*already built for input size 5, got 6"):
        cell.build(6)


# ---------------------------------------------------------------------------------------------
# calls: inputs
# ---------------------------------------------------------------------------------------------

def call_and_step(cell, x, state):
    """Both entry points must refuse the same bad arguments."""
    return [lambda: cell(x, state), lambda: cell.step_(x, state)]


@pytest.mark.parametrize("cls", CLASSES)
def test_inputs_rank_size_dtype(cls):
    cell = built(cls, U=3, I=2)
    st = cell.zero_state(4)
    for bad in (np.zeros(2, F32), np.zeros((4, 1, 2), F32), np.float32(1.0)):
        for f in call_and_step(cell, bad, st):
            with pytest.raises(ValueError, match=r"inputs: expected a 2-D array of shape "
                                                 r"\[batch, 2\], got shape"):
                f()
    for f in call_and_step(cell, np.zeros((4, 5), F32), st):
        with pytest.raises(ValueError, match=r"inputs: expected shape \[batch, 2\].*"
                                             r"got shape \(4, 5\)"):
            f()
    for bad in (np.zeros((4, 2), np.float64), np.zeros((4, 2), np.float16),
                np.zeros((4, 2), np.complex64)):
        for f in call_and_step(cell, bad, st):
            with pytest.raises(TypeError, match=r"inputs: expected dtype float32.*got dtype "
                                                + str(bad.dtype)):
                f()
    for bad in ([["a", "b"]] * 4, object(), [[1j, 2]] * 4):
        for f in call_and_step(cell, bad, st):
            with pytest.raises(TypeError, match="inputs"):
                f()


def test_inputs_of_float32_into_float64_cell():
    cell = built(GRUCell, dtype=np.float64)
    with pytest.raises(TypeError, match="inputs: expected dtype float64.*got dtype float32"):
        cell(np.zeros((1, 2), F32), cell.zero_state(1))


def test_unbuilt_cell_checks_rank_before_building():
    cell = BasicRNNCell(3)
    with pytest.raises(ValueError, match=r"inputs: expected a 2-D array of shape \[batch, "
                                         r"input_size\]"):
        cell(np.zeros(4, F32), cell.zero_state(4))
    assert not cell.built


# ---------------------------------------------------------------------------------------------
# calls: state
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [BasicRNNCell, GRUCell])
def test_single_state_errors(cls):
    cell = built(cls, U=3, I=2)
    x = np.zeros((4, 2), F32)
    for f in call_and_step(cell, x, np.zeros((5, 3), F32)):
        with pytest.raises(ValueError, match=r"state: expected shape \[4, 3\] \(batch 4 as "
                                             r"inputs\), got shape \(5, 3\)"):
            f()
    for bad in (np.zeros((4, 4), F32), np.zeros(3, F32), np.zeros((4, 3, 1), F32)):
        for f in call_and_step(cell, x, bad):
            with pytest.raises(ValueError, match=r"state: expected shape \[4, 3\], got shape"):
                f()
    for f in call_and_step(cell, x, np.zeros((4, 3), np.float64)):
        with pytest.raises(TypeError, match="state: expected dtype float32.*got dtype float64"):
            f()
    for bad in ((np.zeros((4, 3), F32),), LSTMStateTuple(np.zeros((4, 3), F32),
                                                         np.zeros((4, 3), F32))):
        for f in call_and_step(cell, x, bad):
            with pytest.raises(ValueError, match=r"state: expected one array of shape \[4, 3\]"):
                f()


@pytest.mark.parametrize("cls", [BasicLSTMCell, LSTMCell])
def test_lstm_state_errors(cls):
    cell = built(cls, U=3, I=2)
    x = np.zeros((4, 2), F32)
    ok_c, ok_h = np.zeros((4, 3), F32), np.zeros((4, 3), F32)
    for bad in (np.zeros((4, 6), F32), (ok_c,), (ok_c, ok_h, ok_h), None):
        for f in call_and_step(cell, x, bad):
            with pytest.raises(ValueError, match=r"state: expected LSTMStateTuple\(c=\[4, 3\], "
                                                 r"h=\[4, 3\]\)"):
                f()
    for f in call_and_step(cell, x, LSTMStateTuple(np.zeros((4, 5), F32), ok_h)):
        with pytest.raises(ValueError, match=r"state.c: expected shape \[4, 3\], got shape "
                                             r"\(4, 5\)"):
            f()
    for f in call_and_step(cell, x, LSTMStateTuple(ok_c, np.zeros((2, 3), F32))):
        with pytest.raises(ValueError, match=r"state.h: expected shape \[4, 3\] \(batch 4"):
            f()
    for f in call_and_step(cell, x, LSTMStateTuple(ok_c, ok_h.astype(np.float64))):
        with pytest.raises(TypeError, match="state.h: expected dtype float32"):
            f()
    concat = built(cls, U=3, I=2, state_is_tuple=False)
    for f in call_and_step(concat, x, LSTMStateTuple(ok_c, ok_h)):
        with pytest.raises(ValueError, match=r"state: expected one array \[4, 6\] = "
                                             r"concat\(c, h\)"):
            f()
    for f in call_and_step(concat, x, np.zeros((4, 5), F32)):
        with pytest.raises(ValueError, match=r"state: expected shape \[4, 6\], got shape"):
            f()


def test_projection_state_shapes():
    cell = built(LSTMCell, U=4, I=2, num_proj=2)
    x = np.zeros((1, 2), F32)
    with pytest.raises(ValueError, match=r"state.h: expected shape \[1, 2\], got shape \(1, 4\)"):
        cell(x, LSTMStateTuple(np.zeros((1, 4), F32), np.zeros((1, 4), F32)))


def test_step_requires_writeable_contiguous_arrays_of_the_cell_dtype():
    cell = built(BasicLSTMCell, U=3, I=2)
    x = np.zeros((2, 2), F32)
    ro = np.zeros((2, 3), F32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="state.h: .*read-only"):
        cell.step_(x, LSTMStateTuple(np.zeros((2, 3), F32), ro))
    with pytest.raises(TypeError, match="state.c: step_ writes the new state in place"):
        cell.step_(x, LSTMStateTuple([[0.0] * 3] * 2, np.zeros((2, 3), F32)))
    with pytest.raises(TypeError, match="state.c: expected dtype float32 .*got dtype int64"):
        cell.step_(x, LSTMStateTuple(np.zeros((2, 3), np.int64), np.zeros((2, 3), F32)))
    strided = np.zeros((2, 6), F32)[:, ::2]
    with pytest.raises(ValueError, match="state.c: step_ needs an aligned array whose last "
                                         "axis is contiguous"):
        cell.step_(x, LSTMStateTuple(strided, np.zeros((2, 3), F32)))
    raw = np.zeros(2 * 3 * 4 + 1, np.uint8)
    unaligned = raw[1:].view(F32).reshape(2, 3)
    with pytest.raises(ValueError, match="state.h: step_ needs an aligned array"):
        cell.step_(x, LSTMStateTuple(np.zeros((2, 3), F32), unaligned))
    rnn = built(BasicRNNCell, U=3, I=2)
    with pytest.raises(ValueError, match="state: .*read-only"):
        rnn.step_(x, ro)
    # nothing was written by a refused step_
    st = LSTMStateTuple(np.ones((2, 3), F32), ro)
    with pytest.raises(ValueError):
        cell.step_(x, st)
    assert np.all(st.c == 1)


def test_custom_activation_must_keep_the_shape():
    cell = built(BasicRNNCell, activation=lambda v: v[:, :1])
    with pytest.raises(ValueError, match="activation: the callable"):
        cell(np.zeros((2, 2), F32), cell.zero_state(2))


# ---------------------------------------------------------------------------------------------
# zero_state
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", CLASSES)
def test_zero_state_arguments(cls):
    cell = cls(3)
    with pytest.raises(ValueError, match="batch_size: expected an int >= 0, got -1"):
        cell.zero_state(-1)
    for bad in (2.5, "2", None):
        with pytest.raises(TypeError, match="batch_size"):
            cell.zero_state(bad)
    with pytest.raises(TypeError, match="dtype: expected the cell's dtype float32 .*got float64"):
        cell.zero_state(2, np.float64)
    with pytest.raises(TypeError, match="dtype"):
        cell.zero_state(2, np.int32)


def test_lstm_state_tuple_dtype():
    with pytest.raises(TypeError, match="inconsistent dtypes"):
        LSTMStateTuple(np.zeros(1, F32), np.zeros(1, np.float64)).dtype


# ---------------------------------------------------------------------------------------------
# weights
# ---------------------------------------------------------------------------------------------

def lstm_weights(I=2, U=3, P=None, peep=False):
    P = P or U
    w = {"kernel": np.zeros((I + P, 4 * U)), "bias": np.zeros(4 * U)}
    if peep:
        w.update({n: np.zeros(U) for n in ("w_f_diag", "w_i_diag", "w_o_diag")})
    if P != U:
        w["projection/kernel"] = np.zeros((U, P))
    return w


def test_set_weights_names():
    cell = LSTMCell(3)
    w = lstm_weights()
    with pytest.raises(ValueError, match=r"weights: unknown name 'rnn/lstm_cell/kernal:0'"):
        cell.set_weights({**w, "rnn/lstm_cell/kernal:0": w["kernel"]})
    with pytest.raises(ValueError, match=r"weights: missing \['bias'\]"):
        cell.set_weights({"kernel": w["kernel"]})
    with pytest.raises(ValueError, match=r"weights: unknown name 'w_f_diag'"):
        cell.set_weights(lstm_weights(peep=True))        # no peepholes on this cell
    with pytest.raises(ValueError, match=r"weights: missing \['w_f_diag', 'w_i_diag', "
                                         r"'w_o_diag'\]"):
        LSTMCell(3, use_peepholes=True).set_weights(w)
    with pytest.raises(ValueError, match=r"weights: 'rnn/lstm_cell/kernel' and 'kernel' both "
                                         r"name 'kernel'|both name 'kernel'"):
        cell.set_weights({**w, "rnn/lstm_cell/kernel": w["kernel"]})
    # a GRU's gates/kernel is not an LSTM's kernel
    with pytest.raises(ValueError, match=r"weights: unknown name 'rnn/gru_cell/gates/kernel'"):
        cell.set_weights({"rnn/gru_cell/gates/kernel": w["kernel"], "bias": w["bias"]})
    with pytest.raises(TypeError, match="weights: names must be str"):
        cell.set_weights({0: w["kernel"]})
    with pytest.raises(TypeError, match="weights: expected a mapping"):
        cell.set_weights(w["kernel"])
    with pytest.raises(ValueError, match=r"weights: expected 2 arrays in the order "
                                         r"\['kernel', 'bias'\], got 3"):
        cell.set_weights([w["kernel"], w["bias"], w["bias"]])
    with pytest.raises(ValueError, match="weights: the parts of 'kernel' must be part_0"):
        cell.set_weights({"kernel/part_1": w["kernel"], "bias": w["bias"]})
    assert not cell.built


def test_set_weights_shapes_and_dtypes():
    cell = LSTMCell(3, num_proj=2)
    w = lstm_weights(P=2)
    with pytest.raises(ValueError, match=r"weights\['kernel'\]: expected shape "
                                         r"\[input_size \+ 2, 12\], got \(1, 12\)"):
        cell.set_weights({**w, "kernel": np.zeros((1, 12))})
    with pytest.raises(ValueError, match=r"weights\['bias'\]: expected shape \(12,\), "
                                         r"got \(13,\)"):
        cell.set_weights({**w, "bias": np.zeros(13)})
    with pytest.raises(ValueError, match=r"weights\['projection/kernel'\]: expected shape "
                                         r"\(3, 2\), got \(2, 3\)"):
        cell.set_weights({**w, "projection/kernel": np.zeros((2, 3))})
    with pytest.raises(TypeError, match=r"weights\['bias'\]: expected a real-valued array"):
        cell.set_weights({**w, "bias": np.zeros(12, complex)})
    assert not cell.built
    cell.set_weights(w)
    assert cell.input_size == 2
    with pytest.raises(ValueError, match=r"weights\['kernel'\]: expected shape \(4, 12\) "
                                         r"\(input size 2\), got \(5, 12\)"):
        cell.set_weights({**w, "kernel": np.zeros((5, 12))})
    with pytest.raises(ValueError, match=r"weights: missing"):
        LSTMCell(3).set_weights({"bias": np.zeros(12)}, strict=False)    # unbuilt: all needed


def test_gru_weight_names():
    cell = GRUCell(3)
    with pytest.raises(ValueError, match=r"weights: unknown name 'kernel'.*'gates/kernel'"):
        cell.set_weights({"kernel": np.zeros((5, 6))})


# ---------------------------------------------------------------------------------------------
# MultiRNNCell
# ---------------------------------------------------------------------------------------------

def test_multi_rnn_cell_construction():
    with pytest.raises(ValueError, match="cells: expected at least one cell"):
        MultiRNNCell([])
    for bad in (GRUCell(2), "cells", None, 3):
        with pytest.raises(TypeError, match="cells: expected a list or tuple"):
            MultiRNNCell(bad)
    with pytest.raises(TypeError, match=r"cells\[1\]: expected an RNN cell"):
        MultiRNNCell([GRUCell(2), 3])
    with pytest.raises(TypeError, match="cells: expected cells of one dtype"):
        MultiRNNCell([GRUCell(2), GRUCell(2, dtype=np.float64)])
    with pytest.raises(ValueError, match=r"cells\[1\]: has a nested state"):
        MultiRNNCell([GRUCell(2), BasicLSTMCell(2)], state_is_tuple=False)


def test_multi_rnn_cell_calls():
    m = MultiRNNCell([GRUCell(3), BasicLSTMCell(4)])
    x = np.zeros((2, 5), F32)
    z = m.zero_state(2)
    for bad in (z[0], (z[0],), z + (z[0],)):
        for f in call_and_step(m, x, bad):
            with pytest.raises(ValueError, match=r"state: expected a tuple of 2 states"):
                f()
    bad = (z[0], LSTMStateTuple(z[1].c, np.zeros((3, 4), F32)))
    for f in call_and_step(m, x, bad):
        with pytest.raises(ValueError, match=r"MultiRNNCell cells\[1\] \(basic_lstm_cell\): "
                                             r"state.h: expected shape \[2, 4\]"):
            f()
    for f in call_and_step(m, np.zeros((2, 5), np.float64), z):
        with pytest.raises(TypeError, match=r"cells\[0\].*inputs: expected dtype float32"):
            f()
    c = MultiRNNCell([GRUCell(3), BasicRNNCell(4)], state_is_tuple=False)
    for f in call_and_step(c, x, np.zeros((2, 6), F32)):
        with pytest.raises(ValueError, match=r"state: expected shape \[batch, 7\]"):
            f()
    for f in call_and_step(c, x, c.zero_state(2)[:, :3].copy()):
        with pytest.raises(ValueError, match="state"):
            f()
    ro = c.zero_state(2)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"cells\[0\].*state: .*read-only"):
        c.step_(x, ro)
    with pytest.raises(TypeError, match="state: step_ writes in place"):
        c.step_(x, ro.tolist())
    with pytest.raises(TypeError, match="dtype"):
        c.zero_state(2, np.float64)


def test_multi_rnn_cell_weights():
    m = MultiRNNCell([GRUCell(3), BasicRNNCell(4)])
    m.build(2)
    w = m.get_weights()
    with pytest.raises(ValueError, match=r"weights: unknown name 'gru_cell/gates/kernel' for "
                                         r"MultiRNNCell"):
        m.set_weights({"gru_cell/gates/kernel": w["cell_0/gru_cell/gates/kernel"]})
    with pytest.raises(ValueError, match=r"'cell_2/basic_rnn_cell/kernel' names cell 2"):
        m.set_weights({**w, "cell_2/basic_rnn_cell/kernel": np.zeros((7, 4))})
    with pytest.raises(ValueError, match=r"cells\[1\] \(basic_rnn_cell\): weights\['kernel'\]: "
                                         r"expected shape \(7, 4\)"):
        m.set_weights({**w, "cell_1/basic_rnn_cell/kernel": np.zeros((8, 4))})
    with pytest.raises(ValueError, match=r"cells\[1\].*weights: missing \['bias'\]"):
        m.set_weights({k: v for k, v in w.items() if k != "cell_1/basic_rnn_cell/bias"})
    with pytest.raises(ValueError, match=r"weights: expected 6 arrays"):
        m.set_weights(list(w.values())[:5])
    with pytest.raises(TypeError, match="weights: expected a mapping"):
        m.set_weights(3)


def test_nn_namespace_has_no_extra_activation_names():
    with pytest.raises(ValueError, match="activation"):
        nn.rnn_cell.BasicRNNCell(2, activation="softplus")


# ---------------------------------------------------------------------------------------------
# byte order: never computed on swapped bytes (equal numbers to native, or a clear error)
# ---------------------------------------------------------------------------------------------

from fastcells import _core  # noqa: E402
from numpy.lib.stride_tricks import as_strided  # noqa: E402

BYTE_ORDERS = [(np.dtype(">f4"), np.float32), (np.dtype(">f8"), np.float64)]
if np.dtype("=f4").byteorder == "=" and np.little_endian is False:      # a big-endian machine
    BYTE_ORDERS = [(np.dtype("<f4"), np.float32), (np.dtype("<f8"), np.float64)]


def swapped(a, dt):
    """`a`'s values in the non-native byte order `dt` (same numbers, swapped bytes)."""
    out = np.asarray(a).astype(dt)
    assert out.dtype == dt and not out.dtype.isnative
    np.testing.assert_array_equal(out, a)
    return out


def assert_swapped_rejected(excinfo, argname, dt):
    message = str(excinfo.value)
    assert argname in message and (dt.str in message or repr(dt) in message or
                                   str(dt) in message), message


@pytest.mark.parametrize("swap,native", BYTE_ORDERS, ids=["f4", "f8"])
@pytest.mark.parametrize("cls", CLASSES)
def test_cell_call_on_swapped_arrays_equals_native(cls, swap, native):
    cell = built(cls, U=5, I=4, dtype=native)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4)).astype(native)
    state = cell.zero_state(3, native)
    state = type(state)(*(rng.standard_normal(s.shape).astype(native) for s in state)) \
        if isinstance(state, tuple) else rng.standard_normal(state.shape).astype(native)
    want_out, want_state = cell(x, state)
    swapped_state = type(state)(*(swapped(s, swap) for s in state)) \
        if isinstance(state, tuple) else swapped(state, swap)
    got_out, got_state = cell(swapped(x, swap), swapped_state)
    np.testing.assert_array_equal(got_out, want_out)
    for g, w in zip(np.atleast_1d(got_state) if not isinstance(got_state, tuple) else got_state,
                    np.atleast_1d(want_state) if not isinstance(want_state, tuple)
                    else want_state):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("swap,native", BYTE_ORDERS, ids=["f4", "f8"])
@pytest.mark.parametrize("cls", CLASSES)
def test_step_into_swapped_state_is_rejected(cls, swap, native):
    cell = built(cls, U=5, I=4, dtype=native)
    x = np.ones((2, 4), native)
    if cell.state_size == 5 or not isinstance(cell.zero_state(2, native), tuple):
        h = swapped(np.full((2, 5), 0.5, native), swap)
        before = h.copy()
        with pytest.raises(ValueError) as excinfo:
            cell.step_(x, h)
        assert_swapped_rejected(excinfo, "state", swap)
        np.testing.assert_array_equal(h, before)          # not written
    else:
        zero = cell.zero_state(2, native)
        c = swapped(np.full(zero.c.shape, 0.5, native), swap)
        h = np.full(zero.h.shape, 0.5, native)
        before = c.copy(), h.copy()
        with pytest.raises(ValueError) as excinfo:
            cell.step_(x, LSTMStateTuple(c, h))
        assert_swapped_rejected(excinfo, "state.c", swap)
        np.testing.assert_array_equal(c, before[0])
        np.testing.assert_array_equal(h, before[1])
    # a swapped input with a native state: computed on the values, as native
    state = cell.zero_state(2, native)
    want = cell(x, state)[0]
    got = cell.step_(swapped(x, swap), state)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("swap,native", BYTE_ORDERS, ids=["f4", "f8"])
def test_bridge_step_converts_inputs_and_rejects_swapped_outputs(swap, native):
    """The bridge itself (whatever the Python layer passes): read-only operands are converted,
    written ones rejected with a ValueError naming the argument, expected and got."""
    cell = built(LSTMCell, U=5, I=4, dtype=native, num_proj=3)
    packed = cell._packed
    rng = np.random.default_rng(2)
    x, c, h = (rng.standard_normal(s).astype(native) for s in ((2, 4), (2, 5), (2, 3)))
    want_c, want_h = packed.call(x, (c, h))
    got_c, got_h = packed.call(swapped(x, swap), (swapped(c, swap), swapped(h, swap)))
    np.testing.assert_array_equal(got_c, want_c)
    np.testing.assert_array_equal(got_h, want_h)
    for argname, outs in (("c_out", (swapped(c, swap), h.copy())),
                          ("h_out", (c.copy(), swapped(h, swap)))):
        with pytest.raises(ValueError, match=rf"{argname}: expected an array in native byte "
                                             rf"order \(dtype {np.dtype(native)}\), got dtype"):
            packed.step(x, (c, h), outs)


@pytest.mark.parametrize("swap,native", BYTE_ORDERS, ids=["f4", "f8"])
def test_sequence_runners_on_swapped_inputs(swap, native):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 3)).astype(native)
    lengths = np.array([4, 2])
    cell = built(GRUCell, U=5, I=3, dtype=native)
    multi = MultiRNNCell([built(LSTMCell, U=4, I=3, dtype=native), built(GRUCell, U=5, I=4,
                                                                        dtype=native)])
    bw = built(BasicRNNCell, U=2, I=3, dtype=native)
    h0 = rng.standard_normal((2, 5)).astype(native)
    runs = [
        lambda xx, hh: nn.dynamic_rnn(cell, xx, lengths, initial_state=hh),
        lambda xx, hh: nn.dynamic_rnn(multi, xx, lengths, dtype=native),
        lambda xx, hh: nn.bidirectional_dynamic_rnn(cell, bw, xx, lengths,
                                                    initial_state_fw=hh, dtype=native),
    ]
    for k, run in enumerate(runs):
        want = run(x, h0)
        for args in ((swapped(x, swap), h0), (x, swapped(h0, swap))):
            got = run(*args)                        # converted: the numbers of native order
            for g, w in zip(_leaves(got), _leaves(want)):
                np.testing.assert_array_equal(g, w, err_msg=f"run {k}")


def _leaves(s):
    if isinstance(s, np.ndarray):
        return [s]
    return [leaf for item in s for leaf in _leaves(item)]


@pytest.mark.parametrize("swap,native", BYTE_ORDERS, ids=["f4", "f8"])
def test_bridge_run_sequences_converts_inputs_rejects_outputs(swap, native):
    cell = built(GRUCell, U=5, I=3, dtype=native)
    x = np.random.default_rng(4).standard_normal((2, 4, 3)).astype(native)
    h0 = np.full((2, 5), 0.25, native)

    def run(**over):
        layer = {"cell": cell._packed, "x": x, "out": np.empty((2, 4, 5), native), "h0": h0,
                 "h_final": np.empty((2, 5), native)}
        layer.update(over)
        _core.run_sequences(4, 2, [[layer]])
        return layer["out"], layer["h_final"]

    want = run()
    for got in (run(x=swapped(x, swap)), run(h0=swapped(h0, swap))):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    with pytest.raises(ValueError, match=r"stacks\[0\]\[0\]\.out: expected an array in native "
                                         r"byte order"):
        run(out=np.empty((2, 4, 5), swap))
    with pytest.raises(ValueError, match=r"stacks\[0\]\[0\]\.h_final: expected an array in "
                                         r"native byte order"):
        run(h_final=np.empty((2, 5), swap))


@pytest.mark.parametrize("swap,native", BYTE_ORDERS, ids=["f4", "f8"])
def test_set_weights_and_packed_matrix_on_swapped_arrays(swap, native):
    rng = np.random.default_rng(5)
    w = {k: rng.standard_normal(v.shape) for k, v in lstm_weights(I=2, U=3).items()}
    native_cell, swapped_cell = LSTMCell(3, dtype=native), LSTMCell(3, dtype=native)
    native_cell.set_weights({k: v.astype(native) for k, v in w.items()})
    swapped_cell.set_weights({k: swapped(v.astype(native), swap) for k, v in w.items()})
    x = rng.standard_normal((2, 2)).astype(native)
    state = native_cell.zero_state(2, native)
    np.testing.assert_array_equal(swapped_cell(x, state)[0], native_cell(x, state)[0])
    for k, v in swapped_cell.get_weights().items() if isinstance(swapped_cell.get_weights(), dict) \
            else []:
        assert v.dtype.isnative, k

    b = rng.standard_normal((4, 6)).astype(native)
    bias = rng.standard_normal(6).astype(native)
    a = rng.standard_normal((3, 4)).astype(native)
    want = _core.PackedMatrix(b, bias).matmul(a)
    mat = _core.PackedMatrix(swapped(b, swap), swapped(bias, swap))
    np.testing.assert_array_equal(mat.matmul(swapped(a, swap)), want)
    out = np.empty((3, 6), swap)
    with pytest.raises(ValueError, match=r"out: expected an array in native byte order"):
        mat.matmul(a, out)


# ---------------------------------------------------------------------------------------------
# memory safety: sizes that overflow, shapes that lie
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", CLASSES)
def test_step_on_a_huge_stride0_batch_raises(cls):
    """2**56 rows that cost no memory (stride 0): the scratch size overflows size_t; it must
    raise, not wrap into a short buffer (this segfaulted)."""
    cell = built(cls, U=5, I=4)
    B = 2 ** 56
    x = np.broadcast_to(np.ones((1, 4), F32), (B, 4))
    zero = cell.zero_state(1, F32)
    if isinstance(zero, tuple):
        c = as_strided(np.zeros(zero.c.shape, F32), (B, zero.c.shape[1]), (0, 4))
        h = as_strided(np.zeros(zero.h.shape, F32), (B, zero.h.shape[1]), (0, 4))
        state = LSTMStateTuple(c, h)
    else:
        state = as_strided(np.zeros((1, 5), F32), (B, 5), (0, 4))
    with pytest.raises((ValueError, MemoryError), match=r"sizes are too large|out of memory"):
        cell.step_(x, state)


def test_gru_step_stride0_batch_size_error_names_the_overflow():
    """2**60 rows: the GRU's r*h and u scratch, 2 * B * (U rounded up to a panel's units) * 4
    bytes, passes 2**64 on every ISA (numpy itself caps the nominal size of x and h)."""
    cell = built(GRUCell, U=1, I=1)
    B = 2 ** 60
    x = np.broadcast_to(np.ones((1, 1), F32), (B, 1))
    h = as_strided(np.zeros((1, 1), F32), (B, 1), (0, 4))
    with pytest.raises(ValueError, match=r"fc_cell_step: the sizes are too large: .* overflows "
                                         r"size_t"):
        cell.step_(x, h)


def test_sequence_on_a_huge_stride0_batch_raises():
    cell = built(GRUCell, U=5, I=4)
    B = 2 ** 56
    x = as_strided(np.ones((1, 2, 4), F32), (B, 2, 4), (0, 16, 4))
    out = as_strided(np.zeros((1, 2, 5), F32), (B, 2, 5), (0, 20, 4))
    with pytest.raises((ValueError, MemoryError), match=r"sizes are too large|out of memory"):
        _core.run_sequences(2, B, [[{"cell": cell._packed, "x": x, "out": out}]])


def test_matmul_overlapping_huge_stride0_rows_raises():
    """numpy caps an array's nominal bytes below 2**63, so a's copy cannot overflow size_t
    here; it must fail cleanly as an allocation."""
    mat = _core.PackedMatrix(np.ones((4, 3), F32))
    base = np.zeros((1, 4), F32)
    a = as_strided(base, (2 ** 58, 4), (0, 4))
    out = as_strided(base, (2 ** 58, 3), (0, 4))        # overlaps a: a is copied first
    with pytest.raises(MemoryError, match=r"fc_matmul: out of memory"):
        mat.matmul(a, out)


class _LyingShape(np.ndarray):
    """An ndarray whose `.shape` property claims 1000 times more rows (axis 0) and, for 3-D,
    time steps (axis 1) than its memory holds."""
    @property
    def shape(self):
        real = np.ndarray.shape.__get__(self)
        return tuple(n * 1000 if axis < 2 and len(real) == 3 else n
                     for axis, n in enumerate(real))


def test_dynamic_rnn_uses_the_array_struct_shape_not_the_shape_property():
    """A subclass is read as the plain array it is (its memory's shape), never past it."""
    cell = built(GRUCell, U=5, I=4)
    plain = np.random.default_rng(6).standard_normal((2, 3, 4)).astype(F32)
    x = plain.view(_LyingShape)
    assert x.shape == (2000, 3000, 4)
    got_out, got_state = nn.dynamic_rnn(cell, x, dtype=F32)
    want_out, want_state = nn.dynamic_rnn(cell, plain, dtype=F32)
    assert type(got_out) is np.ndarray and got_out.shape == (2, 3, 5)
    np.testing.assert_array_equal(got_out, want_out)
    np.testing.assert_array_equal(got_state, want_state)


def test_bridge_takes_shapes_from_the_array_struct():
    cell = built(GRUCell, U=5, I=4)
    packed = cell._packed
    x = np.ones((2, 3, 4), F32)
    lying_x = x.view(_LyingShape)
    out = np.empty((2, 3, 5), F32)
    with pytest.raises(ValueError, match=r"stacks\[0\]\[0\]\.x: expected shape \(2000, 3000, "
                                         r"4\), got \(2, 3, 4\)"):
        _core.run_sequences(3000, 2000, [[{"cell": packed, "x": lying_x, "out": out}]])
    # a 2-D operand of one step whose .shape lies is read by its struct: used as [2, 4]
    class LyingRows(np.ndarray):
        shape = property(lambda self: (2000, np.ndarray.shape.__get__(self)[1]))
    h = np.zeros((2, 5), F32)
    want = packed.call(x[:, 0], (h,))[0]
    got = packed.call(np.ascontiguousarray(x[:, 0]).view(LyingRows), (h.view(LyingRows),))[0]
    assert got.shape == (2, 5)
    np.testing.assert_array_equal(np.asarray(got), want)


def test_run_sequences_checks_its_layer_specs():
    packed = built(GRUCell, U=5, I=4)._packed
    x, out = np.ones((2, 3, 4), F32), np.empty((2, 3, 5), F32)
    with pytest.raises(TypeError, match=r"stacks\[0\]\[0\]\.cell: expected a PackedCell, got "
                                        r"str"):
        _core.run_sequences(3, 2, [[{"cell": "gru", "x": x, "out": out}]])
    with pytest.raises(ValueError, match=r"stacks\[0\]\[0\]\.cell: the PackedCell is not "
                                         r"initialised"):
        _core.run_sequences(3, 2, [[{"cell": _core.PackedCell.__new__(_core.PackedCell),
                                     "x": x, "out": out}]])
    with pytest.raises(ValueError, match=r"T, B: expected sizes >= 0, got T=-1, B=2"):
        _core.run_sequences(-1, 2, [[]])
