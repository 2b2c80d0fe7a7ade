"""The concrete cells computed in C: BasicRNNCell, GRUCell (and CudnnCompatibleGRUCell),
BasicLSTMCell and LSTMCell. Their weights, gate blocks, C kind and oracle come from their
table in fastcells.cells._spec."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional, Union

import numpy as np

from fastcells._nest import LSTMStateTuple
from fastcells._validate import check_clip, check_int, check_real, describe, shape_text
from fastcells.cells._fused import RETRY, FusedCell, SingleStateCell
from fastcells.cells._initializers import check_initializer
from fastcells.cells._spec import GRU, GRU_RESET_AFTER, LSTM, RNN

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, DTypeLike

    # None (TF's default), a constant, or init(shape, dtype, rng) -> array
    InitializerArg = Union[float, Callable[..., Any], None]

_empty = np.empty
_ndarray = np.ndarray


class BasicRNNCell(SingleStateCell):
    """TF's ``BasicRNNCell``: ``h' = act([x, h] @ kernel + bias)``; output = state = h'.

    Weights: kernel [I+U, U] (glorot uniform), bias [U] (zeros). ``cell(x, h)`` with x [B, I]
    and h [B, U] returns ``(h', h')``, the same new array twice.

    Parameters
    ----------
    num_units : int
        U, the width of the state and the output.
    activation : str or callable, optional
        None (tanh), "tanh"/"relu"/"sigmoid"/"linear" or fastcells.nn.tanh/relu/sigmoid (fused
        in C), fastcells.nn.activation(name, alpha, beta) (fused), or any callable (NumPy path).
    reuse : optional
        Accepted and ignored.
    name : str, optional
        Default "basic_rnn_cell".
    dtype : dtype-like, optional
        None (float32) or float64.
    preact_clip : float, optional
        Keyword, beyond TF: clip the activation's input to [-preact_clip, preact_clip] (ONNX
        ``clip``).
    seed : int, SeedSequence or Generator, optional
        Keyword: seeds the ``numpy.random.Generator`` the initializers draw from.

    Examples
    --------
    >>> import numpy as np
    >>> import fastcells
    >>> cell = fastcells.BasicRNNCell(4, seed=0)
    >>> cell.set_weights({"kernel": np.full((3 + 4, 4), 0.1), "bias": np.zeros(4)})
    >>> x = np.ones((2, 3), np.float32)                           # [B, I]
    >>> h, state = cell(x, cell.zero_state(2))
    >>> h is state, h.shape
    (True, (2, 4))
    >>> print(np.round(h[0], 3))                                  # tanh(3 * 0.1)
    [0.291 0.291 0.291 0.291]
    """
    _SPEC = RNN

    def __init__(self, num_units: int, activation: Union[str, Any, None] = None,
                 reuse: Any = None, name: Optional[str] = None,
                 dtype: Optional[DTypeLike] = None, *,
                 preact_clip: Optional[float] = None, seed: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(num_units, activation, name, dtype, seed, kwargs)
        self._set_options(preact_clip=preact_clip)


class GRUCell(SingleStateCell):
    """TF's ``GRUCell`` (reset gate applied before the recurrent product).

    ``r, u = sig([x, h] @ gates/kernel + gates/bias)``,
    ``c = act([x, r*h] @ candidate/kernel + candidate/bias)``, ``h' = u*h + (1-u)*c``.
    Weights: gates/kernel [I+U, 2U] (blocks r, u), gates/bias [2U], candidate/kernel [I+U, U],
    candidate/bias [U]. The state is one array [B, U]; ``cell(x, h)`` returns ``(h', h')``.

    ``reset_after=True`` selects the other GRU: the reset gate scales the recurrent product,
    ``c = act(x @ Wi + bi + r * (h @ Wh + bh))`` — PyTorch's nn.GRU, Keras
    ``reset_after=True``, ONNX ``linear_before_reset=1``, cuDNN — with TF's
    ``CudnnCompatibleGRUCell`` weights: gates/kernel, gates/bias as above,
    candidate/input_projection/kernel [I, U], candidate/input_projection/bias [U],
    candidate/hidden_projection/kernel [U, U], candidate/hidden_projection/bias [U].
    The two forms differ for the same weights (r*(h@W) != (r*h)@W); neither converts exactly
    into the other.

    Parameters
    ----------
    num_units : int
        U.
    activation : str or callable, optional
        The candidate's activation, as BasicRNNCell's (None: tanh).
    reuse : optional
        Accepted and ignored.
    kernel_initializer : None, float or callable, optional
        None (glorot uniform), a number (a constant) or a callable ``init(shape, dtype, rng)``,
        for all kernels.
    bias_initializer : None, float or callable, optional
        Likewise for all biases (None: gates/bias ones, candidate biases zeros).
    name : str, optional
        Default "gru_cell".
    dtype : dtype-like, optional
        None (float32) or float64.
    reset_after : bool, optional
        Keyword: False (TF's GRUCell, the default) or True (the reset-after GRU above); a
        non-bool is a TypeError.
    gate_activation : str or callable, optional
        Keyword, beyond TF: replaces sig on the r and u gates (as BasicLSTMCell's).
    preact_clip : float, optional
        Keyword, beyond TF: clips the input of the gates and of the candidate's activation to
        [-preact_clip, preact_clip] (ONNX ``clip``).
    seed : int, SeedSequence or Generator, optional
        Keyword, as BasicRNNCell's.

    Examples
    --------
    >>> import numpy as np
    >>> import fastcells
    >>> cell = fastcells.GRUCell(4, seed=0)
    >>> h, state = cell(np.ones((2, 3), np.float32), cell.zero_state(2))
    >>> h is state, h.shape
    (True, (2, 4))
    >>> [w.shape for w in cell.weights]
    [(7, 8), (8,), (7, 4), (4,)]
    >>> fastcells.GRUCell(4, reset_after=True).weight_names[2]
    'candidate/input_projection/kernel'
    """
    _SPEC = GRU

    def __init__(self, num_units: int, activation: Union[str, Any, None] = None,
                 reuse: Any = None, kernel_initializer: InitializerArg = None,
                 bias_initializer: InitializerArg = None, name: Optional[str] = None,
                 dtype: Optional[DTypeLike] = None, *, reset_after: bool = False,
                 gate_activation: Union[str, Any, None] = None,
                 preact_clip: Optional[float] = None, seed: Any = None,
                 **kwargs: Any) -> None:
        if not isinstance(reset_after, bool):
            raise TypeError(f"reset_after: expected a bool, got {type(reset_after).__name__}")
        if reset_after:
            self._SPEC = GRU_RESET_AFTER
        super().__init__(num_units, activation, name, dtype, seed, kwargs)
        self._set_options(gate_activation=gate_activation, preact_clip=preact_clip)
        self._reset_after = reset_after
        self._kernel_init = check_initializer(kernel_initializer, "kernel_initializer")
        self._bias_init = check_initializer(bias_initializer, "bias_initializer")

    @property
    def reset_after(self):
        return self._reset_after

    def _initializer_for(self, w):
        if w.role == "kernel":
            return self._kernel_init or w.default, "kernel_initializer"
        return self._bias_init or w.default, "bias_initializer"


class CudnnCompatibleGRUCell(GRUCell):
    """TF 1.x ``tf.contrib.cudnn_rnn.CudnnCompatibleGRUCell``: the reset-after GRU.

    ``GRUCell(..., reset_after=True)`` under its own default name "cudnn_compatible_gru_cell";
    same weights and math as that form of GRUCell (tanh candidate, TF's default biases).

    Parameters
    ----------
    num_units : int
        U.
    reuse : optional
        Accepted and ignored.
    kernel_initializer : None, float or callable, optional
        As GRUCell's.
    name : str, optional
        Default "cudnn_compatible_gru_cell".
    dtype : dtype-like, optional
        None (float32) or float64.
    seed : int, SeedSequence or Generator, optional
        Keyword, as BasicRNNCell's.
    **kwargs
        Further GRUCell keywords (gate_activation, preact_clip).

    Examples
    --------
    >>> import numpy as np
    >>> import fastcells
    >>> cell = fastcells.CudnnCompatibleGRUCell(4, seed=0)
    >>> cell.name, cell.reset_after
    ('cudnn_compatible_gru_cell', True)
    >>> h, _ = cell(np.ones((2, 3), np.float32), cell.zero_state(2))
    >>> h.shape
    (2, 4)
    """

    def __init__(self, num_units: int, reuse: Any = None,
                 kernel_initializer: InitializerArg = None, name: Optional[str] = None,
                 dtype: Optional[DTypeLike] = None, *, seed: Any = None, **kwargs: Any) -> None:
        super().__init__(num_units, None, reuse, kernel_initializer, None,
                         name=name, dtype=dtype, reset_after=True, seed=seed, **kwargs)


class LSTMBase(FusedCell):
    """BasicLSTMCell and LSTMCell: state LSTMStateTuple(c [B,U], h [B,P]) or, with
    state_is_tuple=False, one array [B, U+P] = concat(c, h)."""
    _SPEC = LSTM

    def __init__(self, num_units, forget_bias, state_is_tuple, num_proj, activation, name, dtype,
                 seed, kwargs, options):
        """What both LSTM cells take: TF's common arguments; options: the keyword-only options
        beyond TF (gate_activation, output_activation, preact_clip, input_forget)."""
        super().__init__(num_units, activation, name, dtype, seed, kwargs)
        self._forget_bias = check_real(forget_bias, "forget_bias")
        self._state_is_tuple = bool(state_is_tuple)
        self._num_proj = None if num_proj is None else check_int(num_proj, "num_proj")
        self._P = self._num_proj or self._num_units
        self._set_options(*options)

    @property
    def _rec_size(self):
        return self._P

    @property
    def state_size(self):
        """LSTMStateTuple(U, P), or the int U + P with state_is_tuple=False."""
        if self._state_is_tuple:
            return LSTMStateTuple(self._num_units, self._P)
        return self._num_units + self._P

    @property
    def output_size(self):
        return self._P

    @property
    def forget_bias(self):
        return self._forget_bias

    @property
    def state_is_tuple(self):
        return self._state_is_tuple

    def __call__(self, inputs: ArrayLike, state: Any, scope: Any = None) -> Any:
        """One step: ``(h', LSTMStateTuple(c', h'))``, or ``(h', concat(c', h'))`` with
        state_is_tuple=False (h' is then a view of the new state).

        inputs: [B, I]; state: LSTMStateTuple(c [B, U], h [B, P]) (a plain (c, h) tuple also
        works) or [B, U+P]. Lists and integer arrays are converted; the caller's arrays are never
        modified. The first call builds the cell from ``inputs.shape[-1]``.
        """
        try:
            if self._state_is_tuple:
                return self._packed.tf_call(inputs, state, LSTMStateTuple)
            if type(state) is _ndarray:
                U = self._num_units
                s = _empty((inputs.shape[0], U + self._P), self._dtype)
                h = s[:, U:]
                self._packed.step(inputs, (state[:, :U], state[:, U:]), (s[:, :U], h))
                return h, s
        except RETRY:
            pass
        return self._call_checked(inputs, state)

    def step_(self, inputs: ArrayLike, state: Any) -> np.ndarray:
        """One step written into `state`'s arrays (writeable, the cell dtype, last axis
        contiguous): LSTMStateTuple(c [B,U], h [B,P]) or [B, U+P]. Returns the output, which is
        ``state.h`` itself (or the view ``state[:, U:]``)."""
        try:
            if self._state_is_tuple:
                return self._packed.tf_step_(inputs, state, LSTMStateTuple)
            if type(state) is _ndarray:
                U = self._num_units
                t = (state[:, :U], state[:, U:])
                self._packed.step(inputs, t, t)
                return t[1]
        except RETRY:
            pass
        return self._step_checked(inputs, state)

    def _state_arrays(self, state, B, inplace):
        U, P = self._num_units, self._P
        if self._state_is_tuple:
            if not isinstance(state, (tuple, list)) or len(state) != 2:
                raise ValueError(f"state: expected LSTMStateTuple(c={shape_text(B, U)}, "
                                 f"h={shape_text(B, P)}) (state_is_tuple=True), got "
                                 f"{describe(state)}")
            return (self._check_matrix(state[0], "state.c", B, U, inplace),
                    self._check_matrix(state[1], "state.h", B, P, inplace))
        if isinstance(state, tuple):
            raise ValueError(f"state: expected one array {shape_text(B, U + P)} = concat(c, h) "
                             f"(state_is_tuple=False), got {describe(state)}")
        s = self._check_matrix(state, "state", B, U + P, inplace)
        return (s[:, :U], s[:, U:])

    def _new_outputs(self, B):
        U, P = self._num_units, self._P
        if self._state_is_tuple:
            return (_empty((B, U), self._dtype), _empty((B, P), self._dtype))
        s = _empty((B, U + P), self._dtype)
        return (s[:, :U], s[:, U:])

    def _result(self, outs):
        c, h = outs
        if self._state_is_tuple:
            return h, LSTMStateTuple(c, h)
        return h, c.base if c.base is not None else np.concatenate(outs, axis=1)

    def _packed_options(self):
        return dict(super()._packed_options(), forget_bias=self._forget_bias)

    def _reference_options(self):
        options = super()._reference_options()
        if self._output_activation is not None:
            options["output_activation"] = self._out_act
        options["input_forget"] = self._input_forget
        return options

    def _reference_step(self, x, parts):
        w = self._weights
        c, h = parts
        return self._SPEC.oracle(
            x, c, h, w["kernel"], w["bias"], forget_bias=self._forget_bias, activation=self._act,
            w_i_diag=w.get("w_i_diag"), w_f_diag=w.get("w_f_diag"), w_o_diag=w.get("w_o_diag"),
            cell_clip=getattr(self, "_cell_clip", None), proj_kernel=w.get("projection/kernel"),
            proj_clip=getattr(self, "_proj_clip", None) if "projection/kernel" in w else None,
            **self._reference_options())


class BasicLSTMCell(LSTMBase):
    """TF's ``BasicLSTMCell``: ``i, j, f, o = split([x, h] @ kernel + bias)``.

    ``c' = c*sig(f + forget_bias) + sig(i)*act(j)``, ``h' = act(c')*sig(o)``.
    Weights: kernel [I+U, 4U] (blocks i, j, f, o; glorot uniform), bias [4U] (zeros).
    ``cell(x, state)`` returns ``(h', LSTMStateTuple(c', h'))``.

    Parameters
    ----------
    num_units : int
        U.
    forget_bias : float, optional
        A constant added to f at every step (not a weight); default 1.0.
    state_is_tuple : bool, optional
        True (LSTMStateTuple(c, h), the default) or False (one array concat(c, h), [B, 2U]).
    activation : str or callable, optional
        As BasicRNNCell's (None: tanh).
    reuse : optional
        Accepted and ignored.
    name : str, optional
        Default "basic_lstm_cell".
    dtype : dtype-like, optional
        None (float32) or float64.
    gate_activation, output_activation, preact_clip, input_forget, seed : optional
        Keyword-only options beyond TF (for ONNX and Keras models; the defaults are TF's
        cell): gate_activation replaces sig on i, f, o (Keras ``recurrent_activation``, ONNX
        f); output_activation replaces act on c' (ONNX h; None: the same as activation);
        preact_clip clips the input of every gate and of act(j) to [-preact_clip,
        preact_clip] (ONNX ``clip``; not c' before output_activation); input_forget (a bool):
        f = 1 - i (ONNX). Each activation may be a name,
        fastcells.nn.activation(name, alpha, beta) or a callable. seed: as BasicRNNCell's.

    Examples
    --------
    >>> import numpy as np
    >>> import fastcells
    >>> cell = fastcells.BasicLSTMCell(4, seed=0)
    >>> x = np.ones((2, 3), np.float32)                           # [B, I]
    >>> h, state = cell(x, cell.zero_state(2))
    >>> type(state).__name__, state.c.shape, h is state.h
    ('LSTMStateTuple', (2, 4), True)
    >>> [w.shape for w in cell.weights]
    [(7, 16), (16,)]
    >>> flat = fastcells.BasicLSTMCell(4, state_is_tuple=False, seed=0)
    >>> flat(x, flat.zero_state(2))[1].shape                      # concat(c, h)
    (2, 8)
    """

    def __init__(self, num_units: int, forget_bias: float = 1.0, state_is_tuple: bool = True,
                 activation: Union[str, Any, None] = None, reuse: Any = None,
                 name: Optional[str] = None, dtype: Optional[DTypeLike] = None, *,
                 gate_activation: Union[str, Any, None] = None,
                 output_activation: Union[str, Any, None] = None,
                 preact_clip: Optional[float] = None, input_forget: bool = False,
                 seed: Any = None, **kwargs: Any) -> None:
        super().__init__(num_units, forget_bias, state_is_tuple, None, activation, name, dtype,
                         seed, kwargs,
                         (gate_activation, output_activation, preact_clip, input_forget))


class LSTMCell(LSTMBase):
    """TF's ``LSTMCell``: BasicLSTMCell plus optional peepholes, cell clipping and a projection.

    Weights, in creation order: kernel [I+P, 4U], bias [4U], w_f_diag, w_i_diag, w_o_diag [U]
    (with peepholes), projection/kernel [U, P] (with num_proj). The state is
    LSTMStateTuple(c [B, U], h [B, P]) (P = num_proj or U); the output is h.

    Parameters
    ----------
    num_units : int
        U.
    use_peepholes : bool, optional
        Add ``w_i_diag*c`` and ``w_f_diag*c`` (old c) to the i and f gates and ``w_o_diag*c'``
        (new c) to o.
    cell_clip : float, optional
        Clip c' to [-cell_clip, cell_clip].
    initializer : None, float or callable, optional
        None (glorot uniform), a number or a callable ``init(shape, dtype, rng)``, for the
        kernel, the peepholes and the projection (the bias is always zeros, as TF).
    num_proj : int, optional
        P: the output is ``m = (sig(o)*act(c')) @ projection/kernel``.
    proj_clip : float, optional
        Clip m (ignored without num_proj, as TF).
    num_unit_shards, num_proj_shards : optional
        Accepted and ignored (sharded checkpoints load through set_weights).
    forget_bias, state_is_tuple, activation, reuse, dtype : optional
        As BasicLSTMCell's.
    name : str, optional
        Default "lstm_cell".
    gate_activation, output_activation, preact_clip, input_forget, seed : optional
        Keywords, as BasicLSTMCell's.

    Examples
    --------
    >>> import numpy as np
    >>> import fastcells
    >>> cell = fastcells.LSTMCell(4, use_peepholes=True, num_proj=2, seed=0)
    >>> h, state = cell(np.ones((2, 3), np.float32), cell.zero_state(2))
    >>> h.shape, state.c.shape, state.h.shape
    ((2, 2), (2, 4), (2, 2))
    >>> cell.weight_names
    ['kernel', 'bias', 'w_f_diag', 'w_i_diag', 'w_o_diag', 'projection/kernel']
    """

    def __init__(self, num_units: int, use_peepholes: bool = False,
                 cell_clip: Optional[float] = None, initializer: InitializerArg = None,
                 num_proj: Optional[int] = None, proj_clip: Optional[float] = None,
                 num_unit_shards: Any = None, num_proj_shards: Any = None,
                 forget_bias: float = 1.0, state_is_tuple: bool = True,
                 activation: Union[str, Any, None] = None, reuse: Any = None,
                 name: Optional[str] = None, dtype: Optional[DTypeLike] = None, *,
                 gate_activation: Union[str, Any, None] = None,
                 output_activation: Union[str, Any, None] = None,
                 preact_clip: Optional[float] = None, input_forget: bool = False,
                 seed: Any = None, **kwargs: Any) -> None:
        super().__init__(num_units, forget_bias, state_is_tuple, num_proj, activation, name,
                         dtype, seed, kwargs,
                         (gate_activation, output_activation, preact_clip, input_forget))
        self._use_peepholes = bool(use_peepholes)
        self._cell_clip = check_clip(cell_clip, "cell_clip")
        self._proj_clip = check_clip(proj_clip, "proj_clip")
        self._initializer = check_initializer(initializer, "initializer")

    @property
    def use_peepholes(self):
        return self._use_peepholes

    @property
    def num_proj(self):
        return self._num_proj

    @property
    def cell_clip(self):
        return self._cell_clip

    @property
    def proj_clip(self):
        return self._proj_clip

    def _has_weight(self, w):
        if w.when == "peepholes":
            return self._use_peepholes
        if w.when == "proj":
            return self._num_proj is not None
        return w.when is None

    def _initializer_for(self, w):
        if w.role == "bias":
            return w.default, "bias"          # always TF's zeros
        return self._initializer or w.default, "initializer"

    def _packed_options(self):
        return dict(super()._packed_options(), cell_clip=self._cell_clip,
                    proj_clip=self._proj_clip if self._num_proj is not None else None)
