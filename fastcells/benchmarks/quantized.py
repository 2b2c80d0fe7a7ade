"""Whole sequences at reduced precision: fastcells fp32 / bf16 / int8 beside onnxruntime's and
torch's fp32 and dynamic int8, each row with its accuracy and its % of the machine's floor.

    python -m fastcells bench-seq --precision fp32,bf16,int8   [--quick] [--rounds N] [--case ID]
    python -c "import fastcells.benchmarks.quantized as q; q.run()"

Cases (``grid()``, I = H, x [B,T,I] standard normal, zero initial state, the Glorot-uniform
weights fastcells' cells are initialised with, forget_bias 1.0): LSTM B=1 H in {128, 256, 512}
T=100, LSTM B=1 H=1024 T=50, LSTM B=64 H=512 T=50, reset-after GRU B=1 H in {128, 256, 512}
T=100 and B=64 H=512 T=50, and a tanh RNN B=1 H=512 T=100 (no int8 peer exists for it). They are
sequences.SeqCase rows, and the subject (cell, weights, x, fastcells fp32's result, checked
against the float64 oracle) is sequences.make_subject's.

Contenders (``CONTENDERS``, in row order; each gives a Runner and its output sequence [B,T,H]):

    fastcells-<p>   fastcells.nn.dynamic_rnn of the cell (fp32) or of fastcells.quantize(cell,
                    p) (bf16, int8), one native call
    ort-fp32        sequences' onnxruntime peer: one ONNX LSTM/GRU/RNN node
    ort-int8        onnxruntime.quantization.quantize_dynamic of the same LSTM model with QInt8
                    weights (its default per-tensor scales): one DynamicQuantizeLSTM node (LSTM
                    only: onnxruntime has no int8 GRU or RNN)
    torch-fp32      sequences' torch peer: torch.nn.LSTM/GRU/RNN(batch_first=True)
    torch-int8      torch.ao.quantization.quantize_dynamic(module, {nn.LSTM, nn.GRU},
                    dtype=torch.qint8) of that module (no nn.RNN: it has no dynamic int8 form)

All at fastcells' thread count (intra_op_num_threads, torch.set_num_threads); a contender that
is not installed is skipped with its reason. The fp32 contenders are checked against fastcells
fp32 at sequences' float32 tolerance; every reduced-precision one must be within
ACCURACY_GUARD relative L2 of it (a wrong gate order or layout is off by ~1) before it is timed.

Columns: ms per sequence (_harness.round_robin: rounds that each time every contender once in
a rotated order, a contender's time the minimum over rounds of its round's median); x = time /
the first fastcells contender's time; rel L2 = ||out - out_fp32|| / ||out_fp32|| over the
output sequence, out_fp32 fastcells fp32's on the same weights and inputs; floor (``floor``):
the least time at the row's precision on this machine (_limits.row_floor): at B <= 4 the
weights' bytes in that precision (4 / 2 / 1 bytes a weight) streamed every step from the cache
level each thread's share fits in, at large batch the FLOPs at that precision's measured
multiply-add peak (fp32 FMA, bf16 the faster of vdpbf16ps and the fp32 FMA it widens to, int8
u8 x s8 VNNI / vpmaddubsw), plus fastcells fp32's empty call; %floor = floor / time. A default
run does ROUNDS rounds.
"""
import dataclasses
import logging
import os
import sys
import tempfile
import warnings

import numpy as np

import fastcells
from fastcells import convert, nn
from fastcells.benchmarks import _harness, _limits, sequences
from fastcells.benchmarks._harness import (DTYPE, Runner, Unavailable,
                                           import_torch)
from fastcells.benchmarks.sequences import SeqCase

__all__ = ["PRECISIONS", "BYTES_PER_WEIGHT", "ACCURACY_GUARD", "grid", "CONTENDERS",
           "Contender", "make_contender", "relative_l2", "floor", "parse_precisions", "run"]

PRECISIONS = ("fp32", "bf16", "int8")
BYTES_PER_WEIGHT = {"fp32": 4, "bf16": 2, "int8": 1}
# the largest relative L2 error of a reduced-precision contender's outputs against fastcells
# fp32 that passes its check: the schemes here give ~1e-3 (bf16) to ~1e-2 (int8) on these
# cases, a wrong layout or gate order ~1
ACCURACY_GUARD = 0.1
# (seconds, samples): a contender whose one call takes longer gets that many samples a turn
# (torch's B=64 rows: 0.2-0.4 s a call on a 2-core Xeon), so a default run stays a few minutes
SLOW_CALL = (0.05, 1)
# round-robin rounds of a default run (5 here, 7 in the fp32 table: 7 contenders a case)
ROUNDS = 5


def grid(full=False):
    """The rows of the module docstring; full: also every one-layer, one-direction,
    full-length case of sequences.grid(full=True) not among them (for --case)."""
    cases = [SeqCase("lstm", 1, H, H, 100) for H in (128, 256, 512)]
    cases += [SeqCase("lstm", 1, 1024, 1024, 50), SeqCase("lstm", 64, 512, 512, 50),
              *(SeqCase("gru", 1, H, H, 100) for H in (128, 256, 512)),
              SeqCase("gru", 64, 512, 512, 50),
              SeqCase("rnn", 1, 512, 512, 100)]
    if full:
        cases += [c for c in sequences.grid(full=True)
                  if c not in cases and c.layers == 1 and c.directions == 1
                  and not c.variable_lengths]
    return cases


def parse_precisions(text):
    """"fp32,bf16,int8" -> ("fp32", "bf16", "int8") (order kept, repeats dropped); ValueError
    naming --precision for an empty list or an unknown precision."""
    names = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in names if p not in PRECISIONS]
    if not names or unknown:
        raise ValueError(f"--precision: expected a comma-separated list of {', '.join(PRECISIONS)}"
                         f", got {text!r}")
    return tuple(dict.fromkeys(names))


def relative_l2(got, want):
    """||got - want|| / ||want|| over whole arrays, in float64."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


@dataclasses.dataclass
class Contender:
    """A timed contender: `runner`, the `precision` of its weights (its floor's), and its
    first call's output sequence `output` [B,T,H] (float32)."""
    runner: Runner
    precision: str
    output: np.ndarray


def _guard(s, name, output):
    """Raises AssertionError unless `output` is within ACCURACY_GUARD of fastcells fp32."""
    err = relative_l2(output, s.expected["output"])
    if not err <= ACCURACY_GUARD:                        # also catches NaN
        raise AssertionError(f"{s.case.id} {name}: relative L2 error {err:.3g} of the outputs "
                             f"against fastcells fp32, expected <= {ACCURACY_GUARD}")


def _fastcells(precision):
    def make(s):
        if precision == "fp32":
            runner = sequences.make_runner("fastcells", s)
            return Contender(runner, "fp32", s.expected["output"])
        cell, x = fastcells.quantize(s.cell, precision), s.x

        def fn():
            return nn.dynamic_rnn(cell, x, dtype=DTYPE)

        output = fn()[0]
        _guard(s, f"fastcells-{precision}", output)
        return Contender(Runner(fn, checked="fastcells fp32 (ACCURACY_GUARD)"), precision,
                         output)
    return make


def _ort_fp32(s):
    runner = sequences.make_runner("onnxruntime", s)
    return Contender(runner, "fp32", runner.fn()[0])


def _ort_int8(s):
    if s.case.kind != "lstm":
        raise Unavailable("onnxruntime has no int8 GRU or RNN (DynamicQuantizeLSTM only)")
    try:
        import onnx
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as e:
        raise Unavailable(f"onnxruntime.quantization is not importable ({e}): pip install "
                          f"onnx onnxruntime") from None
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "lstm-int8.onnx")
        logging.disable(logging.WARNING)       # its advice to pre-process the model
        try:
            quantize_dynamic(sequences.onnx_model(s), path, op_types_to_quantize=["LSTM"],
                             weight_type=QuantType.QInt8)
        finally:
            logging.disable(logging.NOTSET)
        model = onnx.load(path)
    ops = [node.op_type for node in model.graph.node]
    if "DynamicQuantizeLSTM" not in ops:
        raise Unavailable(f"quantize_dynamic made no DynamicQuantizeLSTM here (nodes {ops})")
    sess = sequences.ort_session(ort, model)
    x = s.x

    def fn():
        y = sess.run(["Y"], {"X": np.ascontiguousarray(x.transpose(1, 0, 2))})[0]  # [T,1,B,H]
        return y[:, 0].transpose(1, 0, 2)                                          # [B,T,H]

    output = fn()
    _guard(s, "ort-int8", output)
    return Contender(Runner(fn, checked="fastcells fp32 (ACCURACY_GUARD)"), "int8", output)


def _torch_fp32(s):
    torch = import_torch()
    runner = sequences.make_runner("torch", s)
    with torch.inference_mode():
        output = runner.fn()[0].numpy()
    return Contender(runner, "fp32", output)


def _torch_int8(s):
    torch = import_torch()
    if s.case.kind == "rnn":
        raise Unavailable("torch.ao has no dynamic int8 nn.RNN (LSTM and GRU only)")
    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError as e:
        raise Unavailable(f"torch.ao.quantization is not importable ({e})") from None
    torch.set_num_threads(fastcells.get_num_threads())
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[s.case.kind]
    with torch.inference_mode():
        module = cls(s.case.I, s.case.H, batch_first=True)
        for name, value in convert.to_torch_state_dict(s.cell).items():
            getattr(module, name + "_l0").copy_(
                torch.from_numpy(np.ascontiguousarray(value, DTYPE)))
        module.eval()
    # quantize_dynamic swaps the children of the module it is given, so the LSTM/GRU goes in
    # a container
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)     # torch's deprecation of qint8 tensors
        qmodule = quantize_dynamic(torch.nn.Sequential(module), {torch.nn.LSTM, torch.nn.GRU},
                                   dtype=torch.qint8)[0]
    if isinstance(qmodule, cls):
        raise AssertionError(f"{s.case.id} torch-int8: quantize_dynamic left the "
                             f"{cls.__name__} in float32 ({type(qmodule).__module__})")
    x = torch.from_numpy(s.x)

    def fn():
        return qmodule(x)

    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)     # torch's deprecation of qint8 tensors
        output = fn()[0].numpy()
    _guard(s, "torch-int8", output)
    return Contender(Runner(fn, context=torch.inference_mode,
                            checked="fastcells fp32 (ACCURACY_GUARD)"), "int8", output)


CONTENDERS = {                         # row order within a case; fastcells at each precision
    "fastcells-fp32": _fastcells("fp32"),
    "fastcells-bf16": _fastcells("bf16"),
    "fastcells-int8": _fastcells("int8"),
    "ort-fp32": _ort_fp32,
    "ort-int8": _ort_int8,
    "torch-fp32": _torch_fp32,
    "torch-int8": _torch_int8,
}


def make_contender(name, subject):
    """The checked Contender `name` (a key of CONTENDERS) of `subject`; raises Unavailable."""
    return CONTENDERS[name](subject)


def floor(case, limits, empty_call, precision):
    """The Floor of `case` at `precision` (_limits.row_floor): sequences.floor's weight bytes
    (the packed panels' padded columns) at BYTES_PER_WEIGHT[precision] a weight instead of 4,
    the FLOPs at that precision's multiply-add peak, plus `empty_call` seconds."""
    tile_cols = fastcells._core.kernel_tile(limits.isa, DTYPE)[1]
    stream, once = case.weight_bytes(tile_cols)          # float32 bytes
    scale = BYTES_PER_WEIGHT[precision] / 4
    return _limits.row_floor(limits, case.B, case.flops, stream * scale, case.T * case.layers,
                             once * scale, empty_call, precision=precision)


def _names(precisions):
    return [f"fastcells-{p}" for p in precisions] + [n for n in CONTENDERS
                                                      if not n.startswith("fastcells-")]


def _fmt_err(err):
    return "0" if err == 0 else f"{err:.2e}"


def run(out=sys.stdout, precisions=PRECISIONS, quick=False, cases=None, rounds=None):
    """Prints the machine line, the limits this run measured, then per case one line per
    contender (fastcells at each of `precisions`, then the peers): ms per sequence (round
    robin, minimum of medians), x (time / the first fastcells contender's), rel L2 against
    fastcells fp32, floor (ms) at the contender's precision, its bound, %floor, and the cores
    the rest of the machine used while the case ran. quick=True: shorter, fewer rounds (rounds
    overrides). Returns {"limits": Limits, case.id: {contender: {"seconds", "rel_l2",
    "precision", "floor_s", "bound"} or {"unavailable": reason}, "other_cores": ...}}."""
    bad = [p for p in precisions if p not in PRECISIONS]
    if not precisions or bad:
        raise ValueError(f"precisions: expected a non-empty sequence of {PRECISIONS}, got "
                         f"{precisions!r}")
    min_seconds, repeat, warm_seconds, samples = _harness.table_timing(quick, rounds, ROUNDS)
    base_warm = 0.25                   # > the ~0.1 s other libraries' threads keep spinning
    cases = grid() if cases is None else cases
    threads = fastcells.get_num_threads()
    names = _names(precisions)
    baseline = names[0]
    notes = _harness.peer_versions()
    limits = _limits.print_limits(out, threads, quick, [
        f"fastcells {fastcells.__version__}: whole-sequence forward at fp32 / reduced "
        f"precision ({', '.join(precisions)}), x [B,T,I] standard normal, Glorot-uniform "
        f"weights, zero initial state; peers {', '.join(notes)} at {threads} thread(s)"])
    print(f"contenders: fastcells-<p> = nn.dynamic_rnn of fastcells.quantize(cell, p) (fp32: "
          f"the cell); ort-fp32 one ONNX node; ort-int8 quantize_dynamic(QInt8 weights) -> "
          f"DynamicQuantizeLSTM; torch-fp32 nn.LSTM/GRU/RNN; torch-int8 torch.ao "
          f"quantize_dynamic(qint8); fp32 ones checked against fastcells fp32 at rtol "
          f"{_harness.RTOL:g}, reduced ones within rel L2 {ACCURACY_GUARD:g}", file=out)
    print(f"timing: {warm_seconds * 1e3:g} ms warm-up ({base_warm * 1e3:g} ms for fastcells), "
          f"{repeat} round-robin rounds, {samples} samples ({SLOW_CALL[1]} when a call takes "
          f"> {SLOW_CALL[0] * 1e3:g} ms) of >= "
          f"{min_seconds * 1e3:g} ms a turn; a contender's time is the minimum over rounds of "
          f"its round's median; x = time / {baseline} time", file=out)
    print("rel L2 = ||out - out(fastcells-fp32)|| / ||out(fastcells-fp32)|| over the output "
          "sequence [B,T,H], same weights and inputs", file=out)
    print(f"floor = the least time at the row's precision: B <= "
          f"{_limits.BANDWIDTH_BOUND_MAX_BATCH} each thread's share of the weights (4 / 2 / 1 "
          f"bytes a weight: fp32 / bf16 / int8) read every step at the bandwidth of the level it "
          f"fits (bw L2/L3/DRAM) + the input weights once; else FLOPs / (threads x the "
          f"precision's multiply-add peak) (fma); + fastcells fp32's empty call (I=H=B=T=1); "
          f"%floor = floor / time", file=out)
    _harness.print_disturbance_legend(out, "case")
    header = (f"{'case':<26}{'contender':<16}{'prec':<6}{'ms':>9}{'x':>8}{'rel L2':>10}"
              f"{'GFLOP/s':>9}{'floor':>9}{'bound':>8}{'%floor':>7}{'other':>7}")
    _harness.print_header(out, header)
    results = {"limits": limits}
    empty_call = _harness.memo_by(lambda case: case.kind, sequences.empty_call)
    for case in cases:
        subject = sequences.make_subject(case)
        made, reasons = {}, {}
        for name in names:
            try:
                made[name] = make_contender(name, subject)
            except Unavailable as e:
                reasons[name] = str(e)
        comparison = _harness.round_robin(
            {name: c.runner for name, c in made.items()}, repeat, samples, min_seconds,
            lambda name: base_warm if name.startswith("fastcells-") else warm_seconds,
            slow_call=SLOW_CALL)
        base = comparison.seconds.get(baseline)
        others = comparison.other_cores
        row = {"other_cores": others}
        first = True
        for name in names:
            label = case.id if first else ""
            first = False
            if name in reasons:
                row[name] = {"unavailable": reasons[name]}
                print(f"{label:<26}{name:<16}{'-':<6}{'-':>9}  skipped: {reasons[name]}",
                      file=out)
                continue
            c, seconds = made[name], comparison.seconds[name]
            err = relative_l2(c.output, subject.expected["output"])
            row_floor = floor(case, limits, empty_call(case), c.precision)
            row[name] = {"seconds": seconds, "rel_l2": err, "precision": c.precision,
                         "floor_s": row_floor.seconds, "bound": row_floor.bound}
            ratio = "-" if base is None else f"{seconds / base:.2f}"
            print(f"{label:<26}{name:<16}{c.precision:<6}{sequences._fmt_ms(seconds):>9}"
                  f"{ratio:>8}{_fmt_err(err):>10}{case.flops / seconds / 1e9:>9.1f}"
                  f"{sequences._fmt_ms(row_floor.seconds):>9}{row_floor.bound:>8}"
                  f"{row_floor.percent(seconds):>7.1f}"
                  f"{'-' if others is None else f'{others:.1f}':>7}", file=out, flush=True)
        results[case.id] = row
    sequences.make_subject.cache_clear()
    return results
