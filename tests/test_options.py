"""Cell options beyond TF 1.x (what ONNX and Keras models need), through the public classes:
gate_activation, output_activation, preact_clip, input_forget, the parametric activations,
and the reset-after GRU. Each is checked against fastcells.reference in float64 (float32 within
1e-5 norm-wise), on the fused C path and on the NumPy path (a custom callable), and through
dynamic_rnn."""
import numpy as np
import pytest

import fastcells
from fastcells import nn
from fastcells._nest import flatten

from conftest import RTOL_F32, TOL_F64, oracle_step  # noqa: E402

CELLS = {
    "lstm-hard-sigmoid-gates": lambda dt: fastcells.LSTMCell(
        19, dtype=dt, seed=1, gate_activation=nn.activation("hard_sigmoid", 1 / 6),
        output_activation="relu"),
    "lstm-onnx": lambda dt: fastcells.LSTMCell(
        17, dtype=dt, seed=2, use_peepholes=True, preact_clip=0.6, input_forget=True,
        activation=nn.activation("scaled_tanh", 1.2, 0.8)),
    "basic-lstm-keras": lambda dt: fastcells.BasicLSTMCell(
        16, dtype=dt, seed=3, forget_bias=0.0, gate_activation="hard_sigmoid"),
    "gru-clip": lambda dt: fastcells.GRUCell(
        33, dtype=dt, seed=4, gate_activation="hard_sigmoid", preact_clip=0.5),
    "gru-reset-after": lambda dt: fastcells.GRUCell(
        15, dtype=dt, seed=5, reset_after=True, activation=nn.activation("elu", 0.9)),
    "cudnn-gru": lambda dt: fastcells.CudnnCompatibleGRUCell(9, dtype=dt, seed=6),
    "rnn-leaky": lambda dt: fastcells.BasicRNNCell(
        65, dtype=dt, seed=7, activation=nn.activation("leaky_relu", 0.1), preact_clip=0.9),
    "rnn-softsign": lambda dt: fastcells.BasicRNNCell(8, dtype=dt, seed=8, activation="softsign"),
}


def random_state(cell, B, dtype, rng):
    size = cell.state_size
    if isinstance(size, tuple):
        return fastcells.LSTMStateTuple(*(rng.standard_normal((B, s)).astype(dtype)
                                          for s in size))
    return rng.standard_normal((B, size)).astype(dtype)


def assert_close(got, want, dtype, what):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if dtype == np.float32:
        err = np.linalg.norm(got - want) / np.linalg.norm(want)
        assert err <= RTOL_F32, f"{what}: norm-wise relative error {err:.3g}"
    else:
        np.testing.assert_allclose(got, want, rtol=TOL_F64, atol=TOL_F64, err_msg=what)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", sorted(CELLS))
def test_option_cells_match_reference(name, dtype):
    rng = np.random.default_rng(0)
    cell = CELLS[name](dtype)
    for B in (1, 7):
        x = rng.standard_normal((B, 11)).astype(dtype)
        state = random_state(cell, B, dtype, rng)
        out, new_state = cell(x, state)
        assert cell._packed is not None, "the option should run fused in C"
        _, ref_state = oracle_step(cell)(x, tuple(np.asarray(s, np.float64) for s in state)
                                         if isinstance(state, tuple) else state)
        for got, want in zip(flatten(new_state),
                             flatten(ref_state)):
            assert_close(got, want, dtype, f"{name} B={B}")


@pytest.mark.parametrize("name", sorted(CELLS))
def test_dynamic_rnn_with_options_equals_stepping(name):
    rng = np.random.default_rng(1)
    cell = CELLS[name](np.float64)
    B, T = 5, 9
    x = rng.standard_normal((B, T, 11))
    lengths = np.array([9, 0, 4, 9, 1])
    outputs, final = nn.dynamic_rnn(cell, x, sequence_length=lengths, dtype=np.float64)
    state = cell.zero_state(B, np.float64)
    flat = flatten
    for t in range(T):
        out, new = cell(x[:, t], state)
        live = (t < lengths)[:, None]
        np.testing.assert_allclose(outputs[:, t], np.where(live, out, 0), rtol=0, atol=1e-15)
        state = type(state)(*(np.where(live, n, s) for n, s in zip(flat(new), flat(state)))) \
            if isinstance(state, tuple) else np.where(live, new, state)
    for got, want in zip(flat(final), flat(state)):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)


def test_fused_and_numpy_paths_agree():
    """A callable computing the same function takes the NumPy path and gives the same numbers."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 6))
    fused = fastcells.LSTMCell(10, dtype=np.float64, seed=9, gate_activation="hard_sigmoid",
                               output_activation="relu", preact_clip=0.7, input_forget=True)
    slow = fastcells.LSTMCell(10, dtype=np.float64, seed=9, gate_activation="hard_sigmoid",
                              output_activation=lambda z: np.maximum(z, 0), preact_clip=0.7,
                              input_forget=True)
    state = random_state(fused, 4, np.float64, rng)
    out_fused, _ = fused(x, state)
    out_slow, _ = slow(x, state)
    assert fused._packed is not None and slow._packed is None
    np.testing.assert_allclose(out_fused, out_slow, rtol=1e-13, atol=1e-14)


def test_option_errors_name_the_argument():
    with pytest.raises(ValueError, match="gate_activation: expected"):
        fastcells.GRUCell(4, gate_activation="softplus")
    with pytest.raises(ValueError, match="activation: expected"):
        nn.activation("softplus")
    with pytest.raises(TypeError, match="alpha: expected a number"):
        nn.activation("elu", alpha="1")
    with pytest.raises(TypeError, match="input_forget: expected a bool"):
        fastcells.LSTMCell(4, input_forget=1)
    with pytest.raises(ValueError, match="preact_clip"):
        fastcells.BasicRNNCell(4, preact_clip=-1.0)
    with pytest.raises(TypeError, match="reset_after: expected a bool"):
        fastcells.GRUCell(4, reset_after="yes")
    with pytest.raises(TypeError):
        fastcells.BasicRNNCell(4, gate_activation="sigmoid")    # an RNN has no gates
