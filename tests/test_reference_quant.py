"""The int8 and bf16 reference schemes: exactness of the products (through models of the
kernels' instructions at the operands' extremes), the quantizer's definition, the cell math
against fastcells.reference, and the accuracy bars at T=1000."""
import numpy as np
import pytest

from fastcells import reference as ref
from fastcells import reference_quant as rq

Q = rq.Q


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    """The products here are small: one BLAS thread (OpenBLAS's spinning threads only slow them
    down on a busy machine). Without threadpoolctl, BLAS keeps its own setting."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(1, user_api="blas"):
        yield


def glorot(rng, shape):
    """TF's default initializer (glorot_uniform) for a [fan_in, fan_out] kernel, as float64."""
    limit = np.sqrt(6.0 / (shape[0] + shape[1]))
    return rng.uniform(-limit, limit, shape)


def cell_weights(kind, I, H, rng, **options):
    if kind == "rnn":
        w = dict(kernel=glorot(rng, (I + H, H)), bias=0.1 * rng.standard_normal(H))
    elif kind == "lstm":
        P = options["proj_kernel"].shape[1] if "proj_kernel" in options else H
        w = dict(kernel=glorot(rng, (I + P, 4 * H)), bias=0.1 * rng.standard_normal(4 * H))
    elif kind == "gru":
        w = dict(gates_kernel=glorot(rng, (I + H, 2 * H)), gates_bias=np.ones(2 * H),
                 candidate_kernel=glorot(rng, (I + H, H)),
                 candidate_bias=0.1 * rng.standard_normal(H))
    else:
        w = dict(gates_kernel=glorot(rng, (I + H, 2 * H)), gates_bias=np.ones(2 * H),
                 input_kernel=glorot(rng, (I, H)), input_bias=0.1 * rng.standard_normal(H),
                 hidden_kernel=glorot(rng, (H, H)), hidden_bias=0.1 * rng.standard_normal(H))
    w.update(options)
    return w


REF_STEP = {"rnn": ref.rnn_cell, "lstm": ref.lstm_cell, "gru": ref.gru_cell,
            "gru_reset_after": ref.gru_cell_reset_after}
Q_STEP = {("int8", "rnn"): rq.rnn_cell_int8, ("int8", "lstm"): rq.lstm_cell_int8,
          ("int8", "gru"): rq.gru_cell_int8,
          ("int8", "gru_reset_after"): rq.gru_cell_reset_after_int8,
          ("bf16", "rnn"): rq.rnn_cell_bf16, ("bf16", "lstm"): rq.lstm_cell_bf16,
          ("bf16", "gru"): rq.gru_cell_bf16,
          ("bf16", "gru_reset_after"): rq.gru_cell_reset_after_bf16}
RUNNER = {"int8": rq.dynamic_rnn_int8, "bf16": rq.dynamic_rnn_bf16}


def reference_final_h(kind, x, w, dtype=np.float64):
    """The float64 reference's final output h after running x: [B,T,I] from zero state."""
    x = x.astype(dtype)
    w = {k: (v.astype(dtype) if isinstance(v, np.ndarray) else v) for k, v in w.items()}
    B = x.shape[0]
    if kind == "lstm":
        U = w["bias"].shape[0] // 4
        P = w["proj_kernel"].shape[1] if w.get("proj_kernel") is not None else U

        def step(x_t, s):
            c, m = ref.lstm_cell(x_t, s[0], s[1], **w)
            return m, (c, m)
        _, (c, h) = ref.dynamic_rnn(step, x, (np.zeros((B, U), dtype), np.zeros((B, P), dtype)))
        return h
    H = w["kernel"].shape[1] if kind == "rnn" else w["gates_bias"].shape[0] // 2

    def step(x_t, h):
        h_new = REF_STEP[kind](x_t, h, **w)
        return h_new, h_new
    return ref.dynamic_rnn(step, x, np.zeros((B, H), dtype))[1]


def rel_l2(got, want):
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


def final_h(kind, state):
    return state[1] if kind == "lstm" else state


# ---------------------------------------------------------------------------------------------
# Quantizer
# ---------------------------------------------------------------------------------------------

def test_quantizer_follows_its_stated_fp32_formula():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((37, 11)).astype(np.float32)
    q, scale = rq.quantize_weights_int8(w)
    amax = np.max(np.abs(w), axis=0)
    assert scale.dtype == np.float32 and q.dtype == np.int8
    np.testing.assert_array_equal(scale, amax / np.float32(127))
    inv = np.float32(127) / amax
    np.testing.assert_array_equal(q, np.clip(np.rint(w * inv), -127, 127).astype(np.int8))
    # each column's max maps to +-127, and the dequantized error is at most half a step
    assert np.all(np.max(np.abs(q.astype(np.int32)), axis=0) == 127)
    err = np.abs(q * scale - w)
    assert np.all(err <= 0.5 * scale * (1 + 1e-6) + 1e-30)


def test_quantizer_rounds_half_to_even_and_never_gives_minus_128():
    # amax = 127 gives scale 1 and inv 1: q = rint(v) exactly, ties to even.
    v = np.array([[127.0, -127.0, 0.5, 1.5, 2.5, -0.5, -1.5, 126.5]], np.float32)
    q, scale = rq.quantize_rows(v)
    assert scale[0] == 1
    np.testing.assert_array_equal(q[0], [127, -127, 0, 2, 2, 0, -2, 126])
    rng = np.random.default_rng(2)
    big = rng.standard_normal((64, 300)).astype(np.float32) * 1e3
    q, _ = rq.quantize_rows(big)
    assert q.min() >= -127 and q.max() <= 127


def test_zero_and_tiny_vectors_get_scale_one_and_zero_codes():
    w = np.zeros((5, 3), np.float32)
    w[:, 1] = [1e-31, -2e-31, 0, 0, 0]         # below TINY_AMAX = 2**-100 ~ 7.9e-31
    w[:, 2] = [1e-20, 0, 0, 0, -1e-20]
    q, scale = rq.quantize_weights_int8(w)
    np.testing.assert_array_equal(scale[:2], [1, 1])
    np.testing.assert_array_equal(q[:, :2], 0)
    assert scale[2] == np.float32(1e-20) / np.float32(127)
    np.testing.assert_array_equal(q[:, 2], [127, 0, 0, 0, -127])
    q, scale = rq.quantize_rows(np.zeros((2, 0), np.float32))
    assert q.shape == (2, 0) and np.all(scale == 1)


def test_fixed_scale_is_exactly_one_over_127_and_refuses_values_beyond_one():
    h = np.array([[1.0, -1.0, 0.5, 1 / 127, 0.0]], np.float32)
    q, scale = rq.quantize_rows(h, rq.H_AMAX)
    assert scale[0] == np.float32(1) / np.float32(127)
    np.testing.assert_array_equal(q[0], [127, -127, 64, 1, 0])    # 63.5 -> 64 (even)
    with pytest.raises(ValueError, match=r"h: expected values in \[-1, 1\].*1\.5"):
        rq.quantize_rows(np.array([[1.5, 0.0]]), rq.H_AMAX, name="h")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_are_refused(bad):
    w = np.ones((3, 2), np.float32)
    w[1, 0] = bad
    with pytest.raises(ValueError, match="kernel: expected finite values, got 1 non-finite"):
        rq.quantize_weights_int8(w)


def test_quantizer_leaves_its_input_unchanged():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((8, 4)).astype(np.float32)
    w.setflags(write=False)
    copy = w.copy()
    rq.quantize_weights_int8(w)
    rq.round_bf16(w)
    np.testing.assert_array_equal(w, copy)


# ---------------------------------------------------------------------------------------------
# int8 product: exact int32, and the instruction models at the extremes
# ---------------------------------------------------------------------------------------------

def test_int8_matmul_equals_the_int64_product():
    rng = np.random.default_rng(4)
    for B, K, N in [(1, 1, 1), (3, 5, 7), (8, 259, 33)]:
        qa = rng.integers(-127, 128, (B, K)).astype(np.int8)
        qw = rng.integers(-127, 128, (K, N)).astype(np.int8)
        acc = rq.int8_matmul(qa, qw)
        want = qa.astype(np.int64) @ qw.astype(np.int64)
        assert acc.dtype == np.int64
        np.testing.assert_array_equal(acc, want)


def test_int8_matmul_refuses_bad_operands():
    ok = np.zeros((2, 3), np.int8)
    with pytest.raises(TypeError, match="qa: expected dtype int8, got int16"):
        rq.int8_matmul(ok.astype(np.int16), ok.T)
    with pytest.raises(ValueError, match=r"qw: expected values in \[-127, 127\], got -128"):
        rq.int8_matmul(ok, np.full((3, 2), -128, np.int8))
    with pytest.raises(ValueError, match="the same K"):
        rq.int8_matmul(ok, ok)
    K = rq.INT8_K_MAX + 1
    with pytest.raises(ValueError, match="K: expected at most INT8_K_MAX = 133144.*got 133145"):
        rq.int8_matmul(np.zeros((1, K), np.int8), np.zeros((K, 1), np.int8))


def test_the_k_bound_is_the_largest_exact_int32_depth():
    assert rq.INT8_K_MAX == 133144
    assert rq.INT8_K_MAX * Q * Q <= 2 ** 31 - 1 < (rq.INT8_K_MAX + 1) * Q * Q


def extreme_operands(K, rng):
    """Rows and columns of int8 operands at their extremes for depth K: all +Q, all -Q,
    alternating signs, {-Q, 0, Q} mixes and zeros, in every pairing."""
    rows = [np.full(K, Q), np.full(K, -Q), np.where(np.arange(K) % 2, Q, -Q),
            rng.choice([-Q, 0, Q], K), np.zeros(K, np.int64)]
    cols = [np.full(K, Q), np.full(K, -Q), np.where(np.arange(K) % 2, -Q, Q),
            rng.choice([-Q, 0, Q], K), np.where(np.arange(K) % 3 == 0, 0, Q)]
    return np.array(rows, np.int8), np.array(cols, np.int8).T


@pytest.mark.parametrize("K", [1, 2, 3, 4, 5, 63, 64, 65, rq.INT8_K_MAX])
def test_every_kernel_sequence_gives_the_exact_int32_at_the_extremes(K):
    rng = np.random.default_rng(K)
    qa, qw = extreme_operands(K, rng)
    want = qa.astype(np.int64) @ qw.astype(np.int64)
    if K == rq.INT8_K_MAX:          # the bound is reached, not just respected
        assert want[0, 0] == K * Q * Q == 2147479576 and want[1, 0] == -K * Q * Q
    np.testing.assert_array_equal(rq.int8_matmul(qa, qw), want)

    acc, stats = rq.int8_dot_avx2_model(qa, qw)
    np.testing.assert_array_equal(acc, want)
    assert not stats["saturated"]
    assert stats["pair"] <= 2 * Q * Q == 32258 < 32767
    assert stats["partial"] <= K * Q * Q < 2 ** 31
    if K >= 2:
        assert stats["pair"] == 32258            # the worst pair occurs and fits
    np.testing.assert_array_equal(rq.int8_dot_vnni_model(qa, qw), want)
    np.testing.assert_array_equal(rq.int8_dot_vnni_shifted_model(qa, qw), want)
    np.testing.assert_array_equal(rq.int8_dot_int16_model(qa, qw), want)


def test_random_operands_through_the_kernel_models():
    rng = np.random.default_rng(5)
    qa = rng.integers(-127, 128, (6, 517)).astype(np.int8)
    qw = rng.integers(-127, 128, (517, 9)).astype(np.int8)
    want = qa.astype(np.int64) @ qw.astype(np.int64)
    np.testing.assert_array_equal(rq.int8_dot_avx2_model(qa, qw)[0], want)
    np.testing.assert_array_equal(rq.int8_dot_vnni_model(qa, qw), want)
    np.testing.assert_array_equal(rq.int8_dot_vnni_shifted_model(qa, qw), want)


def test_the_models_saturate_and_wrap_as_the_hardware_does():
    # The +128-shifted u8 activation with 8-bit weights is what the scheme avoids: it saturates.
    u = np.array([255, 255, 1, 2], np.uint8)
    s = np.array([127, 127, -128, -128], np.int8)
    np.testing.assert_array_equal(rq.vpmaddubsw_model(u, s), [32767, -384])
    np.testing.assert_array_equal(rq.vpmaddubsw_model(np.array([255, 255], np.uint8),
                                                      np.array([-128, -128], np.int8)), [-32768])
    m = np.array([-32768, -32768], np.int16)
    assert rq.vpmaddwd_model(m, m)[0] == -2 ** 31             # 2**31 wraps
    assert rq.vpdpbusd_model(np.array([2 ** 31 - 1], np.int32), np.array([1, 0, 0, 0], np.uint8),
                             np.array([1, 0, 0, 0], np.int8))[0] == -2 ** 31
    np.testing.assert_array_equal(rq.vpsignb_model(np.array([5, 5, 5, -128], np.int8),
                                                   np.array([3, -3, 0, -1], np.int8)),
                                  [5, -5, 0, -128])
    np.testing.assert_array_equal(rq.vpabsb_model(np.array([-127, 0, 127, -128], np.int8)),
                                  [127, 0, 127, 128])


def test_epilogue_is_the_stated_fp32_sequence_without_fma():
    rng = np.random.default_rng(6)
    acc = rng.integers(-2 ** 31 + 1, 2 ** 31, (4, 5))
    sa = rng.random(4).astype(np.float32)
    sw = rng.random(5).astype(np.float32)
    bias = rng.standard_normal(5).astype(np.float32)
    got = rq.int8_epilogue(acc, sa, sw, bias)
    for b in range(4):
        for n in range(5):
            acc_f = np.float32(float(acc[b, n]))             # one rounding of the integer
            want = np.float32(acc_f * np.float32(sa[b] * sw[n])) + bias[n]
            assert got[b, n] == want and got.dtype == np.float32, (b, n, got[b, n], want)


# ---------------------------------------------------------------------------------------------
# bf16
# ---------------------------------------------------------------------------------------------

def test_round_bf16_is_nearest_even_on_the_bits():
    def f(bits):
        return np.array([bits], np.uint32).view(np.float32)

    def bits_of(a):
        return int(rq.round_bf16(a).view(np.uint32)[0])
    assert bits_of(f(0x3F808000)) == 0x3F800000          # tie, even stays
    assert bits_of(f(0x3F818000)) == 0x3F820000          # tie, odd rounds up
    assert bits_of(f(0x3F808001)) == 0x3F810000          # above the tie
    assert bits_of(f(0x3F807FFF)) == 0x3F800000
    assert bits_of(f(0x7F7FFFFF)) == 0x7F800000          # overflow to +inf
    assert bits_of(f(0xFF800000)) == 0xFF800000          # -inf kept
    assert bits_of(f(0x00008000)) == 0x00000000          # subnormal tie to even (zero)
    assert bits_of(f(0x00018000)) == 0x00020000          # subnormal tie, odd rounds up
    nan_low_payload = f(0x7F800001)                     # payload only in the low bits
    assert np.isnan(rq.round_bf16(nan_low_payload)[0])
    assert bits_of(nan_low_payload) == 0x7FC00000
    assert rq.bf16_bits(np.float32(1.0)) == 0x3F80


def test_round_bf16_against_an_exhaustive_neighbourhood():
    rng = np.random.default_rng(7)
    u = rng.integers(0, 2 ** 32, 200000, dtype=np.uint64).astype(np.uint32)
    u = u[np.isfinite(u.view(np.float32))]              # NaN and inf: the test above
    x = u.view(np.float32)
    finite = np.isfinite(x)
    r = rq.round_bf16(x)
    assert np.all(r.view(np.uint32) & 0xFFFF == 0)
    # r is one of the two bf16 neighbours and the nearer one (ties: even last bit)
    lo = (u & 0xFFFF0000).view(np.float32).astype(np.float64)
    hi_bits = (u & 0xFFFF0000).astype(np.uint64) + 0x10000
    hi = np.where(hi_bits < 2 ** 32, hi_bits, 0).astype(np.uint32).view(np.float32)
    xf = x.astype(np.float64)
    ok = finite & np.isfinite(hi)
    d_lo, d_hi = np.abs(xf - lo), np.abs(hi.astype(np.float64) - xf)
    nearest = np.where(d_lo < d_hi, lo, np.where(d_hi < d_lo, hi.astype(np.float64), np.nan))
    tie = ok & (d_lo == d_hi)
    exact = ok & ~tie
    np.testing.assert_array_equal(r[exact].astype(np.float64), nearest[exact])
    assert np.all((r[tie].view(np.uint32) >> 16) % 2 == 0)


def pair_chain(acc, a_row, w_col):
    """The stated bf16 chain, one scalar at a time: pairs in order, element 2i+1 first, an odd
    K padded with +0.0."""
    a_row, w_col = list(a_row), list(w_col)
    if len(a_row) % 2:
        a_row.append(np.float32(0))
        w_col.append(np.float32(0))
    for i in range(0, len(a_row), 2):
        for k in (i + 1, i):
            prod = a_row[k] * w_col[k]
            # the product of two bf16 values is exact in fp32
            assert np.float64(prod) == np.float64(a_row[k]) * np.float64(w_col[k])
            acc = np.float32(acc + prod)
    return acc


@pytest.mark.parametrize("K", [1, 2, 7, 40])
def test_bf16_matmul_is_the_stated_pair_chain(K):
    rng = np.random.default_rng(8)
    a = rng.standard_normal((3, K)).astype(np.float32)
    w = rq.round_bf16(rng.standard_normal((K, 6)))
    bias = rng.standard_normal(6).astype(np.float32)
    got = rq.bf16_matmul(a, w, bias)
    a_bf = rq.round_bf16(a)
    for b in range(3):
        for n in range(6):
            want = pair_chain(bias[n], a_bf[b], w[:, n])
            assert got[b, n].view(np.uint32) == want.view(np.uint32), (b, n, got[b, n], want)
    assert np.all(rq.bf16_matmul(a, w) == rq.bf16_matmul(a, w, np.zeros(6, np.float32)))


def test_bf16_odd_pad_adds_plus_zero_first():
    # acc = -0.0, one product +0 * +1: the pad's +0 comes first, (-0 + +0) + (+0) = +0
    got = rq.bf16_matmul(np.zeros((1, 1), np.float32), np.ones((1, 1), np.float32),
                         np.array([-0.0], np.float32))
    assert not np.signbit(got[0, 0])


# ---------------------------------------------------------------------------------------------
# Cells: the quantized products plugged into the same cell math as fastcells.reference
# ---------------------------------------------------------------------------------------------

LSTM_OPTIONS = [
    {},
    {"forget_bias": 0.5, "cell_clip": 0.7},
    {"peepholes": True},
    {"proj": 5, "proj_clip": 0.3},
    {"peepholes": True, "proj": 7},
    {"activation": "relu", "gate_activation": "hard_sigmoid"},
    {"output_activation": "linear", "preact_clip": 2.0, "input_forget": True},
]


def lstm_options(spec, U, rng):
    spec = dict(spec)
    out = {}
    if spec.pop("peepholes", False):
        for n in ("w_i_diag", "w_f_diag", "w_o_diag"):
            out[n] = 0.3 * rng.standard_normal(U)
    P = spec.pop("proj", None)
    if P is not None:
        out["proj_kernel"] = glorot(rng, (U, P))
    out.update(spec)
    return out


def step_cases():
    rng = np.random.default_rng(9)
    I, U = 6, 9
    cases = [("rnn", {}), ("rnn", {"activation": "relu"}), ("rnn", {"preact_clip": 0.5}),
             ("gru", {}), ("gru", {"activation": "relu"}),
             ("gru_reset_after", {}), ("gru_reset_after", {"gate_activation": "hard_sigmoid"})]
    cases += [("lstm", lstm_options(s, U, rng)) for s in LSTM_OPTIONS]
    return [(kind, I, U, opts) for kind, opts in cases]


def dequantized_weights(kind, I, w):
    """The int8 scheme's weights dequantized to fp32 (per segment and column), as float64."""
    def deq(k, split):
        k = np.asarray(k, np.float32)
        parts = [k[:split], k[split:]] if split else [k]
        out = []
        for p in parts:
            q, s = rq.quantize_weights_int8(p)
            out.append(q.astype(np.float64) * s.astype(np.float64))
        return np.concatenate(out, axis=0)
    d = dict(w)
    for name in ("kernel", "gates_kernel", "candidate_kernel"):
        if name in w:
            d[name] = deq(w[name], I)
    for name in ("input_kernel", "hidden_kernel", "proj_kernel"):
        if w.get(name) is not None:
            d[name] = deq(w[name], 0)
    return d


def call_step(fn, kind, x, state, w):
    if kind == "lstm":
        c, m = fn(x, state[0], state[1], **w)
        return np.concatenate([c, m], axis=1)
    return fn(x, state, **w)


@pytest.mark.parametrize("kind, I, U, options", step_cases(),
                         ids=lambda v: v if isinstance(v, str) else None)
def test_int8_step_matches_the_reference_on_dequantized_operands(kind, I, U, options):
    """The cell math is fastcells.reference's: fed the dequantized weights and the same
    rounding of x and h, the float64 reference lands within the epilogue's fp32 rounding."""
    rng = np.random.default_rng(10)
    B = 4
    w = cell_weights(kind, I, U, rng, **options)
    x = rng.standard_normal((B, I)).astype(np.float32)
    P = w["proj_kernel"].shape[1] if w.get("proj_kernel") is not None else U
    h = np.tanh(rng.standard_normal((B, P))).astype(np.float32)
    c = rng.standard_normal((B, U)).astype(np.float32)
    state = (c, h) if kind == "lstm" else h
    got = call_step(Q_STEP["int8", kind], kind, x, state, w)
    assert got.dtype == np.float32
    # x and h rounded by the int8 quantizer (x per row; h per row or fixed as the scheme says)
    xq, sx = rq.quantize_rows(x)
    x_deq = xq * sx[:, None].astype(np.float64)
    bounded = kind != "lstm" or (w.get("proj_kernel") is None and
                                 options.get("activation") != "relu" and
                                 options.get("output_activation") != "linear")
    bounded = bounded and options.get("activation") != "relu"
    hq, sh = rq.quantize_rows(h, rq.H_AMAX if bounded else None)
    h_deq = hq * sh[:, None].astype(np.float64)
    wd = dequantized_weights(kind, I, w)
    state_d = (c.astype(np.float64), h_deq) if kind == "lstm" else h_deq
    want = call_step(REF_STEP[kind], kind, x_deq, state_d, wd)
    if kind == "gru" or w.get("proj_kernel") is not None:
        # r*h and the projection's input are quantized once more inside the step
        np.testing.assert_allclose(got, want, atol=3e-2)
    elif kind == "gru_reset_after":
        # the blend u*h uses the unquantized h: |u*(h - h_deq)| <= half a step of 1/127
        np.testing.assert_allclose(got, want, rtol=0, atol=0.5 / 127 + 1e-5)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scheme", ["int8", "bf16"])
@pytest.mark.parametrize("kind, I, U, options", step_cases(),
                         ids=lambda v: v if isinstance(v, str) else None)
def test_sequence_runner_equals_the_steps_bit_for_bit(scheme, kind, I, U, options):
    rng = np.random.default_rng(11)
    B, T = 3, 5
    w = cell_weights(kind, I, U, rng, **options)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    lengths = np.array([5, 0, 3])
    outputs, state = RUNNER[scheme](kind, x, sequence_length=lengths, **w)
    P = w["proj_kernel"].shape[1] if w.get("proj_kernel") is not None else U
    h = np.zeros((B, P), np.float32)
    c = np.zeros((B, U), np.float32)
    fn = Q_STEP[scheme, kind]
    for t in range(T):
        if kind == "lstm":
            c_new, h_new = fn(x[:, t], c, h, **w)
        else:
            h_new = fn(x[:, t], h, **w)
            c_new = c
        valid = (t < lengths)[:, None]
        np.testing.assert_array_equal(outputs[:, t], np.where(valid, h_new, 0))
        h, c = np.where(valid, h_new, h), np.where(valid, c_new, c)
    np.testing.assert_array_equal(final_h(kind, state), h)
    if kind == "lstm":
        np.testing.assert_array_equal(state[0], c)
    # time-major gives the same numbers
    out_tm, _ = RUNNER[scheme](kind, x.swapaxes(0, 1), sequence_length=lengths,
                               time_major=True, **w)
    np.testing.assert_array_equal(out_tm.swapaxes(0, 1), outputs)


def test_step_refuses_an_initial_state_beyond_the_fixed_scale():
    rng = np.random.default_rng(12)
    w = cell_weights("gru", 3, 4, rng)
    with pytest.raises(ValueError, match=r"h: expected values in \[-1, 1\]"):
        rq.gru_cell_int8(np.zeros((2, 3)), np.full((2, 4), 1.5), **w)
    # relu has no bound: per-row scale, any h accepted
    w = cell_weights("rnn", 3, 4, rng)
    assert rq.rnn_cell_int8(np.zeros((2, 3)), np.full((2, 4), 9.0), activation="relu",
                            **w).shape == (2, 4)


def test_runner_refuses_bad_arguments():
    rng = np.random.default_rng(13)
    w = cell_weights("rnn", 3, 4, rng)
    with pytest.raises(ValueError, match="cell: expected one of"):
        rq.dynamic_rnn_int8("lstmx", np.zeros((1, 2, 3)), **w)
    with pytest.raises(ValueError, match=r"inputs: expected rank 3 \(\[B,T,I\]\)"):
        rq.dynamic_rnn_bf16("rnn", np.zeros((2, 3)), **w)
    with pytest.raises(ValueError, match=r"kernel: expected shape \(8, 4\), got \(7, 4\)"):
        rq.dynamic_rnn_int8("rnn", np.zeros((1, 2, 4)), **w)
    bad = dict(w, bias=np.array([0, np.nan, 0, 0]))
    with pytest.raises(ValueError, match="bias: expected finite values"):
        rq.dynamic_rnn_int8("rnn", np.zeros((1, 2, 3)), **bad)


def test_caller_arrays_are_not_modified():
    rng = np.random.default_rng(14)
    w = cell_weights("lstm", 4, 5, rng, w_i_diag=rng.random(5), w_f_diag=rng.random(5),
                     w_o_diag=rng.random(5))
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    copies = {k: np.copy(v) for k, v in w.items()}
    x_copy = x.copy()
    for runner in RUNNER.values():
        runner("lstm", x, **w)
    np.testing.assert_array_equal(x, x_copy)
    for k in w:
        np.testing.assert_array_equal(w[k], copies[k])


# ---------------------------------------------------------------------------------------------
# Accuracy: T = 1000, Glorot-uniform weights, unit-variance x, B = 8
# ---------------------------------------------------------------------------------------------

INT8_BAR, BF16_BAR = 1.5e-2, 5e-3


@pytest.mark.parametrize("scheme, H", [("int8", 128), ("bf16", 32)])
@pytest.mark.parametrize("kind, options", [
    ("rnn", {}), ("lstm", {}), ("lstm", {"peepholes": True, "proj": "half"}),
    ("gru", {}), ("gru_reset_after", {})], ids=["rnn", "lstm", "lstm-peep-proj", "gru", "gru_ra"])
def test_accuracy_at_t1000(scheme, H, kind, options):
    """Relative L2 error of the final h against the float64 reference at T=1000 (the extra
    LSTM variant at T=300, and bf16 at a smaller H, to keep the NumPy chain fast;
    tools/quant_accuracy.py runs every kind at T=1000, H=128 and 256)."""
    rng = np.random.default_rng(15)
    B, T, I = 8, (300 if kind == "lstm" and options else 1000), H
    spec = dict(options)
    if spec.get("proj") == "half":
        spec["proj"] = H // 2
    w = cell_weights(kind, I, H, rng, **(lstm_options(spec, H, rng) if kind == "lstm" else {}))
    x = rng.standard_normal((B, T, I))
    want = reference_final_h(kind, x, w)
    _, state = RUNNER[scheme](kind, x, **w)
    err = rel_l2(final_h(kind, state).astype(np.float64), want)
    bar = INT8_BAR if scheme == "int8" else BF16_BAR
    assert err <= bar, "%s %s H=%d: relative L2 error %.3e > %.1e" % (scheme, kind, H, err, bar)


def test_int8_rnn_preactivation_is_the_stated_two_segment_epilogue():
    """With a linear activation the RNN's output is z itself: check it against the formula
    z = (fp32(acc_x) * (s_x * s_wx) + bias) + fp32(acc_h) * (s_h * s_wh), built by hand."""
    rng = np.random.default_rng(16)
    B, I, U = 3, 7, 5
    x = rng.standard_normal((B, I)).astype(np.float32)
    h = rng.standard_normal((B, U)).astype(np.float32)
    kernel = rng.standard_normal((I + U, U)).astype(np.float32)
    bias = rng.standard_normal(U).astype(np.float32)
    got = rq.rnn_cell_int8(x, h, kernel, bias, activation="linear")
    qx, sx = rq.quantize_rows(x)
    qh, sh = rq.quantize_rows(h)                       # linear: h is not bounded, per row
    qwx, swx = rq.quantize_weights_int8(kernel[:I])
    qwh, swh = rq.quantize_weights_int8(kernel[I:])
    acc_x = qx.astype(np.int64) @ qwx.astype(np.int64)
    acc_h = qh.astype(np.int64) @ qwh.astype(np.int64)
    for b in range(B):
        for n in range(U):
            z_x = np.float32(np.float32(acc_x[b, n]) * np.float32(sx[b] * swx[n])) + bias[n]
            p_h = np.float32(np.float32(acc_h[b, n]) * np.float32(sh[b] * swh[n]))
            assert got[b, n] == np.float32(z_x + p_h), (b, n)


def test_bf16_rnn_preactivation_is_the_chain_over_x_then_over_h_from_the_bias():
    rng = np.random.default_rng(17)
    B, I, U = 2, 5, 3                                  # odd: both segments padded
    x = rng.standard_normal((B, I)).astype(np.float32)
    h = rng.standard_normal((B, U)).astype(np.float32)
    kernel = rng.standard_normal((I + U, U)).astype(np.float32)
    bias = rng.standard_normal(U).astype(np.float32)
    got = rq.rnn_cell_bf16(x, h, kernel, bias, activation="linear")
    xb, hb, w = rq.round_bf16(x), rq.round_bf16(h), rq.round_bf16(kernel)
    for b in range(B):
        for n in range(U):
            z_x = pair_chain(bias[n], xb[b], w[:I, n])
            assert got[b, n] == pair_chain(z_x, hb[b], w[I:, n]), (b, n)


def test_public_names_exist():
    for name in rq.__all__:
        assert hasattr(rq, name), name
    assert rq.CELL_KINDS == ("rnn", "lstm", "gru", "gru_reset_after")


@pytest.mark.parametrize("scheme", ["int8", "bf16"])
def test_read_only_and_non_contiguous_inputs_give_the_same_numbers(scheme):
    rng = np.random.default_rng(18)
    w = cell_weights("gru_reset_after", 4, 3, rng)
    x = rng.standard_normal((2, 6, 4)).astype(np.float32)
    want_out, want_h = RUNNER[scheme]("gru_reset_after", x, **w)
    wide = np.zeros((2, 12, 8), np.float32)
    wide[:, ::2, ::2] = x
    strided = wide[:, ::2, ::2]                           # non-contiguous view of x
    frozen = {}
    for k, v in w.items():
        v = np.asfortranarray(v)
        v.setflags(write=False)
        frozen[k] = v
    strided.setflags(write=False)
    got_out, got_h = RUNNER[scheme]("gru_reset_after", strided, **frozen)
    np.testing.assert_array_equal(got_out, want_out)
    np.testing.assert_array_equal(got_h, want_h)
