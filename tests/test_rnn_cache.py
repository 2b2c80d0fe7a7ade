"""The caches behind the runners' quick path (fastcells.rnn._STACKS, fastcells._override's
per-class answer of overrides_call): a cached entry never outlives what it was made from.

- new weights (set_weights, build, unpickling into the cell) are a new PackedCell, which the
  cached stack keys on: the next call runs the new weights;
- a MultiRNNCell whose cells are replaced, or a cell whose class changes, misses the cache;
- a subclass created after the base class was run, or an override assigned to a class after
  it was run, is seen on the next call (the slow path honours it);
- an entry goes with its cell.

Every comparison is exact, against a fresh cell with the same weights (never cached before).
"""
import gc
import pickle

import numpy as np

from fastcells import _override, nn, rnn
from fastcells.cells import BasicLSTMCell, BasicRNNCell, GRUCell, LSTMCell, MultiRNNCell

from conftest import record_run_sequences  # noqa: E402

F32 = np.float32
B, T, I = 3, 6, 4


def data(seed=0, depth=I):
    return np.random.default_rng(seed).standard_normal((B, T, depth)).astype(F32)


def twin(cell, klass, **kwargs):
    """A fresh cell of `klass` with `cell`'s weights (its own, uncached stack)."""
    fresh = klass(cell.num_units, seed=99, **kwargs)
    fresh.set_weights(cell.get_weights())
    return fresh


def assert_same(got, want):
    got_leaves = rnn.flatten(got)
    want_leaves = rnn.flatten(want)
    assert len(got_leaves) == len(want_leaves)
    for g, w in zip(got_leaves, want_leaves):
        np.testing.assert_array_equal(g, w)


def test_the_quick_path_is_cached_and_gives_the_careful_paths_result():
    cell = BasicLSTMCell(5, seed=1)
    x = data()
    first = nn.dynamic_rnn(cell, x, dtype=F32)            # builds the cell: the careful path
    stack = rnn._cached_stack(cell)
    assert stack is not None and stack.layers[0][0] is cell._packed
    again = nn.dynamic_rnn(cell, x, dtype=F32)            # the quick path
    assert rnn._cached_stack(cell) is stack
    assert_same(again, first)
    assert_same(again, nn.dynamic_rnn(twin(cell, BasicLSTMCell), x, dtype=F32))


def test_set_weights_between_two_calls_runs_the_new_weights():
    cell = GRUCell(5, seed=2)
    x = data(1)
    before = nn.dynamic_rnn(cell, x, dtype=F32)
    stale = rnn._cached_stack(cell)
    weights = {name: a * 0.5 for name, a in cell.get_weights().items()}
    cell.set_weights(weights)
    assert rnn._cached_stack(cell) is None                # keyed on the packed weights
    after = nn.dynamic_rnn(cell, x, dtype=F32)
    assert rnn._cached_stack(cell) is not stale
    assert not np.array_equal(after[0], before[0])
    assert_same(after, nn.dynamic_rnn(twin(cell, GRUCell), x, dtype=F32))
    # also with the cell inside a cached stack, and as the backward cell of a pair
    stack = MultiRNNCell([cell, BasicRNNCell(3, seed=3)])
    pair_before = nn.bidirectional_dynamic_rnn(stack, cell, x, dtype=F32)
    cell.set_weights({name: a + 0.25 for name, a in cell.get_weights().items()})
    pair_after = nn.bidirectional_dynamic_rnn(stack, cell, x, dtype=F32)
    fresh = twin(cell, GRUCell)
    fresh_stack = MultiRNNCell([fresh, twin(stack.cells[1], BasicRNNCell)])
    assert_same(pair_after, nn.bidirectional_dynamic_rnn(fresh_stack, fresh, x, dtype=F32))
    assert not np.array_equal(pair_after[0][1], pair_before[0][1])


def test_unpickling_into_a_run_cell_runs_the_loaded_weights():
    cell, other = LSTMCell(4, seed=4), LSTMCell(4, seed=5)
    x = data(2)
    nn.dynamic_rnn(cell, x, dtype=F32)
    want = nn.dynamic_rnn(other, x, dtype=F32)
    cell.__setstate__(pickle.loads(pickle.dumps(other)).__getstate__())
    assert_same(nn.dynamic_rnn(cell, x, dtype=F32), want)
    assert_same(nn.static_rnn(cell, list(x.swapaxes(0, 1)), dtype=F32)[1], want[1])


def test_replacing_what_the_cache_keys_on_misses_it():
    """A MultiRNNCell's cells (private, but what the stack keys on) and a cell's class."""
    a, b = BasicLSTMCell(4, seed=6), GRUCell(4, seed=7)
    stack = MultiRNNCell([a, b])
    x = data(3)
    nn.dynamic_rnn(stack, x, dtype=F32)
    assert rnn._cached_stack(stack) is not None
    stack._cells = (a,)                                    # now a one-layer stack
    assert rnn._cached_stack(stack) is None
    out, state = nn.dynamic_rnn(stack, x, dtype=F32)
    assert len(state) == 1 and out.shape == (B, T, 4)
    assert_same((out, state), nn.dynamic_rnn(MultiRNNCell([twin(a, BasicLSTMCell)]), x,
                                             dtype=F32))

    class Doubled(GRUCell):
        def call(self, inputs, state):
            out, new = super().call(inputs, state)
            return 2 * out, new
    nn.dynamic_rnn(b, x, dtype=F32)
    want = nn.dynamic_rnn(b, x, dtype=F32)[0]
    b.__class__ = Doubled                                  # an override now: the slow path
    assert rnn._cached_stack(b) is None
    np.testing.assert_array_equal(nn.dynamic_rnn(b, x, dtype=F32)[0], 2 * want)


def test_a_subclass_created_after_the_base_was_run_keeps_its_override(monkeypatch):
    x = data(4)
    base = BasicRNNCell(4, seed=8)
    plain = nn.dynamic_rnn(base, x, dtype=F32)[0]
    assert not _override.overrides_call(BasicRNNCell)

    class Shifted(BasicRNNCell):
        def call(self, inputs, state):
            out, new = super().call(inputs, state)
            return out + 1, new
    cell = twin(base, Shifted)
    calls = record_run_sequences(monkeypatch)
    for _ in range(2):                                      # uncached, then cached answers
        np.testing.assert_array_equal(nn.dynamic_rnn(cell, x, dtype=F32)[0], plain + 1)
        assert calls == [] and _override.overrides_call(Shifted)
    np.testing.assert_array_equal(nn.dynamic_rnn(base, x, dtype=F32)[0], plain)
    assert calls == [1]


def test_an_override_assigned_after_the_first_run_is_seen(monkeypatch):
    class Later(GRUCell):
        pass
    cell = Later(4, seed=9)
    x = data(5)
    plain = nn.dynamic_rnn(cell, x, dtype=F32)[0]
    assert not _override.overrides_call(Later)                # cached: no override

    def __call__(self, inputs, state, scope=None):
        out, new = GRUCell.__call__(self, inputs, state)
        return out * 0.5, new
    monkeypatch.setattr(Later, "__call__", __call__)
    assert _override.overrides_call(Later)
    calls = record_run_sequences(monkeypatch)
    np.testing.assert_array_equal(nn.dynamic_rnn(cell, x, dtype=F32)[0], plain * 0.5)
    assert calls == []
    monkeypatch.undo()
    assert not _override.overrides_call(Later)


def test_the_quick_path_still_sends_bad_arguments_to_the_careful_checks():
    cell = BasicLSTMCell(4, seed=10)
    x = data(6)
    nn.dynamic_rnn(cell, x, dtype=F32)
    assert rnn._cached_stack(cell) is not None
    checks = [
        (lambda: nn.dynamic_rnn(cell, x, dtype=np.float64), TypeError, "dtype: expected"),
        (lambda: nn.dynamic_rnn(cell, x), ValueError, "dtype: expected a dtype"),
        (lambda: nn.dynamic_rnn(cell, x.astype(np.float64), dtype=F32), TypeError, "inputs"),
        (lambda: nn.dynamic_rnn(cell, data(6, depth=5), dtype=F32), ValueError,
         "inputs: expected depth"),
        (lambda: nn.dynamic_rnn(cell, x[:, :0], dtype=F32), ValueError, "at least one time"),
        (lambda: nn.dynamic_rnn(cell, x[0], dtype=F32), ValueError, "3-D"),
        (lambda: nn.bidirectional_dynamic_rnn(cell, BasicLSTMCell(4, dtype=np.float64), x,
                                              dtype=F32), TypeError, "dtype"),
    ]
    for run, error, text in checks:
        try:
            run()
        except error as e:
            assert text in str(e), str(e)
        else:
            raise AssertionError(f"no {error.__name__} ({text})")
    # read-only, non-contiguous and integer inputs take the careful path, same numbers
    want = nn.dynamic_rnn(cell, x, dtype=F32)
    ro = x.copy()
    ro.flags.writeable = False
    assert_same(nn.dynamic_rnn(cell, ro, dtype=F32), want)
    assert_same(nn.dynamic_rnn(cell, np.asfortranarray(x), dtype=F32), want)
    assert_same(nn.dynamic_rnn(cell, x, dtype="float32"), want)


def test_an_entry_goes_with_its_cell():
    cell = GRUCell(3, seed=11)
    nn.dynamic_rnn(cell, data(7), dtype=F32)
    key = id(cell)
    assert key in rnn._STACKS
    del cell
    gc.collect()
    assert key not in rnn._STACKS or rnn._STACKS[key].ref() is not None
