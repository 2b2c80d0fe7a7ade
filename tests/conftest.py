"""What the test modules share, stated once: the tolerances, the dtypes, the named cell
configurations, random weights, the closeness assertion, the watch on the runners' native
call (record_run_sequences), and the one adapter from a cell to its oracle (fastcells.cells._oracle.oracle_step, which the benchmarks and
``python -m fastcells`` use too).

Tolerances: float32 within RTOL_F32 norm-wise (||a-b|| <= RTOL_F32*||b|| + ATOL_F32) and
ATOL_F32 + RTOL_F32*|b| elementwise; float64 within TOL_F64 both ways.

The package is imported guardedly: while it is half-built, test_reference.py still runs (it
loads reference.py alone); everything else then fails at its first use of a cell.
"""
import numpy as np

try:
    from fastcells import _core, activations, nn
    from fastcells._nest import flatten as flat
    from fastcells.cells import (BasicLSTMCell, BasicRNNCell, GRUCell, LSTMCell,  # noqa: F401
                                 MultiRNNCell)
    from fastcells.cells._oracle import oracle_step  # noqa: F401  (for the test modules)
except Exception:                          # noqa: BLE001  (see the module docstring)
    pass

RTOL_F32, ATOL_F32 = 1e-5, 2e-6
TOL_F64 = 1e-12
DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["f32", "f64"]


def scaled_tanh(v):
    """A custom activation (any callable): the cells run it through NumPy, the runners through
    the slow path."""
    return 0.5 * np.tanh(v)


# name -> factory(num_units, dtype, seed) -> cell; each test module picks its names
CONFIGS = {
    "rnn-default": lambda U, dt, s: BasicRNNCell(U, dtype=dt, seed=s),
    "rnn-tanh": lambda U, dt, s: BasicRNNCell(U, activation="tanh", dtype=dt, seed=s),
    "rnn-relu": lambda U, dt, s: BasicRNNCell(U, activation="relu", dtype=dt, seed=s),
    "rnn-sigmoid": lambda U, dt, s: BasicRNNCell(U, activation="sigmoid", dtype=dt, seed=s),
    "rnn-linear": lambda U, dt, s: BasicRNNCell(U, activation="linear", dtype=dt, seed=s),
    "rnn-nn.relu": lambda U, dt, s: BasicRNNCell(U, activation=nn.relu, dtype=dt, seed=s),
    "rnn-np.tanh": lambda U, dt, s: BasicRNNCell(U, activation=np.tanh, dtype=dt, seed=s),
    "rnn-custom": lambda U, dt, s: BasicRNNCell(U, activation=scaled_tanh, dtype=dt, seed=s),
    "basic_lstm": lambda U, dt, s: BasicLSTMCell(U, dtype=dt, seed=s),
    "basic_lstm-fb0": lambda U, dt, s: BasicLSTMCell(U, forget_bias=0.0, dtype=dt, seed=s),
    "basic_lstm-fb-0.5": lambda U, dt, s: BasicLSTMCell(U, forget_bias=-0.5, dtype=dt, seed=s),
    "basic_lstm-fb0-concat": lambda U, dt, s: BasicLSTMCell(
        U, forget_bias=0.0, state_is_tuple=False, dtype=dt, seed=s),
    "basic_lstm-fb2.5-concat": lambda U, dt, s: BasicLSTMCell(
        U, forget_bias=2.5, state_is_tuple=False, dtype=dt, seed=s),
    "basic_lstm-relu": lambda U, dt, s: BasicLSTMCell(U, activation="relu", dtype=dt, seed=s),
    "basic_lstm-nn.relu": lambda U, dt, s: BasicLSTMCell(U, activation=nn.relu, dtype=dt,
                                                         seed=s),
    "basic_lstm-custom": lambda U, dt, s: BasicLSTMCell(U, activation=scaled_tanh, dtype=dt,
                                                        seed=s),
    "lstm": lambda U, dt, s: LSTMCell(U, dtype=dt, seed=s),
    "lstm-peep": lambda U, dt, s: LSTMCell(U, use_peepholes=True, dtype=dt, seed=s),
    "lstm-clip": lambda U, dt, s: LSTMCell(U, cell_clip=0.3, dtype=dt, seed=s),
    "lstm-proj": lambda U, dt, s: LSTMCell(U, num_proj=max(1, U // 2 + 1), dtype=dt, seed=s),
    "lstm-proj-projclip": lambda U, dt, s: LSTMCell(U, num_proj=U + 3, proj_clip=0.2, dtype=dt,
                                                    seed=s),
    "lstm-peep-clip-proj-projclip": lambda U, dt, s: LSTMCell(
        U, use_peepholes=True, cell_clip=0.5, num_proj=5, proj_clip=0.4, forget_bias=0.5,
        dtype=dt, seed=s),
    "lstm-peep-proj-concat": lambda U, dt, s: LSTMCell(
        U, use_peepholes=True, num_proj=3, state_is_tuple=False, dtype=dt, seed=s),
    "lstm-all-concat": lambda U, dt, s: LSTMCell(
        U, use_peepholes=True, cell_clip=0.7, num_proj=3, proj_clip=0.6, state_is_tuple=False,
        activation="sigmoid", dtype=dt, seed=s),
    "lstm-sigmoid-clip": lambda U, dt, s: LSTMCell(U, cell_clip=0.8, activation="sigmoid",
                                                   dtype=dt, seed=s),
    "lstm-custom": lambda U, dt, s: LSTMCell(U, use_peepholes=True, num_proj=4, cell_clip=0.6,
                                             activation=scaled_tanh, dtype=dt, seed=s),
    "lstm-custom-peep-proj": lambda U, dt, s: LSTMCell(
        U, use_peepholes=True, num_proj=4, cell_clip=0.6, proj_clip=0.3,
        activation=scaled_tanh, dtype=dt, seed=s),
    "gru": lambda U, dt, s: GRUCell(U, dtype=dt, seed=s),
    "gru-relu": lambda U, dt, s: GRUCell(U, activation="relu", dtype=dt, seed=s),
    "gru-linear": lambda U, dt, s: GRUCell(U, activation=activations.linear, dtype=dt, seed=s),
    "gru-custom": lambda U, dt, s: GRUCell(U, activation=scaled_tanh, dtype=dt, seed=s),
    "gru-reset_after": lambda U, dt, s: GRUCell(U, reset_after=True, dtype=dt, seed=s),
}
CONFIGS["rnn"] = CONFIGS["rnn-default"]
# peepholes, both clips, a projection and a forget bias at once
CONFIGS["lstm-all"] = CONFIGS["lstm-peep-clip-proj-projclip"]


def randomize(cell, rng, input_size):
    """Random weights (biases and peepholes non-zero, so every term counts); a MultiRNNCell's
    cells in turn, each from the previous one's output size."""
    if isinstance(cell, MultiRNNCell):
        for sub in cell.cells:
            randomize(sub, rng, input_size)
            input_size = sub.output_size
        return cell
    if not cell.built:
        cell.build(input_size)
    new = {}
    for name, a in cell.get_weights().items():
        if a.ndim == 2:
            new[name] = rng.standard_normal(a.shape) / np.sqrt(a.shape[0])
        else:
            new[name] = rng.standard_normal(a.shape) * 0.5
    cell.set_weights(new)
    return cell


def record_run_sequences(monkeypatch, record=lambda *args, **kwargs: 1):
    """Wraps fastcells._core.run_sequences (the attribute fastcells.rnn looks up) for the test:
    each call appends record(*its arguments) to the returned list, then runs the real one. The
    default record is 1, so the list is [1] * the number of native calls."""
    calls = []
    real = _core.run_sequences

    def recording(*args, **kwargs):
        calls.append(record(*args, **kwargs))
        return real(*args, **kwargs)
    monkeypatch.setattr(_core, "run_sequences", recording)
    return calls


def assert_close(actual, expected, dtype, what=""):
    """float32: norm-wise RTOL_F32, elementwise ATOL_F32 + RTOL_F32*|expected|; float64: TOL_F64.
    actual, expected: arrays or nested states of the same structure; actual of `dtype`."""
    a_leaves, e_leaves = flat(actual), flat(expected)
    assert len(a_leaves) == len(e_leaves), f"{what}: {len(a_leaves)} vs {len(e_leaves)} arrays"
    rtol, atol = (RTOL_F32, ATOL_F32) if np.dtype(dtype) == np.float32 else (TOL_F64, TOL_F64)
    for k, (a, e) in enumerate(zip(a_leaves, e_leaves)):
        assert isinstance(a, np.ndarray), f"{what}[{k}]: got {type(a)}"
        assert a.dtype == np.dtype(dtype), f"{what}[{k}]: dtype {a.dtype}, expected {dtype}"
        assert a.shape == e.shape, f"{what}[{k}]: shape {a.shape}, expected {e.shape}"
        err = np.linalg.norm(a.astype(np.float64) - e)
        ref_norm = np.linalg.norm(e)
        assert err <= rtol * ref_norm + atol, \
            f"{what}[{k}] shape {a.shape}: norm-wise error {err:.3g}, |ref| {ref_norm:.3g}"
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, err_msg=f"{what}[{k}]")


def assert_identical(got, want, what="value"):
    """Same nesting and tuple/list types, same dtypes and shapes, equal bits."""
    if isinstance(want, (tuple, list)):
        assert type(got) is type(want), f"{what}: {type(got).__name__}, expected " \
                                        f"{type(want).__name__}"
        assert len(got) == len(want), f"{what}: {len(got)} items, expected {len(want)}"
        for k, (g, w) in enumerate(zip(got, want)):
            assert_identical(g, w, f"{what}[{k}]")
        return
    if isinstance(want, dict):
        assert list(got) == list(want), f"{what}: keys {list(got)}, expected {list(want)}"
        for k in want:
            assert_identical(got[k], want[k], f"{what}[{k!r}]")
        return
    assert isinstance(got, np.ndarray), f"{what}: {type(got).__name__}, expected an array"
    assert got.dtype == want.dtype and got.shape == want.shape, \
        f"{what}: {got.dtype}{got.shape}, expected {want.dtype}{want.shape}"
    assert np.array_equal(got, want), f"{what}: differs, max |d| = " \
                                      f"{np.max(np.abs(got - want))}"
