"""Subclasses of the fastcells cells that override ``call()`` (TF style) or ``__call__``
(fastcells._override): the override runs in ``cell(x, state)``, ``step_``, dynamic_rnn,
static_rnn, bidirectional_dynamic_rnn and inside MultiRNNCell; a subclass that overrides
nothing keeps the native sequence path.

The oracle of each check is fastcells.reference.dynamic_rnn over a step function made from a
plain twin cell (same weights) plus the override's arithmetic; every comparison is exact.
"""
import pickle

import numpy as np
import pytest

from conftest import assert_identical as assert_equal, record_run_sequences  # noqa: E402
from fastcells import nn, reference
from fastcells.cells import (BasicLSTMCell, BasicRNNCell, GRUCell, LSTMCell, LSTMStateTuple,
                             MultiRNNCell)

B, T, I = 4, 7, 5
LENGTHS = np.array([7, 0, 3, 6])


class PlusOneGRU(GRUCell):
    """TF style: overrides call(); the output gets +1 (the state does not)."""

    def call(self, inputs, state):
        out, new = super().call(inputs, state)
        return out + 1, new


class HalfCellLSTM(BasicLSTMCell):
    """Overrides call() and changes the state: c' is halved, the output doubled."""

    def call(self, inputs, state):
        out, (c, h) = super().call(inputs, state)
        return 2 * out, LSTMStateTuple(0.5 * c, h)


class OwnRNN(BasicRNNCell):
    """Overrides call() without super(): h' = tanh(x @ Wx + h) with the cell's own kernel (its
    first I rows), so the cell must be built before call runs (TF's __call__ builds it)."""

    def call(self, inputs, state):
        kernel = self.get_weights()["kernel"]
        h = np.tanh(inputs @ kernel[:self.input_size] + state)
        return h, h


class Halved(GRUCell):
    """Overrides __call__ (and not call)."""

    def __call__(self, inputs, state, scope=None):
        out, new = super().__call__(inputs, state)
        return out * 0.5, new


class Plain(GRUCell):
    """Overrides nothing: the native paths stay."""


class TaggedMulti(MultiRNNCell):
    """A MultiRNNCell subclass overriding call(): the stack's output gets -3."""

    def call(self, inputs, state):
        out, new = super().call(inputs, state)
        return out - 3, new


def twin(cell, klass):
    """A plain `klass` cell with cell's weights (the oracle's cell)."""
    plain = klass(cell.num_units, dtype=cell.dtype, seed=0, **(
        {"reset_after": cell.reset_after} if isinstance(cell, GRUCell) else {}))
    plain.set_weights(cell.get_weights())
    return plain


def built(klass, U, dtype=np.float64, seed=1):
    cell = klass(U, dtype=dtype, seed=seed)
    cell.build(I)
    return cell


def data(dtype=np.float64, seed=2):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((B, T, I)).astype(dtype)




# the overriding cells, with the step function of their oracle
def plus_one_step(plain):
    def step(x, s):
        out, new = plain(x, s)
        return out + 1, new
    return step


def half_cell_step(plain):
    def step(x, s):
        out, (c, h) = plain(x, s)
        return 2 * out, LSTMStateTuple(0.5 * c, h)
    return step


CASES = {
    "PlusOneGRU": (PlusOneGRU, GRUCell, plus_one_step),
    "HalfCellLSTM": (HalfCellLSTM, BasicLSTMCell, half_cell_step),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_call_override_runs_everywhere(case, dtype):
    klass, base, make_step = CASES[case]
    cell = built(klass, 6, dtype)
    step = make_step(twin(cell, base))
    xs = data(dtype)
    s0 = cell.zero_state(B)
    # one step, both ways
    assert_equal(cell(xs[:, 0], s0), step(xs[:, 0], s0), "cell(x, state)")
    st = cell.zero_state(B)
    out = cell.step_(xs[:, 0], st)
    want_out, want_state = step(xs[:, 0], s0)
    assert_equal(out, want_out, "step_ output")
    assert_equal(st, want_state, "step_ state (written in place)")
    # the runners
    want = reference.dynamic_rnn(step, xs, s0, LENGTHS)
    assert_equal(nn.dynamic_rnn(cell, xs, LENGTHS, dtype=dtype), want, "dynamic_rnn")
    outs, final = nn.static_rnn(cell, list(xs.swapaxes(0, 1)), dtype=dtype,
                                sequence_length=LENGTHS)
    assert_equal((np.stack(outs, 1), final), want, "static_rnn")
    plain = twin(cell, base)
    (o_fw, o_bw), (s_fw, s_bw) = nn.bidirectional_dynamic_rnn(cell, plain, xs, LENGTHS,
                                                              dtype=dtype)
    assert_equal((o_fw, s_fw), want, "bidirectional_dynamic_rnn forward")
    rev = reference.reverse_sequence(xs, LENGTHS)
    p_out, p_state = nn.dynamic_rnn(plain, rev, LENGTHS, dtype=dtype)
    assert_equal((o_bw, s_bw), (reference.reverse_sequence(p_out, LENGTHS), p_state),
                 "bidirectional_dynamic_rnn backward (the plain cell)")
    (o_fw, o_bw), (s_fw, s_bw) = nn.bidirectional_dynamic_rnn(plain, cell, xs, LENGTHS,
                                                              dtype=dtype)
    assert_equal((o_fw, s_fw), nn.dynamic_rnn(plain, xs, LENGTHS, dtype=dtype),
                 "bidirectional_dynamic_rnn forward (the plain cell)")
    r_out, r_state = reference.dynamic_rnn(step, rev, s0, LENGTHS)
    assert_equal((o_bw, s_bw), (reference.reverse_sequence(r_out, LENGTHS), r_state),
                 "bidirectional_dynamic_rnn backward (the override)")


def test_call_override_inside_multi_rnn_cell():
    gru = built(PlusOneGRU, 6)
    lstm = LSTMCell(4, num_proj=3, dtype=np.float64, seed=3)
    lstm.build(6)
    multi = MultiRNNCell([gru, lstm])
    plain_step = plus_one_step(twin(gru, GRUCell))

    def step(x, s):
        y, s_gru = plain_step(x, s[0])
        out, s_lstm = lstm(y, s[1])
        return out, (s_gru, s_lstm)
    xs = data()
    s0 = multi.zero_state(B)
    assert_equal(multi(xs[:, 0], s0), step(xs[:, 0], s0), "MultiRNNCell(x, state)")
    st = multi.zero_state(B)
    assert_equal(multi.step_(xs[:, 0], st), step(xs[:, 0], s0)[0], "MultiRNNCell.step_")
    assert_equal(st, step(xs[:, 0], s0)[1], "MultiRNNCell.step_ state")
    want = reference.dynamic_rnn(step, xs, s0, LENGTHS)
    assert_equal(nn.dynamic_rnn(multi, xs, LENGTHS, dtype=np.float64), want, "dynamic_rnn")
    nested = MultiRNNCell([MultiRNNCell([gru]), lstm])
    got_out, got_state = nn.dynamic_rnn(nested, xs, LENGTHS, dtype=np.float64)
    assert_equal(got_out, want[0], "nested stack")


def test_multi_rnn_cell_subclass_overriding_call():
    rnn = BasicRNNCell(3, dtype=np.float64, seed=5)
    rnn.build(6)
    cells = [built(GRUCell, 6, seed=4), rnn]
    tagged, plain = TaggedMulti(cells), MultiRNNCell(cells)

    def step(x, s):
        out, new = plain(x, s)
        return out - 3, new
    xs = data()
    s0 = tagged.zero_state(B)
    assert_equal(tagged(xs[:, 0], s0), step(xs[:, 0], s0), "call")
    want = reference.dynamic_rnn(step, xs, s0, LENGTHS)
    assert_equal(nn.dynamic_rnn(tagged, xs, LENGTHS, dtype=np.float64), want, "dynamic_rnn")


def test_call_override_without_super_is_built_first():
    cell = OwnRNN(4, dtype=np.float64, seed=6)            # not built
    x = data()[:, 0]
    out, new = cell(x, np.zeros((B, 4)))
    assert cell.built and cell.input_size == I
    kernel = cell.get_weights()["kernel"]
    np.testing.assert_array_equal(out, np.tanh(x @ kernel[:I]))
    assert out is new


def test_dunder_call_override_is_honoured_and_call_is_the_cells_own_step():
    cell = built(Halved, 6)
    plain = twin(cell, GRUCell)
    xs = data()
    s0 = cell.zero_state(B)
    assert_equal(cell(xs[:, 0], s0)[0], 0.5 * plain(xs[:, 0], s0)[0], "__call__")
    assert_equal(cell.call(xs[:, 0], s0), plain(xs[:, 0], s0), "call: the GRU step itself")
    st = cell.zero_state(B)
    assert_equal(cell.step_(xs[:, 0], st), 0.5 * plain(xs[:, 0], s0)[0], "step_")

    def step(x, s):
        out, new = plain(x, s)
        return 0.5 * out, new
    want = reference.dynamic_rnn(step, xs, s0, LENGTHS)
    assert_equal(nn.dynamic_rnn(cell, xs, LENGTHS, dtype=np.float64), want, "dynamic_rnn")


def test_subclass_overriding_nothing_keeps_the_native_path(monkeypatch):
    assert Plain.__call__ is GRUCell.__call__ and Plain.step_ is GRUCell.step_
    cell = built(Plain, 6)
    calls = record_run_sequences(monkeypatch)
    out, _ = nn.dynamic_rnn(cell, data(), LENGTHS, dtype=np.float64)
    assert calls == [1]
    calls.clear()
    nn.dynamic_rnn(built(PlusOneGRU, 6), data(), LENGTHS, dtype=np.float64)
    assert calls == [], "an override must run through the Python time loop"
    assert_equal(out, nn.dynamic_rnn(twin(cell, GRUCell), data(), LENGTHS,
                                     dtype=np.float64)[0], "Plain")


def test_plain_cells_call_is_their_step():
    for cell in (built(GRUCell, 5), built(LSTMCell, 5), MultiRNNCell([built(GRUCell, 5)])):
        x = data()[:, 0]
        s0 = cell.zero_state(B)
        assert_equal(cell.call(x, s0), cell(x, s0), type(cell).__name__)


def test_overriding_subclass_pickles():
    cell = built(PlusOneGRU, 6)
    loaded = pickle.loads(pickle.dumps(cell))
    assert type(loaded) is PlusOneGRU
    xs = data()
    assert_equal(nn.dynamic_rnn(loaded, xs, LENGTHS, dtype=np.float64),
                 nn.dynamic_rnn(cell, xs, LENGTHS, dtype=np.float64), "round trip")
