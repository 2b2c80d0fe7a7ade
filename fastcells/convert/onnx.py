"""ONNX: from_onnx (one LSTM / GRU / RNN node on fastcells cells). The 'onnx' package is
imported only to read the model; the model runs with NumPy alone."""
import os

import numpy as np

from fastcells.activations import DEFAULT_ACTIVATION, DEFAULT_GATE_ACTIVATION
from fastcells.cells import LSTMStateTuple
from fastcells.convert._common import (GATE_ORDER, activation_spec, as_input, float_dtype,
                                       new_cell, tf_gru_weights, tf_lstm_weights,
                                       tf_rnn_weights)
from fastcells.reference import reverse_sequence
from fastcells.rnn import bidirectional_dynamic_rnn, dynamic_rnn


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
        default = {"gate_activation": DEFAULT_GATE_ACTIVATION,
                   "activation": DEFAULT_ACTIVATION}.get(slot)
        if slot == "output_activation":
            if (name, params) == spec["activation"]:
                continue                      # fastcells: output activation = activation
        elif name == default and not params:
            continue
        kw[slot] = activation_spec(name, params)
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
    dt = float_dtype(W.dtype, "W")
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
            w = tf_lstm_weights(Wx, Wh, bx + bh, order, peep=peep)
            cell = new_cell(kind, U, dt, peepholes=peep is not None, preact_clip=clip,
                            input_forget=input_forget, **kw)
        elif kind == "gru":
            w = tf_gru_weights(Wx, Wh, bx, bh, order, reset_after=lbr)
            cell = new_cell(kind, U, dt, reset_after=lbr, preact_clip=clip, **kw)
        else:
            if input_forget:
                raise ValueError("input_forget: only for LSTM")
            w = tf_rnn_weights(Wx, Wh, bx + bh)
            cell = new_cell(kind, U, dt, preact_clip=clip, **kw)
        cell.set_weights(w)
        cells.append(cell)
    return OnnxRNNModel(op, cells, direction, layout, U, dt)


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
        x = as_input(X, dt, "X")
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
            a = as_input(a, dt, name)
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
            xr = reverse_sequence(x, lengths, tm)
            o, s = dynamic_rnn(self.cells[0], xr, lengths, init(0), dt, time_major=tm)
            outs, finals = [reverse_sequence(o, lengths, tm)], [s]
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
