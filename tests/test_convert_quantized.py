"""Models the peers quantized: onnxruntime's DynamicQuantizeLSTM (from quantize_dynamic of an
ONNX LSTM) through from_onnx, torch.ao's dynamic quantized LSTM / GRU through from_torch.

For each: (a) the loaded float32 weights are the peer's dequantized weights, bit for bit;
(b) the int8 model's outputs are bit-exact with fastcells.quantize(fp32 model, "int8") of the
float model built from those weights (whose int8 scheme test_int8_cells.py checks against
fastcells.reference_quant); (c) against the peer's own quantized run, and against the peer's
float32 run of the dequantized weights, relative L2 error within REL_L2_BOUND.

Measured (this file's models: Glorot-uniform weights, small biases, x ~ N(0, 1), T = 60,
B = 3, I = 16, U = 32; onnxruntime 1.32, torch 2.13, x86-64; relative L2 of Y / output, from
the helpers below, run over the parametrizations):
  ONNX LSTM (forward, bidirectional; per tensor, per channel; with sequence_lens) vs
  onnxruntime's DynamicQuantizeLSTM: 0.0095 - 0.0107; vs onnxruntime's float LSTM on the
  dequantized weights: 0.0050 - 0.0064.
  torch LSTM / GRU (1 layer, 2 layers bidirectional; per tensor, per channel) vs torch's
  quantized run: LSTM 0.0171 - 0.0177, GRU 0.0172 - 0.0209; vs torch's float run of the
  dequantized weights: 0.0058 - 0.0098. fastcells' float32 run of the same weights is itself
  0.0145 - 0.0193 from torch's quantized run: most of that difference is torch's own
  quantization error (x and h per tensor in quint8).
The bound, 0.03, is about 1.5 times the largest of these. precision=None against the peer's
float32 run of the dequantized weights is held to the float tolerance of the other converter
tests (rtol 1e-5, atol 2e-6).
"""
import importlib.util
import warnings

import numpy as np
import pytest

import fastcells
from fastcells.convert import from_onnx, from_torch

HAS_ONNX = (importlib.util.find_spec("onnx") is not None
            and importlib.util.find_spec("onnxruntime") is not None)
HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_onnx = pytest.mark.skipif(not HAS_ONNX, reason="onnx and onnxruntime are not installed")
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
REL_L2_BOUND = 0.03
FLOAT_RTOL, FLOAT_ATOL = 1e-5, 2e-6
I, U, T, B = 16, 32, 60, 3


def rel_l2(got, ref):
    return float(np.linalg.norm(got - ref) / np.linalg.norm(ref))


def glorot(rng, shape):
    limit = np.sqrt(6.0 / (shape[-1] + shape[-2]))
    return rng.uniform(-limit, limit, shape).astype(np.float32)


def assert_same_weights(model, expected):
    assert len(model.cells) == len(expected.cells)
    for got, want in zip(model.cells, expected.cells):
        gw, ww = got.get_weights(), want.get_weights()
        assert sorted(gw) == sorted(ww)
        for k in gw:
            assert gw[k].dtype == np.float32 and np.array_equal(gw[k], ww[k]), k


# ---------------------------------------------------------------------------------------------
# ONNX: DynamicQuantizeLSTM
# ---------------------------------------------------------------------------------------------

def _onnx_lstm(W, R, Bias, direction):
    """An ONNX LSTM model over float W [D,4U,I], R [D,4U,U], B [D,8U], with sequence_lens."""
    from onnx import TensorProto, helper, numpy_helper
    vi = lambda n, t=TensorProto.FLOAT: helper.make_tensor_value_info(n, t, None)  # noqa: E731
    node = helper.make_node("LSTM", ["X", "W", "R", "B", "seq"], ["Y", "Y_h", "Y_c"],
                            hidden_size=R.shape[2], direction=direction)
    graph = helper.make_graph(
        [node], "g", [vi("X"), vi("seq", TensorProto.INT32)], [vi("Y"), vi("Y_h"), vi("Y_c")],
        [numpy_helper.from_array(a, k) for k, a in {"W": W, "R": R, "B": Bias}.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


def _quantized_onnx(tmp_path, direction, per_channel, seed=0):
    """(path of onnxruntime's quantize_dynamic of an LSTM, its ModelProto)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    rng = np.random.default_rng(seed)
    D = 2 if direction == "bidirectional" else 1
    model = _onnx_lstm(glorot(rng, (D, 4 * U, I)), glorot(rng, (D, 4 * U, U)),
                       (0.1 * rng.standard_normal((D, 8 * U))).astype(np.float32), direction)
    src, dst = tmp_path / "float.onnx", tmp_path / "quantized.onnx"
    onnx.save(model, str(src))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(str(src), str(dst), per_channel=per_channel,
                         weight_type=QuantType.QInt8)
    qm = onnx.load(str(dst))
    assert [n.op_type for n in qm.graph.node] == ["DynamicQuantizeLSTM"]
    return dst, qm


def _dequantized_from_file(qm):
    """The float LSTM weights (W [D,4U,I], R [D,4U,U], B) that the quantized model stores,
    dequantized here independently of fastcells: (q - zp) * scale in float32."""
    from onnx import numpy_helper
    node = qm.graph.node[0]
    inits = {t.name: numpy_helper.to_array(t) for t in qm.graph.initializer}
    W, R, Bias = (inits[node.input[k]] for k in (1, 2, 3))
    out = []
    for q, s, z in ((W, inits[node.input[8]], inits[node.input[9]]),
                    (R, inits[node.input[10]], inits[node.input[11]])):
        s = s.reshape(s.shape[0], 1, -1) if s.ndim == 2 else s.reshape(-1, 1, 1)
        z = z.reshape(s.shape)
        deq = (q.astype(np.int32) - z.astype(np.int32)).astype(np.float32) * s
        out.append(np.ascontiguousarray(deq.transpose(0, 2, 1)))
    return out[0], out[1], Bias


def _ort_run(model_or_path, x, seq):
    import onnxruntime as ort
    src = model_or_path if isinstance(model_or_path, str) else model_or_path.SerializeToString()
    sess = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    return sess.run(None, {"X": x, "seq": seq})


@needs_onnx
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_dynamic_quantize_lstm(tmp_path, direction, per_channel):
    path, qm = _quantized_onnx(tmp_path, direction, per_channel)
    model = from_onnx(str(path))
    assert model.op == "LSTM" and all(c.precision == "int8" for c in model.cells)
    W, R, Bias = _dequantized_from_file(qm)
    float_model = _onnx_lstm(W, R, Bias, direction)
    fp32 = from_onnx(float_model)
    assert_same_weights(model, fp32)                                        # (a)
    assert_same_weights(from_onnx(str(path), precision=None), fp32)
    assert all(c.precision is None for c in from_onnx(str(path), precision=None).cells)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    seq = np.array([T, 31, 1], np.int32)
    got = model(x, sequence_lens=seq)
    want = fastcells.quantize(fp32, "int8")(x, sequence_lens=seq)
    for g, w in zip(got, want):                                             # (b)
        assert np.array_equal(g, w)
    for g, peer in zip(got, _ort_run(str(path), x, seq)):                   # (c)
        assert rel_l2(g, peer) < REL_L2_BOUND
    peer_fp32 = _ort_run(float_model, x, seq)
    for g, peer in zip(got, peer_fp32):
        assert rel_l2(g, peer) < REL_L2_BOUND
    for g, peer in zip(from_onnx(str(path), precision=None)(x, sequence_lens=seq), peer_fp32):
        np.testing.assert_allclose(g, peer, rtol=FLOAT_RTOL, atol=FLOAT_ATOL)


def _replace_init(qm, input_index, value):
    """A copy of qm with the initializer feeding its node's input `input_index` replaced."""
    from onnx import numpy_helper
    m = type(qm)()
    m.CopyFrom(qm)
    name = m.graph.node[0].input[input_index]
    for k, t in enumerate(m.graph.initializer):
        if t.name == name:
            m.graph.initializer[k].CopyFrom(numpy_helper.from_array(value, name))
    return m


@needs_onnx
@pytest.mark.parametrize("index, make, message", [
    (8, lambda s, z: np.ones((1, 3), np.float32), r"W_scale: expected shape \(1,\)"),
    (10, lambda s, z: np.zeros_like(s), r"input R: expected finite positive scales, got 0"),
    (8, lambda s, z: -s, r"input W: expected finite positive scales, got -"),
    (10, lambda s, z: np.full_like(s, np.nan), r"input R: expected finite positive scales"),
    (8, lambda s, z: s.astype(np.float64), r"input W: expected a float32 scale, got float64"),
    (9, lambda s, z: z.astype(np.uint8), r"input W: expected a zero point of the weights' "
                                         r"dtype int8, got uint8"),
    (11, lambda s, z: np.zeros((1, 4 * U), np.int8), r"the zero point's shape"),
])
def test_dynamic_quantize_lstm_bad_parameters(tmp_path, index, make, message):
    from onnx import numpy_helper
    _, qm = _quantized_onnx(tmp_path, "forward", False)
    inits = {t.name: numpy_helper.to_array(t) for t in qm.graph.initializer}
    node = qm.graph.node[0]
    scale = inits[node.input[8 if index < 10 else 10]]
    zp = inits[node.input[9 if index < 10 else 11]]
    bad = _replace_init(qm, index, make(scale, zp))
    with pytest.raises(ValueError, match=message) as e:
        from_onnx(bad)
    assert "DynamicQuantizeLSTM" in str(e.value)


@needs_onnx
def test_dynamic_quantize_lstm_bad_weights_and_precision(tmp_path):
    _, qm = _quantized_onnx(tmp_path, "forward", False)
    W = np.zeros((1, I, 4 * U), np.float32)
    with pytest.raises(ValueError, match="expected int8 or uint8 weights, got float32"):
        from_onnx(_replace_init(qm, 1, W))
    with pytest.raises(ValueError, match=r"W, R: expected \[1, input_size, 128\]"):
        from_onnx(_replace_init(qm, 1, np.zeros((1, I, 4 * U + 4), np.int8)))
    with pytest.raises(ValueError, match="precision: expected 'auto', None or one of"):
        from_onnx(qm, precision="int4")


# ---------------------------------------------------------------------------------------------
# torch.ao dynamic quantized LSTM / GRU
# ---------------------------------------------------------------------------------------------

def _torch_quantized(cls, layers, bidirectional, per_channel, seed=0):
    """(torch.ao dynamic quantized module, the float module it came from)."""
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    torch.manual_seed(seed)
    module = cls(I, U, num_layers=layers, bidirectional=bidirectional)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.startswith("weight"):
                p.copy_(torch.from_numpy(glorot(np.random.default_rng(seed), p.shape)))
                seed += 1
            else:
                p.copy_(0.05 * torch.randn(p.shape))
    spec = {cls: per_channel_dynamic_qconfig} if per_channel else {cls}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qmod = quantize_dynamic(torch.nn.Sequential(module), spec, dtype=torch.qint8)[0]
    return qmod, module


def _torch_float_of(qmod, cls, layers, bidirectional):
    """A float torch module holding qmod's dequantized weights (torch's own dequantize())."""
    import torch
    module = cls(I, U, num_layers=layers, bidirectional=bidirectional)
    packed = qmod._weight_bias()
    state = {k: (v.dequantize() if v.is_quantized else v)
             for part in ("weight", "bias") for k, v in packed[part].items()}
    module.load_state_dict(state)
    return module.eval()


@needs_torch
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("layers, bidirectional", [(1, False), (2, True)])
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_torch_dynamic_quantized(kind, layers, bidirectional, per_channel):
    import torch
    cls = getattr(torch.nn, kind)
    qmod, _ = _torch_quantized(cls, layers, bidirectional, per_channel)
    model = from_torch(qmod)
    assert all(c.precision == "int8" for c in model.cells)
    peer_float = _torch_float_of(qmod, cls, layers, bidirectional)
    fp32 = from_torch(peer_float)
    assert_same_weights(model, fp32)                                        # (a)
    assert_same_weights(from_torch(qmod, precision=None), fp32)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    lengths = np.array([T, 17, 1])
    int8_fp32 = fastcells.quantize(fp32, "int8")
    for seq in (None, lengths):                                             # (b)
        got, want = model(x, sequence_length=seq), int8_fp32(x, sequence_length=seq)
        for g, w in zip(_flat(got), _flat(want)):
            assert np.array_equal(g, w)
    out = model(x)
    with torch.no_grad():
        peer_q = qmod(torch.from_numpy(x))
        peer_f = peer_float(torch.from_numpy(x))
    for g, peer in zip(_flat(out), _flat(peer_q)):                           # (c)
        assert rel_l2(g, peer.numpy()) < REL_L2_BOUND
    for g, peer in zip(_flat(out), _flat(peer_f)):
        assert rel_l2(g, peer.numpy()) < REL_L2_BOUND
    for g, peer in zip(_flat(from_torch(qmod, precision=None)(x)), _flat(peer_f)):
        np.testing.assert_allclose(g, peer.numpy(), rtol=FLOAT_RTOL, atol=FLOAT_ATOL)


def _flat(result):
    """output, h_n[, c_n] of a torch-style result as a flat list."""
    out, state = result
    return [out] + (list(state) if isinstance(state, tuple) else [state])


@needs_torch
def test_torch_float_source_stays_float_unless_asked():
    import torch
    module = torch.nn.LSTM(I, U)
    assert all(c.precision is None for c in from_torch(module).cells)
    assert all(c.precision == "int8" for c in from_torch(module, precision="int8").cells)
    assert all(c.precision == "bf16" for c in from_torch(module, precision="bf16").cells)
    with pytest.raises(ValueError, match="precision: expected 'auto', None or one of"):
        from_torch(module, precision="fp8")


@needs_torch
def test_torch_float16_dynamic_layer_is_widened_and_stays_float():
    import torch
    from torch.ao.quantization import quantize_dynamic
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qmod = quantize_dynamic(torch.nn.Sequential(torch.nn.GRU(I, U)), {torch.nn.GRU},
                                dtype=torch.float16)[0]
    model = from_torch(qmod)
    assert all(c.precision is None and c.dtype == "float32" for c in model.cells)
    x = np.random.default_rng(3).standard_normal((T, B, I)).astype(np.float32)
    with torch.no_grad():
        peer = qmod(torch.from_numpy(x))[0].numpy()
    assert rel_l2(model(x)[0], peer) < REL_L2_BOUND     # torch runs float16 weights: ~1e-3


def test_dequantize_rules():
    from fastcells.convert._quantized import dequantize
    q = np.array([[0, 255], [128, 1]], np.uint8)
    got = dequantize(q, np.float32(0.5), np.uint8(128), None, "w")
    assert got.dtype == np.float32
    assert np.array_equal(got, np.array([[-64.0, 63.5], [0.0, -63.5]], np.float32))
    per_column = dequantize(q, np.array([1, 2], np.float32), np.array([0, 1], np.uint8), 1, "w")
    assert np.array_equal(per_column, np.array([[0, 508], [128, 0]], np.float32))
    with pytest.raises(ValueError, match=r"w: expected 2 per-channel scales \(axis 0"):
        dequantize(q, np.ones(3, np.float32), np.zeros(3, np.uint8), 0, "w")
    with pytest.raises(ValueError, match="w: expected a scalar scale"):
        dequantize(q, np.ones((2, 2), np.float32), np.zeros((2, 2), np.uint8), 1, "w")
    with pytest.raises(ValueError, match="w: expected finite positive scales, got inf"):
        dequantize(q, np.float32(np.inf), np.uint8(0), None, "w")
    with pytest.raises(ValueError, match="w: expected int8 or uint8 weights, got int16"):
        dequantize(q.astype(np.int16), np.float32(1), np.int16(0), None, "w")
