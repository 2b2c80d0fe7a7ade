"""fastcells.convert: PyTorch, Keras, ONNX and TF-checkpoint models on fastcells, against the
real frameworks where they are installed (each group skips with a reason otherwise), plus the
TF checkpoint fixtures in tests/data/tf_ckpt (written by make_fixtures.py there; they need no
TensorFlow) and the inverse maps (round trips exact).

Tolerances: float32 within RTOL + ATOL*|ref| elementwise (1e-5 relative, 2e-6 absolute);
float64 within 1e-10. Shapes must match exactly.
"""
import importlib.util
import os
import shutil

import numpy as np
import pytest

import fastcells
from fastcells import convert
from fastcells._formats import crc32c as crc, sstable
from fastcells.cells import BasicLSTMCell, BasicRNNCell, GRUCell, LSTMCell, MultiRNNCell
from fastcells.convert import _common as convert_common
from fastcells.convert import (from_keras, from_onnx, from_torch, load_tf_checkpoint,
                               to_keras_weights, to_torch_state_dict)

HERE = os.path.dirname(os.path.abspath(__file__))
CKPT = os.path.join(HERE, "data", "tf_ckpt")
RTOL, ATOL = 1e-5, 2e-6
TOL64 = 1e-10

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_ONNX = (importlib.util.find_spec("onnx") is not None
            and importlib.util.find_spec("onnxruntime") is not None)
HAS_TF = importlib.util.find_spec("tensorflow") is not None
HAS_ACT = hasattr(fastcells.nn, "activation")
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
needs_onnx = pytest.mark.skipif(not HAS_ONNX, reason="onnx and onnxruntime are not installed")
needs_act = pytest.mark.skipif(not HAS_ACT, reason="fastcells.nn.activation (the extended "
                               "activations and cell options) is not in this build yet")


def assert_close(got, ref, what=""):
    """Nested lists/tuples of arrays: same structure, shapes and values within tolerance."""
    if isinstance(ref, (list, tuple)):
        assert isinstance(got, (list, tuple)), f"{what}: expected a sequence, got {type(got)}"
        assert len(got) == len(ref), f"{what}: {len(got)} items, expected {len(ref)}"
        for k, (g, r) in enumerate(zip(got, ref)):
            assert_close(g, r, f"{what}[{k}]")
        return
    if hasattr(ref, "detach"):
        ref = ref.detach().numpy()
    ref = np.asarray(ref)
    assert isinstance(got, np.ndarray), f"{what}: expected a NumPy array, got {type(got)}"
    assert got.shape == ref.shape, f"{what}: shape {got.shape}, expected {ref.shape}"
    if ref.dtype == np.float64:
        np.testing.assert_allclose(got, ref, rtol=TOL64, atol=TOL64, err_msg=what)
    else:
        np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL, err_msg=what)


# ---------------------------------------------------------------------------------------------
# TF checkpoints (no TensorFlow needed)
# ---------------------------------------------------------------------------------------------

FIXTURES = ["basic_lstm", "multi_gru_lstm", "bidir_gru_f64", "sharded_rnn", "tf2_object"]


def _expected(name):
    with np.load(os.path.join(CKPT, name, "expected.npz")) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("name", FIXTURES)
def test_checkpoint_values(name):
    got = load_tf_checkpoint(os.path.join(CKPT, name, "model"))
    exp = _expected(name)
    want = {k[4:]: v for k, v in exp.items() if k.startswith("var:")}
    assert sorted(got) == sorted(want)
    for k, v in want.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
        np.testing.assert_array_equal(got[k], v, err_msg=k)
        assert got[k].flags.writeable


def test_checkpoint_prefix_forms():
    d = os.path.join(CKPT, "basic_lstm")
    a = load_tf_checkpoint(os.path.join(d, "model"))
    b = load_tf_checkpoint(os.path.join(d, "model.index"))
    c = load_tf_checkpoint(d)                   # a directory with one .index
    for other in (b, c):
        assert sorted(other) == sorted(a)


def _tf_run(cell, exp, bidirectional=False):
    x, lengths = exp["x"], exp["sequence_length"]
    if bidirectional:
        fw, bw = cell
        (o_fw, o_bw), (s_fw, s_bw) = fastcells.nn.bidirectional_dynamic_rnn(
            fw, bw, x, sequence_length=lengths, dtype=x.dtype)
        return [o_fw, o_bw], [s_fw, s_bw]
    out, st = fastcells.nn.dynamic_rnn(cell, x, sequence_length=lengths, dtype=x.dtype)
    return [out], st


def _flat(s):
    if isinstance(s, (tuple, list)):
        return [a for v in s for a in _flat(v)]
    return [s]


def _compare_run(outs, state, exp):
    for k, o in enumerate(outs):
        assert_close(o, exp[f"out{k}"], f"out{k}")
    for k, s in enumerate(_flat(state)):
        assert_close(s, exp[f"state{k}"], f"state{k}")


def test_checkpoint_restores_basic_lstm():
    exp = _expected("basic_lstm")
    cell = BasicLSTMCell(4)
    cell.set_weights(load_tf_checkpoint(os.path.join(CKPT, "basic_lstm", "model")))
    _compare_run(*_tf_run(cell, exp), exp)


def test_checkpoint_restores_multi_rnn_cell():
    exp = _expected("multi_gru_lstm")
    cell = MultiRNNCell([GRUCell(5), LSTMCell(4, use_peepholes=True, num_proj=3)])
    cell.set_weights(load_tf_checkpoint(os.path.join(CKPT, "multi_gru_lstm", "model")))
    _compare_run(*_tf_run(cell, exp), exp)


def test_checkpoint_restores_bidirectional_float64_with_scope():
    exp = _expected("bidir_gru_f64")
    prefix = os.path.join(CKPT, "bidir_gru_f64", "model")
    fw, bw = GRUCell(3, dtype=np.float64), GRUCell(3, dtype=np.float64)
    fw.set_weights(load_tf_checkpoint(prefix, scope="bidirectional_rnn/fw"))
    bw.set_weights(load_tf_checkpoint(prefix, scope="bidirectional_rnn/bw/"))
    outs, states = _tf_run((fw, bw), exp, bidirectional=True)
    _compare_run(outs, states, exp)


def test_checkpoint_two_shards():
    exp = _expected("sharded_rnn")
    w = load_tf_checkpoint(os.path.join(CKPT, "sharded_rnn", "model"))
    a, b = BasicRNNCell(3), BasicRNNCell(2, activation="relu")
    a.set_weights({k: v for k, v in w.items() if k.startswith("a/")})
    b.set_weights({k: v for k, v in w.items() if k.startswith("b/")})
    x, lengths = exp["x"], exp["sequence_length"]
    h, _ = fastcells.nn.dynamic_rnn(a, x, sequence_length=lengths, dtype=np.float32)
    out, st = fastcells.nn.dynamic_rnn(b, h, sequence_length=lengths, dtype=np.float32)
    _compare_run([out], st, exp)


def test_crc32c():
    assert convert.crc32c(b"123456789") == 0xE3069283          # the standard check value
    data = np.random.default_rng(0).integers(0, 256, 70001, dtype=np.uint8).tobytes()
    slow = crc.update_bytewise(0xFFFFFFFF, data) ^ 0xFFFFFFFF  # byte at a time
    assert convert.crc32c(data) == slow                         # chunked NumPy path


@pytest.fixture
def ckpt_copy(tmp_path):
    src = os.path.join(CKPT, "basic_lstm")
    for f in os.listdir(src):
        shutil.copy(os.path.join(src, f), tmp_path / f)
    return tmp_path


def test_checkpoint_errors(ckpt_copy):
    prefix = str(ckpt_copy / "model")
    index = ckpt_copy / "model.index"
    data = ckpt_copy / "model.data-00000-of-00001"
    with pytest.raises(FileNotFoundError, match="nope.index"):
        load_tf_checkpoint(str(ckpt_copy / "nope"))
    raw = index.read_bytes()
    index.write_bytes(raw[:-10])                                  # truncated index
    with pytest.raises(ValueError, match="model.index.*(magic|truncated)"):
        load_tf_checkpoint(prefix)
    index.write_bytes(raw[:20])
    with pytest.raises(ValueError, match="model.index.*too short"):
        load_tf_checkpoint(prefix)
    bad = bytearray(raw)
    bad[20] ^= 0xFF                                               # a flipped byte in a block
    index.write_bytes(bytes(bad))
    with pytest.raises(ValueError, match="model.index.*crc32c"):
        load_tf_checkpoint(prefix)
    index.write_bytes(raw)
    blob = data.read_bytes()
    data.write_bytes(blob[:-8])                                   # truncated data
    with pytest.raises(ValueError, match="model.data-00000-of-00001.*truncated"):
        load_tf_checkpoint(prefix)
    flipped = bytearray(blob)
    flipped[3] ^= 0x01
    data.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="kernel|bias.*crc32c"):
        load_tf_checkpoint(prefix)
    assert sorted(load_tf_checkpoint(prefix, verify_crc=False))  # opt-out reads it
    data.unlink()
    with pytest.raises(FileNotFoundError, match="data shard"):
        load_tf_checkpoint(prefix)


def test_checkpoint_compressed_block_is_refused(ckpt_copy):
    index = ckpt_copy / "model.index"
    raw = bytearray(index.read_bytes())
    footer = raw[-48:]
    _, _, pos = sstable.read_handle(footer)
    off, size, _ = sstable.read_handle(footer, pos)                  # the index block
    raw[off + size] = 1                                           # mark it snappy
    index.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="compressed \\(snappy\\)"):
        load_tf_checkpoint(str(ckpt_copy / "model"), verify_crc=False)


# ---------------------------------------------------------------------------------------------
# Inverse maps without any framework: cell -> weights -> cell is exact
# ---------------------------------------------------------------------------------------------

def _roundtrip_cells():
    return [BasicRNNCell(5, seed=1), BasicRNNCell(5, activation="relu", seed=2),
            BasicLSTMCell(5, forget_bias=0.0, seed=3), LSTMCell(5, forget_bias=0.0, seed=4),
            GRUCell(5, seed=5), GRUCell(5, reset_after=True, seed=6)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("k", range(6))
def test_keras_weights_roundtrip_exact(k, dtype):
    cell = _roundtrip_cells()[k]
    cell = type(cell)(**_ctor_args(cell, dtype))
    cell.build(3)
    kind = {BasicRNNCell: "SimpleRNN", BasicLSTMCell: "LSTM", LSTMCell: "LSTM",
            GRUCell: "GRU"}[type(cell)]
    cfg = {"units": 5, "activation": convert_common.activation_name(cell),
           "reset_after": getattr(cell, "reset_after", False), "return_sequences": True}
    m = from_keras(weights=to_keras_weights(cell), config=cfg, class_name=kind)
    back = m.cell.get_weights()
    for name, a in cell.get_weights().items():
        np.testing.assert_array_equal(back[name], a, err_msg=name)
        assert back[name].dtype == a.dtype
    x = np.random.default_rng(0).standard_normal((2, 4, 3)).astype(dtype)
    out, _ = fastcells.nn.dynamic_rnn(cell, x, dtype=dtype)
    np.testing.assert_array_equal(m(x), out)


def _ctor_args(cell, dtype):
    args = {"num_units": cell.num_units, "dtype": dtype}
    if isinstance(cell, BasicRNNCell):
        args["activation"] = cell.activation
    if isinstance(cell, (BasicLSTMCell, LSTMCell)):
        args["forget_bias"] = cell.forget_bias
    if isinstance(cell, GRUCell):
        args["reset_after"] = cell.reset_after
    return args


def test_forget_bias_is_folded():
    cell = BasicLSTMCell(4, forget_bias=1.0, seed=0)
    cell.build(3)
    m = from_keras(weights=to_keras_weights(cell), config={"units": 4, "return_sequences": True},
                   class_name="LSTM")
    x = np.random.default_rng(1).standard_normal((2, 5, 3)).astype(np.float32)
    out, _ = fastcells.nn.dynamic_rnn(cell, x, dtype=np.float32)
    assert_close(m(x), out)


def test_inverse_refuses_what_has_no_counterpart():
    for cell, inverse, match in ((LSTMCell(3, use_peepholes=True), to_torch_state_dict,
                                  "use_peepholes"),
                                 (LSTMCell(3, cell_clip=1.0), to_keras_weights, "cell_clip"),
                                 (GRUCell(3), to_torch_state_dict, "reset-before"),
                                 (LSTMCell(3, num_proj=2), to_keras_weights, "num_proj")):
        cell.build(2)
        with pytest.raises(ValueError, match=match):
            inverse(cell)
    with pytest.raises(ValueError, match="not built"):
        to_keras_weights(LSTMCell(3))
    sig = BasicRNNCell(3, activation="sigmoid")
    sig.build(2)
    with pytest.raises(ValueError, match="sigmoid"):
        to_torch_state_dict(sig)


def test_keras_config_errors():
    w = [np.zeros((3, 8), np.float32), np.zeros((2, 8), np.float32), np.zeros(8, np.float32)]
    with pytest.raises(ValueError, match="class_name"):
        from_keras(weights=w, config={"units": 2})
    with pytest.raises(ValueError, match="ConvLSTM2D"):
        from_keras(weights=w, config={"units": 2}, class_name="ConvLSTM2D")
    with pytest.raises(ValueError, match="recurrent_kernel"):
        from_keras(weights=w, config={"units": 3}, class_name="LSTM")
    with pytest.raises(ValueError, match="3 arrays"):
        from_keras(weights=w[:2], config={"units": 2}, class_name="LSTM")
    with pytest.raises(ValueError, match="softplus"):
        from_keras(weights=w, config={"units": 2, "activation": "softplus"}, class_name="LSTM")
    with pytest.raises(ValueError, match="keras_version"):
        from_keras(weights=w, config={"units": 2, "recurrent_activation": "hard_sigmoid"},
                   class_name="LSTM")
    m = from_keras(weights=w, config={"units": 2}, class_name="LSTM")
    with pytest.raises(ValueError, match="inputs: expected a 3-D"):
        m(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="mask: expected shape"):
        m(np.zeros((2, 4, 3), np.float32), mask=np.ones((2, 5), bool))
    with pytest.raises(ValueError, match="initial_state: expected 2 arrays"):
        m(np.zeros((2, 4, 3), np.float32), initial_state=[np.zeros((2, 2), np.float32)])


# ---------------------------------------------------------------------------------------------
# PyTorch
# ---------------------------------------------------------------------------------------------

TORCH_GRID = [  # (mode, kwargs)
    ("LSTM", {}), ("GRU", {}), ("RNN", {}), ("RNN", {"nonlinearity": "relu"}),
    ("LSTM", {"num_layers": 2}), ("GRU", {"num_layers": 3, "batch_first": True}),
    ("LSTM", {"bidirectional": True}), ("GRU", {"bidirectional": True, "num_layers": 2}),
    ("RNN", {"bidirectional": True, "num_layers": 2, "nonlinearity": "relu", "bias": False}),
    ("LSTM", {"proj_size": 3}), ("LSTM", {"proj_size": 2, "num_layers": 2,
                                           "bidirectional": True, "batch_first": True}),
    ("LSTM", {"bias": False, "num_layers": 2, "batch_first": True}),
    ("GRU", {"bias": False}),
]


def _torch_model(mode, kw, dtype, seed=0):
    import torch
    torch.manual_seed(seed)
    m = getattr(torch.nn, mode)(5, 7, dtype=getattr(torch, np.dtype(dtype).name), **kw)
    return m.eval()


@needs_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("mode,kw", TORCH_GRID,
                         ids=[m + "-" + "-".join(f"{k}={v}" for k, v in kw.items())
                              for m, kw in TORCH_GRID])
def test_torch_sequence_models(mode, kw, dtype):
    import torch
    m = _torch_model(mode, kw, dtype)
    f = from_torch(m)
    assert all(c.dtype == np.dtype(dtype) for c in f.cells)
    rng = np.random.default_rng(1)
    L, N = 6, 4
    shape = (N, L, 5) if kw.get("batch_first") else (L, N, 5)
    x = rng.standard_normal(shape).astype(dtype)
    D = 2 if kw.get("bidirectional") else 1
    n = D * kw.get("num_layers", 1)
    H_out = kw.get("proj_size", 0) or 7
    with torch.inference_mode():
        assert_close(f(x), m(torch.from_numpy(x)), "no hx")
        h0 = rng.standard_normal((n, N, H_out)).astype(dtype)
        if mode == "LSTM":
            c0 = rng.standard_normal((n, N, 7)).astype(dtype)
            hx_np, hx_t = (h0, c0), (torch.from_numpy(h0), torch.from_numpy(c0))
        else:
            hx_np, hx_t = h0, torch.from_numpy(h0)
        assert_close(f(x, hx_np), m(torch.from_numpy(x), hx_t), "hx")
        # unbatched
        xu = x[0] if kw.get("batch_first") else x[:, 0]
        hu = (h0[:, 0], c0[:, 0]) if mode == "LSTM" else h0[:, 0]
        hu_t = tuple(torch.from_numpy(a) for a in hu) if mode == "LSTM" else torch.from_numpy(hu)
        assert_close(f(xu, hu), m(torch.from_numpy(xu), hu_t), "unbatched")
        # torch tensors are accepted as inputs
        assert_close(f(torch.from_numpy(x)), m(torch.from_numpy(x)), "tensor input")


@needs_torch
@pytest.mark.parametrize("mode,kw", [("LSTM", {"bidirectional": True, "num_layers": 2}),
                                     ("GRU", {"batch_first": True}), ("RNN", {})])
def test_torch_packed_sequence_lengths(mode, kw):
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    m = _torch_model(mode, kw, np.float32)
    f = from_torch(m)
    bf = kw.get("batch_first", False)
    lengths = np.array([6, 2, 5, 1])
    x = np.random.default_rng(2).standard_normal((4, 6, 5) if bf else (6, 4, 5)).astype("f")
    with torch.inference_mode():
        packed = pack_padded_sequence(torch.from_numpy(x), torch.from_numpy(lengths),
                                      batch_first=bf, enforce_sorted=False)
        out_p, st = m(packed)
        out, _ = pad_packed_sequence(out_p, batch_first=bf, total_length=6)
    assert_close(f(x, sequence_length=lengths), (out, st), "packed")


@needs_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name,kw", [("LSTMCell", {}), ("GRUCell", {}), ("RNNCell", {}),
                                     ("RNNCell", {"nonlinearity": "relu"}),
                                     ("LSTMCell", {"bias": False}), ("GRUCell", {"bias": False})])
def test_torch_cells(name, kw, dtype):
    import torch
    torch.manual_seed(3)
    m = getattr(torch.nn, name)(5, 6, dtype=getattr(torch, np.dtype(dtype).name), **kw).eval()
    f = from_torch(m)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 5)).astype(dtype)
    h = rng.standard_normal((3, 6)).astype(dtype)
    c = rng.standard_normal((3, 6)).astype(dtype)
    hx = (h, c) if name == "LSTMCell" else h
    hx_t = tuple(map(torch.from_numpy, hx)) if name == "LSTMCell" else torch.from_numpy(hx)
    with torch.inference_mode():
        assert_close(f(x), m(torch.from_numpy(x)), "no hx")
        assert_close(f(x, hx), m(torch.from_numpy(x), hx_t), "hx")
        xu = x[0]
        hu = (h[0], c[0]) if name == "LSTMCell" else h[0]
        hu_t = tuple(map(torch.from_numpy, hu)) if name == "LSTMCell" else torch.from_numpy(hu)
        assert_close(f(xu, hu), m(torch.from_numpy(xu), hu_t), "unbatched")


@needs_torch
@pytest.mark.parametrize("mode,kw", [("LSTM", {"num_layers": 2, "bidirectional": True}),
                                     ("LSTM", {"proj_size": 3}), ("GRU", {"num_layers": 2}),
                                     ("RNN", {"nonlinearity": "relu", "bidirectional": True})])
def test_torch_state_dict_roundtrip(mode, kw):
    """torch -> fastcells -> torch: every matrix exact; biases: b_ih + b_hh exact with b_hh 0
    (GRU: b_in and b_hn exact); the reloaded module gives the same numbers.
    fastcells -> torch -> fastcells: every weight exact."""
    import torch
    m = _torch_model(mode, kw, np.float32)
    f = from_torch(m)
    sd = to_torch_state_dict(f)
    orig = {k: v.detach().numpy() for k, v in m.state_dict().items()}
    assert sorted(sd) == sorted(orig)
    for k, v in sd.items():
        assert v.shape == orig[k].shape and v.dtype == orig[k].dtype, k
        if k.startswith("weight"):
            np.testing.assert_array_equal(v, orig[k], err_msg=k)
    m2 = _torch_model(mode, kw, np.float32, seed=9)
    m2.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    x = np.random.default_rng(5).standard_normal((5, 3, 5)).astype("f")
    with torch.inference_mode():
        assert_close(f(x), m2(torch.from_numpy(x)), "reloaded")
    f2 = from_torch(m2)
    for c1, c2 in zip(f.cells, f2.cells):
        for name, a in c1.get_weights().items():
            np.testing.assert_array_equal(c2.get_weights()[name], a, err_msg=name)


@needs_torch
def test_torch_state_dict_from_cells():
    import torch
    stack = MultiRNNCell([BasicLSTMCell(6, seed=1), BasicLSTMCell(6, seed=2)])
    stack.build(4)
    sd = to_torch_state_dict(stack)
    m = torch.nn.LSTM(4, 6, num_layers=2).eval()
    m.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    x = np.random.default_rng(6).standard_normal((5, 3, 4)).astype("f")
    out, st = fastcells.nn.dynamic_rnn(stack, x, dtype=np.float32, time_major=True)
    with torch.inference_mode():
        o, (h, c) = m(torch.from_numpy(x))
    assert_close(out, o)
    assert_close(np.stack([s.h for s in st]), h)
    assert_close(np.stack([s.c for s in st]), c)
    gru = GRUCell(5, reset_after=True, seed=3)
    gru.build(4)
    tg = torch.nn.GRUCell(4, 5).eval()
    tg.load_state_dict({k: torch.from_numpy(v) for k, v in to_torch_state_dict(gru).items()})
    xs, hs = (np.random.default_rng(7).standard_normal(s).astype("f") for s in ((3, 4), (3, 5)))
    with torch.inference_mode():
        assert_close(gru(xs, hs)[0], tg(torch.from_numpy(xs), torch.from_numpy(hs)))


@needs_torch
def test_torch_errors():
    import torch
    with pytest.raises(TypeError, match="Linear"):
        from_torch(torch.nn.Linear(3, 4))
    with pytest.raises(TypeError, match="float16"):
        from_torch(torch.nn.LSTM(3, 4).half())
    f = from_torch(torch.nn.LSTM(3, 4, num_layers=2))
    with pytest.raises(ValueError, match="input: expected a 3-D"):
        f(np.zeros((2, 3, 4, 3), np.float32))
    with pytest.raises(ValueError, match="depth"):
        f(np.zeros((5, 2, 7), np.float32))
    with pytest.raises(ValueError, match="h_0: expected shape \\(2, 2, 4\\)"):
        f(np.zeros((5, 2, 3), np.float32), (np.zeros((1, 2, 4), "f"), np.zeros((2, 2, 4), "f")))
    with pytest.raises(ValueError, match="tuple \\(h_0, c_0\\)"):
        f(np.zeros((5, 2, 3), np.float32), np.zeros((2, 2, 4), "f"))
    with pytest.raises(TypeError, match="float32"):
        f(np.zeros((5, 2, 3), np.float64))
    with pytest.raises(ValueError, match="sequence_length"):
        f(np.zeros((5, 2, 3), np.float32), sequence_length=[6, 1])


# ---------------------------------------------------------------------------------------------
# ONNX (built with onnx.helper, run by onnxruntime)
# ---------------------------------------------------------------------------------------------

def _onnx_model(op, I, U, direction="forward", dtype=np.float32, attrs=None, bias=True,
                peep=False, seq=False, init_h=False, init_c=False, seed=0, opset=14,
                const_node=False):
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(seed)
    G = {"RNN": 1, "GRU": 3, "LSTM": 4}[op]
    D = 2 if direction == "bidirectional" else 1
    tensors = {"W": rng.uniform(-0.6, 0.6, (D, G * U, I)),
               "R": rng.uniform(-0.6, 0.6, (D, G * U, U))}
    if bias:
        tensors["B"] = rng.uniform(-0.6, 0.6, (D, 2 * G * U))
    if peep:
        tensors["P"] = rng.uniform(-0.6, 0.6, (D, 3 * U))
    names = ["X", "W", "R", "B" if bias else "", "seq" if seq else "", "h0" if init_h else ""]
    if op == "LSTM":
        names += ["c0" if init_c else "", "P" if peep else ""]
    while names[-1] == "":
        names.pop()
    tt = TensorProto.FLOAT if np.dtype(dtype) == np.float32 else TensorProto.DOUBLE
    outs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    nodes = []
    inits = []
    for k, v in tensors.items():
        t = numpy_helper.from_array(v.astype(dtype), k)
        if const_node:
            nodes.append(helper.make_node("Constant", [], [k], value=t))
        else:
            inits.append(t)
    nodes.append(helper.make_node(op, names, outs, name="rnn0", hidden_size=U,
                                  direction=direction, **(attrs or {})))
    gin = [helper.make_tensor_value_info("X", tt, None)]
    if seq:
        gin.append(helper.make_tensor_value_info("seq", TensorProto.INT32, None))
    for n in ("h0", "c0"):
        if n in names:
            gin.append(helper.make_tensor_value_info(n, tt, None))
    graph = helper.make_graph(nodes, "g", gin,
                              [helper.make_tensor_value_info(o, tt, None) for o in outs], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _ort(model, feeds):
    import onnxruntime as ort
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    wanted = {i.name for i in sess.get_inputs()}
    return sess.run(None, {k: v for k, v in feeds.items() if k in wanted})


ONNX_GRID = [(op, direction, extra)
             for op in ("LSTM", "GRU", "RNN")
             for direction in ("forward", "reverse", "bidirectional")
             for extra in ("plain", "full")]


@needs_onnx
@pytest.mark.parametrize("op,direction,extra", ONNX_GRID)
def test_onnx_nodes(op, direction, extra, tmp_path):
    full = extra == "full"
    attrs = {}
    if op == "GRU":
        attrs["linear_before_reset"] = int(full)
    model = _onnx_model(op, 3, 5, direction, attrs=attrs, bias=full or op != "RNN",
                        peep=full and op == "LSTM", seq=full, init_h=full,
                        init_c=full and op == "LSTM", const_node=full and op == "RNN")
    D = 2 if direction == "bidirectional" else 1
    rng = np.random.default_rng(1)
    T, B = 7, 4
    feeds = {"X": rng.standard_normal((T, B, 3)).astype("f"),
             "seq": np.array([7, 3, 1, 5], np.int32),
             "h0": rng.standard_normal((D, B, 5)).astype("f"),
             "c0": rng.standard_normal((D, B, 5)).astype("f")}
    ref = _ort(model, feeds)
    src = model
    if full:                                   # also from a path and from bytes
        path = tmp_path / "m.onnx"
        path.write_bytes(model.SerializeToString())
        src = str(path) if op != "GRU" else model.SerializeToString()
    f = from_onnx(src)
    kw = {}
    if full:
        kw = {"sequence_lens": feeds["seq"], "initial_h": feeds["h0"]}
        if op == "LSTM":
            kw["initial_c"] = feeds["c0"]
    got = f(feeds["X"], **kw)
    assert_close(list(got), ref, f"{op} {direction} {extra}")
    # layout=1 (onnxruntime refuses it): the same numbers, batch-major
    m1 = from_onnx(_onnx_model(op, 3, 5, direction, attrs=dict(attrs, layout=1),
                               bias=full or op != "RNN", peep=full and op == "LSTM", opset=14))
    kw1 = {k: (v.transpose(1, 0, 2) if k.startswith("initial") else v) for k, v in kw.items()}
    got1 = m1(feeds["X"].transpose(1, 0, 2), **kw1)
    assert_close(got1[0], ref[0].transpose(2, 0, 1, 3), "layout1 Y")
    for g, r in zip(got1[1:], ref[1:]):
        assert_close(g, r.transpose(1, 0, 2), "layout1 states")


@needs_onnx
@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_onnx_float64(op):
    """A float64 model gives float64 cells. onnxruntime 1.32 fails on float64 LSTM/GRU, so the
    reference is the same model in float32 (float32 tolerance)."""
    model = _onnx_model(op, 2, 4, "bidirectional", dtype=np.float64, seq=True)
    x = np.random.default_rng(2).standard_normal((5, 3, 2))
    seq = np.array([5, 2, 4], np.int32)
    f = from_onnx(model)
    assert all(c.dtype == np.float64 for c in f.cells)
    got = f(x, sequence_lens=seq)
    assert all(g.dtype == np.float64 for g in got)
    ref = _ort(_onnx_model(op, 2, 4, "bidirectional", dtype=np.float32, seq=True),
               {"X": x.astype(np.float32), "seq": seq})
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)


ONNX_ACT_CASES = [
    ("RNN", {"activations": ["Relu"]}),
    ("LSTM", {"clip": 0.7}),
    ("GRU", {"clip": 0.5, "linear_before_reset": 1}),
    ("LSTM", {"input_forget": 1}),
    ("LSTM", {"activations": ["HardSigmoid", "Tanh", "Tanh"]}),
    ("LSTM", {"activations": ["Sigmoid", "LeakyRelu", "ScaledTanh"],
              "activation_alpha": [0.1, 0.8], "activation_beta": [1.2]}),
    ("GRU", {"activations": ["HardSigmoid", "Softsign"], "activation_alpha": [0.3],
             "activation_beta": [0.4]}),
    ("RNN", {"activations": ["Affine"], "activation_alpha": [0.5], "activation_beta": [0.1]}),
    ("RNN", {"activations": ["ThresholdedRelu"], "activation_alpha": [0.2]}),
    ("RNN", {"activations": ["Elu"]}),
    ("GRU", {"activations": ["Sigmoid", "Elu", "Sigmoid", "Tanh"],
             "activation_alpha": [0.5]}),
]


@needs_onnx
@pytest.mark.parametrize("op,attrs", ONNX_ACT_CASES,
                         ids=[f"{op}-{'-'.join(map(str, a.get('activations', [])))}"
                              f"{'-clip' if 'clip' in a else ''}"
                              f"{'-if' if 'input_forget' in a else ''}"
                              for op, a in ONNX_ACT_CASES])
def test_onnx_activations_clip_input_forget(op, attrs):
    plain = attrs.get("activations") in (["Relu"],) and "clip" not in attrs
    if not plain and not HAS_ACT:
        pytest.skip("needs fastcells.nn.activation and the new cell options (not in this "
                    "build yet)")
    direction = "bidirectional" if len(attrs.get("activations", [])) == 4 else "forward"
    model = _onnx_model(op, 3, 4, direction, attrs=attrs, peep=op == "LSTM", seq=True)
    x = (2 * np.random.default_rng(3).standard_normal((6, 3, 3))).astype("f")
    seq = np.array([6, 4, 2], np.int32)
    ref = _ort(model, {"X": x, "seq": seq})
    assert_close(list(from_onnx(model)(x, sequence_lens=seq)), ref)


@needs_onnx
def test_onnx_errors():
    from onnx import helper
    with pytest.raises(ValueError, match="Softplus"):
        from_onnx(_onnx_model("RNN", 2, 3, attrs={"activations": ["Softplus"]}))
    with pytest.raises(ValueError, match="unknown ONNX activation 'Swish'"):
        from_onnx(_onnx_model("RNN", 2, 3, attrs={"activations": ["Swish"]}))
    with pytest.raises(ValueError, match="needs 3 activations"):
        from_onnx(_onnx_model("LSTM", 2, 3, attrs={"activations": ["Sigmoid", "Tanh"]}))
    m = _onnx_model("GRU", 2, 3)
    two = helper.make_model(helper.make_graph(
        list(m.graph.node) + [helper.make_node("GRU", ["X", "W", "R"], ["Y2"], name="g2",
                                               hidden_size=3)],
        "g", list(m.graph.input), list(m.graph.output), list(m.graph.initializer)))
    with pytest.raises(ValueError, match="2 recurrent nodes"):
        from_onnx(two)
    assert from_onnx(two, node="g2").cells[0].num_units == 3
    assert from_onnx(two, node=0).cells[0].num_units == 3
    with pytest.raises(ValueError, match="no LSTM/GRU/RNN node named 'zz'"):
        from_onnx(two, node="zz")
    missing = helper.make_model(helper.make_graph(
        [helper.make_node("GRU", ["X", "Wx", "R"], ["Y"], hidden_size=3)], "g",
        list(m.graph.input), list(m.graph.output)[:1], list(m.graph.initializer)))
    with pytest.raises(ValueError, match="input W \\('Wx'\\) is not an initializer"):
        from_onnx(missing)
    bad = _onnx_model("LSTM", 2, 3, attrs={})
    next(a for a in bad.graph.node[0].attribute if a.name == "hidden_size").i = 4
    with pytest.raises(ValueError, match="hidden_size 4"):
        from_onnx(bad)
    f = from_onnx(_onnx_model("LSTM", 2, 3, "bidirectional"))
    x = np.zeros((4, 2, 2), np.float32)
    with pytest.raises(ValueError, match="initial_h: expected shape \\(2, 2, 3\\)"):
        f(x, initial_h=np.zeros((1, 2, 3), np.float32))
    with pytest.raises(ValueError, match="X: expected a 3-D"):
        f(x[0])
    with pytest.raises(ValueError, match="sequence_lens"):
        f(x, sequence_lens=np.array([1.0, 2.0]))
    with pytest.raises(TypeError, match="model"):
        from_onnx(12)


def test_onnx_missing_package_message(monkeypatch):
    import builtins
    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError("no onnx")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match="pip install onnx"):
        from_onnx(b"")


# ---------------------------------------------------------------------------------------------
# Keras (tf-keras and Keras 3 layer objects; the config path checked against them)
# ---------------------------------------------------------------------------------------------

def _keras_modules():
    if not HAS_TF:
        return []
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    mods = []
    for name in ("tf_keras", "keras"):
        if importlib.util.find_spec(name) is not None:
            mods.append(name)
    return mods


KERAS = _keras_modules()
needs_keras = pytest.mark.skipif(not KERAS, reason="TensorFlow / Keras are not installed")

KERAS_GRID = [
    ("SimpleRNN", {}), ("SimpleRNN", {"activation": "relu", "return_sequences": True}),
    ("LSTM", {}), ("LSTM", {"return_sequences": True, "return_state": True}),
    ("LSTM", {"go_backwards": True, "return_sequences": True, "use_bias": False}),
    ("GRU", {"return_state": True}), ("GRU", {"reset_after": False, "return_sequences": True}),
    ("GRU", {"go_backwards": True, "return_state": True, "activation": "relu"}),
    ("LSTM", {"recurrent_activation": "hard_sigmoid", "return_sequences": True}),
    ("GRU", {"recurrent_activation": "hard_sigmoid", "reset_after": False}),
    ("Bidirectional", {"layer": ("LSTM", {"return_sequences": True}), "merge_mode": "concat"}),
    ("Bidirectional", {"layer": ("GRU", {"return_state": True}), "merge_mode": "sum"}),
    ("Bidirectional", {"layer": ("LSTM", {"return_sequences": True, "return_state": True}),
                       "merge_mode": None}),
    ("Bidirectional", {"layer": ("GRU", {"return_sequences": True}), "merge_mode": "mul"}),
    ("Bidirectional", {"layer": ("SimpleRNN", {}), "merge_mode": "ave"}),
]


def _keras_layer(K, cls, kw):
    L = K.layers
    if cls == "Bidirectional":
        inner, ikw = kw["layer"]
        return L.Bidirectional(getattr(L, inner)(5, **ikw), merge_mode=kw["merge_mode"])
    return getattr(L, cls)(5, **kw)


def _keras_call(layer, x, **kw):
    if kw.get("initial_state") is not None:      # tf-keras wants tensors there
        import tensorflow as tf
        kw["initial_state"] = [tf.constant(a) for a in kw["initial_state"]]
    out = layer(x, **kw)
    if isinstance(out, (list, tuple)):
        return [np.asarray(o) for o in out]
    return np.asarray(out)


@needs_keras
@pytest.mark.parametrize("kmod", KERAS)
@pytest.mark.parametrize("cls,kw", KERAS_GRID,
                         ids=[f"{c}-{k.get('layer', ('',))[0]}-" + "-".join(
                             f"{a}={b}" for a, b in k.items() if a != "layer")
                              for c, k in KERAS_GRID])
def test_keras_layers(kmod, cls, kw):
    if "hard_sigmoid" in str(kw) and not HAS_ACT:
        pytest.skip("hard_sigmoid needs fastcells.nn.activation (not in this build yet)")
    K = importlib.import_module(kmod)
    layer = _keras_layer(K, cls, kw)
    B, T, I = 3, 6, 4
    layer.build((None, T, I))
    rng = np.random.default_rng(7)
    layer.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype(w.dtype)
                       for w in layer.get_weights()])
    x = rng.standard_normal((B, T, I)).astype("f")
    m = from_keras(layer)
    assert_close(m(x), _keras_call(layer, x), "layer")
    version = 3 if kmod == "keras" else 2
    cfg = {"class_name": cls, "config": layer.get_config()}
    m2 = from_keras(weights=layer.get_weights(), config=cfg, keras_version=version)
    assert_close(m2(x), _keras_call(layer, x), "config")
    # masks: right padding (one sequence call) and an arbitrary mask (cell per step)
    mask = np.ones((B, T), bool)
    mask[1, 4:] = False
    mask[2, :] = False
    assert_close(m(x, mask=mask), _keras_call(layer, x, mask=mask), "right-padded mask")
    mask = rng.random((B, T)) > 0.4
    assert_close(m(x, mask=mask), _keras_call(layer, x, mask=mask), "arbitrary mask")
    # initial_state
    inner = kw["layer"][0] if cls == "Bidirectional" else cls
    n = (2 if inner == "LSTM" else 1) * (2 if cls == "Bidirectional" else 1)
    init = [rng.standard_normal((B, 5)).astype("f") for _ in range(n)]
    assert_close(m(x, initial_state=init), _keras_call(layer, x, initial_state=init), "init")


@needs_keras
def test_keras_v1_gru_defaults():
    """tf.compat.v1.keras.layers.GRU: hard_sigmoid, reset_after=False by default."""
    if not HAS_ACT:
        pytest.skip("hard_sigmoid needs fastcells.nn.activation (not in this build yet)")
    import tensorflow as tf
    layer = tf.compat.v1.keras.layers.GRU(4, return_sequences=True)
    layer.build((None, 5, 3))
    x = np.random.default_rng(8).standard_normal((2, 5, 3)).astype("f")
    assert_close(from_keras(layer)(x), np.asarray(layer(x)))


@needs_keras
@pytest.mark.parametrize("kmod", KERAS)
def test_keras_weights_roundtrip_with_layers(kmod):
    """fastcells cell -> to_keras_weights -> a Keras layer gives the cell's numbers."""
    K = importlib.import_module(kmod)
    x = np.random.default_rng(9).standard_normal((2, 5, 3)).astype("f")
    for cell, layer in [(BasicLSTMCell(4, seed=1), K.layers.LSTM(4, return_sequences=True)),
                        (GRUCell(4, seed=2), K.layers.GRU(4, reset_after=False,
                                                          return_sequences=True)),
                        (GRUCell(4, reset_after=True, seed=3),
                         K.layers.GRU(4, return_sequences=True)),
                        (BasicRNNCell(4, seed=4), K.layers.SimpleRNN(4, return_sequences=True))]:
        cell.build(3)
        layer.build((None, 5, 3))
        layer.set_weights(to_keras_weights(cell))
        out, _ = fastcells.nn.dynamic_rnn(cell, x, dtype=np.float32)
        assert_close(out, np.asarray(layer(x)), type(cell).__name__)


@needs_keras
def test_keras_time_major_tf_keras():
    if "tf_keras" not in KERAS:
        pytest.skip("tf_keras is not installed (time_major is a tf-keras argument)")
    import tf_keras
    layer = tf_keras.layers.LSTM(4, time_major=True, return_sequences=True, return_state=True)
    layer.build((6, None, 3))
    x = np.random.default_rng(10).standard_normal((6, 2, 3)).astype("f")
    assert_close(from_keras(layer)(x), _keras_call(layer, x))
