"""PyTorch: from_torch (nn.LSTM / GRU / RNN and the *Cell classes on fastcells cells) and the
inverse map to_torch_state_dict. torch is imported only inside from_torch (to read the
parameters); the models run with NumPy alone."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple, Union

import numpy as np

from fastcells.cells import LSTMStateTuple, MultiRNNCell
from fastcells.convert._common import (GATE_ORDER, Stack, activation_name, as_input, float_dtype,
                                       gru_framework_weights, new_cell, reorder_gates,
                                       split_tf_weights, tf_gru_weights, tf_lstm_weights,
                                       tf_rnn_weights)
from fastcells.convert._quantized import (PRECISION_AUTO, check_precision, dequantize,
                                          with_precision)

if TYPE_CHECKING:
    from numpy.typing import ArrayLike


def _np(t):
    if isinstance(t, np.ndarray):
        return t
    return t.detach().cpu().numpy()


def _dequantized_params(module, name):
    """({parameter name: float32 array}, whether any was quantized) of a
    torch.ao.nn.quantized.dynamic LSTM / GRU: its qint8 weights dequantized ((q - zero_point)
    * scale in float32, per tensor or per channel), its float16 ones widened, biases as kept."""
    import torch
    packed = module._weight_bias()
    params, quantized = {}, False
    for pname, t in list(packed["weight"].items()) + list(packed["bias"].items()):
        if t is None:
            continue
        what = f"module ({name}) {pname}"
        if not t.is_quantized:
            params[pname] = _np(t).astype(np.float32)
            continue
        quantized = True
        q = _np(t.int_repr())
        if t.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            scale, zp, axis = np.float32(t.q_scale()), np.asarray(t.q_zero_point()), None
        elif t.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
            scale = _np(t.q_per_channel_scales()).astype(np.float32)
            zp, axis = _np(t.q_per_channel_zero_points()), t.q_per_channel_axis()
        else:
            raise ValueError(f"{what}: quantization scheme {t.qscheme()} is not read")
        info = np.iinfo(q.dtype)
        if np.any(zp < info.min) or np.any(zp > info.max):
            raise ValueError(f"{what}: zero point outside {q.dtype}")
        params[pname] = dequantize(q, scale, zp.astype(q.dtype), axis, what)
    return params, quantized


def _torch_layer_weights(kind, p, suffix, U, dtype, has_bias, proj):
    """TF-layout weights for one torch layer/direction from the parameter dict `p`."""
    Wih, Whh = _np(p["weight_ih" + suffix]).T, _np(p["weight_hh" + suffix]).T
    n = Wih.shape[1]
    if has_bias:
        bih, bhh = _np(p["bias_ih" + suffix]), _np(p["bias_hh" + suffix])
    else:
        bih = bhh = np.zeros(n, dtype)
    order = GATE_ORDER["torch"].get(kind)
    if kind == "lstm":
        P = _np(p["weight_hr" + suffix]).T if proj else None
        return tf_lstm_weights(Wih, Whh, bih + bhh, order, proj=P)
    if kind == "gru":
        return tf_gru_weights(Wih, Whh, bih, bhh, order, reset_after=True)
    return tf_rnn_weights(Wih, Whh, bih + bhh)


_TORCH_MODES = {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "rnn", "RNN_RELU": "rnn"}


def from_torch(module: Any, precision: Optional[str] = PRECISION_AUTO
               ) -> Union[TorchRNNModel, TorchCellModel]:
    """A fastcells model computing what the PyTorch module computes (in eval mode).

    module: ``torch.nn.LSTM``, ``GRU``, ``RNN`` (tanh or relu; any num_layers, bidirectional,
    batch_first, bias=False; LSTM proj_size) or ``torch.nn.LSTMCell``, ``GRUCell``,
    ``RNNCell``; float32 or float64 parameters (giving float32 or float64 cells). Also the
    dynamically quantized ``torch.ao.nn.quantized.dynamic.LSTM`` / ``GRU`` that
    ``torch.ao.quantization.quantize_dynamic`` makes of them: qint8 weights (per tensor or per
    channel) are dequantized, ``(q - zero_point) * scale`` in float32, float16 ones widened,
    and those float32 weights are the model's.

    precision: "auto" (the source's: "int8" for qint8 weights, None otherwise), None (float
    weights) or "int8" (``fastcells.quantize(model, "int8")``: fastcells' own int8 scheme on
    the float32 weights, the int8 values recomputed per column, not torch's). Against torch's
    own quantized run (x and h quantized per tensor to quint8) the outputs differ by about
    1e-2 relative L2 (tests/test_convert_quantized.py states the measured bound).

    Returns a callable with torch's signature and results, as NumPy arrays:
    ``model(input, hx=None)`` -> ``output, (h_n, c_n)`` (LSTM), ``output, h_n`` (GRU, RNN),
    ``(h', c')`` (LSTMCell), ``h'`` (GRUCell, RNNCell); unbatched inputs too. The sequence
    models also take ``sequence_length=`` (a [N] integer vector): the result of running a
    packed sequence, as ``pad_packed_sequence`` gives it (zero outputs past each length,
    h_n / c_n at each row's last step). Dropout between layers is an inference no-op.
    Mapping: LSTM -> LSTMCell(forget_bias=0, num_proj=proj_size), kernel =
    [W_ih; W_hh]^T with the gates i,f,g,o -> i,j,f,o, bias = b_ih + b_hh; GRU ->
    GRUCell(reset_after=True) (b_in, b_hn kept apart); RNN -> BasicRNNCell(tanh/relu).

    Parameters
    ----------
    module : torch.nn.Module
        One of the modules above (another is a TypeError; one without parameters a
        ValueError).
    precision : "auto", None or "int8", optional
        The precision the cells run in (see above).

    Returns
    -------
    TorchRNNModel or TorchCellModel
        The callable model; ``.cells`` lists the fastcells cells it runs.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from fastcells.convert import from_torch
    >>> _ = torch.manual_seed(0)
    >>> lstm = torch.nn.LSTM(3, 4, num_layers=2, batch_first=True)
    >>> model = from_torch(lstm)
    >>> out, (h_n, c_n) = model(np.ones((2, 5, 3), np.float32))   # (N, L, I)
    >>> out.shape, h_n.shape, c_n.shape
    ((2, 5, 4), (2, 2, 4), (2, 2, 4))
    """
    import torch  # noqa: F401  (only here: fastcells does not need torch)
    check_precision(precision)
    name = type(module).__name__
    quantized = False
    if callable(getattr(module, "_weight_bias", None)) and name in ("LSTM", "GRU"):
        params, quantized = _dequantized_params(module, name)   # torch.ao...dynamic
    else:
        params = dict(module.named_parameters())
    if not params:
        raise ValueError(f"module: {name} has no parameters")
    dt = float_dtype(_np(next(iter(params.values()))).dtype, f"module ({name}) parameters")
    if name in ("LSTMCell", "GRUCell", "RNNCell"):
        kind = {"LSTMCell": "lstm", "GRUCell": "gru", "RNNCell": "rnn"}[name]
        act = getattr(module, "nonlinearity", "tanh") if kind == "rnn" else None
        cell = new_cell(kind, module.hidden_size, dt, activation=act)
        cell.set_weights(_torch_layer_weights(kind, params, "", module.hidden_size, dt,
                                              module.bias, False))
        return with_precision(TorchCellModel(cell, kind), precision, False)
    mode = getattr(module, "mode", None)
    if mode not in _TORCH_MODES:
        raise TypeError(f"module: expected torch.nn.LSTM, GRU, RNN, LSTMCell, GRUCell or RNNCell,"
                        f" got {name} (mode {mode!r})")
    kind = _TORCH_MODES[mode]
    act = "relu" if mode == "RNN_RELU" else None
    U, L = module.hidden_size, module.num_layers
    D = 2 if module.bidirectional else 1
    proj = getattr(module, "proj_size", 0) or None
    layers = []
    for k in range(L):
        cs = []
        for d in range(D):
            suffix = f"_l{k}" + ("_reverse" if d else "")
            cell = new_cell(kind, U, dt, activation=act, proj=proj)
            cell.set_weights(_torch_layer_weights(kind, params, suffix, U, dt, module.bias,
                                                  proj))
            cs.append(cell)
        layers.append(cs)
    return with_precision(TorchRNNModel(Stack(layers, dt), kind, module.batch_first, U,
                                        proj or U), precision, quantized)


def _batched_input(input, dt, ndim, expected, batch_axis):
    """(x, unbatched): `input` in the model's dtype with `ndim` axes, or ndim - 1 (unbatched:
    then x gets a batch axis of 1 at `batch_axis`); ValueError naming `expected` otherwise."""
    x = as_input(input, dt, "input")
    if x.ndim not in (ndim - 1, ndim):
        raise ValueError(f"input: expected {expected}, got shape {x.shape}")
    unbatched = x.ndim == ndim - 1
    if unbatched:
        x = np.expand_dims(x, batch_axis)
    return x, unbatched


class TorchRNNModel:
    """``torch.nn.LSTM/GRU/RNN`` on fastcells: ``model(input, hx=None, sequence_length=None)``.

    input: (L, N, I), (N, L, I) with batch_first, or unbatched (L, I); hx: h_0
    (D*num_layers, N, H_out) for GRU/RNN, (h_0, c_0) for LSTM (c_0: (D*num_layers, N, H)),
    unbatched without the N axis. Returns ``output, h_n`` or ``output, (h_n, c_n)``.
    ``.cells``: the cells, layer-major then direction (torch's state index order).
    ``sequence_length=`` (a [N] integer vector) gives what a packed sequence gives (see
    from_torch).

    Parameters
    ----------
    stack : the layers' cells
        The per-layer, per-direction cells (built by from_torch).
    kind : str
        "lstm", "gru" or "rnn".
    batch_first : bool
        torch's batch_first.
    hidden_size, out_size : int
        H, and H_out (proj_size or H).

    Examples
    --------
    >>> import numpy as np, torch
    >>> from fastcells.convert import from_torch
    >>> model = from_torch(torch.nn.GRU(3, 4, bidirectional=True))
    >>> model
    <TorchRNNModel gru layers=1 directions=2 hidden=4 dtype=float32>
    >>> out, h_n = model(np.ones((5, 2, 3), np.float32))         # (L, N, I)
    >>> out.shape, h_n.shape
    ((5, 2, 8), (2, 2, 4))
    """

    def __init__(self, stack: Stack, kind: str, batch_first: bool, hidden_size: int,
                 out_size: int) -> None:
        self.stack, self.kind, self.batch_first = stack, kind, bool(batch_first)
        self.hidden_size, self.out_size = hidden_size, out_size
        self.num_layers, self.D = len(stack.layers), stack.D
        self.dtype = stack.dtype

    @property
    def cells(self):
        return self.stack.cells

    def __repr__(self):
        return (f"<TorchRNNModel {self.kind} layers={self.num_layers} directions={self.D} "
                f"hidden={self.hidden_size} dtype={self.dtype}>")

    def __call__(self, input: ArrayLike, hx: Any = None,
                 sequence_length: Optional[ArrayLike] = None) -> Tuple[np.ndarray, Any]:
        dt, n = self.dtype, self.num_layers * self.D
        x, unbatched = _batched_input(input, dt, 3, "a 3-D array (L, N, I) ((N, L, I) with "
                                      "batch_first) or an unbatched (L, I)",
                                      0 if self.batch_first else 1)
        B = x.shape[0] if self.batch_first else x.shape[1]
        init = None
        if hx is not None:
            if self.kind == "lstm":
                if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                    raise ValueError("hx: expected a tuple (h_0, c_0) for an LSTM")
                shapes = [(n, B, self.out_size), (n, B, self.hidden_size)]
                parts = [as_input(a, dt, nm) for a, nm in zip(hx, ("h_0", "c_0"))]
            else:
                shapes = [(n, B, self.hidden_size)]
                parts = [as_input(hx, dt, "h_0")]
            names = ("h_0", "c_0")
            for k, (a, s) in enumerate(zip(parts, shapes)):
                if unbatched:
                    if a.shape != (s[0], s[2]):
                        raise ValueError(f"{names[k]}: expected shape {(s[0], s[2])} for an "
                                         f"unbatched input, got {a.shape}")
                    parts[k] = a = a[:, None]
                if a.shape != s:
                    raise ValueError(f"{names[k]}: expected shape {s}, got {a.shape}")
            h0 = parts[0]
            c0 = parts[1] if self.kind == "lstm" else None
            init = [[(h0[k * self.D + d], None if c0 is None else c0[k * self.D + d])
                     for d in range(self.D)] for k in range(self.num_layers)]
        out, finals = self.stack.run(x, not self.batch_first, init, sequence_length)
        h_n = np.stack([h for fs in finals for h, _ in fs])
        c_n = np.stack([c for fs in finals for _, c in fs]) if self.kind == "lstm" else None
        if unbatched:
            out = out[:, 0] if not self.batch_first else out[0]
            h_n = h_n[:, 0]
            c_n = None if c_n is None else c_n[:, 0]
        if self.kind == "lstm":
            return out, (h_n, c_n)
        return out, h_n


class TorchCellModel:
    """``torch.nn.LSTMCell/GRUCell/RNNCell`` on fastcells: ``model(input, hx=None)``.

    input (N, I) or unbatched (I,); hx: h (RNN/GRU) or (h, c) (LSTM), None for zeros;
    returns h' or (h', c'). ``.cells``: [the cell].

    Parameters
    ----------
    cell : fastcells cell
        The cell that computes the module (built by from_torch).
    kind : str
        "lstm", "gru" or "rnn".

    Examples
    --------
    >>> import numpy as np, torch
    >>> from fastcells.convert import from_torch
    >>> model = from_torch(torch.nn.LSTMCell(3, 4))
    >>> h, c = model(np.ones((2, 3), np.float32))
    >>> type(model).__name__, h.shape, c.shape
    ('TorchCellModel', (2, 4), (2, 4))
    """

    def __init__(self, cell: Any, kind: str) -> None:
        self.cell, self.kind, self.dtype = cell, kind, cell.dtype

    @property
    def cells(self):
        return [self.cell]

    def __call__(self, input: ArrayLike, hx: Any = None) -> Any:
        dt, cell = self.dtype, self.cell
        x, unbatched = _batched_input(input, dt, 2, f"(N, {cell.input_size}) or unbatched "
                                      f"({cell.input_size},)", 0)
        B, U = x.shape[0], cell.num_units
        if hx is None:
            parts = [np.zeros((B, U), dt)] * (2 if self.kind == "lstm" else 1)
        else:
            raw = hx if self.kind == "lstm" else (hx,)
            if self.kind == "lstm" and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
                raise ValueError("hx: expected a tuple (h, c) for an LSTMCell")
            parts = [as_input(a, dt, nm) for a, nm in zip(raw, ("h", "c"))]
            for k, a in enumerate(parts):
                want = (U,) if unbatched else (B, U)
                if a.shape != want:
                    raise ValueError(f"hx{'[%d]' % k if self.kind == 'lstm' else ''}: "
                                     f"expected shape {want}, got {a.shape}")
                if unbatched:
                    parts[k] = a[None]
        x = np.ascontiguousarray(x)
        if self.kind == "lstm":
            h, st = cell(x, LSTMStateTuple(np.ascontiguousarray(parts[1]),
                                           np.ascontiguousarray(parts[0])))
            res = (st.h, st.c)
            return tuple(a[0] for a in res) if unbatched else res
        h, _ = cell(x, np.ascontiguousarray(parts[0]))
        return h[0] if unbatched else h


def to_torch_state_dict(cell_or_model: Any) -> Dict[str, np.ndarray]:
    """PyTorch parameters (a dict name -> NumPy array; wrap with ``torch.from_numpy`` to
    ``load_state_dict``) for a fastcells cell, a MultiRNNCell (an nn.LSTM/GRU/RNN of that many
    layers), or a model from from_torch (its layers and directions).

    BasicRNNCell -> RNNCell/nn.RNN (activation tanh or relu); BasicLSTMCell / LSTMCell ->
    LSTMCell/nn.LSTM (forget_bias folded into bias_ih; num_proj -> weight_hr); GRUCell with
    reset_after=True -> GRUCell/nn.GRU. bias_hh is zero except for the GRU candidate (b_hn).
    Not expressible in PyTorch (ValueError): peepholes, cell_clip, proj_clip, the reset-before
    GRUCell, activations other than tanh (relu too for RNN), the fastcells-only options.
    Names: a single cell gives the cell names (weight_ih, ...); a stack gives the module names
    (weight_ih_l0, ..._reverse).

    Parameters
    ----------
    cell_or_model : fastcells cell, MultiRNNCell, TorchRNNModel or TorchCellModel
        A built cell (or model).

    Returns
    -------
    dict of str to numpy.ndarray
        The parameters under PyTorch's names, in PyTorch's orientation and gate order.

    Examples
    --------
    >>> import fastcells
    >>> from fastcells.convert import to_torch_state_dict
    >>> cell = fastcells.BasicLSTMCell(4, seed=0)
    >>> cell.build(3)
    >>> {name: a.shape for name, a in to_torch_state_dict(cell).items()}
    {'weight_ih': (16, 3), 'weight_hh': (16, 4), 'bias_ih': (16,), 'bias_hh': (16,)}
    """
    if isinstance(cell_or_model, (TorchRNNModel,)):
        layers = cell_or_model.stack.layers
    elif isinstance(cell_or_model, TorchCellModel):
        return _torch_cell_params(cell_or_model.cell, "")
    elif isinstance(cell_or_model, MultiRNNCell):
        layers = [(c,) for c in cell_or_model.cells]
    elif hasattr(cell_or_model, "stack") and isinstance(cell_or_model.stack, Stack):
        layers = cell_or_model.stack.layers
    else:
        return _torch_cell_params(cell_or_model, "")
    out = {}
    for k, cs in enumerate(layers):
        for d, cell in enumerate(cs):
            out.update(_torch_cell_params(cell, f"_l{k}" + ("_reverse" if d else "")))
    return out


def _torch_cell_params(cell, suffix):
    kind, w = split_tf_weights(cell)
    act = activation_name(cell)
    if act != "tanh" and not (kind == "rnn" and act == "relu"):
        raise ValueError(f"cell: activation {act!r} is not available in PyTorch "
                         f"({'tanh or relu' if kind == 'rnn' else 'tanh only'} for {kind})")
    order = GATE_ORDER["torch"][kind] if kind != "rnn" else None
    if kind == "rnn":
        Wx, Wh, bx, bh = w["Wx"], w["Wh"], w["b"], np.zeros_like(w["b"])
    elif kind == "lstm":
        tf = GATE_ORDER["tf"]["lstm"]
        Wx, Wh = reorder_gates(w["Wx"], tf, order), reorder_gates(w["Wh"], tf, order)
        bx, bh = reorder_gates(w["b"], tf, order), np.zeros_like(w["b"])
    else:
        if not w["reset_after"]:
            raise ValueError(f"cell: {cell.name!r} is TF's reset-before GRUCell; PyTorch's GRU "
                             f"is reset-after (GRUCell(reset_after=True)); no exact conversion")
        Wx, Wh, bx, bh = gru_framework_weights(w, order)
    out = {"weight_ih" + suffix: np.ascontiguousarray(Wx.T),
           "weight_hh" + suffix: np.ascontiguousarray(Wh.T),
           "bias_ih" + suffix: bx, "bias_hh" + suffix: bh}
    if "proj" in w:
        out["weight_hr" + suffix] = np.ascontiguousarray(w["proj"].T)
    return out
