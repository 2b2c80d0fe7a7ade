"""MultiRNNCell: TF's stack of cells, cell k's output feeding cell k+1."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, List, Sequence, Union
import warnings

import numpy as np

from fastcells import _override
from fastcells._validate import as_array, describe, parse_input_size, reraise
from fastcells.cells._base import RNNCell

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

_ndarray = np.ndarray
_CELL_K = re.compile(r"^cell_(\d+)$")


class MultiRNNCell(RNNCell):
    """TF's ``MultiRNNCell``: cell k's output is cell k+1's input.

    Weight names are ``cell_<k>/<cell name>/<weight>`` (TF's
    ``rnn/multi_rnn_cell/cell_0/basic_lstm_cell/kernel`` without the outer scopes). Passing
    the same cell twice shares its weights (as TF; a warning is issued). Its name is
    "multi_rnn_cell"; its dtype is the cells' (float32 if none has a dtype).

    Parameters
    ----------
    cells : list or tuple of RNN cells
        Non-empty, of one dtype (a TypeError otherwise; an empty one is a ValueError).
    state_is_tuple : bool, optional
        True (the state is a tuple with one state per cell) or False (one array, the cells'
        states concatenated; a ValueError if a cell has a nested state).

    Examples
    --------
    >>> import numpy as np
    >>> import fastcells
    >>> stack = fastcells.MultiRNNCell([fastcells.BasicLSTMCell(4, seed=0),
    ...                                 fastcells.GRUCell(2, seed=1)])
    >>> h, state = stack(np.ones((2, 3), np.float32), stack.zero_state(2))
    >>> h.shape, stack.state_size
    ((2, 2), (LSTMStateTuple(c=4, h=4), 2))
    >>> sorted(stack.get_weights())[:2]
    ['cell_0/basic_lstm_cell/bias', 'cell_0/basic_lstm_cell/kernel']
    """

    def __init__(self, cells: Sequence[Any], state_is_tuple: bool = True) -> None:
        if isinstance(cells, (str, bytes)) or not isinstance(cells, (list, tuple)):
            raise TypeError(f"cells: expected a list or tuple of RNN cells, got {describe(cells)}")
        if not cells:
            raise ValueError("cells: expected at least one cell, got an empty sequence")
        for k, cell in enumerate(cells):
            if not (hasattr(cell, "state_size") and hasattr(cell, "output_size")
                    and callable(cell)):
                raise TypeError(f"cells[{k}]: expected an RNN cell (with state_size, output_size "
                                f"and __call__), got {describe(cell)}")
        dtypes = [getattr(c, "dtype", None) for c in cells]
        known = {d for d in dtypes if d is not None}
        if len(known) > 1:
            raise TypeError(f"cells: expected cells of one dtype, got {[str(d) for d in dtypes]}")
        super().__init__(name="multi_rnn_cell", dtype=known.pop() if known else None)
        self._cells = tuple(cells)
        self._state_is_tuple = bool(state_is_tuple)
        if len({id(c) for c in cells}) != len(cells):
            warnings.warn("MultiRNNCell: the same cell object appears more than once; those "
                          "layers share weights (as TF)", stacklevel=2)
        if not self._state_is_tuple:
            for k, cell in enumerate(cells):
                if isinstance(cell.state_size, (tuple, list)):   # nested
                    raise ValueError(f"cells[{k}]: has a nested state ({cell.state_size!r}), "
                                     f"which state_is_tuple=False cannot hold; build the cell "
                                     f"with state_is_tuple=False or use state_is_tuple=True")
            sizes = [int(c.state_size) for c in cells]
            self._offsets = list(zip(np.cumsum([0] + sizes[:-1]).tolist(), sizes))

    @property
    def cells(self):
        return self._cells

    @property
    def state_is_tuple(self):
        return self._state_is_tuple

    @property
    def state_size(self):
        if self._state_is_tuple:
            return tuple(c.state_size for c in self._cells)
        return sum(int(c.state_size) for c in self._cells)

    @property
    def output_size(self):
        return self._cells[-1].output_size

    @property
    def built(self):
        return all(getattr(c, "built", True) for c in self._cells)

    @property
    def weights(self):
        seen, out = set(), []
        for cell in self._cells:
            if id(cell) not in seen:
                seen.add(id(cell))
                out.extend(getattr(cell, "weights", []))
        return out

    variables = weights

    def zero_state(self, batch_size: int, dtype: Any = None) -> Any:
        """A tuple of the cells' zero states, or one zero array with state_is_tuple=False."""
        if self._state_is_tuple:
            return tuple(c.zero_state(batch_size, dtype) for c in self._cells)
        return super().zero_state(batch_size, dtype)

    def build(self, input_size: Union[int, Sequence[int]]) -> None:
        """Builds every cell: cell 0 for `input_size`, cell k+1 for cell k's output size."""
        I = parse_input_size(input_size, "input_size")
        for cell in self._cells:
            if hasattr(cell, "build"):
                cell.build(I)
            I = cell.output_size

    def _split_state(self, state, inplace):
        n = len(self._cells)
        if self._state_is_tuple:
            if not isinstance(state, (tuple, list)) or len(state) != n:
                raise ValueError(f"state: expected a tuple of {n} states (one per cell, "
                                 f"state_size {self.state_size!r}), got {describe(state)}")
            return state
        if isinstance(state, tuple):
            raise ValueError(f"state: expected one array [batch, {self.state_size}] "
                             f"(state_is_tuple=False), got {describe(state)}")
        dt = self._dtype
        if inplace:
            if not isinstance(state, _ndarray):
                raise TypeError(f"state: step_ writes in place, so it must be a numpy array of "
                                f"dtype {dt}, got {describe(state)}")
            if state.dtype != dt:
                raise TypeError(f"state: expected dtype {dt}, got dtype {state.dtype}")
        else:
            state = as_array(state, "state", dt)
        if state.ndim != 2 or state.shape[1] != self.state_size:
            raise ValueError(f"state: expected shape [batch, {self.state_size}] (the cells' states "
                             f"concatenated), got shape {state.shape}")
        return [state[:, a:a + m] for a, m in self._offsets]

    def __call__(self, inputs: ArrayLike, state: Any, scope: Any = None) -> Any:
        """``(last output, tuple of new states)`` (or the new states concatenated)."""
        states = self._split_state(state, False)
        x, new = inputs, []
        for k, (cell, s) in enumerate(zip(self._cells, states)):
            try:
                x, s = cell(x, s)
            except (ValueError, TypeError) as e:
                reraise(e, f"MultiRNNCell cells[{k}] ({getattr(cell, 'name', '?')}): ")
            new.append(s)
        if self._state_is_tuple:
            return x, tuple(new)
        return x, np.concatenate(new, axis=1)

    def call(self, inputs, state):
        return _override.native_call(self, inputs, state)

    def step_(self, inputs: ArrayLike, state: Any) -> Any:
        """Each cell's step_ on its part of `state` (in place); returns the last output."""
        states = self._split_state(state, True)
        x = inputs
        for k, (cell, s) in enumerate(zip(self._cells, states)):
            try:
                x = cell.step_(x, s)
            except (ValueError, TypeError) as e:
                reraise(e, f"MultiRNNCell cells[{k}] ({getattr(cell, 'name', '?')}): ")
        return x

    # -- weights ---------------------------------------------------------------------------
    def _unique_cells(self):
        seen = set()
        for k, cell in enumerate(self._cells):
            if id(cell) not in seen:
                seen.add(id(cell))
                yield k, cell

    def get_weights(self) -> dict:
        """dict ``cell_<k>/<cell name>/<weight>`` -> copy, cells in order (a cell given twice
        appears under its first index only)."""
        out = {}
        for k, cell in self._unique_cells():
            for name, a in cell.get_weights().items():
                out[f"cell_{k}/{cell.name}/{name}"] = a
        return out

    def set_weights(self, weights: Union[dict, List[Any], tuple], strict: bool = True) -> None:
        """Sets every cell's weights from names such as ``cell_0/basic_lstm_cell/kernel`` or
        ``rnn/multi_rnn_cell/cell_0/gru_cell/gates/kernel:0`` (or a list in creation order).
        Unbuilt cells are built from their kernels' shapes. All cells are checked before any
        is changed only as far as names go; shapes are checked cell by cell."""
        unique = list(self._unique_cells())
        if isinstance(weights, (list, tuple)):
            counts = [len(c.weight_names) for _, c in unique]
            if len(weights) != sum(counts):
                raise ValueError(f"weights: expected {sum(counts)} arrays ({counts} per cell), "
                                 f"got {len(weights)}")
            groups, at = {}, 0
            for (k, cell), m in zip(unique, counts):
                groups[k] = list(weights[at:at + m])
                at += m
        elif hasattr(weights, "items"):
            first = {id(c): k for k, c in unique}
            groups = {k: {} for k, _ in unique}
            for key, value in weights.items():
                if not isinstance(key, str):
                    raise TypeError(f"weights: names must be str, got {describe(key)}")
                parts = key.split("/")
                idx = next((i for i, p in enumerate(parts) if _CELL_K.match(p)), None)
                if idx is None:
                    raise ValueError(f"weights: unknown name {key!r} for MultiRNNCell; expected "
                                     f"names such as 'cell_0/{self._cells[0].name}/...'")
                k = int(parts[idx][5:])
                if k >= len(self._cells):
                    raise ValueError(f"weights: {key!r} names cell {k}, but the MultiRNNCell has "
                                     f"{len(self._cells)} cells")
                if first[id(self._cells[k])] != k:
                    raise ValueError(f"weights: {key!r}: cell {k} is the same object as cell "
                                     f"{first[id(self._cells[k])]}; give its weights under "
                                     f"cell_{first[id(self._cells[k])]}")
                groups[k]["/".join(parts[idx + 1:])] = value
        else:
            raise TypeError(f"weights: expected a mapping name -> array or a list of arrays, "
                            f"got {describe(weights)}")
        for k, cell in unique:
            try:
                cell.set_weights(groups[k], strict=strict)
            except (ValueError, TypeError) as e:
                reraise(e, f"MultiRNNCell cells[{k}] ({cell.name}): ")

    def __repr__(self):
        return f"<MultiRNNCell cells={list(self._cells)!r}>"
