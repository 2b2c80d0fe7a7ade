"""RNNCell, the base class of every cell (TF's ``RNNCell``)."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from fastcells import _override
from fastcells._nest import arrays_for_size, flatten
from fastcells._validate import check_dtype, check_int, check_kwargs, check_name, describe

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, DTypeLike

_ndarray = np.ndarray


class RNNCell:
    """Base class of the cells, as TF's ``RNNCell``.

    Subclass it and define ``state_size``, ``output_size`` and
    ``call(inputs, state) -> (output, new_state)`` (and ``build`` if the cell has weights) for a
    cell of your own that MultiRNNCell and the runners accept (they step it from Python).

    Parameters
    ----------
    trainable : bool, optional
        Accepted for TF compatibility and ignored.
    name : str, optional
        The cell's name; default the class name in snake case ("my_cell" for ``MyCell``).
    dtype : dtype-like, optional
        float32 (the default, ``None``) or float64: the dtype of the states and outputs.
    **kwargs
        TF's layer keywords trainable, _scope, _reuse and autocast are accepted and ignored;
        any other is a TypeError naming it.

    Examples
    --------
    >>> import numpy as np
    >>> import fastcells
    >>> class Accumulator(fastcells.RNNCell):
    ...     state_size = 3
    ...     output_size = 3
    ...     def call(self, inputs, state):
    ...         h = state + inputs
    ...         return h, h
    >>> x = np.ones((2, 4, 3), np.float32)                     # [B, T, I]
    >>> out, state = fastcells.nn.dynamic_rnn(Accumulator(), x, dtype=np.float32)
    >>> out.shape, state[0].tolist()
    ((2, 4, 3), [4.0, 4.0, 4.0])
    """
    __init_subclass__ = _override.init_subclass

    def __init__(self, trainable: bool = True, name: Optional[str] = None,
                 dtype: Optional[DTypeLike] = None, **kwargs: Any) -> None:
        check_kwargs(type(self), kwargs)
        self._name = check_name(name, snake_case(type(self).__name__))
        self._dtype = check_dtype(dtype)
        self._built = False

    # -- properties ------------------------------------------------------------------------
    @property
    def name(self):
        return self._name

    @property
    def dtype(self):
        """The numpy dtype of the weights, inputs, states and outputs."""
        return self._dtype

    @property
    def built(self):
        return self._built

    @property
    def state_size(self):
        raise NotImplementedError("state_size: define it in the subclass")

    @property
    def output_size(self):
        raise NotImplementedError("output_size: define it in the subclass")

    @property
    def weights(self):
        """The weights as a list of read-only arrays, in TF's creation order."""
        return []

    variables = weights

    @property
    def weight_names(self):
        """TF's variable names inside the cell's scope, in creation order."""
        return []

    def get_weights(self):
        return {}

    def set_weights(self, weights, strict=True):
        if weights:
            raise ValueError(f"weights: {type(self).__name__} {self._name!r} has no weights, "
                             f"got {list(weights)!r}")

    # -- calls -----------------------------------------------------------------------------
    def build(self, input_size):
        """Creates the weights (a no-op here)."""
        self._built = True

    def call(self, inputs, state):
        raise NotImplementedError("call: define it in the subclass")

    def __call__(self, inputs: ArrayLike, state: Any, scope: Any = None) -> Any:
        """One step: ``(output, new_state)``. Builds the cell on the first call."""
        if not self._built:
            self.build(np.shape(inputs))
        return self.call(inputs, state)

    def step_(self, inputs: ArrayLike, state: Any) -> np.ndarray:
        """One step written into `state`'s arrays (which must be writeable ndarrays); returns the
        output. The generic version computes ``self(inputs, state)`` and copies the new state
        into `state`; the fastcells cells do it without copies."""
        output, new_state = self(inputs, state)
        olds, news = flatten(state), flatten(new_state)
        if len(olds) != len(news):
            raise ValueError(f"state: expected {len(news)} arrays, got {len(olds)}")
        for k, (old, new) in enumerate(zip(olds, news)):
            if not isinstance(old, _ndarray) or not old.flags.writeable:
                raise ValueError(f"state: step_ writes the new state in place, so every state "
                                 f"array must be a writeable numpy array; got {describe(old)}")
            np.copyto(old, new)
        return output

    # -- states ----------------------------------------------------------------------------
    def zero_state(self, batch_size: int, dtype: Optional[DTypeLike] = None) -> Any:
        """Zeros of shape ``[batch_size, s]`` for every ``s`` in ``state_size``.

        Parameters
        ----------
        batch_size : int
            B, >= 0.
        dtype : dtype-like, optional
            None or the cell's dtype (another one is a TypeError).

        Returns
        -------
        state
            Arrays in the nesting of ``state_size`` (an LSTMStateTuple stays one). New arrays
            on every call (they may be used with ``step_``).
        """
        batch_size = check_int(batch_size, "batch_size", minimum=0)
        dt = self._zero_state_dtype(dtype)
        return arrays_for_size(self.state_size, batch_size, dt)

    def get_initial_state(self, inputs: Optional[ArrayLike] = None,
                          batch_size: Optional[int] = None,
                          dtype: Optional[DTypeLike] = None) -> Any:
        """As TF: the zero state for `inputs`' batch (or `batch_size`) and dtype."""
        if inputs is not None:
            shape = np.shape(inputs)
            if not shape:
                raise ValueError(f"inputs: expected an array [batch, depth], got shape {shape}")
            if batch_size is not None and check_int(batch_size, "batch_size", 0) != shape[0]:
                raise ValueError(f"batch_size: {batch_size} does not match the batch of "
                                 f"inputs, shape {shape}")
            batch_size = shape[0]
        if batch_size is None:
            raise ValueError("batch_size: give inputs or batch_size")
        return self.zero_state(batch_size, dtype)

    def _zero_state_dtype(self, dtype):
        if dtype is None:
            return self._dtype
        dt = check_dtype(dtype)
        if dt != self._dtype:
            raise TypeError(f"dtype: expected the cell's dtype {self._dtype} (or None), got {dt}")
        return dt

    def __repr__(self):
        return f"<{type(self).__name__} name={self._name!r} dtype={self._dtype}>"


def snake_case(name):
    """TF's layer-name rule: "BasicLSTMCell" -> "basic_lstm_cell"."""
    name = re.sub(r"(.)([A-Z][a-z0-9]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()
