"""What the converters share: the gate-order table GATE_ORDER (each framework's layout, one
place), the builders of TF-layout weights and their inverse, the cell factory, the stack of
layers run as one sequence, input coercion and named activations."""
import numpy as np

from fastcells._validate import F32 as _F32
from fastcells._validate import F64 as _F64
from fastcells.activations import DEFAULT_ACTIVATION, FUSED
from fastcells.cells import BasicRNNCell, GRUCell, LSTMCell, LSTMStateTuple, MultiRNNCell
from fastcells.cells._fused import FusedCell
from fastcells.cells._kinds import LSTMBase
from fastcells.cells._spec import GRU as _TF_GRU
from fastcells.cells._spec import LSTM as _TF_LSTM
from fastcells.rnn import bidirectional_dynamic_rnn, dynamic_rnn


# ---------------------------------------------------------------------------------------------
# The facts: gate block orders, in TF's letters (LSTM: i input, j candidate, f forget, o output;
# GRU: r reset, u update (= z), c candidate)
# ---------------------------------------------------------------------------------------------

# TF's orders are the cells' own ("ijfo", "ru"; the GRU candidate has weights of its own)
GATE_ORDER = {
    "tf":    {"lstm": _TF_LSTM.gates, "gru": _TF_GRU.gates},
    "torch": {"lstm": "ifjo", "gru": "ruc"},
    "keras": {"lstm": "ifjo", "gru": "urc"},
    "onnx":  {"lstm": "iofj", "gru": "urc"},
}


def reorder_gates(a, src, dst, axis=-1):
    """Splits `a` into len(src) equal blocks along `axis` (named by the letters of `src`) and
    concatenates the blocks named by `dst`, in that order."""
    blocks = dict(zip(src, np.split(np.asarray(a), len(src), axis=axis)))
    return np.concatenate([blocks[g] for g in dst], axis=axis)


def gate_blocks(a, src, axis=-1):
    """{letter: block} for the len(src) equal blocks of `a` along `axis`."""
    return dict(zip(src, np.split(np.asarray(a), len(src), axis=axis)))


def float_dtype(dt, what):
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


def new_cell(kind, U, dtype, activation=None, proj=None, peepholes=False, reset_after=True,
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

def tf_lstm_weights(Wx, Wh, b, order, peep=None, proj=None):
    """TF LSTMCell weights from Wx [I,4U], Wh [H,4U], b [4U] whose gate blocks are in `order`;
    peep: (w_i, w_f, w_o) or None; proj: [U,P] or None."""
    tf = GATE_ORDER["tf"]["lstm"]
    w = {"kernel": reorder_gates(np.vstack([Wx, Wh]), order, tf),
         "bias": reorder_gates(b, order, tf)}
    if peep is not None:
        w["w_f_diag"], w["w_i_diag"], w["w_o_diag"] = peep[1], peep[0], peep[2]
    if proj is not None:
        w["projection/kernel"] = proj
    return w


def tf_rnn_weights(Wx, Wh, b):
    return {"kernel": np.vstack([Wx, Wh]), "bias": np.asarray(b)}


def tf_gru_weights(Wx, Wh, bx, bh, order, reset_after):
    """TF GRUCell weights (reset-before: GRUCell; reset-after: GRUCell(reset_after=True), the
    CudnnCompatibleGRUCell names) from Wx [I,3U], Wh [U,3U], bx, bh [3U], blocks in `order`."""
    X, H, BX, BH = (gate_blocks(a, order) for a in (Wx, Wh, bx, bh))
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


def split_tf_weights(cell):
    """The inverse: a fastcells cell -> (kind, dict of split arrays in TF's gate letters):
    Wx [I,n], Wh [H,n], b [n] (LSTM forget_bias folded into f), for GRU also the separate
    candidate parts. ValueError for options no other framework can express."""
    if not isinstance(cell, FusedCell):
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
    if isinstance(cell, LSTMBase):
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
            f = GATE_ORDER["tf"]["lstm"].index("f")
            b[f * U:(f + 1) * U] += np.asarray(cell.forget_bias, dtype=b.dtype)
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


def gru_framework_weights(w, order):
    """(Wx [I,3U], Wh [U,3U], bx [3U], bh [3U]) with the blocks in `order` (letters r, u, c)
    from split_tf_weights' GRU dict `w`: bx holds the folded gate biases and the candidate's
    input bias, bh is zero but for the candidate's recurrent bias (reset-after)."""
    tf_ru = GATE_ORDER["tf"]["gru"]
    X, H, BR = (gate_blocks(w[k], tf_ru) for k in ("Wx_ru", "Wh_ru", "b_ru"))
    X["c"], H["c"] = w["Wx_c"], w["Wh_c"]
    BX = dict(BR, c=w["bx_c"])
    zeros = np.zeros_like(w["bx_c"])
    BH = {"r": zeros, "u": zeros, "c": w["bh_c"]}
    return (np.hstack([X[g] for g in order]), np.hstack([H[g] for g in order]),
            np.concatenate([BX[g] for g in order]), np.concatenate([BH[g] for g in order]))


def activation_name(cell):
    """The cell's activation as a name (for the inverse maps)."""
    a = cell.activation
    if a is None:
        return DEFAULT_ACTIVATION
    if isinstance(a, str):
        return a
    name = getattr(a, "fused_kernel", None) or getattr(a, "__name__", None)
    if name in FUSED:
        return name
    raise ValueError(f"cell: activation {a!r} has no name the other frameworks know")


# ---------------------------------------------------------------------------------------------
# Running a stack: one layer list of (fw[, bw]) cells over a sequence
# ---------------------------------------------------------------------------------------------

def _lstm_state(c, h):
    return LSTMStateTuple(c, h)


class Stack:
    """Layers of cells, each (fw,) or (fw, bw), run as a whole sequence. States are handled as
    per-layer-per-direction lists of (h, c) (c None for RNN/GRU)."""

    def __init__(self, layers, dtype):
        self.layers = [tuple(cs) for cs in layers]
        self.dtype = dtype
        self.D = len(self.layers[0])
        self.lstm = isinstance(self.layers[0][0], LSTMBase)
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
        return _lstm_state(c, h) if isinstance(cell, LSTMBase) else h

    @staticmethod
    def _hc(cell, st):
        return (st.h, st.c) if isinstance(cell, LSTMBase) else (st, None)

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


def as_input(a, dt, name):
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


def activation_spec(name, params):
    """A fastcells activation for `name` with `params` ({alpha, beta}): the plain name when
    the cells take it directly, else ``fastcells.nn.activation(name, ...)``."""
    if not params and name in FUSED:
        return name
    from fastcells import nn
    make = getattr(nn, "activation", None)
    if make is None:
        raise NotImplementedError(f"activation {name!r}: this fastcells build has no "
                                  f"fastcells.nn.activation (needed for it)")
    return make(name, **params)
