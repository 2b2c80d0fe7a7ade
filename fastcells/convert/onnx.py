"""ONNX: from_onnx (one LSTM / GRU / RNN node, or onnxruntime's DynamicQuantizeLSTM, on fastcells
cells). The 'onnx' package is imported only to read the model; the model runs with NumPy alone."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Union

import numpy as np

from fastcells.activations import DEFAULT_ACTIVATION, DEFAULT_GATE_ACTIVATION
from fastcells.cells import LSTMStateTuple
from fastcells.convert._common import (GATE_ORDER, activation_spec, as_input, new_cell,
                                       tf_gru_weights, tf_lstm_weights, tf_rnn_weights)
from fastcells.convert._onnx_graph import (Folder, NotConstant, OnnxError, Scope, attribute,
                                           find_recurrent, node_label, total_elements)
from fastcells.convert._quantized import (PRECISION_AUTO, check_precision, dequantize,
                                          with_precision)
from fastcells.reference import reverse_sequence
from fastcells.rnn import bidirectional_dynamic_rnn, dynamic_rnn

if TYPE_CHECKING:
    from numpy.typing import ArrayLike


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
    """(onnx module, GraphProto, default-domain opset, the name of the source for messages)."""
    try:
        import onnx
    except ImportError:
        raise ImportError("from_onnx reads the model with the 'onnx' package, which is not "
                          "installed: pip install onnx") from None
    source = "the model"
    if isinstance(model, (bytes, bytearray, memoryview)):
        try:
            model = onnx.load_from_string(bytes(model))
        except Exception as e:                   # protobuf's DecodeError and kin
            raise OnnxError(f"the model: not a readable ONNX protobuf ({e})") from None
    elif isinstance(model, (str, os.PathLike)):
        source = os.fspath(model)
        if not os.path.isfile(source):
            raise FileNotFoundError(f"model: no such file {source!r}")
        try:
            model = onnx.load(source)
        except Exception as e:                   # DecodeError, missing external data, ...
            raise OnnxError(f"{source}: not a readable ONNX model ({type(e).__name__}: "
                            f"{e})") from None
    graph = getattr(model, "graph", model)
    if not hasattr(graph, "node") or not hasattr(graph, "initializer"):
        raise TypeError(f"model: expected a path, bytes, an onnx ModelProto or GraphProto, got "
                        f"{type(model).__name__}")
    opset = None
    for imp in getattr(model, "opset_import", ()):
        if imp.domain in ("", "ai.onnx"):
            opset = int(imp.version)
    if opset is None:                            # a bare GraphProto: the newest semantics
        opset = int(onnx.defs.onnx_opset_version())
    return onnx, graph, opset, source


def _pick_node(found, node, graph, source):
    """(path, NodeProto, Scope) of the recurrent node the caller asked for."""
    paths = [p for p, _, _ in found]
    if node is None:
        if len(found) != 1:
            raise OnnxError(f"{source}: node: the model has {len(found)} recurrent nodes "
                            f"({paths}); say which (a path, a name, an output name or an "
                            f"index)")
        return found[0]
    if isinstance(node, (int, np.integer)) and not isinstance(node, bool):
        if not -len(found) <= node < len(found):
            raise OnnxError(f"{source}: node: index {node} out of range ({len(found)} "
                            f"recurrent nodes: {paths})")
        return found[int(node)]
    if isinstance(node, str):
        hits = [f for f in found if f[0] == node]
        if not hits:
            hits = [f for f in found if f[1].name == node or node in f[1].output]
        if len(hits) == 1:
            return hits[0]
        if not hits:
            raise OnnxError(f"{source}: node: no LSTM/GRU/RNN node named {node!r}; recurrent "
                            f"nodes: {paths}")
        raise OnnxError(f"{source}: node: {len(hits)} recurrent nodes are named {node!r}: "
                        f"{[p for p, _, _ in hits]}; give the path")
    if hasattr(node, "op_type"):
        for f in found:
            if f[1] is node:
                return f
        for f in found:
            if f[1] == node:
                return f
        if node.op_type not in _ONNX_OPS and node.op_type != _QUANTIZED_LSTM:
            raise OnnxError(f"{source}: node: expected an LSTM, GRU, RNN or "
                            f"{_QUANTIZED_LSTM} node, got {node.op_type}")
        return node_label(node), node, Scope(graph, None, "")
    raise TypeError(f"node: expected None, a path, a name, an index or a NodeProto, got "
                    f"{type(node).__name__}")


# the node's inputs by position, as ONNX numbers them (LSTM has initial_c and P too; the
# com.microsoft DynamicQuantizeLSTM the quantization parameters of its int8 / uint8 W and R)
_INPUTS = ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P",
           "W_scale", "W_zero_point", "R_scale", "R_zero_point")
_QUANTIZED_LSTM = "DynamicQuantizeLSTM"
_MAX_INPUTS = {"LSTM": 8, "GRU": 6, "RNN": 6, _QUANTIZED_LSTM: 12}
# the attributes read, with their ONNX types (anything else is ignored, as onnxruntime does)
_ATTRS = {"hidden_size": "INT", "direction": "STRING", "layout": "INT", "clip": "FLOAT",
          "input_forget": "INT", "linear_before_reset": "INT", "activations": "STRINGS",
          "activation_alpha": "FLOATS", "activation_beta": "FLOATS"}


def from_onnx(model: Union[str, os.PathLike, bytes, Any],
              node: Union[None, str, int, Any] = None,
              precision: Optional[str] = PRECISION_AUTO) -> OnnxRNNModel:
    """A fastcells model computing one ONNX ``LSTM``, ``GRU`` or ``RNN`` node, or the
    ``com.microsoft`` ``DynamicQuantizeLSTM`` that onnxruntime's ``quantize_dynamic`` makes of
    an LSTM.

    model: a path, the serialized bytes, or an ``onnx.ModelProto`` (reading needs the ``onnx``
    package; running does not); node: None (the model's only recurrent node), a path, a node
    name or output name, an index among the recurrent nodes, or the NodeProto; precision:
    "auto" (the source's: "int8" for a DynamicQuantizeLSTM, None for the others), None
    (float weights) or "int8" (``fastcells.quantize(model, "int8")``).

    DynamicQuantizeLSTM: W [D, input_size, 4*hidden_size] and R [D, hidden_size,
    4*hidden_size] (int8 or uint8; transposed against LSTM's), with W_scale / R_scale (float32)
    and W_zero_point / R_zero_point (the weights' dtype) of shape [D] (per tensor) or
    [D, 4*hidden_size] (per output column), all constant. The weights are dequantized,
    ``(q - zero_point) * scale`` in float32, and those float32 weights are the model's: the
    cells are the ones the LSTM gets, and with precision "int8" (the default) they run
    fastcells' own int8 scheme on them (see fastcells.quantize; the int8 values are
    fastcells', recomputed per column from the dequantized weights, not the file's). Against
    onnxruntime's own run of the node (which quantizes x and h per tensor to uint8) the
    outputs differ by about 1e-2 relative L2 (tests/test_convert_quantized.py states the
    measured bound); precision=None runs the dequantized weights in float32.

    Recurrent nodes are found in subgraphs too (the branches of ``If``, the bodies of ``Loop``
    and ``Scan``, recursively); a node's path is the names of the enclosing nodes and subgraph
    attributes and its own name joined by '/', e.g. ``"If_0/then_branch/LSTM_3"``. The order
    of the indices is depth first in graph order. When the model has several and `node` is
    None, the ValueError lists every path.

    Weights W, R and the optional B and P must be constant: initializers (of the node's graph
    or of a graph around it), Constant nodes, or chains of Identity, Cast, Unsqueeze, Squeeze,
    Reshape, Expand, Concat, Transpose, Slice and Split over them, which are folded in NumPy
    with each op's semantics at the model's opset (a bare GraphProto is read at the newest
    opset the installed onnx knows). No folded value may have more than four times the
    elements the model stores (65536 at least). An ``initial_h``, ``initial_c`` or
    ``sequence_lens`` that is constant in the same sense (e.g. a learned initial state) is
    used whenever the caller passes none for it; one computed at run time must be passed.

    Supported: direction forward / reverse / bidirectional, layout 0 and 1, hidden_size,
    clip (every gate pre-activation clipped, as onnxruntime), input_forget, peepholes P
    (order i, o, f), linear_before_reset 0 (GRUCell) and 1 (GRUCell(reset_after=True)),
    activations Tanh, Sigmoid, Relu, Affine, LeakyRelu, ThresholdedRelu, ScaledTanh,
    HardSigmoid, Elu, Softsign with activation_alpha / activation_beta (consumed in order by
    the activations that take them, as onnxruntime). Softplus and unknown names raise.
    Weights in float32 or float64 give cells of that dtype; float16 weights are widened
    (exactly) to float32 and the model runs in float32, so it does not reproduce a float16
    runtime's rounding of the intermediate values.

    Errors: everything wrong with the model's content (a malformed protobuf, attributes of
    the wrong type or value, missing or non-constant weights, wrong shapes, an initializer
    whose data does not match its dims, a cycle, an op that is not folded, a fold that would
    blow up) is a ValueError naming the file (or "the model"), the node and the field. A path
    that is not a file is FileNotFoundError; an argument of the wrong Python type TypeError.

    Returns a callable ``model(X, sequence_lens=None, initial_h=None, initial_c=None)`` ->
    ``Y, Y_h`` (``Y, Y_h, Y_c`` for LSTM) as ONNX defines them: layout 0: X [T,B,I],
    Y [T,D,B,U], states [D,B,U]; layout 1: X [B,T,I], Y [B,T,D,U], states [B,D,U]. Past each
    sequence_lens entry Y is zero and the states hold the last valid step. ``.stored``: the
    inputs taken from the model ({name: array}).

    Parameters
    ----------
    model : path, bytes or onnx.ModelProto
        The model (a GraphProto is read too).
    node : None, str, int or onnx.NodeProto, optional
        Which recurrent node (see above).

    precision : "auto", None or "int8", optional
        The precision the cells run in (see above).

    Returns
    -------
    OnnxRNNModel
        The callable model.

    Raises
    ------
    ValueError
        For the model's content, naming the file, the node and the field.
    FileNotFoundError
        For a path that is not a file.
    TypeError
        For an argument of the wrong Python type.
    ImportError
        If the ``onnx`` package is not installed.

    Examples
    --------
    >>> import numpy as np
    >>> from onnx import TensorProto, helper, numpy_helper
    >>> from fastcells.convert import from_onnx
    >>> rng = np.random.default_rng(0)
    >>> W = (0.1 * rng.standard_normal((1, 12, 3))).astype(np.float32)   # [D, 3U, I]
    >>> R = (0.1 * rng.standard_normal((1, 12, 4))).astype(np.float32)   # [D, 3U, U]
    >>> gru = helper.make_node("GRU", ["X", "W", "R"], ["Y", "Y_h"], hidden_size=4)
    >>> graph = helper.make_graph(
    ...     [gru], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [5, 2, 3])],
    ...     [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
    ...     initializer=[numpy_helper.from_array(W, "W"), numpy_helper.from_array(R, "R")])
    >>> model = from_onnx(helper.make_model(graph))
    >>> Y, Y_h = model(np.ones((5, 2, 3), np.float32))              # X [T, B, I]
    >>> Y.shape, Y_h.shape                                           # [T, D, B, U], [D, B, U]
    ((5, 1, 2, 4), (1, 2, 4))
    """
    check_precision(precision)
    onnx, graph, opset, source = _load_onnx(model)
    found = find_recurrent(graph)
    path, nd, scope = _pick_node(found, node, graph, source)
    where = f"{source}: node {path!r} ({nd.op_type})"
    quantized = nd.op_type == _QUANTIZED_LSTM
    op = "LSTM" if quantized else nd.op_type     # a DynamicQuantizeLSTM computes an LSTM
    folder = Folder(source, opset, max(4 * total_elements(graph), 1 << 16))
    attrs = {k: attribute(nd, k, kind, where) for k, kind in _ATTRS.items()}
    names = list(nd.input) + [""] * (len(_INPUTS) - len(nd.input))
    if len(nd.input) > _MAX_INPUTS[nd.op_type]:
        raise OnnxError(f"{where}: {len(nd.input)} inputs, more than {nd.op_type} has")

    def stored(k, required):
        """Input k as a constant array; None when absent, or computed at run time and not
        required."""
        what, name = _INPUTS[k], names[k]
        if not name:
            if required:
                raise OnnxError(f"{where}: input {what} is missing; the weights W and R are "
                                f"required")
            return None
        if scope.lookup(name)[0] is None:
            raise OnnxError(f"{where}: input {what} ({name!r}) is not an initializer, a "
                            f"Constant or any node's output: the name is undefined")
        try:
            return folder.value(scope, name, f"input {what} of node {path!r}")
        except NotConstant as e:
            if required:
                raise OnnxError(f"{where}: input {what} ({name!r}) is not an initializer or a "
                                f"constant expression fastcells can fold: {e}; fastcells needs "
                                f"the weights in the model") from None
            return None

    W, R = stored(1, True), stored(2, True)
    if quantized:
        if attrs["layout"]:
            raise OnnxError(f"{where}: attribute layout: {nd.op_type} has none (it is layout "
                            f"0), got {attrs['layout']}")
        W, R = _dequantized_weights(W, R, [stored(k, True) for k in range(8, 12)],
                                    attrs["hidden_size"], where)
    Bias = stored(3, names[3] != "")
    Pp = stored(7, names[7] != "") if op == "LSTM" else None
    dt = _weights_dtype(W, where)
    arrays = {"W": W, "R": R, "B": Bias, "P": Pp}
    for k, a in arrays.items():
        if a is not None and a.dtype.kind != "f":
            raise OnnxError(f"{where}: input {k}: expected floating-point data, got {a.dtype}")
    G = _ONNX_OPS[op][0]
    direction = attrs["direction"] or "forward"
    D = {"forward": 1, "reverse": 1, "bidirectional": 2}.get(direction)
    if D is None:
        raise OnnxError(f"{where}: attribute direction: expected forward, reverse or "
                        f"bidirectional, got {direction!r}")
    if W.ndim != 3 or R.ndim != 3 or W.shape[0] != D or R.shape[0] != D:
        raise OnnxError(f"{where}: W, R: expected [{D}, {G}*hidden_size, input_size] and "
                        f"[{D}, {G}*hidden_size, hidden_size], got {W.shape} and {R.shape}")
    U = attrs["hidden_size"]
    U = R.shape[2] if U is None else U
    I = W.shape[2]
    if U < 1 or I < 1:
        raise OnnxError(f"{where}: hidden_size and input_size must be positive, got "
                        f"hidden_size {U} and input_size {I} (W {W.shape})")
    if W.shape[1] != G * U or R.shape[1:] != (G * U, U):
        raise OnnxError(f"{where}: W, R: expected [{D}, {G * U}, {I}] and [{D}, {G * U}, {U}] "
                        f"(hidden_size {U}), got {W.shape} and {R.shape}")
    if Bias is not None and Bias.shape != (D, 2 * G * U):
        raise OnnxError(f"{where}: B: expected shape ({D}, {2 * G * U}), got {Bias.shape}")
    if Pp is not None and Pp.shape != (D, 3 * U):
        raise OnnxError(f"{where}: P: expected shape ({D}, {3 * U}), got {Pp.shape}")
    layout = 0 if attrs["layout"] is None else attrs["layout"]
    flags = {k: attrs[k] or 0 for k in ("layout", "input_forget", "linear_before_reset")}
    for k, v in flags.items():
        if v not in (0, 1):
            raise OnnxError(f"{where}: attribute {k}: expected 0 or 1, got {v}")
    clip = attrs["clip"]
    if clip is not None and not (np.isfinite(clip) and clip > 0):
        raise OnnxError(f"{where}: attribute clip: expected a positive finite number, got "
                        f"{clip}")
    input_forget = bool(flags["input_forget"])
    lbr = bool(flags["linear_before_reset"])
    if op == "RNN" and input_forget:
        raise OnnxError(f"{where}: attribute input_forget: only for LSTM")
    for k in ("activation_alpha", "activation_beta"):
        if attrs[k] is not None and not all(np.isfinite(attrs[k])):
            raise OnnxError(f"{where}: attribute {k}: expected finite numbers, got {attrs[k]}")
    try:
        specs = _onnx_activations(op, attrs["activations"], attrs["activation_alpha"],
                                  attrs["activation_beta"], D)
    except ValueError as e:
        raise OnnxError(f"{where}: attribute {e}") from None
    state_inputs = _stored_states(stored, op, D, U, layout, dt, where)
    kind = {"RNN": "rnn", "GRU": "gru", "LSTM": "lstm"}[op]
    order = GATE_ORDER["onnx"].get(kind)
    W, R = W.astype(dt), R.astype(dt)
    Bias = None if Bias is None else Bias.astype(dt)
    Pp = None if Pp is None else Pp.astype(dt)
    cells = []
    for d in range(D):
        Wx, Wh = W[d].T, R[d].T
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
            w = tf_rnn_weights(Wx, Wh, bx + bh)
            cell = new_cell(kind, U, dt, preact_clip=clip, **kw)
        cell.set_weights(w)
        cells.append(cell)
    return with_precision(OnnxRNNModel(op, cells, direction, layout, U, dt,
                                       stored=state_inputs), precision, quantized)


def _dequantized_weights(W, R, params, hidden_size, where):
    """A DynamicQuantizeLSTM's W [D, I, 4U] and R [D, U, 4U] (int8 / uint8) with their scales
    and zero points ([D] or [D, 4U]) -> float32 W [D, 4U, I], R [D, 4U, U] in LSTM's layout."""
    W_scale, W_zp, R_scale, R_zp = params
    if W.ndim != 3 or R.ndim != 3 or R.shape[0] != W.shape[0]:
        raise OnnxError(f"{where}: W, R: expected [D, input_size, 4*hidden_size] and "
                        f"[D, hidden_size, 4*hidden_size], got {W.shape} and {R.shape}")
    D, U = R.shape[0], R.shape[1] if hidden_size is None else hidden_size
    if W.shape[2] != 4 * U or R.shape[1:] != (U, 4 * U):
        raise OnnxError(f"{where}: W, R: expected [{D}, input_size, {4 * U}] and "
                        f"[{D}, {U}, {4 * U}] (hidden_size {U}), got {W.shape} and {R.shape}")
    out = []
    for name, q, scale, zp in (("W", W, W_scale, W_zp), ("R", R, R_scale, R_zp)):
        for pname, a in (("_scale", scale), ("_zero_point", zp)):
            if a.shape not in ((D,), (D, 4 * U)):
                raise OnnxError(f"{where}: input {name}{pname}: expected shape ({D},) (per "
                                f"tensor) or ({D}, {4 * U}) (per channel), got {a.shape}")
        try:
            per_direction = [dequantize(q[d], scale[d], zp[d], 1, f"input {name}")
                             for d in range(D)]
        except ValueError as e:
            raise OnnxError(f"{where}: {e}") from None
        out.append(np.stack([w.T for w in per_direction]))
    return out[0], out[1]


def _weights_dtype(W, where):
    """The cells' dtype from W's: float32 / float64 as they are, float16 widened to float32."""
    if W.dtype == np.float16:
        return np.dtype(np.float32)
    if W.dtype in (np.float32, np.float64):
        return np.dtype(W.dtype)
    raise OnnxError(f"{where}: input W: fastcells runs float16 (as float32), float32 or "
                    f"float64 weights, got {W.dtype}")


def _stored_states(stored, op, D, U, layout, dt, where):
    """{name: array} of the initial_h / initial_c / sequence_lens the model holds as
    constants, checked (states [D,B,U] in layout 0, [B,D,U] in layout 1, lengths [B])."""
    out = {}
    batch = {}
    for k, name in ((5, "initial_h"), (6, "initial_c")):
        if name == "initial_c" and op != "LSTM":
            continue
        a = stored(k, False)
        if a is None:
            continue
        if a.dtype.kind != "f":
            raise OnnxError(f"{where}: input {name}: expected floating-point data, got "
                            f"{a.dtype}")
        if a.ndim != 3 or a.shape[layout] != D or a.shape[2] != U:
            want = "[D, B, U]" if layout == 0 else "[B, D, U]"
            raise OnnxError(f"{where}: input {name}: expected {want} with D={D}, U={U}, got "
                            f"{a.shape}")
        out[name] = np.ascontiguousarray(a.astype(dt))
        batch[name] = a.shape[1 - layout]
    lens = stored(4, False)
    if lens is not None:
        if lens.ndim != 1 or lens.dtype.kind not in "iu":
            raise OnnxError(f"{where}: input sequence_lens: expected an integer vector, got "
                            f"{lens.dtype} {lens.shape}")
        out["sequence_lens"] = lens.astype(np.int64)
        batch["sequence_lens"] = lens.shape[0]
    if len(set(batch.values())) > 1:
        raise OnnxError(f"{where}: the stored inputs disagree on the batch size: {batch}")
    return out


class OnnxRNNModel:
    """An ONNX LSTM/GRU/RNN node on fastcells (what from_onnx returns).

    Called as ``model(X, sequence_lens=None, initial_h=None, initial_c=None)`` ->
    ``Y, Y_h[, Y_c]``, with the shapes of from_onnx. ``.cells``: one cell per direction;
    ``.stored``: {input name: array} of the initial_h, initial_c and sequence_lens the model
    holds, used for each one the caller does not pass.

    Parameters
    ----------
    op : str
        "LSTM", "GRU" or "RNN".
    cells : list of fastcells cells
        One per direction.
    direction : str
        "forward", "reverse" or "bidirectional".
    layout : int
        0 ([T,B,I]) or 1 ([B,T,I]).
    hidden_size : int
        U.
    dtype : numpy.dtype
        The cells' dtype.
    stored : dict, optional
        The constant initial_h / initial_c / sequence_lens of the model.

    Examples
    --------
    >>> import numpy as np
    >>> import fastcells
    >>> from fastcells.convert import OnnxRNNModel
    >>> cell = fastcells.BasicRNNCell(4, seed=0)
    >>> cell.build(3)
    >>> model = OnnxRNNModel("RNN", [cell], "forward", 0, 4, np.dtype(np.float32))
    >>> Y, Y_h = model(np.ones((5, 2, 3), np.float32))
    >>> Y.shape, Y_h.shape
    ((5, 1, 2, 4), (1, 2, 4))
    """

    def __init__(self, op: str, cells: List[Any], direction: str, layout: int,
                 hidden_size: int, dtype: np.dtype,
                 stored: Optional[Dict[str, np.ndarray]] = None) -> None:
        self.op, self.cells, self.direction = op, list(cells), direction
        self.layout, self.hidden_size, self.dtype = layout, hidden_size, dtype
        self.D = len(cells)
        self.stored = dict(stored or {})

    def __repr__(self):
        stored = f" stored={sorted(self.stored)}" if self.stored else ""
        return (f"<OnnxRNNModel {self.op} direction={self.direction} layout={self.layout} "
                f"hidden_size={self.hidden_size} dtype={self.dtype}{stored}>")

    def __call__(self, X: ArrayLike, sequence_lens: Optional[ArrayLike] = None,
                 initial_h: Optional[ArrayLike] = None,
                 initial_c: Optional[ArrayLike] = None) -> Tuple[np.ndarray, ...]:
        dt, D, U, lay = self.dtype, self.D, self.hidden_size, self.layout
        x = as_input(X, dt, "X")
        if x.ndim != 3:
            raise ValueError(f"X: expected a 3-D array {'[T, B, I]' if lay == 0 else '[B, T, I]'}"
                             f" (layout {lay}), got shape {x.shape}")
        B = x.shape[1 - lay]
        tm = lay == 0
        given = {"sequence_lens": sequence_lens, "initial_h": initial_h, "initial_c": initial_c}
        for name, a in self.stored.items():
            if given[name] is None:
                want = a.shape[0] if name == "sequence_lens" else a.shape[1 - lay]
                if want != B:
                    raise ValueError(f"X: the model stores {name} for batch size {want}, X has "
                                     f"batch size {B}; pass {name}")
                given[name] = a
        sequence_lens, initial_h, initial_c = (given[k] for k in
                                               ("sequence_lens", "initial_h", "initial_c"))
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
