"""int8 cells (fastcells.quantize, PackedCell(precision="int8")) against the exact NumPy scheme of
fastcells.reference_quant, on every i8 kernel of the registry this machine runs.

Bit-exact where the cell's math after the products is exact arithmetic: hard_sigmoid gates
(a multiply, an add and a clip) with relu (h quantized per row) or hard_sigmoid (h with the
fixed scale 1/127) activations; then every int32 accumulator, every scaling and every
elementwise update must match the reference bit for bit, step after step. With tanh/sigmoid
the kernels' transcendentals differ from NumPy's by an ulp or two, which a later quantization
may turn into one int8 step: those are compared with a stated tolerance, and the error of the
scheme itself (against float32) is bounded at T = 1000.
"""
import pickle

import numpy as np
import pytest

import fastcells
from fastcells import _core, nn
from fastcells import reference_quant as rq

I8_KERNELS = [k["name"] for k in _core.registered_kernels()
              if k["precision"] == "int8" and k["available"]]
EXACT_ACTS = {"per_row_h": "relu", "fixed_h": "hard_sigmoid"}   # activation -> h's scale
GATE = "hard_sigmoid"
# batch rows that cut the 3- and 6-row tiles unevenly; unit counts around the 4/8/16-lane
# vectors and the panels; input sizes 0 (no x part), below and above one 4-k group. Then the
# AMX kernel's edges (i8-product.h): 16-row chunks whole, with a 1-row tail and an 8-row tail
# (tails under 16 rows take its VNNI path); operands of exactly one 64-k run, one k past it
# and three runs (x: I; h: U)
SIZES = [(1, 3, 1), (2, 0, 17), (4, 5, 33), (7, 21, 16), (13, 9, 70),
         (16, 64, 16), (17, 65, 33), (40, 130, 70)]


def glorot(rng, shape):
    limit = np.sqrt(6.0 / (shape[0] + shape[1]))
    return rng.uniform(-limit, limit, shape).astype(np.float32)


def weights_for(kind, rng, I, U, P=None):
    """TF-layout weights of PackedCell (names) and the matching reference_quant keywords."""
    P = U if P is None else P
    bias = lambda n: (0.2 * rng.standard_normal(n)).astype(np.float32)     # noqa: E731
    if kind == "rnn":
        w = {"kernel": glorot(rng, (I + U, U)), "bias": bias(U)}
        return w, {"kernel": w["kernel"], "bias": w["bias"]}
    if kind == "lstm":
        w = {"kernel": glorot(rng, (I + P, 4 * U)), "bias": bias(4 * U)}
        return w, {"kernel": w["kernel"], "bias": w["bias"]}
    if kind == "gru":
        w = {"gates/kernel": glorot(rng, (I + U, 2 * U)), "gates/bias": bias(2 * U),
             "candidate/kernel": glorot(rng, (I + U, U)), "candidate/bias": bias(U)}
        return w, {"gates_kernel": w["gates/kernel"], "gates_bias": w["gates/bias"],
                   "candidate_kernel": w["candidate/kernel"], "candidate_bias": w["candidate/bias"]}
    w = {"gates/kernel": glorot(rng, (I + U, 2 * U)), "gates/bias": bias(2 * U),
         "candidate/input_projection/kernel": glorot(rng, (I, U)) if I else
         np.zeros((0, U), np.float32),
         "candidate/input_projection/bias": bias(U),
         "candidate/hidden_projection/kernel": glorot(rng, (U, U)),
         "candidate/hidden_projection/bias": bias(U)}
    return w, {"gates_kernel": w["gates/kernel"], "gates_bias": w["gates/bias"],
               "input_kernel": w["candidate/input_projection/kernel"],
               "input_bias": w["candidate/input_projection/bias"],
               "hidden_kernel": w["candidate/hidden_projection/kernel"],
               "hidden_bias": w["candidate/hidden_projection/bias"]}


REF_KIND = {"rnn": "rnn", "lstm": "lstm", "gru": "gru", "gru_ra": "gru_reset_after"}


def scheme_references(scheme):
    """(reference_step, oracle, reference_sequence) of reference_quant's `scheme` ("int8",
    "bf16"), from its rnn_cell_<scheme>, ..., dynamic_rnn_<scheme>:
      reference_step(kind, x, state, ref_weights, **options): h' (and c' for lstm) of one
          step; state: h, or (c, h); weights under reference_quant's keywords
      oracle(kind, x, state, w, **options): the same from PackedCell's TF-named weights, the
          new state as a tuple like PackedCell's ((c', h') or (h',)) (the kernel tester's)
      reference_sequence(kind, ref_weights, x, initial_state, lengths, activation): its
          dynamic_rnn with GATE gates; initial_state: h, (c, h) or None"""
    steps = {kind: getattr(rq, f"{name}_{scheme}") for kind, name in
             (("rnn", "rnn_cell"), ("lstm", "lstm_cell"), ("gru", "gru_cell"),
              ("gru_ra", "gru_cell_reset_after"))}
    dynamic_rnn = getattr(rq, f"dynamic_rnn_{scheme}")

    def reference_step(kind, x, state, ref_weights, **options):
        if kind == "lstm":
            return steps[kind](x, state[0], state[1], **ref_weights, **options)
        if kind == "rnn":
            options = {k: v for k, v in options.items() if k != "gate_activation"}
        return (steps[kind](x, state, **ref_weights, **options),)

    def oracle(kind, x, state, w, **options):
        ref_w = {REF_NAMES[name]: np.asarray(v, np.float32) for name, v in w.items()}
        x = np.asarray(x, np.float32)
        state = tuple(np.asarray(s, np.float32) for s in state)
        return reference_step(kind, x, state if kind == "lstm" else state[0], ref_w, **options)

    def reference_sequence(kind, ref_weights, x, initial_state, lengths, activation):
        kw = dict(ref_weights, activation=activation)
        if kind != "rnn":
            kw["gate_activation"] = GATE
        return dynamic_rnn(REF_KIND[kind], x, initial_state=initial_state,
                           sequence_length=lengths, **kw)
    return reference_step, oracle, reference_sequence


reference_step, int8_oracle, reference_sequence = scheme_references("int8")


def packed_options(kind, options):
    """reference keyword options -> PackedCell keywords (the names differ for lstm only)."""
    out = dict(options)
    if kind == "rnn":
        out.pop("gate_activation", None)
    for name in ("w_i_diag", "w_f_diag", "w_o_diag", "proj_kernel"):
        out.pop(name, None)
    return out


def random_state(kind, rng, B, U, P, bound):
    h = rng.uniform(-1, 1, (B, P)).astype(np.float32) if bound else \
        (2 * rng.standard_normal((B, P))).astype(np.float32)
    if kind == "lstm":
        return ((2 * rng.standard_normal((B, U))).astype(np.float32), h)
    return h


@pytest.mark.parametrize("kernel", I8_KERNELS)
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru", "gru_ra"])
@pytest.mark.parametrize("h_scale", sorted(EXACT_ACTS))
def test_step_is_bit_exact(kernel, kind, h_scale):
    """One step, every tile edge of SIZES: the same bits as reference_quant."""
    rng = np.random.default_rng(abs(hash((kernel, kind, h_scale))) % 2 ** 32)
    options = {"activation": EXACT_ACTS[h_scale], "gate_activation": GATE}
    for B, I, U in SIZES:
        w, ref_w = weights_for(kind, rng, I, U)
        cell = _core.PackedCell(kind, np.float32, I, U, w, isa=kernel, precision="int8",
                                **packed_options(kind, options))
        assert cell.precision == "int8" and cell.isa == kernel
        x = rng.standard_normal((B, I)).astype(np.float32)
        state = random_state(kind, rng, B, U, U, True)
        got = cell.call(x, state if kind == "lstm" else (state,))
        want = reference_step(kind, x, state, ref_w, **options)
        for g, r in zip(got, want):
            np.testing.assert_array_equal(g, r, err_msg=f"{kernel} {kind} B={B} I={I} U={U}")


def edge_rows(rng, width):
    """Rows of width values that probe the per-row quantizer: zeros, -0.0, subnormals and
    values below its 2**-100 floor (scale 1, all zeros), one huge value among tiny ones, a
    negative maximum, exact multiples of the scale (ties of rint), and a plain row."""
    rows = np.zeros((8, width), np.float32)
    rows[1, ::2] = -0.0
    rows[2] = np.float32(1e-40) * rng.integers(-3, 4, width)
    rows[3] = np.float32(2.0 ** -101) * rng.integers(-3, 4, width)
    rows[4] = np.float32(1e-30) * rng.standard_normal(width)
    rows[4, width // 2] = 3e30
    rows[5] = rng.uniform(-1, 0.5, width)
    rows[5, width - 1] = -2.0
    rows[6] = (rng.integers(-254, 255, width) / 2.0).astype(np.float32)
    rows[6, 0] = 127.0
    rows[7] = rng.standard_normal(width)
    return rows


@pytest.mark.parametrize("kernel", I8_KERNELS)
@pytest.mark.parametrize("I", [37, 70])
def test_per_row_quantizer_edges_bit_exact(kernel, I):
    """x and h quantized per row (a relu RNN): rows at the quantizer's edges give the
    reference's bits, the vector loops' tails included (I and U not multiples of 16); a row
    with an inf or a NaN gives NaN in its own row only."""
    rng = np.random.default_rng(I)
    U = I + 3
    options = {"activation": "relu"}
    w, ref_w = weights_for("rnn", rng, I, U)
    cell = _core.PackedCell("rnn", np.float32, I, U, w, isa=kernel, precision="int8",
                            **options)
    x, h = edge_rows(rng, I), edge_rows(rng, U)[::-1].copy()
    got = cell.call(x, (h,))[0]
    np.testing.assert_array_equal(got, reference_step("rnn", x, h, ref_w, **options)[0],
                                  err_msg=kernel)
    for bad in (np.inf, -np.inf, np.nan):
        x_bad, h_bad = x.copy(), h.copy()
        x_bad[2, I - 1] = bad
        h_bad[5, 0] = bad
        got = cell.call(x_bad, (h_bad,))[0]
        assert np.isnan(got[[2, 5]]).all(), (kernel, bad)
        keep = [r for r in range(8) if r not in (2, 5)]
        np.testing.assert_array_equal(got[keep], reference_step("rnn", x[keep], h[keep], ref_w,
                                                                **options)[0], err_msg=kernel)


@pytest.mark.parametrize("kernel", I8_KERNELS)
def test_fixed_scale_quantizer_nan_makes_its_row_nan(kernel):
    """h with the fixed scale (an LSTM): one NaN unit of h makes its whole row NaN, as the
    reference's NaN row scale does; the other rows, and -0.0 and +-1 in h, keep the
    reference's bits (U = 37: the vector loop's tail)."""
    rng = np.random.default_rng(5)
    I, U = 9, 37
    options = {"activation": EXACT_ACTS["fixed_h"], "gate_activation": GATE}
    w, ref_w = weights_for("lstm", rng, I, U)
    cell = _core.PackedCell("lstm", np.float32, I, U, w, isa=kernel, precision="int8",
                            **packed_options("lstm", options))
    x = rng.standard_normal((4, I)).astype(np.float32)
    c, h = random_state("lstm", rng, 4, U, U, True)
    h[0, ::3], h[1, :5], h[1, -1] = -0.0, 1.0, -1.0
    h[2, U - 1] = np.nan
    got = cell.call(x, (c, h))
    assert all(np.isnan(g[2]).all() for g in got), kernel
    keep = [0, 1, 3]
    want = reference_step("lstm", x[keep], (c[keep], h[keep]), ref_w, **options)
    for g, r in zip(got, want):
        np.testing.assert_array_equal(g[keep], r, err_msg=kernel)


LSTM_OPTIONS = [
    {"forget_bias": 0.5},
    {"cell_clip": 0.75, "input_forget": True},
    {"peepholes": True},
    {"num_proj": 11, "proj_clip": 0.4},
    {"num_proj": 40, "peepholes": True, "cell_clip": 1.5},
]


def check_lstm_options(kernel, extra, precision, reference_step, activation, I, h_bounded):
    """One LSTM step of a `precision` cell on `kernel` with the options `extra` (peepholes,
    projection, clips, forget bias, input_forget) against reference_step bit for bit, at 5
    batch rows and at 21 (an AMX chunk of 16 and a tail: i8-product.h)."""
    for B in (5, 21):
        check_lstm_options_rows(kernel, extra, precision, reference_step, activation, I,
                                h_bounded, B)


def check_lstm_options_rows(kernel, extra, precision, reference_step, activation, I, h_bounded,
                            B):
    rng = np.random.default_rng(7)
    extra = dict(extra)
    U = 19
    P = extra.pop("num_proj", None)
    peep = extra.pop("peepholes", False)
    w, ref_w = weights_for("lstm", rng, I, U, P)
    options = {"activation": activation, "gate_activation": GATE, **extra}
    ref_options = dict(options)
    if peep:
        for name in ("w_i_diag", "w_f_diag", "w_o_diag"):
            w[name] = ref_options[name] = (0.5 * rng.standard_normal(U)).astype(np.float32)
    if P:
        w["projection/kernel"] = ref_options["proj_kernel"] = glorot(rng, (U, P))
    cell = _core.PackedCell("lstm", np.float32, I, U, w, isa=kernel, precision=precision,
                            **packed_options("lstm", options))
    x = rng.standard_normal((B, I)).astype(np.float32)
    state = random_state("lstm", rng, B, U, P or U, h_bounded)
    got = cell.call(x, state)
    want = reference_step("lstm", x, state, ref_w, **ref_options)
    for g, r in zip(got, want):
        np.testing.assert_array_equal(g, r)


@pytest.mark.parametrize("kernel", I8_KERNELS)
@pytest.mark.parametrize("extra", LSTM_OPTIONS, ids=lambda e: "-".join(sorted(e)))
@pytest.mark.parametrize("h_scale", sorted(EXACT_ACTS))
def test_lstm_options_bit_exact(kernel, extra, h_scale):
    """Peepholes, projection (its operand m always per row), clips, forget bias, input_forget."""
    check_lstm_options(kernel, extra, "int8", reference_step, EXACT_ACTS[h_scale], 6, True)


# TF weight names -> reference_quant keywords
REF_NAMES = {"kernel": "kernel", "bias": "bias", "w_i_diag": "w_i_diag", "w_f_diag": "w_f_diag",
             "w_o_diag": "w_o_diag", "projection/kernel": "proj_kernel",
             "gates/kernel": "gates_kernel", "gates/bias": "gates_bias",
             "candidate/kernel": "candidate_kernel", "candidate/bias": "candidate_bias",
             "candidate/input_projection/kernel": "input_kernel",
             "candidate/input_projection/bias": "input_bias",
             "candidate/hidden_projection/kernel": "hidden_kernel",
             "candidate/hidden_projection/bias": "hidden_bias"}


def make_cell(kind, U, activation, seed):
    """A fastcells cell of kind with exact-arithmetic activations (GATE gates)."""
    if kind == "rnn":
        return fastcells.BasicRNNCell(U, activation=activation, seed=seed)
    if kind == "lstm":
        return fastcells.LSTMCell(U, activation=activation, gate_activation=GATE, seed=seed)
    return fastcells.GRUCell(U, activation=activation, gate_activation=GATE, seed=seed,
                             reset_after=kind == "gru_ra")


def reference_weights(cell):
    """A built fastcells cell's weights under reference_quant's keywords."""
    return {REF_NAMES[name]: value for name, value in cell.get_weights().items()}


@pytest.fixture
def tuning():
    """Sets tuning.h fields for one test (multi-chunk sequences, forced teams)."""
    saved = []

    def apply(**settings):
        saved.append(_core._tuning(**settings))
    yield apply
    for previous in reversed(saved):
        _core._tuning(**previous)


SEQUENCE_LENGTHS = [7, 0, 3, 7, 1, 5]


def check_sequence(kernel, kind, precision, reference_sequence, activation, run, tuning, I,
                   h0_bounded, lengths=SEQUENCE_LENGTHS, U=35):
    """A whole sequence (_core.run_sequences, as dynamic_rnn runs it) of a `precision` cell
    on `kernel`, one batch row per entry of lengths (T = max(lengths); the default has 0 and T), and an
    initial state (h0 in [-1, 1] if h0_bounded), against reference_sequence bit for bit: run
    "one_thread" with the default chunks, or "chunks_and_team": chunks of 2 steps on a forced
    team of 2 (every member converting its own operands)."""
    rng = np.random.default_rng(11)
    B, T = len(lengths), max(lengths)
    options = {"activation": activation, "gate_activation": GATE}
    w, ref_w = weights_for(kind, rng, I, U)
    cell = _core.PackedCell(kind, np.float32, I, U, w, isa=kernel, precision=precision,
                            **packed_options(kind, options))
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    lengths = np.array(lengths, np.int64)
    h0 = (rng.uniform(-1, 1, (B, U)) if h0_bounded else rng.standard_normal((B, U))
          ).astype(np.float32)
    c0 = rng.standard_normal((B, U)).astype(np.float32)
    out = np.full((B, T, U), np.nan, np.float32)
    h_final, c_final = np.empty_like(h0), np.empty_like(c0)
    layer = {"cell": cell, "x": x, "out": out, "lengths": lengths, "h0": h0, "h_final": h_final}
    if kind == "lstm":
        layer.update(c0=c0, c_final=c_final)
    if run == "chunks_and_team":
        tuning(chunk_steps=2, min_flops=1)
    with fastcells.threads(2 if run == "chunks_and_team" else 1):
        _core.run_sequences(T, B, [[layer]])
    want_out, want_state = reference_sequence(kind, ref_w, x, (c0, h0) if kind == "lstm"
                                              else h0, lengths, activation)
    np.testing.assert_array_equal(out, want_out)
    if kind == "lstm":
        np.testing.assert_array_equal(c_final, want_state[0])
        np.testing.assert_array_equal(h_final, want_state[1])
    else:
        np.testing.assert_array_equal(h_final, want_state)


@pytest.mark.parametrize("kernel", I8_KERNELS)
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru", "gru_ra"])
@pytest.mark.parametrize("h_scale", sorted(EXACT_ACTS))
@pytest.mark.parametrize("run", ["one_thread", "chunks_and_team"])
def test_sequence_is_bit_exact(kernel, kind, h_scale, run, tuning):
    """Whole sequences with lengths and an initial state: the same bits as
    reference_quant.dynamic_rnn_int8, on one thread and on a forced team of 2 in chunks of 2."""
    check_sequence(kernel, kind, "int8", reference_sequence, EXACT_ACTS[h_scale], run, tuning,
                   10, True)


@pytest.mark.parametrize("kernel", I8_KERNELS)
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru", "gru_ra"])
@pytest.mark.parametrize("run", ["one_thread", "chunks_and_team"])
def test_sequence_row_chunks_bit_exact(kernel, kind, run, tuning):
    """Sequences whose running rows fall through the AMX kernel's 16-row chunks (34 rows: two
    chunks and a 2-row tail, then 17, 16 and 15 as rows end) and whose x and h operands span
    two 64-k runs: the same bits as reference_quant.dynamic_rnn_int8 on every i8 kernel."""
    lengths = [5] * 15 + [4] + [3] + [2] * 17
    check_sequence(kernel, kind, "int8", reference_sequence, EXACT_ACTS["fixed_h"], run, tuning,
                   70, True, lengths=lengths, U=65)


def check_bidirectional_stack(kind, precision, reference_sequence, activation, I):
    """Both directions (the backward one reversed within each row's length) and a 2-layer
    MultiRNNCell, fastcells.quantize(..., precision), against reference_sequence (the scheme's
    dynamic_rnn: kind, weights, x, initial state, lengths, activation) run layer by layer."""
    B, T, U = 3, 5, 9
    fw, bw = make_cell(kind, U, activation, 1), make_cell(kind, U, activation, 2)
    fw.build(I)
    bw.build(I)
    qfw, qbw = fastcells.quantize(fw, precision), fastcells.quantize(bw, precision)
    x = np.random.default_rng(5).standard_normal((B, T, I)).astype(np.float32)
    lengths = np.array([5, 2, 0], np.int64)
    (out_fw, out_bw), _ = nn.bidirectional_dynamic_rnn(qfw, qbw, x, sequence_length=lengths,
                                                       dtype=np.float32)
    want_fw, _ = reference_sequence(kind, reference_weights(fw), x, None, lengths, activation)
    x_rev = np.zeros_like(x)
    for b, n in enumerate(lengths):
        x_rev[b, :n] = x[b, :n][::-1]
    want_bw_rev, _ = reference_sequence(kind, reference_weights(bw), x_rev, None, lengths,
                                        activation)
    want_bw = np.zeros_like(want_bw_rev)
    for b, n in enumerate(lengths):
        want_bw[b, :n] = want_bw_rev[b, :n][::-1]
    np.testing.assert_array_equal(out_fw, want_fw)
    np.testing.assert_array_equal(out_bw, want_bw)

    layers = [make_cell(kind, U, activation, 10 + k) for k in range(2)]
    layers[0].build(I)
    layers[1].build(U)
    stack = fastcells.quantize(fastcells.MultiRNNCell(layers), precision)
    out, _ = nn.dynamic_rnn(stack, x, dtype=np.float32)
    h1, _ = reference_sequence(kind, reference_weights(layers[0]), x, None, None, activation)
    h2, _ = reference_sequence(kind, reference_weights(layers[1]), h1, None, None, activation)
    np.testing.assert_array_equal(out, h2)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru", "gru_ra"])
def test_bidirectional_stack_matches_reference(kind):
    """Both directions and a 2-layer MultiRNNCell, int8, against reference_quant run layer by
    layer."""
    check_bidirectional_stack(kind, "int8", reference_sequence, EXACT_ACTS["fixed_h"], 4)


@pytest.mark.parametrize("kernel", I8_KERNELS)
def test_extreme_operands_do_not_saturate(kernel):
    """Every operand at its extreme: weights and activations quantized to +-127 at the deepest
    segment (K = INT8_K_MAX), so each int32 sum is K * 127 * 127 in magnitude (with pairs of
    equal and of opposite signs for vpmaddubsw): the same bits as the reference."""
    K, U, B = rq.INT8_K_MAX, 16, 3
    rng = np.random.default_rng(1)
    signs = np.where(rng.random((K + U, U)) < 0.5, -1.0, 1.0).astype(np.float32)
    signs[:K, 0] = 1.0                              # one column all +127: the largest sum
    kernel_w = 0.01 * signs
    bias = np.zeros(U, np.float32)
    x = np.ones((B, K), np.float32)
    x[1] = -1.0
    x[2] = np.where(rng.random(K) < 0.5, -1.0, 1.0)
    h = np.ones((B, U), np.float32)
    cell = _core.PackedCell("rnn", np.float32, K, U, {"kernel": kernel_w, "bias": bias},
                            activation="linear", isa=kernel, precision="int8")
    (got,) = cell.call(x, (h,))
    want = rq.rnn_cell_int8(x, h, kernel_w, bias, activation="linear")
    np.testing.assert_array_equal(got, want)
    qx, sx = rq.quantize_rows(x)
    qw, sw = rq.quantize_weights_int8(kernel_w[:K])
    assert rq.int8_matmul(qx, qw)[0, 0] == K * 127 * 127


def check_tanh_sigmoid_cell(kind, precision, reference_step, bound):
    """The default activations: one step within 4e-7 of the scheme's reference_step (the
    kernels' tanh/sigmoid are not NumPy's, bit for bit), and the scheme's error at T = 1000
    against float32 (relative L2 of h) at most `bound`."""
    B, I, U, T = 4, 32, 64, 1000
    cell = (fastcells.BasicRNNCell(U, seed=0) if kind == "rnn" else
            fastcells.LSTMCell(U, seed=0) if kind == "lstm" else
            fastcells.GRUCell(U, seed=0, reset_after=kind == "gru_ra"))
    cell.build(I)
    q = fastcells.quantize(cell, precision)
    rng = np.random.default_rng(2)
    x1 = rng.standard_normal((B, I)).astype(np.float32)
    state = cell.zero_state(B, np.float32)
    got = q(x1, state)[0]
    ref_w = reference_weights(cell)
    want = reference_step(kind, x1, (state.c, state.h) if kind == "lstm" else state, ref_w)
    want = want[-1] if kind == "lstm" else want[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=4e-7)

    x = rng.standard_normal((B, T, I)).astype(np.float32)
    h_fp32 = nn.dynamic_rnn(cell, x, dtype=np.float32)[0][:, -1]
    h_q = nn.dynamic_rnn(q, x, dtype=np.float32)[0][:, -1]
    err = np.linalg.norm(h_q - h_fp32) / np.linalg.norm(h_fp32)
    assert err <= bound, err


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru", "gru_ra"])
def test_tanh_sigmoid_cells_close_to_reference(kind):
    """The default activations: one step within 4 ulp-scale of reference_quant, and the
    scheme's error at T = 1000 against float32 within the bound of reference_quant's
    docstring (1.5e-2 relative L2 of h)."""
    check_tanh_sigmoid_cell(kind, "int8", reference_step, 1.5e-2)


def check_quantized_copy(precision):
    """fastcells.quantize(cell, precision) of an LSTM with peepholes and projection: a new cell
    packed in precision, the original untouched, the float32 weights kept, its numbers those of
    its pickled copy and of itself after set_weights. Returns (cell, copy, x, state, copy's h)."""
    cell = fastcells.LSTMCell(8, num_proj=5, use_peepholes=True, seed=4)
    cell.build(3)
    q = fastcells.quantize(cell, precision)
    assert q is not cell and cell.precision is None and q.precision == precision
    assert cell._packed.precision is None and q._packed.precision == precision
    for (n1, a1), (n2, a2) in zip(cell.get_weights().items(), q.get_weights().items()):
        assert n1 == n2 and a1.dtype == np.float32
        np.testing.assert_array_equal(a1, a2)
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    state = cell.zero_state(2, np.float32)
    h_q = q(x, state)[0]
    again = pickle.loads(pickle.dumps(q))
    assert again.precision == precision
    np.testing.assert_array_equal(again(x, state)[0], h_q)
    q.set_weights(cell.get_weights())                   # quantized again, the same numbers
    np.testing.assert_array_equal(q(x, state)[0], h_q)
    return cell, q, x, state, h_q


def test_quantize_copies_and_keeps_the_float_weights():
    _, _, x, _, _ = check_quantized_copy("int8")
    unbuilt = fastcells.quantize(fastcells.GRUCell(4), "int8")
    assert unbuilt.precision == "int8" and unbuilt(x, np.zeros((2, 4), np.float32))[0].shape == (2, 4)


def test_quantize_refuses_what_it_cannot_run():
    with pytest.raises(ValueError, match="precision: expected one of"):
        fastcells.quantize(fastcells.GRUCell(4), "int4")
    with pytest.raises(TypeError, match="obj: expected a fastcells cell"):
        fastcells.quantize(object(), "int8")
    with pytest.raises(ValueError, match="computes in float32, got the float64 cell"):
        fastcells.quantize(fastcells.GRUCell(4, dtype=np.float64), "int8")
    with pytest.raises(ValueError, match="activation computed in Python"):
        fastcells.quantize(fastcells.BasicRNNCell(4, activation=lambda v: v * 0.5), "int8")
    with pytest.raises(TypeError, match="dtype: precision 'int8' computes in float32"):
        _core.PackedCell("rnn", np.float64, 1, 1, {"kernel": np.zeros((2, 1)),
                                                   "bias": np.zeros(1)}, precision="int8")
    with pytest.raises(ValueError, match="precision: expected one of"):
        _core.PackedCell("rnn", np.float32, 1, 1, {"kernel": np.zeros((2, 1)),
                                                   "bias": np.zeros(1)}, precision="bf8")


def test_initial_h_outside_the_fixed_scale_and_non_finite_inputs():
    """A tanh GRU bounds h by 1, so its h is quantized with the fixed scale: an initial h
    outside [-1, 1] is refused, as the reference refuses it; NaN inputs give NaN (as float32
    arithmetic does), never finite numbers."""
    q = fastcells.quantize(fastcells.GRUCell(6, seed=0), "int8")
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"initial h in \[-1, 1\]"):
        q(x, np.full((2, 6), 1.5, np.float32))
    with pytest.raises(ValueError, match=r"initial h in \[-1, 1\]"):
        nn.dynamic_rnn(q, np.ones((2, 4, 3), np.float32), initial_state=np.full((2, 6), -2,
                                                                                  np.float32))
    bad = x.copy()
    bad[1, 2] = np.nan
    h = q(bad, np.zeros((2, 6), np.float32))[0]
    assert np.isfinite(h[0]).all() and np.isnan(h[1]).all()
    relu = fastcells.quantize(fastcells.BasicRNNCell(6, activation="relu", seed=0), "int8")
    h = relu(x, np.full((2, 6), 5.0, np.float32))[0]      # per-row h: any finite value
    assert np.isfinite(h).all()


def test_quantized_converter_model_matches_its_cells():
    torch = pytest.importorskip("torch")
    from fastcells.convert import from_torch
    torch.manual_seed(0)
    module = torch.nn.LSTM(5, 7, num_layers=2, bidirectional=True)
    model = from_torch(module)
    q = fastcells.quantize(model, "int8")
    assert all(c.precision == "int8" for c in q.cells)
    assert all(c.precision is None for c in model.cells)
    x = np.random.default_rng(0).standard_normal((6, 2, 5)).astype(np.float32)
    out_fp32, _ = model(x)
    out_int8, _ = q(x)
    err = np.linalg.norm(out_int8 - out_fp32) / np.linalg.norm(out_fp32)
    assert 0 < err < 3e-2
