"""Accuracy of fastcells' int8 and bf16 reference schemes, beside the int8 peers where installed.

    python tools/quant_accuracy.py [--T 1000] [--H 128 256] [--B 8] [--seed 0] [--no-bf16]
    python tools/quant_accuracy.py --ablation        (the int8 scale choices, see below)

Every cell kind (RNN tanh, LSTM, LSTM with peepholes and a projection P = H/2, TF's GRU, the
reset-after GRU) with TF's default initializer (glorot_uniform over each kernel, as TF builds
them), unit-variance inputs x [B,T,I] with I = H, zero initial state: the relative L2 error
``|h - h_ref| / |h_ref|`` of the final h against fastcells.reference in float64.

Peers on the same weights and inputs, each against its own fp32 run (and against the float64
reference, for a check that the weights were mapped right):
  * torch.ao.quantization.quantize_dynamic (qint8) of nn.LSTM and nn.GRU (PyTorch's GRU is the
    reset-after GRU);
  * ONNX Runtime's DynamicQuantizeLSTM, from onnxruntime.quantization.quantize_dynamic of an
    ONNX LSTM built with onnx.helper.
A peer that is not installed is reported as skipped. Accuracy only: no timings.
"""
import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from fastcells import reference as ref  # noqa: E402
from fastcells import reference_quant as rq  # noqa: E402


def glorot(rng, shape):
    limit = np.sqrt(6.0 / (shape[0] + shape[1]))
    return rng.uniform(-limit, limit, shape)


def make_weights(kind, I, H, rng):
    """TF-layout float64 weights; biases as TF initializes them (zeros; GRU gates: ones)."""
    if kind == "rnn":
        return dict(kernel=glorot(rng, (I + H, H)), bias=np.zeros(H))
    if kind == "lstm":
        return dict(kernel=glorot(rng, (I + H, 4 * H)), bias=np.zeros(4 * H))
    if kind == "lstm_peep_proj":
        P = H // 2
        return dict(kernel=glorot(rng, (I + P, 4 * H)), bias=np.zeros(4 * H),
                    w_i_diag=glorot(rng, (1, H))[0], w_f_diag=glorot(rng, (1, H))[0],
                    w_o_diag=glorot(rng, (1, H))[0], proj_kernel=glorot(rng, (H, P)))
    if kind == "gru":
        return dict(gates_kernel=glorot(rng, (I + H, 2 * H)), gates_bias=np.ones(2 * H),
                    candidate_kernel=glorot(rng, (I + H, H)), candidate_bias=np.zeros(H))
    return dict(gates_kernel=glorot(rng, (I + H, 2 * H)), gates_bias=np.ones(2 * H),
                input_kernel=glorot(rng, (I, H)), input_bias=np.zeros(H),
                hidden_kernel=glorot(rng, (H, H)), hidden_bias=np.zeros(H))


CELL = {"rnn": "rnn", "lstm": "lstm", "lstm_peep_proj": "lstm", "gru": "gru",
        "gru_reset_after": "gru_reset_after"}


def reference_final_h(kind, x, w):
    B = x.shape[0]
    if CELL[kind] == "lstm":
        U = w["bias"].shape[0] // 4
        P = w["proj_kernel"].shape[1] if "proj_kernel" in w else U

        def step(x_t, s):
            c, m = ref.lstm_cell(x_t, s[0], s[1], **w)
            return m, (c, m)
        return ref.dynamic_rnn(step, x, (np.zeros((B, U)), np.zeros((B, P))))[1][1]
    fn = {"rnn": ref.rnn_cell, "gru": ref.gru_cell,
          "gru_reset_after": ref.gru_cell_reset_after}[kind]
    H = w["kernel"].shape[1] if kind == "rnn" else w["gates_bias"].shape[0] // 2

    def step(x_t, h):
        h_new = fn(x_t, h, **w)
        return h_new, h_new
    return ref.dynamic_rnn(step, x, np.zeros((B, H)))[1]


def rel_l2(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


def ours(kind, scheme, x, w):
    runner = rq.dynamic_rnn_int8 if scheme == "int8" else rq.dynamic_rnn_bf16
    state = runner(CELL[kind], x, **w)[1]
    return state[1] if CELL[kind] == "lstm" else state


# ---------------------------------------------------------------------------------------------
# Peers
# ---------------------------------------------------------------------------------------------

def torch_final_h(kind, x, w, quantized):
    """nn.LSTM / nn.GRU (batch_first) with the TF weights; quantized: quantize_dynamic qint8."""
    import torch
    I, H = x.shape[2], (w["bias"].shape[0] // 4 if kind == "lstm" else w["input_bias"].shape[0])
    if kind == "lstm":
        k, b = w["kernel"], w["bias"].copy()
        i, j, f, o = (slice(n * H, (n + 1) * H) for n in range(4))
        order = [i, f, j, o]                                  # torch: i, f, g, o
        b[f] += 1.0                                           # TF's forget_bias
        w_ih = np.concatenate([k[:I, s].T for s in order])
        w_hh = np.concatenate([k[I:, s].T for s in order])
        b_ih, b_hh = np.concatenate([b[s] for s in order]), np.zeros(4 * H)
        module = torch.nn.LSTM(I, H, batch_first=True)
    else:                                                     # reset-after GRU: r, z, n
        g = w["gates_kernel"]
        w_ih = np.concatenate([g[:I, :H].T, g[:I, H:].T, w["input_kernel"].T])
        w_hh = np.concatenate([g[I:, :H].T, g[I:, H:].T, w["hidden_kernel"].T])
        b_ih = np.concatenate([w["gates_bias"], w["input_bias"]])
        b_hh = np.concatenate([np.zeros(2 * H), w["hidden_bias"]])
        module = torch.nn.GRU(I, H, batch_first=True)
    with torch.no_grad():
        for name, value in (("weight_ih_l0", w_ih), ("weight_hh_l0", w_hh),
                            ("bias_ih_l0", b_ih), ("bias_hh_l0", b_hh)):
            getattr(module, name).copy_(torch.from_numpy(value.astype(np.float32)))
    holder = torch.nn.Module()              # quantize_dynamic swaps children, not the root
    holder.rnn = module
    if quantized:
        holder = torch.ao.quantization.quantize_dynamic(
            holder, {torch.nn.LSTM, torch.nn.GRU}, dtype=torch.qint8)
        assert type(holder.rnn).__module__.startswith("torch.ao.nn.quantized"), type(holder.rnn)
    with torch.no_grad():
        _, state = holder.rnn(torch.from_numpy(x.astype(np.float32)))
    h_n = state[0] if kind == "lstm" else state
    return h_n[0].numpy().astype(np.float64)


def ort_lstm_final_h(x, w, quantized):
    """ONNX LSTM (gates i, o, f, c) run by ONNX Runtime; quantized: DynamicQuantizeLSTM."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    T, B, I = x.shape[1], x.shape[0], x.shape[2]
    H = w["bias"].shape[0] // 4
    k, b = w["kernel"], w["bias"].copy()
    i, j, f, o = (slice(n * H, (n + 1) * H) for n in range(4))
    order = [i, o, f, j]
    b[f] += 1.0
    W = np.concatenate([k[:I, s].T for s in order])[None].astype(np.float32)   # [1,4H,I]
    R = np.concatenate([k[I:, s].T for s in order])[None].astype(np.float32)   # [1,4H,H]
    Bias = np.concatenate([np.concatenate([b[s] for s in order]),
                           np.zeros(4 * H)])[None].astype(np.float32)           # [1,8H]
    node = helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y", "Y_h"], hidden_size=H)
    graph = helper.make_graph(
        [node], "lstm", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, B, I])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(W, "W"), numpy_helper.from_array(R, "R"),
         numpy_helper.from_array(Bias, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "lstm.onnx")
        onnx.save(model, path)
        if quantized:
            from onnxruntime.quantization import QuantType, quantize_dynamic
            qpath = os.path.join(tmp, "lstm_q.onnx")
            quantize_dynamic(path, qpath, weight_type=QuantType.QInt8)
            ops = {n.op_type for n in onnx.load(qpath).graph.node}
            assert "DynamicQuantizeLSTM" in ops, ops
            path = qpath
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        y_h = sess.run(["Y_h"], {"X": np.ascontiguousarray(x.swapaxes(0, 1), np.float32)})[0]
    return y_h[0].astype(np.float64)


def ablations(args):
    """The int8 scale choices against their alternatives, on the same weights and inputs:
    h per row instead of the fixed 1/127, and the projection's input at the fixed 1/127 instead
    of per row. Patches reference_quant's private cell classes for the run only."""
    kinds = ["rnn", "lstm", "gru", "gru_reset_after", "lstm_peep_proj"]
    original_is, original_lstm_init = rq._is, rq._Lstm.__init__

    def lstm_fixed_projection_input(self, *a, **k):
        original_lstm_init(self, *a, **k)
        if self.wp is not None:              # default tanh / sigmoid here: bounded by 1
            self.m_amax = rq.H_AMAX
    variants = [("as specified", None),
                ("h per row", lambda: setattr(rq, "_is", lambda *a: False)),
                ("projection input fixed 1/127",
                 lambda: setattr(rq._Lstm, "__init__", lstm_fixed_projection_input))]
    print("int8 ablation: relative L2 error of the final h, T=%d B=%d" % (args.T, args.B))
    for H in args.H:
        for kind in kinds:
            rng = np.random.default_rng(args.seed)
            w = make_weights(kind, H, H, rng)
            x = rng.standard_normal((args.B, args.T, H))
            want = reference_final_h(kind, x, w)
            for name, patch in variants:
                if name.startswith("projection") and kind != "lstm_peep_proj":
                    continue
                if patch is not None:
                    patch()
                try:
                    err = rel_l2(ours(kind, "int8", x, w), want)
                finally:
                    rq._is, rq._Lstm.__init__ = original_is, original_lstm_init
                print("%-16s %4d  %-30s %.3e" % (kind, H, name, err), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--T", type=int, default=1000)
    parser.add_argument("--H", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--B", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-bf16", action="store_true", help="skip the (slow) bf16 chain")
    parser.add_argument("--ablation", action="store_true",
                        help="int8 only: the fixed h scale and the per-row projection input "
                             "against their alternatives")
    args = parser.parse_args()
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1, user_api="blas")
    except ImportError:
        pass
    if args.ablation:
        ablations(args)
        return
    print("relative L2 error of the final h, T=%d B=%d I=H, glorot_uniform, x ~ N(0,1)"
          % (args.T, args.B))
    print("%-16s %4s  %-34s %10s %12s" % ("cell", "H", "scheme", "vs own fp32", "vs f64 ref"))
    for H in args.H:
        for kind in ["rnn", "lstm", "lstm_peep_proj", "gru", "gru_reset_after"]:
            rng = np.random.default_rng(args.seed)
            w = make_weights(kind, H, H, rng)
            x = rng.standard_normal((args.B, args.T, H))
            want = reference_final_h(kind, x, w)
            rows = [("fastcells int8", None, ours(kind, "int8", x, w))]
            if not args.no_bf16:
                rows.append(("fastcells bf16", None, ours(kind, "bf16", x, w)))
            peers = []
            if kind in ("lstm", "gru_reset_after"):
                peers.append(("torch quantize_dynamic qint8",
                              lambda q, k=kind: torch_final_h("lstm" if k == "lstm" else "gru",
                                                              x, w, q)))
            if kind == "lstm":
                peers.append(("onnxruntime DynamicQuantizeLSTM",
                              lambda q: ort_lstm_final_h(x, w, q)))
            for name, run in peers:
                try:
                    fp32, q8 = run(False), run(True)
                except ImportError as e:
                    print("%-16s %4d  %-34s skipped: %s" % (kind, H, name, e))
                    continue
                rows.append((name, fp32, q8))
                rows.append((name.split()[0] + " fp32 (mapping check)", None, fp32))
            for name, own_fp32, got in rows:
                own = "" if own_fp32 is None else "%.3e" % rel_l2(got, own_fp32)
                print("%-16s %4d  %-34s %10s %12.3e" % (kind, H, name, own, rel_l2(got, want)),
                      flush=True)


if __name__ == "__main__":
    main()
