"""The sequence runners of ``tf.nn`` (TF 1.x): whole sequences in one native call.

    dynamic_rnn(cell, inputs, ...)                 -> (outputs [B,T,P], final_state)
    static_rnn(cell, inputs_list, ...)             -> ([T x [B,P]], final_state)
    bidirectional_dynamic_rnn(cell_fw, cell_bw, inputs, ...)
                                                   -> ((out_fw, out_bw), (state_fw, state_bw))

Semantics are TF's: for t >= sequence_length[b] the output row b is zero and
the state row b is carried unchanged, so the final state of a row is its state after its last
step (the initial state when its length is 0); the backward direction reads each row reversed
within its own length and its outputs are written back in input order.

The fast path: when every cell in play is a fastcells cell computed in C (BasicRNNCell,
BasicLSTMCell, LSTMCell, GRUCell with a fused activation, and MultiRNNCell stacks of them, nested
or not), the whole call is ONE ``_core.run_sequences`` call with the GIL released: all layers of
a stack in it, and both directions of bidirectional_dynamic_rnn as two stacks on two cores. No
Python runs per step. The slow path (a Python time loop with TF's masking) serves any other cell:
a custom-callable activation, a user RNNCell subclass, a MultiRNNCell containing one, or a
fastcells cell subclass that overrides ``call`` or ``__call__`` (its override is honoured).

What a call costs in Python is kept small for fastcells' own cells: each cell object's layers
(their PackedCells, sizes and kinds, and the maker of the final state) are cached in a _Stack,
valid while the cell's class, a MultiRNNCell's cells and every leaf's PackedCell are the ones
it was made from (new weights are always a new PackedCell, so stale weights never run); with
such a stack, arguments that need no conversion pass quick checks (_quick_inputs), and anything
else goes through the careful checks, which word every error.

Decisions where TF leaves room (or cannot apply to NumPy):
- ``parallel_iterations``, ``swap_memory`` and ``scope`` are accepted and ignored (graph-mode
  and variable-scope options; weights live on the cells here).
- The cells' dtype is fixed at construction: ``dtype`` must be None or the cell's dtype
  (TypeError otherwise); it is required when there is no initial state (ValueError, as TF).
  ``inputs`` and state arrays of another float precision are a TypeError; lists and integer
  arrays are converted.
- ``sequence_length`` must be integers (a float array is a TypeError, where TF would cast).
- Inputs need not be contiguous (only a last axis that is not contiguous, negative strides or
  misalignment cause a copy); the caller's arrays are never modified and never returned.
- A cell not yet built is built from the input depth (layer k+1 from layer k's output size), as
  by a first ``cell(x, state)`` call.
- static_rnn returns its outputs as [B,P] views of one [T,B,P] array (disjoint memory).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Tuple

import weakref

import numpy as np

from fastcells import _core, _override, _serialize, reference
from fastcells._nest import LSTMStateTuple, flatten, map_structure, pack_as
from fastcells._validate import F32, F64, as_array, bridge_ready, check_dtype, describe
from fastcells.cells import MultiRNNCell
from fastcells.cells._fused import FusedCell
from fastcells.cells._kinds import LSTMBase

__all__ = ["dynamic_rnn", "static_rnn", "bidirectional_dynamic_rnn"]

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, DTypeLike

_INT64 = np.dtype(np.int64)
_ndarray = np.ndarray
_empty = np.empty
_tuple_new = tuple.__new__


# ---------------------------------------------------------------------------------------------
# Public runners
# ---------------------------------------------------------------------------------------------

def dynamic_rnn(cell: Any, inputs: ArrayLike, sequence_length: Optional[ArrayLike] = None,
                initial_state: Any = None, dtype: Optional[DTypeLike] = None,
                parallel_iterations: Any = None, swap_memory: bool = False,
                time_major: bool = False, scope: Any = None) -> Tuple[np.ndarray, Any]:
    """TF's ``dynamic_rnn``: runs `cell` over every time step of `inputs`.

    Parameters
    ----------
    cell : RNN cell
        A fastcells cell, a MultiRNNCell, or an RNNCell subclass (anything with state_size,
        output_size and ``__call__``; else a TypeError).
    inputs : array_like
        [B,T,I] ([T,B,I] if time_major), T >= 1.
    sequence_length : array_like of int, optional
        None (all T) or integers [B] in [0, T] (a float array is a TypeError).
    initial_state : state, optional
        A state in the cell's structure (``cell.state_size``) with batch B, or None for zeros
        (then `dtype` is required: a ValueError without it).
    dtype : dtype-like, optional
        None or the cell's dtype (another one is a TypeError).
    parallel_iterations, swap_memory, scope : optional
        TF graph options, accepted and ignored.
    time_major : bool, optional
        The layout of inputs and outputs (the numbers are the same).

    Returns
    -------
    outputs : numpy.ndarray
        [B,T,P] ([T,B,P] if time_major; P = cell.output_size), zero past each row's length.
    final_state : state
        In the cell's structure (LSTMStateTuple, one concatenated array with
        state_is_tuple=False, a tuple per layer for MultiRNNCell): each row's state after its
        last step. All fresh arrays.

    Examples
    --------
    >>> import numpy as np
    >>> import fastcells
    >>> cell = fastcells.BasicLSTMCell(4, seed=0)
    >>> x = np.ones((2, 5, 3), np.float32)                        # [B, T, I]
    >>> out, state = fastcells.nn.dynamic_rnn(cell, x, sequence_length=[5, 2],
    ...                                       dtype=np.float32)
    >>> out.shape, state.h.shape
    ((2, 5, 4), (2, 4))
    >>> float(np.abs(out[1, 2:]).max()), bool(np.array_equal(state.h[1], out[1, 1]))
    (0.0, True)
    """
    time_major = bool(time_major)
    stack = _cached_stack(cell)
    x = _quick_inputs(stack, dtype, initial_state is None, inputs, time_major)
    if x is None:
        dt = _runner_dtype(cell, "cell", dtype, initial_state is None, "initial_state")
        x = _check_sequence(inputs, dt, time_major, cells=(cell,))
    else:
        dt = stack.dtype
    T, B = _time_batch(x, time_major)
    lengths = None if sequence_length is None else _check_lengths(sequence_length, B, T)
    init = (None if initial_state is None else
            _check_initial_state(cell, initial_state, B, dt, "initial_state"))
    run = _NativeRun.plan(cell, x, dt, time_major, lengths, init, False, stack)
    if run is not None:
        _core.run_sequences(T, B, [run.layers], time_major)
        return run.outputs, run.final_state
    return _python_loop(cell, x, lengths, init, dt, time_major)


def static_rnn(cell: Any, inputs: Sequence[ArrayLike], initial_state: Any = None,
               dtype: Optional[DTypeLike] = None, sequence_length: Optional[ArrayLike] = None,
               scope: Any = None) -> Tuple[List[Any], Any]:
    """TF's ``static_rnn``: as dynamic_rnn over a Python list of T inputs [B,I].

    Parameters
    ----------
    cell : RNN cell
        As dynamic_rnn's.
    inputs : list or tuple of array_like
        A non-empty list (or tuple) of [B,I] arrays, one per time step, all of one shape (a
        TypeError if not a list or tuple, a ValueError if empty or of another shape).
    initial_state, dtype, sequence_length : optional
        As dynamic_rnn's.
    scope : optional
        Accepted and ignored.

    Returns
    -------
    outputs : list of numpy.ndarray
        T arrays [B,P] (zero past each row's length): views of one [T,B,P] array.
    final_state : state
        As dynamic_rnn's.

    Examples
    --------
    >>> import numpy as np
    >>> import fastcells
    >>> xs = [np.ones((2, 3), np.float32)] * 5                    # T arrays [B, I]
    >>> outs, state = fastcells.nn.static_rnn(fastcells.GRUCell(4, seed=0), xs,
    ...                                       dtype=np.float32)
    >>> len(outs), outs[0].shape, state.shape
    (5, (2, 4), (2, 4))
    """
    stack = _cached_stack(cell)
    dt = _quick_dtype(stack, dtype, initial_state is None)
    if dt is None:
        dt = _runner_dtype(cell, "cell", dtype, initial_state is None, "initial_state")
    if not isinstance(inputs, (list, tuple)):
        raise TypeError(f"inputs: expected a list of [batch, depth] arrays (one per time step), "
                        f"got {describe(inputs)}")
    if not inputs:
        raise ValueError("inputs: expected at least one time step (a non-empty list), got an "
                         "empty list")
    xs = []
    for t, v in enumerate(inputs):
        a = v if type(v) is _ndarray and v.dtype is dt else as_array(v, f"inputs[{t}]", dt)
        if a.ndim != 2:
            raise ValueError(f"inputs[{t}]: expected a 2-D array [batch, depth], got shape "
                             f"{a.shape}")
        if xs and a.shape != xs[0].shape:
            raise ValueError(f"inputs[{t}]: expected shape {xs[0].shape} (as inputs[0]), got "
                             f"shape {a.shape}")
        xs.append(a)
    x = np.stack(xs)                                    # [T,B,I], fresh and contiguous
    T, B = x.shape[:2]
    _check_depth(cell, x.shape[2])
    lengths = _check_lengths(sequence_length, B, T)
    init = _check_initial_state(cell, initial_state, B, dt, "initial_state")
    run = _NativeRun.plan(cell, x, dt, True, lengths, init, False, stack)
    if run is not None:
        _core.run_sequences(T, B, [run.layers], True)
        outputs, state = run.outputs, run.final_state
    else:
        outputs, state = _python_loop(cell, x, lengths, init, dt, True)
    return [map_structure(lambda a, t=t: a[t], outputs) for t in range(T)], state


def bidirectional_dynamic_rnn(cell_fw: Any, cell_bw: Any, inputs: ArrayLike,
                              sequence_length: Optional[ArrayLike] = None,
                              initial_state_fw: Any = None, initial_state_bw: Any = None,
                              dtype: Optional[DTypeLike] = None, parallel_iterations: Any = None,
                              swap_memory: bool = False, time_major: bool = False,
                              scope: Any = None
                              ) -> Tuple[Tuple[np.ndarray, np.ndarray], Tuple[Any, Any]]:
    """TF's ``bidirectional_dynamic_rnn``: a forward and a backward dynamic_rnn over `inputs`.

    The backward cell reads each row reversed within its own length (TF's reverse_sequence) and
    its outputs are reversed back, so ``out_bw[:, t]`` lines up with input t and ``state_bw`` is
    the state after consuming ``x[:, 0]``. With two fastcells stacks both directions run in
    one native call, one per core.

    Parameters
    ----------
    cell_fw, cell_bw : RNN cells
        Cells of the same dtype (they may differ in type and size; another dtype is a
        TypeError).
    inputs, sequence_length, dtype, time_major : optional
        As dynamic_rnn's.
    initial_state_fw, initial_state_bw : state, optional
        States of each cell's structure, or None for zeros (then `dtype` is required).
    parallel_iterations, swap_memory, scope : optional
        Accepted and ignored.

    Returns
    -------
    (out_fw, out_bw) : tuple of numpy.ndarray
        [B,T,P_fw] and [B,T,P_bw] (time-major as inputs), not concatenated, as TF.
    (state_fw, state_bw) : tuple of states
        The final states, each in its cell's structure.

    Examples
    --------
    >>> import numpy as np
    >>> import fastcells
    >>> x = np.ones((2, 5, 3), np.float32)                        # [B, T, I]
    >>> (out_fw, out_bw), (state_fw, state_bw) = fastcells.nn.bidirectional_dynamic_rnn(
    ...     fastcells.GRUCell(4, seed=0), fastcells.BasicRNNCell(2, seed=1), x,
    ...     dtype=np.float32)
    >>> out_fw.shape, out_bw.shape, state_bw.shape
    ((2, 5, 4), (2, 5, 2), (2, 2))
    >>> bool(np.array_equal(state_bw, out_bw[:, 0]))              # bw ends at x[:, 0]
    True
    """
    time_major = bool(time_major)
    stack_fw, stack_bw = _cached_stack(cell_fw), _cached_stack(cell_bw)
    x = _quick_inputs(stack_fw, dtype, initial_state_fw is None, inputs, time_major)
    if x is not None:
        dt = stack_fw.dtype
        if _quick_inputs(stack_bw, dtype, initial_state_bw is None, x, time_major) is None:
            x = None
    if x is None:
        dt = _runner_dtype(cell_fw, "cell_fw", dtype, initial_state_fw is None,
                           "initial_state_fw")
        dt_bw = _runner_dtype(cell_bw, "cell_bw", dtype, initial_state_bw is None,
                              "initial_state_bw")
        if dt_bw != dt:
            raise TypeError(f"cell_bw: expected the dtype of cell_fw ({dt}), got {dt_bw}")
        x = _check_sequence(inputs, dt, time_major, cells=(cell_fw, cell_bw))
    T, B = _time_batch(x, time_major)
    lengths = _check_lengths(sequence_length, B, T)
    init_fw = _check_initial_state(cell_fw, initial_state_fw, B, dt, "initial_state_fw")
    init_bw = _check_initial_state(cell_bw, initial_state_bw, B, dt, "initial_state_bw")
    fw = _NativeRun.plan(cell_fw, x, dt, time_major, lengths, init_fw, False, stack_fw)
    bw = _NativeRun.plan(cell_bw, x, dt, time_major, lengths, init_bw, True, stack_bw)
    stacks = [run.layers for run in (fw, bw) if run is not None]
    if stacks:
        _core.run_sequences(T, B, stacks, time_major)
    if fw is not None:
        out_fw, state_fw = fw.outputs, fw.final_state
    else:
        out_fw, state_fw = _python_loop(cell_fw, x, lengths, init_fw, dt, time_major)
    if bw is not None:
        out_bw, state_bw = bw.outputs, bw.final_state
    else:
        rev = reference.reverse_sequence(x, lengths, time_major)
        out_rev, state_bw = _python_loop(cell_bw, rev, lengths, init_bw, dt, time_major)
        out_bw = map_structure(lambda a: reference.reverse_sequence(a, lengths, time_major),
                               out_rev)
    return (out_fw, out_bw), (state_fw, state_bw)


# ---------------------------------------------------------------------------------------------
# Argument checking (the boundary: every message names the argument, the expected, the got)
# ---------------------------------------------------------------------------------------------

# The quick checks: what the careful ones below return, for the common call (a cell with a valid
# cached _Stack, dtype given as the cell's, an ndarray of that dtype the bridge reads as is), found
# without building messages or converting anything; None sends the call to the careful checks,
# which accept the same arguments with the same result and word every error.

def _quick_dtype(stack, dtype, no_state):
    """_runner_dtype's result for the cell of `stack` (a cached _Stack, or None) when `dtype` is
    its dtype (the np.dtype or the scalar type), or None with an initial state; else None."""
    if stack is None:
        return None
    dt = stack.dtype
    if dtype is None:
        return None if no_state else dt
    return dt if dtype is dt or dtype is dt.type else None


def _quick_inputs(stack, dtype, no_state, inputs, time_major):
    """_check_sequence's result (`inputs` itself) when _quick_dtype answers and `inputs` is an
    ndarray of that dtype (exactly, not a subclass), 3-D with T >= 1 and the depth the stack's
    first layer is built for, that the bridge reads as is; else None."""
    dt = _quick_dtype(stack, dtype, no_state)
    if dt is None or type(inputs) is not _ndarray or inputs.dtype is not dt or inputs.ndim != 3:
        return None
    shape = inputs.shape
    if shape[0 if time_major else 1] == 0 or shape[2] != stack.input_size:
        return None
    return inputs if _seq_ready(inputs) else None


def _runner_dtype(cell, cellname, dtype, no_state, statename):
    """The dtype of the run: the cell's; `dtype` must be None or equal to it, and is required
    when there is no initial state (as TF)."""
    if not (hasattr(cell, "state_size") and hasattr(cell, "output_size") and callable(cell)):
        raise TypeError(f"{cellname}: expected an RNN cell (with state_size, output_size and "
                        f"__call__), got {describe(cell)}")
    if dtype is None and no_state:
        raise ValueError(f"dtype: expected a dtype when {statename} is None (as TF: if there is "
                         f"no initial_state, you must give a dtype), got None")
    cell_dt = getattr(cell, "dtype", None)
    cell_dt = None if cell_dt is None else check_dtype(cell_dt, f"{cellname}.dtype")
    if dtype is not None:
        dt = check_dtype(dtype, "dtype")
        if cell_dt is not None and dt != cell_dt:
            raise TypeError(f"dtype: expected the dtype of {cellname} ({cell_dt}) or None, "
                            f"got {dt}")
        return dt
    return cell_dt if cell_dt is not None else np.dtype(np.float32)


def _seq_ready(a):
    """True if run_sequences can read the 3-D array `a` as is (mirrors _core's _seq_array):
    aligned, last axis contiguous, other strides non-negative multiples of the item size."""
    if a.size == 0:
        return a.flags.aligned
    item = a.itemsize
    s0, s1, s2 = a.strides
    return (a.flags.aligned and (a.shape[2] <= 1 or s2 == item)
            and s0 >= 0 and s1 >= 0 and s0 % item == 0 and s1 % item == 0)


def _check_sequence(inputs, dt, time_major, cells=()):
    """inputs -> a 3-D array of dtype `dt` with T >= 1 that the bridge can read (copied only
    when it cannot); checks the depth against the (first) built cell of each of `cells`."""
    x = as_array(inputs, "inputs", dt)
    layout = "[time, batch, depth]" if time_major else "[batch, time, depth]"
    if x.ndim != 3:
        raise ValueError(f"inputs: expected a 3-D array {layout}"
                         f"{' (time_major=True)' if time_major else ''}, got shape {x.shape}")
    T = x.shape[0 if time_major else 1]
    if T == 0:
        raise ValueError(f"inputs: expected at least one time step (T >= 1) in {layout}, got "
                         f"shape {x.shape}")
    for cell in cells:
        _check_depth(cell, x.shape[2])
    if not _seq_ready(x):
        x = np.array(x, order="C")            # a fresh, aligned, contiguous copy
    return x


def _first_leaf(cell):
    while isinstance(cell, MultiRNNCell):
        cell = cell.cells[0]
    return cell


def _check_depth(cell, depth):
    """The input depth must match the first layer's input size if that layer is a built
    fastcells cell (other cells check it themselves on their first call)."""
    first = _first_leaf(cell)
    if isinstance(first, FusedCell) and first.built and first.input_size != depth:
        raise ValueError(f"inputs: expected depth (last dimension) {first.input_size}, the input "
                         f"size the cell {first.name!r} is built for, got depth {depth}")


def _time_batch(x, time_major):
    return (x.shape[0], x.shape[1]) if time_major else (x.shape[1], x.shape[0])


def _check_lengths(sequence_length, B, T):
    """None, or a 1-D integer vector [B] with values in [0, T] -> an int64 array [B]."""
    if sequence_length is None:
        return None
    a = sequence_length
    if not isinstance(a, np.ndarray):
        try:
            a = np.asarray(a)
        except Exception as e:
            raise TypeError(f"sequence_length: expected a vector of {B} integers, got "
                            f"{describe(sequence_length)} ({e})") from None
        if a.size == 0 and a.dtype.kind == "f":          # [] -> float64; it is no float
            a = a.astype(_INT64)
    if a.dtype.kind not in "iu":
        raise TypeError(f"sequence_length: expected integers (an int32/int64 vector of shape "
                        f"({B},)), got dtype {a.dtype}")
    if a.shape != (B,):
        raise ValueError(f"sequence_length: expected a vector of shape ({B},) (the batch size "
                         f"of inputs), got shape {a.shape}")
    if B:
        bad = np.flatnonzero((a < 0) | (a > T))
        if bad.size:
            b = int(bad[0])
            raise ValueError(f"sequence_length: expected values in [0, {T}] (T = {T} time "
                             f"steps), got sequence_length[{b}] = {a[b]} (min {a.min()}, max "
                             f"{a.max()})")
    return np.array(a, dtype=_INT64)                       # a private copy


def _size_text(size):
    if isinstance(size, LSTMStateTuple):
        return f"LSTMStateTuple(c=[B, {size.c}], h=[B, {size.h}])"
    if isinstance(size, (tuple, list)):
        return "(" + ", ".join(_size_text(s) for s in size) + ")"
    return f"[B, {size}]"


def _check_initial_state(cell, state, B, dt, argname):
    """None, or a state in the structure of cell.state_size with batch B -> the same
    structure (LSTMStateTuple where state_size has one, tuples elsewhere) of arrays of dtype
    `dt` that the bridge can read (converted or copied only when needed)."""
    if state is None:
        return None
    return _check_state(cell.state_size, state, B, dt, argname)


def _check_state(size, state, B, dt, name):
    if isinstance(size, (tuple, list)):
        if not isinstance(state, (tuple, list)) or len(state) != len(size):
            raise ValueError(f"{name}: expected {_size_text(size)} (state_size "
                             f"{size!r}), got {describe(state)}")
        fields = getattr(size, "_fields", None)
        items = [_check_state(s, v, B, dt, f"{name}.{fields[k]}" if fields else f"{name}[{k}]")
                 for k, (s, v) in enumerate(zip(size, state))]
        return type(size)(*items) if fields else tuple(items)
    try:
        cols = int(size)
    except (TypeError, ValueError):
        cols = None                          # a user cell's exotic state_size: not checked
    if isinstance(state, tuple):             # a nested state where one array is expected
        raise ValueError(f"{name}: expected one array {_size_text(size)} (state_size "
                         f"{size!r}), got {describe(state)}")
    a = as_array(state, name, dt)
    if cols is not None:
        if a.ndim != 2 or a.shape[1] != cols:
            raise ValueError(f"{name}: expected shape [{B}, {cols}], got shape {a.shape}")
        if a.shape[0] != B:
            raise ValueError(f"{name}: expected shape [{B}, {cols}] (batch {B} as inputs), got "
                             f"shape {a.shape}")
        if not bridge_ready(a):
            a = np.array(a, order="C")
    elif a.ndim < 1 or a.shape[0] != B:
        raise ValueError(f"{name}: expected an array [{B}, ...] (batch {B} as inputs), got "
                         f"shape {a.shape}")
    return a


# ---------------------------------------------------------------------------------------------
# The fast path: one run_sequences call
# ---------------------------------------------------------------------------------------------

def _own_call(cell, base):
    """True if `cell` is a `base` whose ``call`` and ``__call__`` are fastcells' own (a subclass
    that overrides either keeps its override: it runs through the slow path)."""
    return _override.runs_native(cell, base)


def _native_leaves(cell):
    """The list of C-computed cells that `cell` stacks (itself, or a MultiRNNCell's cells,
    flattened through nested MultiRNNCells), or None if any of them is not one."""
    if _own_call(cell, MultiRNNCell):
        leaves = []
        for sub in cell.cells:
            sub_leaves = _native_leaves(sub)
            if sub_leaves is None:
                return None
            leaves.extend(sub_leaves)
        return leaves
    if _own_call(cell, FusedCell) and cell._fusable:
        return [cell]
    return None


def _leaf_states(cell, state):
    """A state of `cell` (a C-computed cell or a MultiRNNCell of them) -> [(c, h)] per leaf
    cell, as views (c None for non-LSTM cells); state None gives (None, None) per leaf."""
    if isinstance(cell, MultiRNNCell):
        if state is None:
            subs = [None] * len(cell.cells)
        elif cell.state_is_tuple:
            subs = state
        else:
            subs, at = [], 0
            for sub in cell.cells:
                m = int(sub.state_size)
                subs.append(state[:, at:at + m])
                at += m
        return [p for sub, s in zip(cell.cells, subs) for p in _leaf_states(sub, s)]
    if state is None:
        return [(None, None)]
    if isinstance(cell, LSTMBase):
        if cell.state_is_tuple:
            return [(state[0], state[1])]
        U = cell.num_units
        return [(state[:, :U], state[:, U:])]
    return [(None, state)]


def _state_maker(cell):
    """A function (cell, B, dt) -> (state, [(c, h)] per leaf) making uninitialised arrays for a
    state of `cell` (a C-computed cell or a MultiRNNCell of them) in the structure of its
    state_size, with each leaf cell's (c, h) as _leaf_states gives them (views into those
    arrays). It keeps sizes only, never the cell (a cached _Stack must not keep its cell alive)."""
    if isinstance(cell, MultiRNNCell) and cell.state_is_tuple:
        makers = [_state_maker(sub) for sub in cell.cells]

        def make(cell, B, dt):
            parts = [m(sub, B, dt) for m, sub in zip(makers, cell.cells)]
            return tuple(state for state, _ in parts), [p for _, pairs in parts for p in pairs]
    elif isinstance(cell, LSTMBase) and cell.state_is_tuple:
        U, P = cell.num_units, cell.output_size

        def make(cell, B, dt):
            c, h = _empty((B, U), dt), _empty((B, P), dt)
            return _tuple_new(LSTMStateTuple, (c, h)), [(c, h)]    # LSTMStateTuple(c, h)
    else:                                       # one array: [B, U] or the states concatenated
        width = int(cell.state_size)
        split = isinstance(cell, (MultiRNNCell, LSTMBase))

        def make(cell, B, dt):
            state = _empty((B, width), dt)
            return state, _leaf_states(cell, state) if split else [(None, state)]
    return make


# id(cell) -> its _Stack, for cells whose stack may be cached (_Stack.plan); an entry goes when
# its cell is collected (the weak reference's callback) and is used only while _cached_stack
# finds it valid
_STACKS = {}


def _own_tree(cell):
    """True if `cell` is one of fastcells' own C cells (not a subclass of the user's), or
    fastcells' MultiRNNCell of such cells or such MultiRNNCells: their state_size, output_size
    and __call__ are fastcells', so the careful checks' hasattr tests pass, and no override."""
    if not _override.is_own_class(type(cell)):
        return False
    if isinstance(cell, MultiRNNCell):
        return all(_own_tree(sub) for sub in cell._cells)
    return isinstance(cell, FusedCell)


def _stack_checks(cell, node=None):
    """What a cached _Stack of `cell` keys on, as (node, attribute, value): every cell's class;
    every MultiRNNCell's cells and state_is_tuple; every leaf's packed weights (a new PackedCell
    whenever the cell is built, given weights or unpickled into). node None stands for the cell
    the stack is looked up with (never held by the stack); the others are its sub-cells."""
    checks = [(node, "__class__", type(cell))]
    if isinstance(cell, MultiRNNCell):
        checks += [(node, "_cells", cell._cells), (node, "_state_is_tuple", cell._state_is_tuple)]
        for sub in cell._cells:
            checks += _stack_checks(sub, sub)
    else:
        checks.append((node, "_packed", cell._packed))
    return checks


def _cached_stack(cell):
    """The cached _Stack of `cell` if every fact it keys on (_stack_checks) still holds, else
    None."""
    stack = _STACKS.get(id(cell))
    if stack is None or stack.ref() is not cell:
        return None
    for node, attr, value in stack.checks:
        if getattr(cell if node is None else node, attr) is not value:
            return None
    return stack


class _Stack:
    """The layers one cell runs as in run_sequences: the packed weights, output size and kind of
    each C-computed cell it stacks, the input size of the first, the dtype, and the maker of its
    final state (_state_maker). Holds no reference to the cell itself, and no weights but the
    PackedCells, which a cached stack is valid only while the cells still hold (see
    _stack_checks): a changed weight is a new PackedCell, so a stale one is never run."""
    __slots__ = ("dtype", "input_size", "layers", "new_state", "checks", "ref")

    @classmethod
    def plan(cls, cell, I, dt):
        """The stack of `cell` for inputs of depth I, or None if a cell in it has no C kernel
        (then the slow path runs it). Builds unbuilt cells from the input depth, as a first call
        would. Cached for fastcells' own cells (_own_tree) of that dtype."""
        leaves = _native_leaves(cell)
        if leaves is None:
            return None
        stack = cls()
        stack.dtype, stack.input_size, stack.layers = dt, I, []
        for k, leaf in enumerate(leaves):
            if not leaf.built:
                leaf.build(I)
            elif leaf.input_size != I:
                where, got = (("inputs", f"depth {I}") if k == 0 else
                              ("cell", f"{I} (the output size of layer {k - 1})"))
                raise ValueError(f"{where}: expected input size {leaf.input_size} for layer {k} "
                                 f"({leaf.name!r}, built for it), got {got}")
            I = leaf.output_size
            stack.layers.append((_serialize.packed_cell(leaf), I, isinstance(leaf, LSTMBase)))
        stack.new_state = _state_maker(cell)
        if dt is getattr(cell, "_dtype", None) and (dt is F32 or dt is F64) and _own_tree(cell):
            stack.checks = _stack_checks(cell)
            key = id(cell)

            def forget(ref, key=key):
                if key in _STACKS and _STACKS[key].ref is ref:
                    del _STACKS[key]
            stack.ref = weakref.ref(cell, forget)
            _STACKS[key] = stack
        return stack


class _NativeRun:
    """One stack of layers for run_sequences, with its fresh output and final-state arrays."""
    __slots__ = ("layers", "outputs", "final_state")

    @classmethod
    def plan(cls, cell, x, dt, time_major, lengths, init, reverse, stack=None):
        """The layers for `cell` over `x` (`stack`: its _cached_stack, if known), or None if a
        cell in it has no C kernel (then the slow path runs it). Builds unbuilt cells from the
        input depth, as a first call would."""
        shape = x.shape
        T, B = (shape[0], shape[1]) if time_major else (shape[1], shape[0])
        if stack is None:
            stack = _cached_stack(cell)
        if stack is None or stack.input_size != x.shape[2] or stack.dtype is not dt:
            stack = _Stack.plan(cell, x.shape[2], dt)
            if stack is None:
                return None
        run = cls()
        run.final_state, finals = stack.new_state(cell, B, dt)
        starts = None if init is None else _leaf_states(cell, init)
        run.layers = []
        inp = x
        for k, (packed, P, lstm) in enumerate(stack.layers):
            cf, hf = finals[k]
            out = _empty((T, B, P) if time_major else (B, T, P), dt)
            layer = {"cell": packed, "x": inp, "out": out, "lengths": lengths,
                     "h0": None if starts is None else starts[k][1], "h_final": hf,
                     "reverse": reverse}
            if lstm:
                layer["c0"], layer["c_final"] = None if starts is None else starts[k][0], cf
            run.layers.append(layer)
            inp = out
        run.outputs = inp
        return run


# ---------------------------------------------------------------------------------------------
# The slow path: a Python time loop (cells without a C kernel)
# ---------------------------------------------------------------------------------------------

def _python_loop(cell, x, lengths, init, dt, time_major):
    """SLOW PATH, one Python cell call per step, for cells the C sequence driver cannot run
    (custom-callable activations, user RNNCell subclasses, stacks containing them).

    TF's masking: the cell runs on every row at every step up to max(sequence_length); for
    t >= lengths[b] output row b is zero and state row b keeps its previous value (np.where,
    so NaNs of finished rows are discarded, as TF). Returns (outputs, final_state) with outputs
    in the layout of `x` (nested if the cell's output is nested).
    """
    xs = x if time_major else x.swapaxes(0, 1)             # [T,B,I] view
    T, B = xs.shape[:2]
    state = init if init is not None else cell.zero_state(B, dt)
    state = map_structure(lambda a: np.array(a, copy=True), state)    # never hand back the caller's
    t_stop = T if lengths is None else (int(lengths.max()) if B else 0)
    outputs = None
    for t in range(t_stop):
        out, new_state = cell(xs[t], state)
        out_leaves = [np.asarray(o) for o in flatten(out)]
        if outputs is None:
            for o in out_leaves:
                if o.ndim < 1 or o.shape[0] != B:
                    raise ValueError(f"cell: its output has shape {o.shape}, expected [{B}, ...] "
                                     f"(batch {B} as inputs)")
            outputs = pack_as(out, [_zero_outputs(o.shape[1:], T, B, o.dtype, time_major)
                                    for o in out_leaves])
        olds, news = flatten(state), flatten(new_state)
        if len(olds) != len(news):
            raise ValueError(f"cell: returned a state with {len(news)} arrays, the state has "
                             f"{len(olds)} (state_size {cell.state_size!r})")
        if lengths is None:
            for dst, o in zip(flatten(outputs), out_leaves):
                _at(dst, t, time_major)[...] = o
            state = pack_as(new_state, [np.array(n, copy=True) for n in news])
            continue
        valid = t < lengths                                 # [B] bool
        for dst, o in zip(flatten(outputs), out_leaves):
            _at(dst, t, time_major)[valid] = o[valid]       # rows past their length stay zero
        state = pack_as(new_state, [
            np.where(valid.reshape((B,) + (1,) * (np.ndim(n) - 1)), n, o)
            for n, o in zip(news, olds)])
    if outputs is None:                                     # no step ran (every length 0)
        outputs = map_structure(lambda size: _zero_outputs((int(size),), T, B, dt, time_major),
                                cell.output_size)
    return outputs, state


def _zero_outputs(tail, T, B, dt, time_major):
    return np.zeros(((T, B) if time_major else (B, T)) + tuple(tail), dtype=dt)


def _at(a, t, time_major):
    return a[t] if time_major else a[:, t]
