"""Bring your own weights: PyTorch, Keras, ONNX and TF 1.x recurrent models on fastcells cells,
with NumPy alone at run time, giving the same numbers.

    from_torch(module)          torch.nn.LSTM / GRU / RNN and LSTMCell / GRUCell / RNNCell
    from_keras(layer)           Keras SimpleRNN / LSTM / GRU and Bidirectional (tf-keras or
    from_keras(weights=, config=)   Keras 3 layer objects, or plain weight lists + config dicts)
    from_onnx(model, node=None) ONNX LSTM / GRU / RNN nodes (path, bytes or ModelProto)
    load_tf_checkpoint(prefix)  a TF checkpoint (tensor bundle) as {name: array}, NumPy only
    to_torch_state_dict(cell)   the inverse maps: fastcells cells -> PyTorch / Keras weights
    to_keras_weights(cell)

Each from_* returns a callable object that takes NumPy arrays (anything ``np.asarray`` reads,
CPU torch tensors included) and returns exactly what the source framework returns, as NumPy
arrays of the same shapes; ``.cells`` lists the fastcells cells it runs (every run is a fused C
sequence call, never the NumPy reference). No framework is imported by fastcells itself: torch
only inside from_torch (to read the parameters), onnx only inside from_onnx; Keras layer
objects are read by duck typing (``get_config()``, ``get_weights()``).

All the framework facts (gate orders, orientation, bias folding) are in the tables below, one
place each; see FRAMEWORKS.md sections 3-6.
"""
import os
import struct

import numpy as np

from fastcells.cells import (BasicRNNCell, GRUCell, LSTMCell, LSTMStateTuple, MultiRNNCell,
                             _FusedCell, _LSTMBase)
from fastcells.rnn import bidirectional_dynamic_rnn, dynamic_rnn

__all__ = ["from_torch", "from_keras", "from_onnx", "load_tf_checkpoint", "to_torch_state_dict",
           "to_keras_weights"]

# ---------------------------------------------------------------------------------------------
# The facts: gate block orders, in TF's letters (LSTM: i input, j candidate, f forget, o output;
# GRU: r reset, u update (= z), c candidate)
# ---------------------------------------------------------------------------------------------

GATE_ORDER = {
    "tf":    {"lstm": "ijfo", "gru": "ru"},      # + GRU candidate kept in separate weights
    "torch": {"lstm": "ifjo", "gru": "ruc"},
    "keras": {"lstm": "ifjo", "gru": "urc"},
    "onnx":  {"lstm": "iofj", "gru": "urc"},
}
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


def _perm(a, src, dst, axis=-1):
    """Splits `a` into len(src) equal blocks along `axis` (named by the letters of `src`) and
    concatenates the blocks named by `dst`, in that order."""
    blocks = dict(zip(src, np.split(np.asarray(a), len(src), axis=axis)))
    return np.concatenate([blocks[g] for g in dst], axis=axis)


def _blocks(a, src, axis=-1):
    """{letter: block} for the len(src) equal blocks of `a` along `axis`."""
    return dict(zip(src, np.split(np.asarray(a), len(src), axis=axis)))


def _float_dtype(dt, what):
    dt = np.dtype(dt)
    if dt == _F64:
        return _F64
    if dt == _F32:
        return _F32
    raise TypeError(f"{what}: fastcells runs float32 or float64, got dtype {dt}")


def _opt_kwargs(gate_activation=None, output_activation=None, preact_clip=None,
                input_forget=False):
    """The cell options that TF lacks (fastcells extensions), passed only when not default so
    the plain cases run on any fastcells version."""
    kw = {}
    if gate_activation is not None:
        kw["gate_activation"] = gate_activation
    if output_activation is not None:
        kw["output_activation"] = output_activation
    if preact_clip is not None:
        kw["preact_clip"] = preact_clip
    if input_forget:
        kw["input_forget"] = True
    return kw


def _new_cell(kind, U, dtype, activation=None, proj=None, peepholes=False, reset_after=True,
              **options):
    """A fastcells cell for one layer and direction. kind: "rnn", "lstm", "gru"."""
    kw = _opt_kwargs(**options)
    try:
        if kind == "rnn":
            return BasicRNNCell(U, activation=activation, dtype=dtype, **kw)
        if kind == "lstm":
            return LSTMCell(U, use_peepholes=peepholes, num_proj=proj, forget_bias=0.0,
                            activation=activation, dtype=dtype, **kw)
        return GRUCell(U, activation=activation, dtype=dtype, reset_after=reset_after, **kw)
    except TypeError as e:
        if kw and "unexpected keyword" in str(e):
            raise NotImplementedError(
                f"this fastcells build lacks the cell options {sorted(kw)} that the model needs "
                f"({e})") from None
        raise


# -- building TF-layout weights from split matrices (x @ Wx + h @ Wh + bx + bh) -----------------

def _tf_lstm(Wx, Wh, b, order, peep=None, proj=None):
    """TF LSTMCell weights from Wx [I,4U], Wh [H,4U], b [4U] whose gate blocks are in `order`;
    peep: (w_i, w_f, w_o) or None; proj: [U,P] or None."""
    tf = GATE_ORDER["tf"]["lstm"]
    w = {"kernel": _perm(np.vstack([Wx, Wh]), order, tf), "bias": _perm(b, order, tf)}
    if peep is not None:
        w["w_f_diag"], w["w_i_diag"], w["w_o_diag"] = peep[1], peep[0], peep[2]
    if proj is not None:
        w["projection/kernel"] = proj
    return w


def _tf_rnn(Wx, Wh, b):
    return {"kernel": np.vstack([Wx, Wh]), "bias": np.asarray(b)}


def _tf_gru(Wx, Wh, bx, bh, order, reset_after):
    """TF GRUCell weights (reset-before: GRUCell; reset-after: GRUCell(reset_after=True), the
    CudnnCompatibleGRUCell names) from Wx [I,3U], Wh [U,3U], bx, bh [3U], blocks in `order`."""
    X, H, BX, BH = (_blocks(a, order) for a in (Wx, Wh, bx, bh))
    w = {"gates/kernel": np.vstack([np.hstack([X["r"], X["u"]]), np.hstack([H["r"], H["u"]])]),
         "gates/bias": np.concatenate([BX["r"] + BH["r"], BX["u"] + BH["u"]])}
    if reset_after:
        w["candidate/input_projection/kernel"] = X["c"]
        w["candidate/input_projection/bias"] = BX["c"]
        w["candidate/hidden_projection/kernel"] = H["c"]
        w["candidate/hidden_projection/bias"] = BH["c"]
    else:
        w["candidate/kernel"] = np.vstack([X["c"], H["c"]])
        w["candidate/bias"] = BX["c"] + BH["c"]
    return w


def _split_tf(cell):
    """The inverse: a fastcells cell -> (kind, dict of split arrays in TF's gate letters):
    Wx [I,n], Wh [H,n], b [n] (LSTM forget_bias folded into f), for GRU also the separate
    candidate parts. ValueError for options no other framework can express."""
    if not isinstance(cell, _FusedCell):
        raise TypeError(f"cell: expected a fastcells BasicRNNCell, BasicLSTMCell, LSTMCell or "
                        f"GRUCell, got {type(cell).__name__}")
    if not cell.built:
        raise ValueError(f"cell: {cell.name!r} is not built (no weights yet); call build() or "
                         f"set_weights() first")
    for opt in ("gate_activation", "output_activation", "preact_clip"):
        if getattr(cell, "_" + opt, None) is not None:
            raise ValueError(f"cell: {opt} has no counterpart in PyTorch/Keras weights")
    if getattr(cell, "_input_forget", False):
        raise ValueError("cell: input_forget has no counterpart in PyTorch/Keras weights")
    w, I = cell.get_weights(), cell.input_size
    if isinstance(cell, BasicRNNCell):
        k = w["kernel"]
        return "rnn", {"Wx": k[:I], "Wh": k[I:], "b": w["bias"]}
    if isinstance(cell, _LSTMBase):
        for opt, bad in (("use_peepholes", getattr(cell, "use_peepholes", False)),
                         ("cell_clip", getattr(cell, "cell_clip", None) is not None),
                         ("proj_clip", getattr(cell, "num_proj", None) is not None
                          and getattr(cell, "proj_clip", None) is not None)):
            if bad:
                raise ValueError(f"cell: {cell.name!r} uses {opt}, which PyTorch/Keras LSTMs "
                                 f"cannot express")
        k, b = w["kernel"], w["bias"].copy()
        U = cell.num_units
        if cell.forget_bias:
            b[2 * U:3 * U] += np.asarray(cell.forget_bias, dtype=b.dtype)
        out = {"Wx": k[:I], "Wh": k[I:], "b": b}
        if "projection/kernel" in w:
            out["proj"] = w["projection/kernel"]
        return "lstm", out
    if isinstance(cell, GRUCell):
        gk, gb = w["gates/kernel"], w["gates/bias"]
        out = {"Wx_ru": gk[:I], "Wh_ru": gk[I:], "b_ru": gb, "reset_after": cell.reset_after}
        if cell.reset_after:
            out.update(Wx_c=w["candidate/input_projection/kernel"],
                       Wh_c=w["candidate/hidden_projection/kernel"],
                       bx_c=w["candidate/input_projection/bias"],
                       bh_c=w["candidate/hidden_projection/bias"])
        else:
            ck = w["candidate/kernel"]
            out.update(Wx_c=ck[:I], Wh_c=ck[I:], bx_c=w["candidate/bias"],
                       bh_c=np.zeros_like(w["candidate/bias"]))
        return "gru", out
    raise TypeError(f"cell: unsupported cell type {type(cell).__name__}")


def _activation_name(cell):
    """The cell's activation as a name (for the inverse maps)."""
    a = cell.activation
    if a is None:
        return "tanh"
    if isinstance(a, str):
        return a
    name = getattr(a, "fused_kernel", None) or getattr(a, "__name__", None)
    if name in ("tanh", "relu", "sigmoid", "linear"):
        return name
    raise ValueError(f"cell: activation {a!r} has no name the other frameworks know")


# ---------------------------------------------------------------------------------------------
# Running a stack: one layer list of (fw[, bw]) cells over a sequence
# ---------------------------------------------------------------------------------------------

def _lstm_state(c, h):
    return LSTMStateTuple(c, h)


class _Stack:
    """Layers of cells, each (fw,) or (fw, bw), run as a whole sequence. States are handled as
    per-layer-per-direction lists of (h, c) (c None for RNN/GRU)."""

    def __init__(self, layers, dtype):
        self.layers = [tuple(cs) for cs in layers]
        self.dtype = dtype
        self.D = len(self.layers[0])
        self.lstm = isinstance(self.layers[0][0], _LSTMBase)
        self._multi = None
        if self.D == 1 and len(self.layers) > 1:
            self._multi = MultiRNNCell([cs[0] for cs in self.layers])

    @property
    def cells(self):
        return [c for cs in self.layers for c in cs]

    def _state(self, cell, hc):
        if hc is None:
            return None
        h, c = hc
        return _lstm_state(c, h) if isinstance(cell, _LSTMBase) else h

    @staticmethod
    def _hc(cell, st):
        return (st.h, st.c) if isinstance(cell, _LSTMBase) else (st, None)

    def run(self, x, time_major, init=None, lengths=None):
        """x: [T,B,I] (time_major) or [B,T,I]; init: None or [[(h, c)] * D] * L.
        Returns (outputs with the directions concatenated on the last axis, [[(h, c)]*D]*L)."""
        L, dt = len(self.layers), self.dtype
        if init is None:
            init = [[None] * self.D for _ in range(L)]
        if self.D == 1:
            cells = [cs[0] for cs in self.layers]
            if self._multi is not None:
                st0 = None
                if any(s[0] is not None for s in init):
                    st0 = tuple(self._state(c, s[0]) for c, s in zip(cells, init))
                out, st = dynamic_rnn(self._multi, x, lengths, st0, dt, time_major=time_major)
                return out, [[self._hc(c, s)] for c, s in zip(cells, st)]
            out, st = dynamic_rnn(cells[0], x, lengths, self._state(cells[0], init[0][0]), dt,
                                  time_major=time_major)
            return out, [[self._hc(cells[0], st)]]
        finals = []
        for (fw, bw), (s_fw, s_bw) in zip(self.layers, init):
            (o_fw, o_bw), (f_fw, f_bw) = bidirectional_dynamic_rnn(
                fw, bw, x, lengths, self._state(fw, s_fw), self._state(bw, s_bw), dt,
                time_major=time_major)
            x = np.concatenate([o_fw, o_bw], axis=-1)
            finals.append([self._hc(fw, f_fw), self._hc(bw, f_bw)])
        return x, finals


def _as_input(a, dt, name):
    """An input array (NumPy, list, or a CPU torch tensor) in the model's dtype."""
    if hasattr(a, "detach") and hasattr(a, "numpy"):
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if a.dtype != dt:
        if a.dtype.kind == "f" and a.dtype.itemsize != dt.itemsize and a.dtype in (_F32, _F64):
            raise TypeError(f"{name}: expected dtype {dt} (the model's dtype), got {a.dtype}")
        if a.dtype.kind not in "fiub":
            raise TypeError(f"{name}: expected a real array, got dtype {a.dtype}")
        a = a.astype(dt)
    return a


# ---------------------------------------------------------------------------------------------
# PyTorch
# ---------------------------------------------------------------------------------------------

def _np(t):
    return t.detach().cpu().numpy()


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
        return _tf_lstm(Wih, Whh, bih + bhh, order, proj=P)
    if kind == "gru":
        return _tf_gru(Wih, Whh, bih, bhh, order, reset_after=True)
    return _tf_rnn(Wih, Whh, bih + bhh)


_TORCH_MODES = {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "rnn", "RNN_RELU": "rnn"}


def from_torch(module):
    """A fastcells model computing what the PyTorch module computes (in eval mode).

    module: ``torch.nn.LSTM``, ``GRU``, ``RNN`` (tanh or relu; any num_layers, bidirectional,
    batch_first, bias=False; LSTM proj_size) or ``torch.nn.LSTMCell``, ``GRUCell``,
    ``RNNCell``; float32 or float64 parameters (giving float32 or float64 cells).

    Returns a callable with torch's signature and results, as NumPy arrays:
    ``model(input, hx=None)`` -> ``output, (h_n, c_n)`` (LSTM), ``output, h_n`` (GRU, RNN),
    ``(h', c')`` (LSTMCell), ``h'`` (GRUCell, RNNCell); unbatched inputs too. The sequence
    models also take ``sequence_length=`` (a [N] integer vector): the result of running a
    packed sequence, as ``pad_packed_sequence`` gives it (zero outputs past each length,
    h_n / c_n at each row's last step). Dropout between layers is an inference no-op.
    Mapping (FRAMEWORKS.md 6.2): LSTM -> LSTMCell(forget_bias=0, num_proj=proj_size), kernel =
    [W_ih; W_hh]^T with the gates i,f,g,o -> i,j,f,o, bias = b_ih + b_hh; GRU ->
    GRUCell(reset_after=True) (b_in, b_hn kept apart); RNN -> BasicRNNCell(tanh/relu).
    """
    import torch  # noqa: F401  (only here: fastcells does not need torch)
    name = type(module).__name__
    params = dict(module.named_parameters())
    if not params:
        raise ValueError(f"module: {name} has no parameters")
    dt = _float_dtype(_np(next(iter(params.values()))).dtype, f"module ({name}) parameters")
    if name in ("LSTMCell", "GRUCell", "RNNCell"):
        kind = {"LSTMCell": "lstm", "GRUCell": "gru", "RNNCell": "rnn"}[name]
        act = getattr(module, "nonlinearity", "tanh") if kind == "rnn" else None
        cell = _new_cell(kind, module.hidden_size, dt, activation=act)
        cell.set_weights(_torch_layer_weights(kind, params, "", module.hidden_size, dt,
                                              module.bias, False))
        return TorchCellModel(cell, kind)
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
            cell = _new_cell(kind, U, dt, activation=act, proj=proj)
            cell.set_weights(_torch_layer_weights(kind, params, suffix, U, dt, module.bias,
                                                  proj))
            cs.append(cell)
        layers.append(cs)
    return TorchRNNModel(_Stack(layers, dt), kind, module.batch_first, U, proj or U)


class TorchRNNModel:
    """``torch.nn.LSTM/GRU/RNN`` on fastcells: ``model(input, hx=None, sequence_length=None)``.

    input: (L, N, I), (N, L, I) with batch_first, or unbatched (L, I); hx: h_0
    (D*num_layers, N, H_out) for GRU/RNN, (h_0, c_0) for LSTM (c_0: (D*num_layers, N, H)),
    unbatched without the N axis. Returns ``output, h_n`` or ``output, (h_n, c_n)``.
    ``.cells``: the cells, layer-major then direction (torch's state index order).
    """

    def __init__(self, stack, kind, batch_first, hidden_size, out_size):
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

    def __call__(self, input, hx=None, sequence_length=None):
        dt, n = self.dtype, self.num_layers * self.D
        x = _as_input(input, dt, "input")
        if x.ndim not in (2, 3):
            raise ValueError(f"input: expected a 3-D array (L, N, I) ((N, L, I) with "
                             f"batch_first) or an unbatched (L, I), got shape {x.shape}")
        unbatched = x.ndim == 2
        if unbatched:
            x = x[:, None] if not self.batch_first else x[None]
        B = x.shape[0] if self.batch_first else x.shape[1]
        init = None
        if hx is not None:
            if self.kind == "lstm":
                if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                    raise ValueError("hx: expected a tuple (h_0, c_0) for an LSTM")
                shapes = [(n, B, self.out_size), (n, B, self.hidden_size)]
                parts = [_as_input(a, dt, nm) for a, nm in zip(hx, ("h_0", "c_0"))]
            else:
                shapes = [(n, B, self.hidden_size)]
                parts = [_as_input(hx, dt, "h_0")]
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
    """``torch.nn.LSTMCell/GRUCell/RNNCell`` on fastcells: ``model(input, hx=None)``; input
    (N, I) or unbatched (I,); hx: h (RNN/GRU) or (h, c) (LSTM); returns h' or (h', c')."""

    def __init__(self, cell, kind):
        self.cell, self.kind, self.dtype = cell, kind, cell.dtype

    @property
    def cells(self):
        return [self.cell]

    def __call__(self, input, hx=None):
        dt, cell = self.dtype, self.cell
        x = _as_input(input, dt, "input")
        if x.ndim not in (1, 2):
            raise ValueError(f"input: expected (N, {cell.input_size}) or unbatched "
                             f"({cell.input_size},), got shape {x.shape}")
        unbatched = x.ndim == 1
        if unbatched:
            x = x[None]
        B, U = x.shape[0], cell.num_units
        if hx is None:
            parts = [np.zeros((B, U), dt)] * (2 if self.kind == "lstm" else 1)
        else:
            raw = hx if self.kind == "lstm" else (hx,)
            if self.kind == "lstm" and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
                raise ValueError("hx: expected a tuple (h, c) for an LSTMCell")
            parts = [_as_input(a, dt, nm) for a, nm in zip(raw, ("h", "c"))]
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


def to_torch_state_dict(cell_or_model):
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
    """
    if isinstance(cell_or_model, (TorchRNNModel,)):
        layers = cell_or_model.stack.layers
    elif isinstance(cell_or_model, TorchCellModel):
        return _torch_cell_params(cell_or_model.cell, "")
    elif isinstance(cell_or_model, MultiRNNCell):
        layers = [(c,) for c in cell_or_model.cells]
    elif hasattr(cell_or_model, "stack") and isinstance(cell_or_model.stack, _Stack):
        layers = cell_or_model.stack.layers
    else:
        return _torch_cell_params(cell_or_model, "")
    out = {}
    for k, cs in enumerate(layers):
        for d, cell in enumerate(cs):
            out.update(_torch_cell_params(cell, f"_l{k}" + ("_reverse" if d else "")))
    return out


def _torch_cell_params(cell, suffix):
    kind, w = _split_tf(cell)
    act = _activation_name(cell)
    if act != "tanh" and not (kind == "rnn" and act == "relu"):
        raise ValueError(f"cell: activation {act!r} is not available in PyTorch "
                         f"({'tanh or relu' if kind == 'rnn' else 'tanh only'} for {kind})")
    order = GATE_ORDER["torch"][kind] if kind != "rnn" else None
    if kind == "rnn":
        Wx, Wh, bx, bh = w["Wx"], w["Wh"], w["b"], np.zeros_like(w["b"])
    elif kind == "lstm":
        tf = GATE_ORDER["tf"]["lstm"]
        Wx, Wh = _perm(w["Wx"], tf, order), _perm(w["Wh"], tf, order)
        bx, bh = _perm(w["b"], tf, order), np.zeros_like(w["b"])
    else:
        if not w["reset_after"]:
            raise ValueError(f"cell: {cell.name!r} is TF's reset-before GRUCell; PyTorch's GRU "
                             f"is reset-after (GRUCell(reset_after=True)); no exact conversion")
        U = cell.num_units
        ru = lambda a, ax: _blocks(a, "ru", axis=ax)  # noqa: E731
        X, H, BR = ru(w["Wx_ru"], 1), ru(w["Wh_ru"], 1), ru(w["b_ru"], 0)
        X["c"], H["c"] = w["Wx_c"], w["Wh_c"]
        BX = dict(BR, c=w["bx_c"])
        BH = {"r": np.zeros(U, BR["r"].dtype), "u": np.zeros(U, BR["r"].dtype), "c": w["bh_c"]}
        Wx = np.hstack([X[g] for g in order])
        Wh = np.hstack([H[g] for g in order])
        bx = np.concatenate([BX[g] for g in order])
        bh = np.concatenate([BH[g] for g in order])
    out = {"weight_ih" + suffix: np.ascontiguousarray(Wx.T),
           "weight_hh" + suffix: np.ascontiguousarray(Wh.T),
           "bias_ih" + suffix: bx, "bias_hh" + suffix: bh}
    if "proj" in w:
        out["weight_hr" + suffix] = np.ascontiguousarray(w["proj"].T)
    return out


# ---------------------------------------------------------------------------------------------
# TF checkpoints (tensor bundles), read with NumPy alone
# ---------------------------------------------------------------------------------------------

# TF DataType enum -> NumPy dtype (the subset read here; DT_STRING etc. are skipped)
_TF_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8,
              9: np.int64, 10: np.bool_, 17: np.uint16, 19: np.float16, 22: np.uint32,
              23: np.uint64}
_TF_DTYPE_NAMES = {7: "string", 8: "complex64", 14: "bfloat16", 18: "complex128",
                   20: "resource", 21: "variant"}
_TABLE_MAGIC = 0xdb4775248b80fb57
_FOOTER_LEN = 48            # two BlockHandles (<= 20 bytes each) padded to 40, then the magic
_BLOCK_TRAILER = 5          # 1 byte compression type, 4 bytes masked crc32c


class _Corrupt(Exception):
    """Internal: a parse error, turned into ValueError naming the file by the caller."""


def _varint(buf, pos):
    """(value, next position) of the base-128 varint at buf[pos]."""
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise _Corrupt("a varint runs past the end of its buffer")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _Corrupt("a varint is longer than 10 bytes")


def _proto_fields(buf):
    """The fields of a protobuf message: {field number: [values]} (varints as int, fixed32 and
    fixed64 as int, length-delimited as bytes)."""
    out, pos, n = {}, 0, len(buf)
    while pos < n:
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            if pos + 8 > n:
                raise _Corrupt("a fixed64 field runs past the end of its message")
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > n:
                raise _Corrupt("a length-delimited field runs past the end of its message")
            value, pos = bytes(buf[pos:pos + size]), pos + size
        elif wire == 5:
            if pos + 4 > n:
                raise _Corrupt("a fixed32 field runs past the end of its message")
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise _Corrupt(f"unsupported protobuf wire type {wire} (field {field})")
        out.setdefault(field, []).append(value)
    return out


# -- crc32c (Castagnoli), as TF stores it: masked ---------------------------------------------

def _crc_table():
    poly, table = 0x82F63B78, np.zeros(256, dtype=np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table[i] = c
    return table


_CRC_TABLE = None
_CRC_CHUNK = 1024


def _crc_raw(reg, data):
    """The crc32c register after feeding `data` (bytes) into register `reg` (pure Python)."""
    t = _CRC_TABLE
    for b in data:
        reg = int(t[(reg ^ b) & 0xFF]) ^ (reg >> 8)
    return reg


def _crc_zeros_matrix(n):
    """The images of the 32 register bits after feeding n zero bytes (the operator is linear)."""
    t = _CRC_TABLE
    regs = np.left_shift(np.uint32(1), np.arange(32, dtype=np.uint32))
    for _ in range(n):
        regs = t[regs & 0xFF] ^ (regs >> 8)
    return [int(r) for r in regs]


_CRC_SHIFT = None


def crc32c(data):
    """CRC-32C (Castagnoli) of `data` (bytes-like). Long inputs are processed as many chunks
    at once with NumPy and combined through the (linear) zero-feeding operator."""
    global _CRC_TABLE, _CRC_SHIFT
    if _CRC_TABLE is None:
        _CRC_TABLE = _crc_table()
    data = memoryview(data).cast("B")
    n, C = len(data), _CRC_CHUNK
    reg = 0xFFFFFFFF
    k = n // C if n >= 8 * C else 0
    if k:
        if _CRC_SHIFT is None:
            _CRC_SHIFT = _crc_zeros_matrix(C)
        chunks = np.frombuffer(data[:k * C], dtype=np.uint8).reshape(k, C)
        regs, t = np.zeros(k, dtype=np.uint32), _CRC_TABLE
        for i in range(C):
            regs = t[(regs ^ chunks[:, i]) & 0xFF] ^ (regs >> 8)
        shift = _CRC_SHIFT
        for a in regs.tolist():
            s, bit = 0, 0
            while reg:
                if reg & 1:
                    s ^= shift[bit]
                reg >>= 1
                bit += 1
            reg = s ^ a
    reg = _crc_raw(reg, data[k * C:])
    return reg ^ 0xFFFFFFFF


def _unmask_crc(masked):
    rot = (masked - 0xA282EAD8) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


# -- the SSTable of the .index file -----------------------------------------------------------

def _read_block(buf, offset, size, what, verify):
    """The contents of the table block at (offset, size), its trailer checked."""
    end = offset + size
    if offset < 0 or end + _BLOCK_TRAILER > len(buf):
        raise _Corrupt(f"the {what} block (offset {offset}, size {size}) runs past the end of "
                       f"the file ({len(buf)} bytes): truncated?")
    ctype = buf[end]
    if ctype != 0:
        kind = {1: "snappy"}.get(ctype, f"type {ctype}")
        raise _Corrupt(f"the {what} block is compressed ({kind}); only uncompressed index "
                       f"blocks (what TF writes) are supported")
    if verify:
        stored = struct.unpack_from("<I", buf, end + 1)[0]
        if crc32c(bytes(buf[offset:end + 1])) != _unmask_crc(stored):
            raise _Corrupt(f"the {what} block at offset {offset} fails its crc32c check")
    return buf[offset:end]


def _block_entries(block, what):
    """The (key, value) entries of one block (prefix-compressed keys; restart array ignored
    beyond its bounds check, entries are read in order)."""
    n = len(block)
    if n < 4:
        raise _Corrupt(f"the {what} block is too short ({n} bytes)")
    num_restarts = struct.unpack_from("<I", block, n - 4)[0]
    limit = n - 4 - 4 * num_restarts
    if limit < 0:
        raise _Corrupt(f"the {what} block claims {num_restarts} restart points, more than fit")
    pos, key, out = 0, b"", []
    while pos < limit:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        vlen, pos = _varint(block, pos)
        if shared > len(key) or pos + unshared + vlen > limit:
            raise _Corrupt(f"a malformed entry in the {what} block")
        key = key[:shared] + bytes(block[pos:pos + unshared])
        pos += unshared
        out.append((key, bytes(block[pos:pos + vlen])))
        pos += vlen
    return out


def _handle(buf, pos=0):
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return offset, size, pos


def _read_index(buf, verify):
    """{key bytes: value bytes} of the whole table."""
    if len(buf) < _FOOTER_LEN:
        raise _Corrupt(f"too short for a table ({len(buf)} bytes; the footer alone is "
                       f"{_FOOTER_LEN}): truncated?")
    footer = buf[len(buf) - _FOOTER_LEN:]
    magic = struct.unpack_from("<Q", footer, 40)[0]
    if magic != _TABLE_MAGIC:
        raise _Corrupt("no table magic number at the end: not a TF checkpoint index, or "
                       "truncated")
    _, _, pos = _handle(footer)                           # metaindex (unused)
    ioff, isize, _ = _handle(footer, pos)
    entries = {}
    for _, hv in _block_entries(_read_block(buf, ioff, isize, "index", verify), "index"):
        off, size, _ = _handle(hv)
        for k, v in _block_entries(_read_block(buf, off, size, "data", verify), "data"):
            entries[k] = v
    return entries


def _shape(msg):
    """A TensorShapeProto -> tuple of ints."""
    f = _proto_fields(msg)
    if f.get(3, [0])[0]:
        raise _Corrupt("a tensor of unknown rank")
    dims = []
    for d in f.get(2, []):
        size = _proto_fields(d).get(1, [0])[0]
        if size >= 1 << 63:
            size -= 1 << 64
        if size < 0:
            raise _Corrupt(f"a negative dimension {size}")
        dims.append(size)
    return tuple(dims)


def load_tf_checkpoint(prefix, scope=None, verify_crc=True):
    """Reads a TensorFlow checkpoint with NumPy alone: ``{variable name: array}``.

    prefix: the checkpoint prefix as TF names it (``.../model.ckpt-1000``; the ``.index`` file
    and ``.data-XXXXX-of-NNNNN`` shards sit next to it), a directory holding a ``checkpoint``
    file (its latest checkpoint is read), or the path of the ``.index`` file itself.
    Names come without ``:0`` (``rnn/basic_lstm_cell/kernel``), so
    ``cell.set_weights(load_tf_checkpoint(p))`` restores a TF rnn_cell model (set_weights
    accepts the full names), and a MultiRNNCell takes the ``.../multi_rnn_cell/cell_k/...``
    names. scope: keep only the names under that scope (``"bidirectional_rnn/fw"`` for the
    forward cell of a bidirectional model, whose backward cell has the same short names).

    Supported: the tensor-bundle format that ``tf.compat.v1.train.Saver`` (V2, the default)
    and ``tf.train.Checkpoint`` write: an SSTable index with uncompressed blocks (what TF
    writes), one or more data shards, little- or big-endian bundles; tensors of dtype float32,
    float64, float16, int8/16/32/64, uint8/16/32/64 and bool. String tensors (such as
    tf.train.Checkpoint's ``_CHECKPOINTABLE_OBJECT_GRAPH``), variants and resources are
    skipped; partitioned (sliced) tensors, complex and bfloat16 tensors are a ValueError.
    With verify_crc (the default) every index block and every tensor is checked against its
    stored (masked) crc32c. V1 checkpoints (one file, no .index) are not supported.
    Raises FileNotFoundError for missing files and ValueError naming the file and what is
    wrong for truncated or corrupt ones.
    """
    prefix = os.fspath(prefix)
    if os.path.isdir(prefix):
        state = os.path.join(prefix, "checkpoint")
        latest = None
        if os.path.exists(state):
            with open(state, encoding="utf-8") as fh:
                for line in fh:
                    if line.startswith("model_checkpoint_path:"):
                        latest = line.split(":", 1)[1].strip().strip('"')
                        break
        if latest is None:
            indexes = sorted(p for p in os.listdir(prefix) if p.endswith(".index"))
            if len(indexes) != 1:
                raise FileNotFoundError(f"prefix: {prefix!r} is a directory without a "
                                        f"'checkpoint' file and with {len(indexes)} .index "
                                        f"files; give the checkpoint prefix")
            latest = indexes[0][:-len(".index")]
        prefix = latest if os.path.isabs(latest) else os.path.join(prefix, latest)
    if prefix.endswith(".index"):
        prefix = prefix[:-len(".index")]
    index_path = prefix + ".index"
    if not os.path.exists(index_path):
        raise FileNotFoundError(f"prefix: no checkpoint index {index_path!r} (give the prefix "
                                f"TF prints, e.g. '/path/model.ckpt-1000')")
    with open(index_path, "rb") as fh:
        buf = fh.read()
    try:
        entries = _read_index(memoryview(buf), verify_crc)
        header = entries.pop(b"", None)
        if header is None:
            raise _Corrupt("no bundle header entry (the empty key)")
        hf = _proto_fields(header)
        num_shards = hf.get(1, [1])[0]
        big_endian = hf.get(2, [0])[0] == 1
        metas = []
        if scope is not None:
            head = scope.strip("/").encode() + b"/"
            entries = {k: v for k, v in entries.items() if k.startswith(head)}
        for key, value in entries.items():
            name = key.decode("utf-8", "replace")
            f = _proto_fields(value)
            if 7 in f:
                raise _Corrupt(f"tensor {name!r} is partitioned (saved in slices), which is "
                               f"not supported")
            code = f.get(1, [0])[0]
            if code not in _TF_DTYPES:
                if code in (7, 20, 21):          # string, resource, variant: not weights
                    continue
                raise _Corrupt(f"tensor {name!r} has dtype "
                               f"{_TF_DTYPE_NAMES.get(code, code)}, which is not supported")
            shape = _shape(f[2][0]) if 2 in f else ()
            shard, offset, size = (f.get(k, [0])[0] for k in (3, 4, 5))
            crc = f.get(6, [None])[0]
            dt = np.dtype(_TF_DTYPES[code]).newbyteorder(">" if big_endian else "<")
            want = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
            if size != want:
                raise _Corrupt(f"tensor {name!r}: {size} bytes stored for shape {shape} "
                               f"{dt.name} ({want} bytes expected)")
            if not 0 <= shard < num_shards:
                raise _Corrupt(f"tensor {name!r} names shard {shard} of {num_shards}")
            metas.append((name, dt, shape, shard, offset, size, crc))
    except _Corrupt as e:
        raise ValueError(f"{index_path}: {e}") from None
    out, shards = {}, {}
    for name, dt, shape, shard, offset, size, crc in metas:
        if shard not in shards:
            path = f"{prefix}.data-{shard:05d}-of-{num_shards:05d}"
            if not os.path.exists(path):
                raise FileNotFoundError(f"checkpoint data shard {path!r} is missing (tensor "
                                        f"{name!r} is stored there)")
            with open(path, "rb") as fh:
                shards[shard] = (path, fh.read())
        path, data = shards[shard]
        if offset + size > len(data):
            raise ValueError(f"{path}: tensor {name!r} (offset {offset}, {size} bytes) runs "
                             f"past the end of the file ({len(data)} bytes): truncated?")
        raw = data[offset:offset + size]
        if verify_crc and crc is not None and crc32c(raw) != _unmask_crc(crc):
            raise ValueError(f"{path}: tensor {name!r} fails its crc32c check (corrupt data)")
        a = np.frombuffer(raw, dtype=dt).reshape(shape)
        out[name] = a.astype(dt.newbyteorder("="))       # a writeable native-order copy
    return out


# ---------------------------------------------------------------------------------------------
# ONNX
# ---------------------------------------------------------------------------------------------

# lower-case ONNX activation name -> (fastcells activation name, [(parameter, default)] in the
# order ONNX consumes activation_alpha then activation_beta); None: not supported
_ONNX_ACTIVATIONS = {
    "tanh": ("tanh", ()), "sigmoid": ("sigmoid", ()), "relu": ("relu", ()),
    "affine": ("affine", (("alpha", 1.0), ("beta", 0.0))),
    "leakyrelu": ("leaky_relu", (("alpha", 0.01),)),
    "thresholdedrelu": ("thresholded_relu", (("alpha", 1.0),)),
    "scaledtanh": ("scaled_tanh", (("alpha", 1.0), ("beta", 1.0))),
    "hardsigmoid": ("hard_sigmoid", (("alpha", 0.2), ("beta", 0.5))),
    "elu": ("elu", (("alpha", 1.0),)),
    "softsign": ("softsign", ()),
    "softplus": None,
}
# per op: number of gate blocks G, the activation slots (ONNX f, g, h) -> cell argument
_ONNX_OPS = {"RNN": (1, ("activation",)),
             "GRU": (3, ("gate_activation", "activation")),
             "LSTM": (4, ("gate_activation", "activation", "output_activation"))}
_ONNX_DEFAULT_ACTS = {"RNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"],
                      "LSTM": ["Sigmoid", "Tanh", "Tanh"]}


def _activation_spec(name, params):
    """A fastcells activation for `name` with `params` ({alpha, beta}): the plain name when
    the cells take it directly, else ``fastcells.nn.activation(name, ...)``."""
    if not params and name in ("tanh", "sigmoid", "relu", "linear"):
        return name
    from fastcells import nn
    make = getattr(nn, "activation", None)
    if make is None:
        raise NotImplementedError(f"activation {name!r}: this fastcells build has no "
                                  f"fastcells.nn.activation (needed for it)")
    return make(name, **params)


def _onnx_activations(op, acts, alphas, betas, D):
    """[{cell argument: activation}] per direction, consuming alpha/beta values in order as
    onnxruntime does (only activations that take a parameter consume one)."""
    slots = _ONNX_OPS[op][1]
    n = len(slots)
    if acts is None:
        acts = _ONNX_DEFAULT_ACTS[op] * D
    elif len(acts) == n and D == 2:
        acts = list(acts) * 2
    if len(acts) != n * D:
        raise ValueError(f"activations: {op} with {D} direction(s) needs {n * D} activations "
                         f"({', '.join(slots)} per direction), got {len(acts)}: {acts}")
    alphas, betas = list(alphas or []), list(betas or [])
    out = []
    for d in range(D):
        spec = {}
        for slot, raw in zip(slots, acts[d * n:(d + 1) * n]):
            key = raw.lower()
            if key not in _ONNX_ACTIVATIONS:
                raise ValueError(f"activations: unknown ONNX activation {raw!r}; known: "
                                 f"{sorted(_ONNX_ACTIVATIONS)}")
            entry = _ONNX_ACTIVATIONS[key]
            if entry is None:
                raise ValueError(f"activations: {raw!r} is a valid ONNX activation that "
                                 f"fastcells does not support")
            name, params = entry
            values = {}
            for pname, default in params:
                pool = alphas if pname == "alpha" else betas
                values[pname] = float(pool.pop(0)) if pool else default
            spec[slot] = (name, values)
        out.append(spec)
    return out


def _onnx_cell_options(op, spec):
    """Cell keyword arguments from one direction's {slot: (name, params)}."""
    kw = {}
    for slot, (name, params) in spec.items():
        default = {"gate_activation": "sigmoid", "activation": "tanh"}.get(slot)
        if slot == "output_activation":
            if (name, params) == spec["activation"]:
                continue                      # fastcells: output activation = activation
        elif name == default and not params:
            continue
        kw[slot] = _activation_spec(name, params)
    return kw


def _load_onnx(model):
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise ImportError("from_onnx reads the model with the 'onnx' package, which is not "
                          "installed: pip install onnx") from None
    if isinstance(model, (bytes, bytearray, memoryview)):
        model = onnx.load_from_string(bytes(model))
    elif isinstance(model, (str, os.PathLike)):
        model = onnx.load(os.fspath(model))
    graph = getattr(model, "graph", model)
    if not hasattr(graph, "node") or not hasattr(graph, "initializer"):
        raise TypeError(f"model: expected a path, bytes, an onnx ModelProto or GraphProto, got "
                        f"{type(model).__name__}")
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and len(n.output) == 1:
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = numpy_helper.to_array(a.t)
    return onnx, graph, consts


def from_onnx(model, node=None):
    """A fastcells model computing one ONNX ``LSTM``, ``GRU`` or ``RNN`` node.

    model: a path, the serialized bytes, or an ``onnx.ModelProto`` (reading needs the ``onnx``
    package; running does not); node: None (the model's only recurrent node), a node name or
    output name, an index among the recurrent nodes, or the NodeProto.
    Weights W, R and the optional B and P come from initializers or Constant nodes.

    Supported: direction forward / reverse / bidirectional, layout 0 and 1, hidden_size,
    clip (every gate pre-activation clipped, as onnxruntime), input_forget, peepholes P
    (order i, o, f), linear_before_reset 0 (GRUCell) and 1 (GRUCell(reset_after=True)),
    activations Tanh, Sigmoid, Relu, Affine, LeakyRelu, ThresholdedRelu, ScaledTanh,
    HardSigmoid, Elu, Softsign with activation_alpha / activation_beta (consumed in order by
    the activations that take them, as onnxruntime). Softplus and unknown names raise.

    Returns a callable ``model(X, sequence_lens=None, initial_h=None, initial_c=None)`` ->
    ``Y, Y_h`` (``Y, Y_h, Y_c`` for LSTM) as ONNX defines them: layout 0: X [T,B,I],
    Y [T,D,B,U], states [D,B,U]; layout 1: X [B,T,I], Y [B,T,D,U], states [B,D,U]. Past each
    sequence_lens entry Y is zero and the states hold the last valid step.
    """
    onnx, graph, consts = _load_onnx(model)
    rec = [n for n in graph.node if n.op_type in _ONNX_OPS and n.domain in ("", "ai.onnx")]
    if node is None:
        if len(rec) != 1:
            raise ValueError(f"node: the model has {len(rec)} recurrent nodes "
                             f"({[n.name or n.output[0] for n in rec]}); say which")
        nd = rec[0]
    elif isinstance(node, int):
        if not -len(rec) <= node < len(rec):
            raise ValueError(f"node: index {node} out of range ({len(rec)} recurrent nodes)")
        nd = rec[node]
    elif isinstance(node, str):
        hits = [n for n in rec if n.name == node or node in n.output]
        if not hits:
            raise ValueError(f"node: no LSTM/GRU/RNN node named {node!r}; recurrent nodes: "
                             f"{[n.name or n.output[0] for n in rec]}")
        nd = hits[0]
    elif hasattr(node, "op_type"):
        nd = node
        if nd.op_type not in _ONNX_OPS:
            raise ValueError(f"node: expected an LSTM, GRU or RNN node, got {nd.op_type}")
    else:
        raise TypeError(f"node: expected None, a name, an index or a NodeProto, got "
                        f"{type(node).__name__}")
    op = nd.op_type
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in nd.attribute}
    dec = lambda v: v.decode() if isinstance(v, bytes) else v  # noqa: E731
    inputs = list(nd.input) + [""] * (8 - len(nd.input))

    def const(k, what):
        name = inputs[k]
        if not name:
            return None
        if name not in consts:
            raise ValueError(f"node {nd.name!r}: input {what} ({name!r}) is not an initializer "
                             f"or a Constant; fastcells needs the weights in the model")
        return consts[name]

    W, R, Bias = const(1, "W"), const(2, "R"), const(3, "B")
    Pp = const(7, "P") if op == "LSTM" else None
    if W is None or R is None:
        raise ValueError(f"node {nd.name!r}: the weights W and R are required")
    G = _ONNX_OPS[op][0]
    direction = dec(attrs.get("direction", "forward"))
    D = {"forward": 1, "reverse": 1, "bidirectional": 2}.get(direction)
    if D is None:
        raise ValueError(f"direction: expected forward, reverse or bidirectional, got "
                         f"{direction!r}")
    if W.ndim != 3 or R.ndim != 3 or W.shape[0] != D or R.shape[0] != D:
        raise ValueError(f"W, R: expected [{D}, {G}*hidden_size, input_size] and "
                         f"[{D}, {G}*hidden_size, hidden_size], got {W.shape} and {R.shape}")
    U = int(attrs.get("hidden_size", R.shape[2]))
    I = W.shape[2]
    if W.shape[1] != G * U or R.shape[1:] != (G * U, U):
        raise ValueError(f"W, R: expected [{D}, {G * U}, {I}] and [{D}, {G * U}, {U}] "
                         f"(hidden_size {U}), got {W.shape} and {R.shape}")
    if Bias is not None and Bias.shape != (D, 2 * G * U):
        raise ValueError(f"B: expected shape ({D}, {2 * G * U}), got {Bias.shape}")
    if Pp is not None and Pp.shape != (D, 3 * U):
        raise ValueError(f"P: expected shape ({D}, {3 * U}), got {Pp.shape}")
    dt = _float_dtype(W.dtype, "W")
    layout = int(attrs.get("layout", 0))
    if layout not in (0, 1):
        raise ValueError(f"layout: expected 0 or 1, got {layout}")
    clip = attrs.get("clip")
    input_forget = bool(attrs.get("input_forget", 0))
    lbr = bool(attrs.get("linear_before_reset", 0))
    acts = attrs.get("activations")
    acts = None if acts is None else [dec(a) for a in acts]
    specs = _onnx_activations(op, acts, attrs.get("activation_alpha"),
                              attrs.get("activation_beta"), D)
    kind = {"RNN": "rnn", "GRU": "gru", "LSTM": "lstm"}[op]
    order = GATE_ORDER["onnx"].get(kind)
    cells = []
    for d in range(D):
        Wx, Wh = W[d].T.astype(dt), R[d].T.astype(dt)
        bx, bh = ((Bias[d, :G * U], Bias[d, G * U:]) if Bias is not None
                  else (np.zeros(G * U, dt), np.zeros(G * U, dt)))
        kw = _onnx_cell_options(op, specs[d])
        if kind == "lstm":
            peep = None
            if Pp is not None:
                pi, po, pf = np.split(Pp[d], 3)
                peep = (pi, pf, po)
            w = _tf_lstm(Wx, Wh, bx + bh, order, peep=peep)
            cell = _new_cell(kind, U, dt, peepholes=peep is not None, preact_clip=clip,
                             input_forget=input_forget, **kw)
        elif kind == "gru":
            w = _tf_gru(Wx, Wh, bx, bh, order, reset_after=lbr)
            cell = _new_cell(kind, U, dt, reset_after=lbr, preact_clip=clip, **kw)
        else:
            if input_forget:
                raise ValueError("input_forget: only for LSTM")
            w = _tf_rnn(Wx, Wh, bx + bh)
            cell = _new_cell(kind, U, dt, preact_clip=clip, **kw)
        cell.set_weights(w)
        cells.append(cell)
    return OnnxRNNModel(op, cells, direction, layout, U, dt)


def _reverse_within(x, lengths, time_axis):
    """Each row reversed within its first lengths[b] steps (all when lengths is None)."""
    if lengths is None:
        return np.flip(x, axis=time_axis)
    T = x.shape[time_axis]
    t = np.arange(T)[:, None]                                        # [T, 1]
    idx = np.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)  # [T, B]
    if time_axis == 1:
        idx = idx.T
    return np.take_along_axis(x, idx[..., None], axis=time_axis)


class OnnxRNNModel:
    """An ONNX LSTM/GRU/RNN node on fastcells:
    ``model(X, sequence_lens=None, initial_h=None, initial_c=None)`` -> ``Y, Y_h[, Y_c]``.
    ``.cells``: one cell per direction."""

    def __init__(self, op, cells, direction, layout, hidden_size, dtype):
        self.op, self.cells, self.direction = op, list(cells), direction
        self.layout, self.hidden_size, self.dtype = layout, hidden_size, dtype
        self.D = len(cells)

    def __repr__(self):
        return (f"<OnnxRNNModel {self.op} direction={self.direction} layout={self.layout} "
                f"hidden_size={self.hidden_size} dtype={self.dtype}>")

    def __call__(self, X, sequence_lens=None, initial_h=None, initial_c=None):
        dt, D, U, lay = self.dtype, self.D, self.hidden_size, self.layout
        x = _as_input(X, dt, "X")
        if x.ndim != 3:
            raise ValueError(f"X: expected a 3-D array {'[T, B, I]' if lay == 0 else '[B, T, I]'}"
                             f" (layout {lay}), got shape {x.shape}")
        B = x.shape[1 - lay]
        tm = lay == 0
        lengths = None
        if sequence_lens is not None:
            lengths = np.asarray(sequence_lens)
            if lengths.shape != (B,) or lengths.dtype.kind not in "iu":
                raise ValueError(f"sequence_lens: expected an integer vector of shape ({B},), "
                                 f"got {lengths.dtype} {lengths.shape}")
            lengths = lengths.astype(np.int64)
        lstm = self.op == "LSTM"
        states = []
        for name, a in (("initial_h", initial_h), ("initial_c", initial_c)):
            if a is None:
                states.append(None)
                continue
            if name == "initial_c" and not lstm:
                raise ValueError(f"initial_c: only for LSTM, this node is {self.op}")
            a = _as_input(a, dt, name)
            want = (D, B, U) if lay == 0 else (B, D, U)
            if a.shape != want:
                raise ValueError(f"{name}: expected shape {want}, got {a.shape}")
            states.append(a if lay == 0 else a.transpose(1, 0, 2))
        h0, c0 = states

        def init(d):
            cell = self.cells[d]
            if h0 is None and c0 is None:
                return None
            h = h0[d] if h0 is not None else np.zeros((B, U), dt)
            if not lstm:
                return np.ascontiguousarray(h)
            c = c0[d] if c0 is not None else np.zeros((B, cell.num_units), dt)
            return LSTMStateTuple(np.ascontiguousarray(c), np.ascontiguousarray(h))

        if D == 2:
            (o_fw, o_bw), (s_fw, s_bw) = bidirectional_dynamic_rnn(
                self.cells[0], self.cells[1], x, lengths, init(0), init(1), dt, time_major=tm)
            outs, finals = [o_fw, o_bw], [s_fw, s_bw]
        elif self.direction == "reverse":
            t_axis = 0 if tm else 1
            xr = _reverse_within(x, lengths, t_axis)
            o, s = dynamic_rnn(self.cells[0], xr, lengths, init(0), dt, time_major=tm)
            outs, finals = [_reverse_within(o, lengths, t_axis)], [s]
        else:
            o, s = dynamic_rnn(self.cells[0], x, lengths, init(0), dt, time_major=tm)
            outs, finals = [o], [s]
        axis = 1 if lay == 0 else 2
        Y = np.stack(outs, axis=axis)
        s_axis = 0 if lay == 0 else 1
        if lstm:
            Y_h = np.stack([s.h for s in finals], axis=s_axis)
            Y_c = np.stack([s.c for s in finals], axis=s_axis)
            return Y, Y_h, Y_c
        return Y, np.stack(finals, axis=s_axis)


# ---------------------------------------------------------------------------------------------
# Keras
# ---------------------------------------------------------------------------------------------

_KERAS_KINDS = {"SimpleRNN": "rnn", "LSTM": "lstm", "GRU": "gru"}
# Keras activation names the cells take (None: the cell's default)
_KERAS_ACTS = {"tanh": "tanh", "sigmoid": "sigmoid", "relu": "relu", "linear": "linear",
               "hard_sigmoid": "hard_sigmoid"}


def _keras_major(layer):
    """2 for tf-keras / TF's built-in Keras 2, 3 for Keras 3 (what hard_sigmoid means)."""
    import sys
    top = type(layer).__module__.split(".")[0]
    if top != "keras":
        return 2
    version = getattr(sys.modules.get("keras"), "__version__", "3")
    return int(version.split(".")[0])


def _keras_act_name(value, argname):
    if isinstance(value, dict):                 # a serialized activation
        value = value.get("config", value.get("class_name"))
        if isinstance(value, dict):
            value = value.get("name")
    if value is None:
        value = "linear"
    if callable(value):
        value = getattr(value, "__name__", repr(value))
    if not isinstance(value, str) or value not in _KERAS_ACTS:
        raise ValueError(f"{argname}: Keras activation {value!r} is not supported (supported: "
                         f"{sorted(_KERAS_ACTS)})")
    return value


def _keras_act(name, keras_version, argname):
    if name == "hard_sigmoid":
        if keras_version not in (2, 3):
            raise ValueError(f"{argname}: 'hard_sigmoid' means clip(0.2x+0.5) in tf-keras / "
                             f"Keras 2 and clip(x/6+0.5) in Keras 3; pass keras_version=2 or 3")
        return _activation_spec("hard_sigmoid",
                                {"alpha": 0.2 if keras_version == 2 else 1.0 / 6, "beta": 0.5})
    return name


def _keras_unwrap(config, class_name):
    """(class name, inner config) from a serialized {"class_name", "config"} or a plain config."""
    if isinstance(config, dict) and "class_name" in config and isinstance(
            config.get("config"), dict):
        return config["class_name"], config["config"]
    if class_name is None:
        raise ValueError("config: a plain layer config needs class_name= ('SimpleRNN', 'LSTM', "
                         "'GRU' or 'Bidirectional'), or pass {'class_name': ..., 'config': ...}")
    return class_name, config


def _keras_layer_cell(class_name, cfg, weights, keras_version, dtype=None):
    """A fastcells cell + the run options for one Keras SimpleRNN / LSTM / GRU layer."""
    base = class_name[:-2] if class_name.endswith(("V1", "V2")) else class_name
    kind = _KERAS_KINDS.get(base)
    if kind is None:
        raise ValueError(f"class_name: expected SimpleRNN, LSTM, GRU or Bidirectional, got "
                         f"{class_name!r}")
    U = int(cfg["units"])
    use_bias = bool(cfg.get("use_bias", True))
    weights = [np.asarray(w) for w in weights]
    if len(weights) != (3 if use_bias else 2):
        raise ValueError(f"weights: a Keras {base} with use_bias={use_bias} has "
                         f"{3 if use_bias else 2} arrays [kernel, recurrent_kernel"
                         f"{', bias' if use_bias else ''}], got {len(weights)}")
    K, RK = weights[0], weights[1]
    dt = _float_dtype(dtype or K.dtype, "weights")
    G = {"rnn": 1, "lstm": 4, "gru": 3}[kind]
    if K.ndim != 2 or K.shape[1] != G * U or RK.shape != (U, G * U):
        raise ValueError(f"weights: expected kernel [input_dim, {G * U}] and recurrent_kernel "
                         f"[{U}, {G * U}] for {base}(units={U}), got {K.shape} and {RK.shape}")
    reset_after = kind == "gru" and bool(cfg.get("reset_after", True))
    if use_bias:
        b = weights[2]
        want = (2, G * U) if kind == "gru" and reset_after else (G * U,)
        if b.shape != want:
            raise ValueError(f"weights: expected bias of shape {want}, got {b.shape}")
    else:
        b = np.zeros((2, G * U) if kind == "gru" and reset_after else (G * U,), dt)
    act = _keras_act_name(cfg.get("activation", "tanh"), "activation")
    options = {"activation": None if act == "tanh" else _keras_act(act, keras_version,
                                                                  "activation")}
    if kind != "rnn":
        ract = _keras_act_name(cfg.get("recurrent_activation", "sigmoid"),
                               "recurrent_activation")
        if ract != "sigmoid":
            options["gate_activation"] = _keras_act(ract, keras_version, "recurrent_activation")
    order = GATE_ORDER["keras"].get(kind)
    if kind == "lstm":
        w = _tf_lstm(K, RK, b, order)
    elif kind == "gru":
        bx, bh = (b[0], b[1]) if reset_after else (b, np.zeros_like(b))
        w = _tf_gru(K, RK, bx, bh, order, reset_after)
    else:
        w = _tf_rnn(K, RK, b)
    cell = _new_cell(kind, U, dt, reset_after=reset_after, **options)
    cell.set_weights(w)
    run = {"return_sequences": bool(cfg.get("return_sequences", False)),
           "return_state": bool(cfg.get("return_state", False)),
           "go_backwards": bool(cfg.get("go_backwards", False)),
           "time_major": bool(cfg.get("time_major", False)),
           "zero_output_for_mask": bool(cfg.get("zero_output_for_mask", False))}
    return kind, cell, run


def from_keras(layer=None, *, weights=None, config=None, class_name=None, keras_version=None):
    """A fastcells model computing what a Keras recurrent layer computes (in inference).

    Either ``from_keras(layer)`` with a tf-keras or Keras 3 layer object (read through
    ``get_config()`` / ``get_weights()``; Keras is not imported by fastcells), or
    ``from_keras(weights=[...], config={...})`` without Keras: `weights` as ``get_weights()``
    gives them ([kernel, recurrent_kernel(, bias)], a Bidirectional's forward arrays then
    backward ones), `config` as ``get_config()`` gives it (then ``class_name=`` says the layer
    class) or serialized as ``{"class_name": ..., "config": ...}`` (as in model JSON).
    keras_version: 2 or 3, needed only for ``hard_sigmoid`` from a config (tf-keras / Keras 2:
    clip(0.2x + 0.5, 0, 1); Keras 3: clip(x/6 + 0.5, 0, 1)); a layer object tells it itself.

    Layers: SimpleRNN, LSTM, GRU (reset_after True or False; the v1 layers too) and
    Bidirectional around them (merge_mode concat, sum, mul, ave, None; a backward_layer of
    its own). Honoured: units, activation and recurrent_activation (tanh, sigmoid,
    hard_sigmoid, relu, linear), use_bias, return_sequences, return_state, go_backwards
    (outputs in processing order, as Keras), time_major (tf-keras), zero_output_for_mask.
    unit_forget_bias, initializers, regularizers, constraints and dropout do nothing at
    inference; stateful layers are run from the given (or zero) initial state.

    Returns a callable ``model(inputs, initial_state=None, mask=None)`` giving what the layer
    gives: the output ([B,T,U] with return_sequences, else [B,U]), or with return_state the
    list ``[output, h]`` (``[output, h, c]`` for LSTM; a Bidirectional's forward states then
    backward states). `mask` ([B,T] bool) follows Keras masking exactly: a masked step keeps
    the state and repeats the previous output (zeros with zero_output_for_mask).
    """
    if layer is not None:
        if weights is not None or config is not None:
            raise TypeError("from_keras: give a layer object, or weights= and config=, not both")
        name = type(layer).__name__
        version = _keras_major(layer)
        if name == "Bidirectional":
            fw, bw = layer.forward_layer, layer.backward_layer
            return KerasBidirectional(
                _keras_layer_cell(type(fw).__name__, fw.get_config(), fw.get_weights(),
                                  _keras_major(fw)),
                _keras_layer_cell(type(bw).__name__, bw.get_config(), bw.get_weights(),
                                  _keras_major(bw)),
                layer.get_config().get("merge_mode", "concat"), layer)
        if not hasattr(layer, "get_config") or not hasattr(layer, "get_weights"):
            raise TypeError(f"layer: expected a Keras layer (with get_config and get_weights), "
                            f"got {name}")
        return KerasRNN(*_keras_layer_cell(name, layer.get_config(), layer.get_weights(),
                                           version))
    if weights is None or config is None:
        raise TypeError("from_keras: give a layer object, or both weights= and config=")
    cls, cfg = _keras_unwrap(config, class_name)
    weights = list(weights)
    if cls == "Bidirectional":
        fcls, fcfg = _keras_unwrap(cfg["layer"], None)
        if cfg.get("backward_layer") is not None:
            bcls, bcfg = _keras_unwrap(cfg["backward_layer"], None)
        else:
            bcls, bcfg = fcls, dict(fcfg, go_backwards=not fcfg.get("go_backwards", False))
        n = len(weights) // 2
        return KerasBidirectional(
            _keras_layer_cell(fcls, fcfg, weights[:n], keras_version),
            _keras_layer_cell(bcls, bcfg, weights[n:], keras_version),
            cfg.get("merge_mode", "concat"), None)
    return KerasRNN(*_keras_layer_cell(cls, cfg, weights, keras_version))


def _keras_states(kind, st):
    return [st.h, st.c] if kind == "lstm" else [st]


def _keras_init(kind, cell, states, B, dt, what):
    """Keras initial_state ([h] or [h, c]) -> a fastcells state."""
    n = 2 if kind == "lstm" else 1
    if not isinstance(states, (list, tuple)):
        states = [states]
    if len(states) != n:
        raise ValueError(f"{what}: expected {n} arrays ({'[h, c]' if n == 2 else '[h]'}), got "
                         f"{len(states)}")
    arrs = [np.ascontiguousarray(_as_input(a, dt, what)) for a in states]
    for a in arrs:
        if a.shape != (B, cell.num_units):
            raise ValueError(f"{what}: expected arrays of shape {(B, cell.num_units)}, got "
                             f"{a.shape}")
    return LSTMStateTuple(arrs[1], arrs[0]) if kind == "lstm" else arrs[0]


def _prefix_lengths(mask):
    """[B] lengths if every row of the bool mask [B,T] is a run of Trues then Falses, else
    None."""
    lengths = mask.sum(axis=1)
    T = mask.shape[1]
    if np.array_equal(mask, np.arange(T)[None, :] < lengths[:, None]):
        return lengths.astype(np.int64)
    return None


def _keras_sequence(kind, cell, x, init, mask, go_backwards, zero_out, dt):
    """One Keras recurrent layer over x [B,T,I] (batch-major): (outputs [B,T,U] in processing
    order, final fastcells state), with Keras masking."""
    B, T = x.shape[:2]
    if mask is None:
        return dynamic_rnn(cell, x[:, ::-1] if go_backwards else x, None, init, dt)
    lengths = _prefix_lengths(mask)
    if lengths is not None:                  # right padding: one sequence call
        if go_backwards:
            xs = _reverse_within(x, lengths, 1)
        else:
            xs = x
        out, st = dynamic_rnn(cell, xs, lengths, init, dt)
        rows = np.arange(B)
        if go_backwards:                     # masked steps come first: shift right
            t = np.arange(T)[None, :]
            src = t - (T - lengths[:, None])
            valid = src >= 0
            out = np.where(valid[..., None], out[rows[:, None], np.clip(src, 0, T - 1)], 0)
        elif not zero_out:                   # repeat the last valid output
            last = out[rows, np.maximum(lengths - 1, 0)] * (lengths > 0)[:, None]
            out = np.where((np.arange(T)[None, :] < lengths[:, None])[..., None], out,
                           last[:, None, :]).astype(dt, copy=False)
        return out, st
    # any other mask: one fused cell call per step
    state = init if init is not None else cell.zero_state(B, dt)
    order = range(T - 1, -1, -1) if go_backwards else range(T)
    prev = np.zeros((B, cell.output_size), dt)
    outs = []
    for t in order:
        o, new = cell(np.ascontiguousarray(x[:, t]), state)
        m = mask[:, t][:, None]
        if kind == "lstm":
            state = LSTMStateTuple(np.where(m, new.c, state.c), np.where(m, new.h, state.h))
        else:
            state = np.where(m, new, state)
        o = np.where(m, o, 0 if zero_out else prev)
        outs.append(o)
        prev = o
    return np.stack(outs, axis=1), state


def _keras_inputs(inputs, mask, time_major, dt):
    x = _as_input(inputs, dt, "inputs")
    if x.ndim != 3:
        raise ValueError(f"inputs: expected a 3-D array "
                         f"{'[time, batch, features]' if time_major else '[batch, time, features]'}"
                         f", got shape {x.shape}")
    if time_major:
        x = x.swapaxes(0, 1)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != x.shape[:2]:
            raise ValueError(f"mask: expected shape {x.shape[:2]} ([batch, time]), got "
                             f"{mask.shape}")
        mask = mask.astype(bool)
    return x, mask


class KerasRNN:
    """A Keras SimpleRNN / LSTM / GRU layer on fastcells:
    ``model(inputs, initial_state=None, mask=None)``. ``.cell`` / ``.cells``: the cell."""

    def __init__(self, kind, cell, run):
        self.kind, self.cell, self.run = kind, cell, run
        self.dtype = cell.dtype

    @property
    def cells(self):
        return [self.cell]

    def __repr__(self):
        return f"<KerasRNN {self.kind} units={self.cell.num_units} {self.run}>"

    def __call__(self, inputs, initial_state=None, mask=None):
        r, dt = self.run, self.dtype
        x, mask = _keras_inputs(inputs, mask, r["time_major"], dt)
        init = None
        if initial_state is not None:
            init = _keras_init(self.kind, self.cell, initial_state, x.shape[0], dt,
                               "initial_state")
        out, st = _keras_sequence(self.kind, self.cell, x, init, mask, r["go_backwards"],
                                  r["zero_output_for_mask"], dt)
        if r["return_sequences"]:
            y = out.swapaxes(0, 1) if r["time_major"] else out
        else:
            y = out[:, -1]
        if r["return_state"]:
            return [y] + _keras_states(self.kind, st)
        return y


_MERGE = {"concat": lambda a, b: np.concatenate([a, b], axis=-1), "sum": lambda a, b: a + b,
          "mul": lambda a, b: a * b, "ave": lambda a, b: (a + b) / 2}


class KerasBidirectional:
    """A Keras Bidirectional layer on fastcells:
    ``model(inputs, initial_state=None, mask=None)``; ``.cells`` = [forward, backward]."""

    def __init__(self, fw, bw, merge_mode, layer):
        (self.kind, self.fw, self.rf), (kind_bw, self.bw, self.rb) = fw, bw
        self.kind_bw = kind_bw
        if merge_mode is not None and merge_mode not in _MERGE:
            raise ValueError(f"merge_mode: expected concat, sum, mul, ave or None, got "
                             f"{merge_mode!r}")
        self.merge_mode = merge_mode
        self.dtype = self.fw.dtype
        if self.bw.dtype != self.dtype:
            raise TypeError("weights: the forward and backward layers have different dtypes")

    @property
    def cells(self):
        return [self.fw, self.bw]

    def __call__(self, inputs, initial_state=None, mask=None):
        rf, rb, dt = self.rf, self.rb, self.dtype
        x, mask = _keras_inputs(inputs, mask, rf["time_major"], dt)
        B = x.shape[0]
        init_f = init_b = None
        if initial_state is not None:
            states = list(initial_state)
            nf = 2 if self.kind == "lstm" else 1
            nb = 2 if self.kind_bw == "lstm" else 1
            if len(states) != nf + nb:
                raise ValueError(f"initial_state: expected {nf + nb} arrays (forward states "
                                 f"then backward states), got {len(states)}")
            init_f = _keras_init(self.kind, self.fw, states[:nf], B, dt, "initial_state")
            init_b = _keras_init(self.kind_bw, self.bw, states[nf:], B, dt, "initial_state")
        seqs = rf["return_sequences"]
        if mask is None and not rf["go_backwards"] and rb["go_backwards"]:
            # the usual case: both directions in one native call, bw already in input order
            (o_f, o_b), (s_f, s_b) = bidirectional_dynamic_rnn(self.fw, self.bw, x, None,
                                                               init_f, init_b, dt)
            y_f = o_f if seqs else o_f[:, -1]
            y_b = o_b if seqs else o_b[:, 0]
        else:
            # Keras forces zero_output_for_mask = return_sequences on both sublayers
            o_f, s_f = _keras_sequence(self.kind, self.fw, x, init_f, mask, rf["go_backwards"],
                                       seqs, dt)
            o_b, s_b = _keras_sequence(self.kind_bw, self.bw, x, init_b, mask,
                                       rb["go_backwards"], rb["return_sequences"], dt)
            y_f = o_f if seqs else o_f[:, -1]
            y_b = o_b[:, ::-1] if rb["return_sequences"] else o_b[:, -1]
        if seqs and rf["time_major"]:
            y_f, y_b = y_f.swapaxes(0, 1), y_b.swapaxes(0, 1)
        y = [y_f, y_b] if self.merge_mode is None else _MERGE[self.merge_mode](y_f, y_b)
        if rf["return_state"]:
            states = _keras_states(self.kind, s_f) + _keras_states(self.kind_bw, s_b)
            return (y if isinstance(y, list) else [y]) + states
        return y


def to_keras_weights(cell):
    """Keras ``set_weights`` arrays for a fastcells cell (or a MultiRNNCell: the layers' lists
    concatenated, as a Sequential of those layers gives them; or a model from from_keras).

    BasicRNNCell -> SimpleRNN ``[kernel, recurrent_kernel, bias]``; BasicLSTMCell / LSTMCell ->
    LSTM (forget_bias folded into the bias; build the Keras layer with
    ``unit_forget_bias`` irrelevant, it is an initializer); GRUCell -> GRU(reset_after=False);
    GRUCell(reset_after=True) -> GRU(reset_after=True) (bias [2, 3U]). Give the Keras layer the
    cell's ``activation``. Not expressible (ValueError): peepholes, cell_clip, num_proj,
    the fastcells-only options.
    """
    if isinstance(cell, KerasRNN):
        return to_keras_weights(cell.cell)
    if isinstance(cell, KerasBidirectional):
        return to_keras_weights(cell.fw) + to_keras_weights(cell.bw)
    if isinstance(cell, MultiRNNCell):
        return [a for c in cell.cells for a in to_keras_weights(c)]
    kind, w = _split_tf(cell)
    if kind == "rnn":
        return [w["Wx"], w["Wh"], w["b"]]
    if kind == "lstm":
        if "proj" in w:
            raise ValueError(f"cell: {cell.name!r} has num_proj; Keras LSTM has no projection")
        tf, order = GATE_ORDER["tf"]["lstm"], GATE_ORDER["keras"]["lstm"]
        return [_perm(w["Wx"], tf, order), _perm(w["Wh"], tf, order), _perm(w["b"], tf, order)]
    order = GATE_ORDER["keras"]["gru"]
    X, H, BR = (_blocks(w[k], "ru") for k in ("Wx_ru", "Wh_ru", "b_ru"))
    X["c"], H["c"] = w["Wx_c"], w["Wh_c"]
    kernel = np.hstack([X[g] for g in order])
    rkernel = np.hstack([H[g] for g in order])
    if w["reset_after"]:
        zeros = np.zeros_like(w["bx_c"])
        bias = np.stack([np.concatenate([BR["u"], BR["r"], w["bx_c"]]),
                         np.concatenate([zeros, zeros, w["bh_c"]])])
    else:
        bias = np.concatenate([BR["u"], BR["r"], w["bx_c"]])
    return [kernel, rkernel, bias]
