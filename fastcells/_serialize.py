"""Pickling and copying of the cells computed in C (``pickle``, ``copy.copy``, ``copy.deepcopy``,
and so multiprocessing, concurrent.futures, Dask, Ray and Spark).

A cell travels as its configuration and its raw weights: the attributes set by its constructor
and by ``build`` / ``set_weights`` (name, dtype, sizes, options, activations, initializers, the
random Generator) and the TF-layout weight arrays, exactly what ``get_weights()`` returns (the
float32/float64 source of truth). Never pickled: the cell's lock (a new one is made) and the
packed C copy of the weights (``_core.PackedCell``), which is rebuilt from the weights on the
first use in the loading process, for the instruction set chosen there (FASTCELLS_ISA or the
best available), so a cell pickled on an AVX-512 machine runs on an AVX2 one. The numbers are
bit-identical to the original's on the same instruction set. An unbuilt cell loads unbuilt,
with its Generator's state, so it builds the same weights the original would have.

Activations and initializers are pickled as they are: names, fastcells' functions and
``fastcells.nn.activation(...)`` objects always work; a callable of the user's pickles as
pickle pickles it (a module-level function by reference; a lambda or a local function needs
cloudpickle, which Dask, Ray and Spark use, and otherwise raises pickle's PicklingError).

    getstate(cell), setstate(cell, state)    the cells' __getstate__ / __setstate__
    packed_cell(cell)                        cell._packed, built now if still pending
"""
import types
import weakref

import numpy as np

from fastcells import _fork

# the version of the state's layout; setstate refuses another one
_STATE_FORMAT = 1
_FORMAT_KEY = "__fastcells_state__"
# attributes that are never pickled (remade in the loading process)
_PROCESS_LOCAL = ("_lock", "_packed")


class _ConstantInitializer:
    """A constant initializer in a pickle (the cells make them as closures, which pickle cannot
    store); setstate turns it back into the cells' own closure."""
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __reduce__(self):
        return (_ConstantInitializer, (self.value,))


def _cells_module():
    from fastcells.cells import _initializers
    return _initializers


def _is_constant_initializer(value):
    """True for a closure made by ``fastcells.cells._initializers.constant(value)`` (they share
    one code object)."""
    return (isinstance(value, types.FunctionType)
            and value.__code__ is _cells_module().zeros.__code__)


def getstate(cell):
    """The state of a cell computed in C: its attributes without the lock and the packed copy,
    with the weights as a dict name -> array in creation order (read under the cell's lock, so
    a concurrent set_weights is either wholly in or wholly out)."""
    with cell._lock:
        state = {key: value for key, value in vars(cell).items() if key not in _PROCESS_LOCAL}
    for key, value in state.items():
        if _is_constant_initializer(value):
            state[key] = _ConstantInitializer(value.__closure__[0].cell_contents)
    state["_weights"] = dict(state["_weights"])
    state[_FORMAT_KEY] = _STATE_FORMAT
    return state


def setstate(cell, state):
    """Restores a cell from getstate's state: private copies of the weights (read-only, the
    cell's dtype, C order), a new lock, and the packed copy pending until the first use."""
    if not isinstance(state, dict) or state.get(_FORMAT_KEY) != _STATE_FORMAT:
        got = state.get(_FORMAT_KEY) if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"state: expected a {type(cell).__name__} state of format "
                         f"{_STATE_FORMAT} (pickled by this fastcells version), got {got!r}")
    cells = _cells_module()
    state = dict(state)
    del state[_FORMAT_KEY]
    for key, value in state.items():
        if isinstance(value, _ConstantInitializer):
            state[key] = cells.constant(value.value)
    dtype = state["_dtype"]
    weights = {}
    for name, a in state["_weights"].items():
        weights[name] = np.array(a, dtype=dtype, order="C", copy=True)   # never the pickle's
        weights[name].flags.writeable = False
    state["_weights"] = weights
    vars(cell).update(state)
    _check_weights(cell)
    cell._lock = _fork.new_lock(cell)
    cell._packed = _PendingPack(cell) if cell._built and cell._fusable else None


def _check_weights(cell):
    """The loaded weights must be the cell's: the names and shapes of its spec, in order."""
    if not cell._built:
        if cell._weights:
            raise ValueError(f"state: an unbuilt {type(cell).__name__} with weights "
                             f"{list(cell._weights)}")
        return
    spec = [(name, shape) for name, shape, *_ in cell._spec(cell._input_size)]
    got = [(name, a.shape) for name, a in cell._weights.items()]
    if got != spec:
        raise ValueError(f"state: expected the weights {spec} for a {type(cell).__name__} "
                         f"of input size {cell._input_size}, got {got}")


class _PendingPack:
    """Stands for ``cell._packed`` in a loaded cell until the first use: any attribute looked up
    on it (``tf_call``, ``step``, ``isa``, ...) builds the real PackedCell from the cell's weights,
    installs it on the cell, and answers from it. Holds the cell weakly (no reference cycle)."""
    __slots__ = ("_cell",)

    def __init__(self, cell):
        self._cell = weakref.ref(cell)

    def _build(self):
        cell = self._cell()
        if cell is None:
            raise ReferenceError("the cell of this pending PackedCell no longer exists")
        with cell._lock:
            if cell._packed is self:               # not yet built (by another thread)
                cell._install(cell._input_size, cell._weights)
        return cell._packed

    def __getattr__(self, name):
        return getattr(self._build(), name)

    def __repr__(self):
        return "<pending PackedCell: built from the weights on the first use>"


def packed_cell(cell):
    """``cell._packed`` (a PackedCell, or None for a cell run in NumPy), built now if it is still
    pending. For code that hands the object to C (fastcells.rnn's run_sequences)."""
    packed = cell._packed
    if type(packed) is _PendingPack:
        return packed._build()
    return packed
