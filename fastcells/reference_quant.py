"""The exact int8 and bf16 weight schemes as a NumPy reference: the contract of their kernels.

Every cell (RNN, LSTM with all its options, TF's reset-before GRU, the reset-after GRU) and
dynamic_rnn-style sequences, with the weights stored in int8 or bf16 and the rest of the cell in
fp32. This module *defines* the arithmetic: a compiled kernel of either scheme must give the same
int32 accumulators and the same fp32 pre-activations, bit for bit, from the same operands. The
cell math after the products (gates, activations, c, peepholes, clips) is fastcells.reference's,
in float32; its transcendental functions are not part of the bit-exact contract (a kernel's tanh
may differ by an ulp), so whole sequences are compared with a tolerance, products and epilogues
bit for bit. Depends on NumPy and fastcells.reference only.

Notation: B batch, T time, I input depth, U num_units, P num_proj (or U), K the depth of one
product segment (I for the x part, P for the h part), N its number of output columns.


int8 scheme
===========

Quantizer (one rule for weights and activations).  Q = 127. A vector v (a weight column, or one
row of activations) with ``amax = max|v|`` (fp32, exact) gets, in fp32 arithmetic::

    scale = amax / Q            (fp32 division, round to nearest even)
    inv   = Q / amax            (fp32 division)
    q     = clip(rint(v * inv), -Q, Q)      (fp32 product; rint = round half to even)

``q`` is symmetric: -128 never occurs (the clip), which the AVX2 product below relies on. A vector
with ``amax < 2**-100`` (all zeros included) is a zero vector: ``scale = 1, inv = 0, q = 0`` --
no 0/0, no inf, no special case in a kernel's quantize loop (``v * 0 = 0``); such a vector's
contribution is below 1e-30 and is dropped. From amax >= 2**-100, ``inv <= 127 * 2**100`` and
``scale >= 2**-107`` stay normal fp32; ``v * inv`` of a subnormal v is < 2e-6, so rint gives 0
whether or not a kernel runs with DAZ. ``v * inv`` itself may exceed Q by an ulp; the clip
makes that exact. Inputs must be finite (ValueError otherwise).

  * Weights: per output column of each product segment, i.e. the kernel [I+P, N] is split into
    its x rows [:I] and its h rows [I:], each column of each part with its own scale. The two
    parts meet activations of different scales and the x part is hoisted out of the time loop,
    so one scale per (segment, column) costs nothing and is as accurate as per column gets.
  * x: per row (dynamic: each batch row its own amax), which for a hoisted input projection is
    per (t, row) -- the same numbers as a step at a time.
  * h (and r*h, the operand of the GRU's candidate product): a fixed ``amax = 1``
    (``scale = fp32(1/127)``, ``inv = 127`` exactly) where the cell bounds it by 1:
    tanh/sigmoid/softsign/hard_sigmoid activations (by name, or reference.tanh/sigmoid) with
    sigmoid/hard_sigmoid gates (the LSTM's ``m = sig(o) * act(c')`` without a projection, the
    GRU's convex ``u*h + (1-u)*c``, a tanh RNN). A fixed scale
    needs no row maximum, so a kernel quantizes h in the same pass as the gate epilogue. An
    operand outside [-1, 1] with a fixed scale is refused (ValueError): only an initial state
    can be, since the cell's own outputs stay inside (fp32 rounding of ``u*h + (1-u)*c`` with
    u in [0, 1] never exceeds 1). Otherwise (projection, relu, linear, parametric or custom
    activations, custom gates) h is quantized per row like x. With a projection, its input
    ``sig(o) * act(c')`` is bounded too but is quantized per row as well: at T=1000 a fixed
    scale there gives 1.5e-2 / 1.7e-2 instead of 1.1e-2 / 1.2e-2 (H = 128 / 256), while for h
    itself per row and fixed are within 5% of each other (``tools/quant_accuracy.py
    --ablation``), so the fixed scale, which saves a pass, is kept where it applies.

Accumulation: exact int32. With |q_a|, |q_w| <= Q every partial sum of a K-term dot product, in
any order and any grouping, is bounded by ``K * Q * Q``; it is < 2**31 for
``K <= INT8_K_MAX = (2**31 - 1) // 127**2 = 133144`` (133144 * 16129 = 2147479576). A segment
deeper than that is refused (ValueError) rather than split, so one int32 per (row, column,
segment) is always exact and every kernel order gives the same integer. The NumPy product here
runs in float64: every partial sum is an integer below 2**31 < 2**53, so BLAS's order and FMA
cannot round it; the result is returned as int64 and checked against the bound.

The AVX2 / AVX-512BW product (why no 7-bit operands and no +128 shift).  ``vpmaddubsw`` takes
u8 x s8 and adds adjacent pairs into int16 with saturation; with activations shifted to u8
(q + 128, up to 255) a pair reaches 2*255*127 = 64770 and saturates. Instead of giving up a bit
(7-bit activations or weights double that operand's rounding error) or widening to int16
(``vpmaddwd`` on int16: two instructions per 16 products and twice the weight bytes), the sign of
the activation moves onto the weight (the SSSE3 idiom)::

    u   = vpabsb(a)            |q_a| in [0, 127] as u8   (once per packed activation)
    s   = vpsignb(w, a)        q_w * sign(q_a), in [-127, 127]  (AVX-512BW: vpmovb2m + masked
                                vpsubb from zero, as it has no vpsignb)
    t16 = vpmaddubsw(u, s)     u0*s0 + u1*s1 = a0*w0 + a1*w1, |t16| <= 2*127*127 = 32258
    t32 = vpmaddwd(t16, 1)     sum of 4 products, |t32| <= 64516
    acc = vpaddd(acc, t32)     a partial sum: |acc| <= K*127*127 < 2**31

No intermediate saturates or wraps (32258 < 32767 needs |q| <= 127 on both sides: the quantizer's
clip). 8 bits on both operands, no column-sum correction, one vpsignb more than the shifted form
per 32 products. VNNI (AVX512-VNNI, AVX-VNNI): ``vpdpbusd(acc, u, s)`` adds the four u8 x s8
products in int32 with no int16 intermediate, so with the same (u, s) it gives the same int32;
the shifted form ``vpdpbusd(acc, q_a + 128, q_w) - 128 * colsum(q_w)`` also gives it exactly
(int32 arithmetic wraps mod 2**32 and the true result is inside int32, so even an intermediate
beyond 2**31 -- K > 66311 -- cancels). Plain int16 ``vpmaddwd`` widening is exact too.
``vpmaddubsw_model``, ``vpmaddwd_model``, ``vpdpbusd_model`` (and ``vpabsb_model``,
``vpsignb_model``) model each instruction's intermediate, saturating or wrapping as the hardware
does (tools/quant_isa_probe.py checks them against this machine's instructions); the
``int8_dot_*_model`` functions chain them as the kernels will, and the tests drive every
operand to its extremes through them at K = INT8_K_MAX.

Epilogue (fp32, no FMA, in this order; NumPy float32 ufuncs round each operation once, as
``vmulps``/``vaddps`` do; a kernel must build without contraction, e.g. ``-ffp-contract=off``:
GCC defines ``_mm256_mul_ps``/``_mm256_add_ps`` as plain vector arithmetic, which it may fuse
into an FMA under -mfma)::

    acc_f = fp32(acc)                       int32 -> fp32, round to nearest even (vcvtdq2ps)
    p_x   = acc_f_x * (s_x[row] * s_wx[col])    the scale product first, then the scaling
    z_x   = p_x + bias[col]                 hoistable over the whole sequence
    p_h   = acc_f_h * (s_h[row] * s_wh[col])
    z     = z_x + p_h

Separate multiply and add rather than FMA: both are exactly reproducible, but the fp32 FMA is
not exactly emulable by NumPy through float64 (double rounding), the scalar baseline has no FMA
instruction, and the epilogue is B*N operations against B*N*K in the product. A product with
one segment is ``p (+ bias)``; the projection has no bias; the reset-after GRU's hidden product
is ``p_h + hidden_bias``. Then the cell math, in float32 (forget_bias added to f after z, as
reference.lstm_cell).

bf16 scheme
===========

Rounding to bf16 (weights, and the activations x and h of every product): round to nearest
even on the fp32 bits (``(u + 0x7FFF + ((u >> 16) & 1)) >> 16`` on the uint32 view), NaN kept NaN
(quieted: the top 16 bits with the quiet bit set), +-inf kept, overflow to +-inf as RNE says,
subnormals rounded like normals (IEEE; no flush). Rounding the activations too (rather than
keeping x and h in fp32 against widened weights) makes every product ``x_k * w_k`` of two 8-bit
significands exact in fp32 (16 bits <= 24) whenever it is 0 or at least 2**-126 in magnitude, so
an fp32 FMA and an fp32 multiply-then-add give the same bits, vdpbf16ps can consume the same
operands, and NumPy reproduces the chain exactly with float32 ufuncs (an fp32 FMA of an fp32 x
and a bf16 w has a 32-bit product and cannot be emulated through float64 without double
rounding). It costs some accuracy, measured below and within the bar.

Product: one fp32 chain per segment, starting from the bias (0 for the projection; for the h
part, from the x part's result), over pairs of k, the odd element of each pair first::

    for i in 0 .. ceil(K/2)-1:  acc = fp32(fp32(acc + x[2i+1]*w[2i+1]) + x[2i]*w[2i])

a segment of odd K padded with +0.0 (bits 0) on both operands, so its last pair adds +0 first.
That is ``vdpbf16ps``'s order: the SDM defines it as two FMAs per pair, element 2i+1 first, and
tools/quant_isa_probe.py checks this machine's instruction against this function bit for bit.
The widening kernel (bf16 weights widened to fp32 by a 16-bit shift, activations rounded by
the integer formula above, ``vfmadd231ps`` or vmulps+vaddps with x broadcast, k visited
2i+1, 2i) gives the same bits. Both are exact against this reference as long as no product is
nonzero below 2**-126 in magnitude and no partial sum is subnormal: vdpbf16ps flushes
subnormal inputs and results to zero whatever MXCSR says, an FMA keeps a tiny product unrounded
and this reference (fp32 multiply) rounds it to the subnormal grid. Outside that domain (values
below 1.2e-38) they may differ by 2**-126 per product; a test comparing them there needs that
absolute tolerance. A kernel summing in another order (e.g. k order, or the two products of a
pair added first) is not bit-exact; its tolerance is the recursive-summation bound
``|z - z_ref| <= 2 * gamma_K * sum_k |x_k w_k|``, ``gamma_K = K u / (1 - K u)``, u = 2**-24.

Measured accuracy (``python tools/quant_accuracy.py``: relative L2 error of the final h at
T=1000, B=8, I=H, glorot_uniform weights as TF initializes them, x ~ N(0, 1), zero state,
against the float64 reference; the peers against their own fp32 run, same weights and inputs)::

    cell (H=128 / H=256)          int8                bf16                peers (int8)
    rnn tanh                      8.8e-3 / 9.8e-3     2.8e-3 / 3.0e-3
    lstm                          9.1e-3 / 8.8e-3     2.8e-3 / 2.5e-3     torch 2.6e-2 / 2.6e-2,
                                                                          ORT   1.3e-2 / 1.4e-2
    lstm, peepholes, P = H/2      1.1e-2 / 1.2e-2     3.7e-3 / 3.5e-3
    gru (reset before)            8.7e-3 / 9.6e-3     2.6e-3 / 2.9e-3
    gru reset after               9.0e-3 / 9.7e-3     3.0e-3 / 3.0e-3     torch 2.6e-2 / 2.8e-2

(torch: torch.ao.quantization.quantize_dynamic qint8 of nn.LSTM / nn.GRU; ORT: ONNX Runtime's
DynamicQuantizeLSTM.) The tests hold int8 to 1.5e-2 and bf16 to 5e-3 at T=1000.
"""
import numpy as np

from fastcells import reference as ref

__all__ = [
    "Q", "INT8_K_MAX", "TINY_AMAX", "H_AMAX",
    "quantize_int8", "quantize_weights_int8", "quantize_rows", "int8_matmul", "int8_epilogue",
    "vpabsb_model", "vpsignb_model", "vpmaddubsw_model", "vpmaddwd_model", "vpdpbusd_model",
    "int8_dot_avx2_model", "int8_dot_vnni_model", "int8_dot_vnni_shifted_model",
    "int8_dot_int16_model",
    "round_bf16", "bf16_bits", "bf16_matmul",
    "rnn_cell_int8", "lstm_cell_int8", "gru_cell_int8", "gru_cell_reset_after_int8",
    "rnn_cell_bf16", "lstm_cell_bf16", "gru_cell_bf16", "gru_cell_reset_after_bf16",
    "dynamic_rnn_int8", "dynamic_rnn_bf16", "CELL_KINDS",
]

Q = 127                                      # int8 range [-Q, Q] for weights and activations
INT8_K_MAX = (2 ** 31 - 1) // (Q * Q)        # 133144: deepest segment with an exact int32 sum
TINY_AMAX = np.float32(2.0 ** -100)          # amax below this: a zero vector (scale 1, q 0)
H_AMAX = np.float32(1.0)                     # the fixed amax of an operand the cell bounds by 1
_Q32 = np.float32(Q)


# ---------------------------------------------------------------------------------------------
# int8: quantizer, exact product, epilogue
# ---------------------------------------------------------------------------------------------

def _as_finite_f32(name, a, ndim):
    a = np.asarray(a)
    if a.dtype.kind not in "fiu":
        raise TypeError("%s: expected a real array, got dtype %s" % (name, a.dtype))
    a = a.astype(np.float32, copy=False)
    if a.ndim != ndim:
        raise ValueError("%s: expected rank %d, got shape %s" % (name, ndim, a.shape))
    if not np.all(np.isfinite(a)):
        raise ValueError("%s: expected finite values, got %d non-finite"
                         % (name, int(np.count_nonzero(~np.isfinite(a)))))
    return a


def _scale_inv(amax):
    """amax: fp32 array -> (scale, inv) fp32 arrays of the same shape (the quantizer rule)."""
    amax = np.asarray(amax, dtype=np.float32)
    zero = amax < TINY_AMAX
    safe = np.where(zero, np.float32(1), amax)
    scale = np.where(zero, np.float32(1), safe / _Q32).astype(np.float32)
    inv = np.where(zero, np.float32(0), _Q32 / safe).astype(np.float32)
    return scale, inv


def quantize_int8(v, axis, amax=None, name="v"):
    """Symmetric int8 of the fp32 array ``v`` with one scale per slice along ``axis``.

    v: [M,K] (any real dtype, converted to fp32; finite); axis: the axis reduced for amax (0:
    per column, 1: per row); amax: None (each slice its own max|v|) or a fixed positive value,
    which every |v| must not exceed. Returns (q: int8 like v, values in [-Q, Q];
    scale: fp32 [the other axis]), with ``v ~= q * scale``. New arrays; v is not modified.
    """
    v = _as_finite_f32(name, v, 2)
    other = 1 - axis
    if amax is None:
        amax_v = np.max(np.abs(v), axis=axis, initial=np.float32(0))
    else:
        fixed = np.float32(amax)
        if not fixed > 0:
            raise ValueError("amax: expected a positive value, got %r" % (amax,))
        worst = np.max(np.abs(v), initial=np.float32(0))
        if worst > fixed:
            raise ValueError("%s: expected values in [-%g, %g] (fixed int8 scale), got max|%s| "
                             "= %r" % (name, fixed, fixed, name, float(worst)))
        amax_v = np.full(v.shape[other], fixed, dtype=np.float32)
    scale, inv = _scale_inv(amax_v)
    inv_b = inv.reshape((1, -1) if axis == 0 else (-1, 1))
    q = np.clip(np.rint(v * inv_b), -Q, Q).astype(np.int8)
    return q, scale


def quantize_weights_int8(w, name="kernel"):
    """Per-column int8 of a weight matrix. w: [K,N]. Returns (q: int8 [K,N], scale: fp32 [N])."""
    return quantize_int8(w, 0, name=name)


def quantize_rows(a, amax=None, name="x"):
    """Per-row int8 of activations. a: [B,K]; amax: None (dynamic, per row) or a fixed value
    (e.g. H_AMAX). Returns (q: int8 [B,K], scale: fp32 [B])."""
    return quantize_int8(a, 1, amax=amax, name=name)


def _check_int8_operand(name, q, ndim):
    q = np.asarray(q)
    if q.dtype != np.int8:
        raise TypeError("%s: expected dtype int8, got %s" % (name, q.dtype))
    if q.ndim != ndim:
        raise ValueError("%s: expected rank %d, got shape %s" % (name, ndim, q.shape))
    if q.size and int(q.min()) < -Q:
        raise ValueError("%s: expected values in [-%d, %d], got -128" % (name, Q, Q))
    return q


def int8_matmul(qa, qw):
    """The exact int32 accumulators of one product segment, as int64.

    qa: int8 [B,K] activations, qw: int8 [K,N] weights, both in [-Q, Q]; K <= INT8_K_MAX.
    Returns acc: int64 [B,N] = sum_k qa[b,k] * qw[k,n], every value inside int32.
    """
    qa = _check_int8_operand("qa", qa, 2)
    qw = _check_int8_operand("qw", qw, 2)
    if qa.shape[1] != qw.shape[0]:
        raise ValueError("qa and qw: expected [B,K] and [K,N] with the same K; got %s and %s"
                         % (qa.shape, qw.shape))
    K = qa.shape[1]
    if K > INT8_K_MAX:
        raise ValueError("K: expected at most INT8_K_MAX = %d (an exact int32 sum of int8 "
                         "products), got %d" % (INT8_K_MAX, K))
    # float64 is exact here: every partial sum is an integer of magnitude <= K*Q*Q < 2**53.
    acc = (qa.astype(np.float64) @ qw.astype(np.float64)).astype(np.int64)
    assert acc.size == 0 or np.max(np.abs(acc)) <= K * Q * Q
    return acc


def int8_epilogue(acc, row_scale, col_scale, bias=None):
    """fp32 ``fp32(acc) * (row_scale[b] * col_scale[n]) (+ bias[n])``, each operation rounded
    once (no FMA). acc: integer [B,N]; row_scale: fp32 [B]; col_scale: fp32 [N]; bias: [N]."""
    acc = np.asarray(acc)
    scale = (np.asarray(row_scale, np.float32)[:, None]
             * np.asarray(col_scale, np.float32)[None, :])                     # [B,N] fp32
    acc_f = acc.astype(np.float64).astype(np.float32)      # exact, then one rounding to fp32
    p = acc_f * scale
    if bias is not None:
        p = p + np.asarray(bias, np.float32)
    return p


# ---------------------------------------------------------------------------------------------
# int8: instruction models (each intermediate as the hardware computes it)
# ---------------------------------------------------------------------------------------------

def _wrap32(v):
    """int64 array -> the int32 two's-complement wraparound, as int64."""
    return ((np.asarray(v, np.int64) + 2 ** 31) % 2 ** 32) - 2 ** 31


def vpabsb_model(a):
    """vpabsb: |a| of int8 as uint8 (|-128| = 128)."""
    return np.abs(np.asarray(a, np.int16)).astype(np.uint8)


def vpsignb_model(w, a):
    """vpsignb(w, a): w where a > 0, -w where a < 0, 0 where a == 0 (int8, -(-128) wraps)."""
    w16 = np.asarray(w, np.int16)
    a = np.asarray(a)
    out = np.where(a > 0, w16, np.where(a < 0, -w16, 0))
    return ((out + 128) % 256 - 128).astype(np.int8)


def vpmaddubsw_model(u8, s8):
    """vpmaddubsw: u8 [...,2m] x s8 [...,2m] -> int16 [...,m], each adjacent pair summed with
    signed saturation to [-32768, 32767]."""
    u = np.asarray(u8)
    s = np.asarray(s8)
    assert u.dtype == np.uint8 and s.dtype == np.int8 and u.shape == s.shape
    prod = u.astype(np.int64) * s.astype(np.int64)
    pairs = prod[..., 0::2] + prod[..., 1::2]
    return np.clip(pairs, -32768, 32767).astype(np.int16)


def vpmaddwd_model(a16, b16):
    """vpmaddwd: int16 [...,2m] x int16 [...,2m] -> int32 [...,m], adjacent pairs summed with
    wraparound (only -32768*-32768*2 wraps)."""
    a = np.asarray(a16)
    b = np.asarray(b16)
    assert a.dtype == np.int16 and b.dtype == np.int16
    prod = a.astype(np.int64) * b.astype(np.int64)
    return _wrap32(prod[..., 0::2] + prod[..., 1::2]).astype(np.int32)


def vpdpbusd_model(acc32, u8, s8):
    """vpdpbusd (non-saturating): acc int32 [...,m] + the 4 products u8 x s8 of each group of
    4 bytes [...,4m], summed in int32 with wraparound."""
    u = np.asarray(u8)
    s = np.asarray(s8)
    assert u.dtype == np.uint8 and s.dtype == np.int8 and u.shape == s.shape
    prod = u.astype(np.int64) * s.astype(np.int64)
    quad = prod[..., 0::4] + prod[..., 1::4] + prod[..., 2::4] + prod[..., 3::4]
    return _wrap32(np.asarray(acc32, np.int64) + quad).astype(np.int32)


def _groups_of_4(qa, qw):
    """qa [B,K], qw [K,N] -> broadcast int8 operands [B,N,K4] with K padded by zeros to a
    multiple of 4 (the kernels' packed layout: 4 consecutive k of one column per dword)."""
    qa = _check_int8_operand("qa", qa, 2)
    qw = _check_int8_operand("qw", qw, 2)
    B, K = qa.shape
    N = qw.shape[1]
    K4 = -(-K // 4) * 4
    a = np.zeros((B, 1, K4), np.int8)
    a[:, 0, :K] = qa
    w = np.zeros((1, N, K4), np.int8)
    w[0, :, :K] = qw.T
    return np.broadcast_to(a, (B, N, K4)), np.broadcast_to(w, (B, N, K4))


def _vpaddd_reduce(parts):
    """Accumulate int32 parts [B,N,G] group by group with vpaddd (wraparound), in k order;
    also returns the largest |partial sum| seen (for the no-overflow proof)."""
    exact = np.cumsum(parts.astype(np.int64), axis=-1)
    worst = int(np.max(np.abs(exact), initial=0))
    return _wrap32(exact[..., -1] if parts.shape[-1] else np.zeros(parts.shape[:-1])), worst


def int8_dot_avx2_model(qa, qw):
    """The AVX2/AVX-512BW sequence vpabsb, vpsignb, vpmaddubsw, vpmaddwd(1), vpaddd.
    qa: int8 [B,K], qw: int8 [K,N]. Returns (acc: int64 [B,N], stats: dict of the largest
    |pair| before saturation, |int16 result|, |int32 partial sum|)."""
    a, w = _groups_of_4(qa, qw)
    u = vpabsb_model(a)
    s = vpsignb_model(w, a)
    pairs_exact = u.astype(np.int64)[..., 0::2] * s[..., 0::2] + \
        u.astype(np.int64)[..., 1::2] * s[..., 1::2]
    t16 = vpmaddubsw_model(u, s)
    t32 = vpmaddwd_model(t16, np.ones_like(t16))
    acc, worst = _vpaddd_reduce(t32)
    return acc, {"pair": int(np.max(np.abs(pairs_exact), initial=0)),
                 "int16": int(np.max(np.abs(t16.astype(np.int32)), initial=0)),
                 "saturated": bool(np.any(pairs_exact != t16)),
                 "partial": worst}


def int8_dot_vnni_model(qa, qw):
    """AVX512-VNNI / AVX-VNNI with the sign idiom: acc = vpdpbusd(acc, |a|, sign(w, a)) over the
    groups of 4, in k order. Returns acc: int64 [B,N]."""
    a, w = _groups_of_4(qa, qw)
    u = vpabsb_model(a)
    s = vpsignb_model(w, a)
    acc = np.zeros(a.shape[:2], np.int32)
    for g in range(a.shape[-1] // 4):
        acc = vpdpbusd_model(acc[..., None], u[..., 4 * g:4 * g + 4],
                             s[..., 4 * g:4 * g + 4])[..., 0]
    return acc.astype(np.int64)


def int8_dot_vnni_shifted_model(qa, qw):
    """VNNI with activations shifted to u8: vpdpbusd(acc, qa + 128, qw) over the groups of 4,
    then acc - 128 * colsum(qw), all int32 with wraparound. Returns acc: int64 [B,N]."""
    a, w = _groups_of_4(qa, qw)
    u = (a.astype(np.int16) + 128).astype(np.uint8)
    acc = np.zeros(a.shape[:2], np.int32)
    for g in range(a.shape[-1] // 4):
        acc = vpdpbusd_model(acc[..., None], u[..., 4 * g:4 * g + 4],
                             w[..., 4 * g:4 * g + 4])[..., 0]
    colsum = np.asarray(qw, np.int64).sum(axis=0)                           # [N]
    return _wrap32(acc.astype(np.int64) - _wrap32(128 * colsum)[None, :])


def int8_dot_int16_model(qa, qw):
    """Widening to int16: vpmaddwd(a16, w16) pairs, vpaddd, in k order. Returns int64 [B,N]."""
    a, w = _groups_of_4(qa, qw)
    t32 = vpmaddwd_model(a.astype(np.int16), w.astype(np.int16))
    return _vpaddd_reduce(t32)[0]


# ---------------------------------------------------------------------------------------------
# bf16
# ---------------------------------------------------------------------------------------------

def round_bf16(a):
    """fp32 values rounded to bf16 (nearest even; NaN stays NaN, inf stays inf), returned
    widened to fp32 (low 16 bits zero). a: any real array (converted to fp32). New array."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    quiet_nan = (u | 0x00400000) & 0xFFFF0000
    is_nan = np.isnan(np.asarray(a, dtype=np.float32))
    bits = np.where(is_nan, quiet_nan, rounded).astype(np.uint32)
    return bits.view(np.float32).reshape(np.shape(a))


def bf16_bits(a):
    """The bf16 encodings (uint16) of fp32 values rounded as round_bf16."""
    return (round_bf16(a).view(np.uint32) >> 16).astype(np.uint16)


def bf16_matmul(a, w_bf16, acc=None):
    """The bf16 product chain of one segment, pair by pair, the odd element of each pair first::

        for i in 0 .. ceil(K/2)-1:  acc = fp32(fp32(acc + p[2i+1]) + p[2i]),  p[k] = a_k * w_k

    with a and w padded by +0.0 to an even K (so an odd K's last pair adds +0 first). This is
    vdpbf16ps's order (two FMAs per pair, element 2i+1 first) and a widening kernel's
    ``vfmadd231ps`` in the same order; the products are exact in fp32 (two 8-bit significands),
    so a multiply-then-add is the same as the FMA.
    a: [B,K] activations (rounded to bf16 here); w_bf16: fp32 [K,N] holding bf16 values
    (round_bf16); acc: None (start from 0) or fp32 [B,N] (the bias broadcast, or the x part's
    result to continue over h; not modified). Returns a new fp32 [B,N].
    """
    a_bf = round_bf16(a)
    w = np.asarray(w_bf16, np.float32)
    if a_bf.ndim != 2 or w.ndim != 2 or a_bf.shape[1] != w.shape[0]:
        raise ValueError("a and w_bf16: expected [B,K] and [K,N] with the same K; got %s and %s"
                         % (np.shape(a), w.shape))
    (B, K), N = a_bf.shape, w.shape[1]
    K2 = K + K % 2
    a_t = np.zeros((K2, B, 1), np.float32)                                  # [K2,B,1]
    a_t[:K, :, 0] = a_bf.T
    w_p = np.zeros((K2, N), np.float32)
    w_p[:K] = w
    out = np.zeros((B, N), np.float32) if acc is None else \
        np.array(np.broadcast_to(np.asarray(acc, np.float32), (B, N)))
    tmp = np.empty((B, N), np.float32)
    for k in range(0, K2, 2):
        for kk in (k + 1, k):
            np.multiply(a_t[kk], w_p[kk], out=tmp)
            np.add(out, tmp, out=out)
    return out


# ---------------------------------------------------------------------------------------------
# The two schemes behind one interface: prepare(w) once, product(segments, bias, start)
# ---------------------------------------------------------------------------------------------

class _Int8:
    name = "int8"

    @staticmethod
    def prepare(w, name):
        return quantize_weights_int8(w, name)

    @staticmethod
    def product(segments, bias=None, start=None):
        """segments: list of (a [B,K], prepared [K,N], amax or None, name), x part first.
        z = start, or the first segment's p (+ bias); then + each further p, in order."""
        assert start is None or bias is None
        z = start
        for a, (qw, sw), amax, name in segments:
            qa, sa = quantize_rows(a, amax, name)
            p = int8_epilogue(int8_matmul(qa, qw), sa, sw)
            if z is None:
                z = p if bias is None else p + np.asarray(bias, np.float32)
            else:
                z = z + p
        return z


class _Bf16:
    name = "bf16"

    @staticmethod
    def prepare(w, name):
        return round_bf16(_as_finite_f32(name, w, 2))

    @staticmethod
    def product(segments, bias=None, start=None):
        """One chain over the segments in order, from start, or bias, or 0."""
        assert start is None or bias is None
        acc = start if start is not None else bias
        for a, w, _amax, name in segments:
            acc = bf16_matmul(_as_finite_f32(name, a, 2), w, acc)
        return acc


_SCHEMES = {"int8": _Int8, "bf16": _Bf16}

_BOUNDED_BY_ONE = {"tanh", "sigmoid", "softsign", "hard_sigmoid"}
_UNIT_GATES = {"sigmoid", "hard_sigmoid"}


def _is(activation, names, default):
    """True if the activation argument is one of the names (None means `default`)."""
    if activation is None:
        activation = default
    if isinstance(activation, str):
        return activation in names
    return any(activation is getattr(ref, n, None) for n in names)


_f32 = _as_finite_f32


def _check_shape(name, array, expected):
    if array.shape != tuple(expected):
        raise ValueError("%s: expected shape %s, got %s" % (name, tuple(expected), array.shape))


# ---------------------------------------------------------------------------------------------
# Cells: each prepares its weights once, hoists the x part, then steps over h
# ---------------------------------------------------------------------------------------------

class _Rnn:
    """h' = act([x, h] @ kernel + bias). State: h [B,U]."""

    def __init__(self, scheme, I, kernel, bias, activation=None, preact_clip=None):
        kernel, bias = _f32("kernel", kernel, 2), _f32("bias", bias, 1)
        U = bias.shape[0]
        _check_shape("kernel", kernel, (I + U, U))
        self.s, self.I, self.U = scheme, I, U
        self.wx = scheme.prepare(kernel[:I], "kernel")
        self.wh = scheme.prepare(kernel[I:], "kernel")
        self.bias = bias
        self.act = ref._clipped(ref.get_activation(activation), preact_clip)
        self.h_amax = H_AMAX if _is(activation, _BOUNDED_BY_ONE, "tanh") else None

    def hoist(self, x):                                   # x: [M,I] -> [M,U]
        return self.s.product([(x, self.wx, None, "x")], self.bias)

    def step(self, zx, h):
        h = _f32("h", h, 2)
        _check_shape("h", h, (zx.shape[0], self.U))
        h_new = self.act(self.s.product([(h, self.wh, self.h_amax, "h")], start=zx))
        return h_new, h_new


class _Lstm:
    """TF LSTMCell with every option of reference.lstm_cell. State: (c [B,U], h [B,P])."""

    def __init__(self, scheme, I, kernel, bias, forget_bias=1.0, activation=None,
                 w_i_diag=None, w_f_diag=None, w_o_diag=None, cell_clip=None, proj_kernel=None,
                 proj_clip=None, gate_activation=None, output_activation=None,
                 preact_clip=None, input_forget=False):
        kernel, bias = _f32("kernel", kernel, 2), _f32("bias", bias, 1)
        if bias.shape[0] % 4:
            raise ValueError("bias: expected shape (4U,), got %s" % (bias.shape,))
        U = bias.shape[0] // 4
        P = U
        if proj_kernel is not None:
            proj_kernel = _f32("proj_kernel", proj_kernel, 2)
            if proj_kernel.shape[0] != U:
                raise ValueError("proj_kernel: expected shape (%d, P), got %s"
                                 % (U, proj_kernel.shape))
            P = proj_kernel.shape[1]
        _check_shape("kernel", kernel, (I + P, 4 * U))
        self.s, self.I, self.U, self.P = scheme, I, U, P
        self.wx = scheme.prepare(kernel[:I], "kernel")
        self.wh = scheme.prepare(kernel[I:], "kernel")
        self.wp = None if proj_kernel is None else scheme.prepare(proj_kernel, "proj_kernel")
        self.bias = bias
        self.forget_bias = np.float32(forget_bias)
        diags = (w_i_diag, w_f_diag, w_o_diag)
        if any(d is not None for d in diags) and not all(d is not None for d in diags):
            raise ValueError("w_i_diag, w_f_diag, w_o_diag: expected all three or none")
        self.diags = None
        if w_i_diag is not None:
            self.diags = [_f32(n, d, 1) for n, d in zip(("w_i_diag", "w_f_diag", "w_o_diag"),
                                                         diags)]
            for n, d in zip(("w_i_diag", "w_f_diag", "w_o_diag"), self.diags):
                _check_shape(n, d, (U,))
        act = ref.get_activation(activation)
        self.out_act = ref.get_activation(output_activation, default=act)
        self.sig = ref._clipped(ref.get_activation(gate_activation, default=ref.sigmoid),
                                preact_clip)
        self.act_j = ref._clipped(act, preact_clip)
        self.cell_clip, self.proj_clip = cell_clip, proj_clip
        self.input_forget = input_forget
        out_bounded = (_is(gate_activation, _UNIT_GATES, "sigmoid")
                       and _is(output_activation if output_activation is not None
                               else activation, _BOUNDED_BY_ONE, "tanh"))
        # h = m = sig(o) * out_act(c') is bounded by 1 without a projection; with one, both the
        # projection's input and its output h are quantized per row (the module docstring)
        self.h_amax = H_AMAX if out_bounded and proj_kernel is None else None
        self.m_amax = None

    def hoist(self, x):                                   # x: [M,I] -> [M,4U]
        return self.s.product([(x, self.wx, None, "x")], self.bias)

    def step(self, zx, state):
        c, h = state
        c, h = _f32("c", c, 2), _f32("h", h, 2)
        _check_shape("c", c, (zx.shape[0], self.U))
        _check_shape("h", h, (zx.shape[0], self.P))
        z = self.s.product([(h, self.wh, self.h_amax, "h")], start=zx)
        i, j, f, o = np.split(z, 4, axis=1)
        f = f + self.forget_bias
        if self.diags is not None:
            w_i, w_f, w_o = self.diags
            i = i + w_i * c
            f = f + w_f * c
        gate_i = self.sig(i)
        gate_f = 1 - gate_i if self.input_forget else self.sig(f)
        c_new = gate_f * c + gate_i * self.act_j(j)
        if self.cell_clip is not None:
            c_new = np.clip(c_new, -self.cell_clip, self.cell_clip).astype(np.float32)
        if self.diags is not None:
            o = o + self.diags[2] * c_new
        m = self.sig(o) * self.out_act(c_new)
        if self.wp is not None:
            m = self.s.product([(m, self.wp, self.m_amax, "m")])
            if self.proj_clip is not None:
                m = np.clip(m, -self.proj_clip, self.proj_clip).astype(np.float32)
        return m, (c_new, m)


class _GruBase:
    """What both GRUs share: the r, u gates' weights, the hoisted x part (the gates' and the
    candidate's x products), the activations (h's fixed scale where they bound h by 1) and the
    r, u gates from the hoisted x part and h @ W_h.

    Set by _set_gates: s (the scheme), I, U; gx, gh (gates_kernel's x rows [I, 2U] and h rows
    [U, 2U], prepared), gb (gates_bias [2U]). Set by each GRU: cx (the candidate's x kernel
    [I, U], prepared) and cb (its bias [U])."""

    def _set_gates(self, scheme, I, U, gates_kernel, gates_bias):
        """gates_kernel [I+U, 2U] and gates_bias [2U] converted, checked (before the candidate's
        weights are checked) and prepared."""
        gk, gb = _f32("gates_kernel", gates_kernel, 2), _f32("gates_bias", gates_bias, 1)
        _check_shape("gates_kernel", gk, (I + U, 2 * U))
        _check_shape("gates_bias", gb, (2 * U,))
        self.s, self.I, self.U = scheme, I, U
        self.gx, self.gh = scheme.prepare(gk[:I], "gates_kernel"), \
            scheme.prepare(gk[I:], "gates_kernel")
        self.gb = gb

    def hoist(self, x):                          # x: [M,I] -> [M,3U]: gates | candidate's x part
        return np.concatenate([self.s.product([(x, self.gx, None, "x")], self.gb),
                               self.s.product([(x, self.cx, None, "x")], self.cb)], axis=1)

    def _set_activations(self, activation, gate_activation, preact_clip):
        self.act = ref._clipped(ref.get_activation(activation), preact_clip)
        self.sig = ref._clipped(ref.get_activation(gate_activation, default=ref.sigmoid),
                                preact_clip)
        bounded = (_is(activation, _BOUNDED_BY_ONE, "tanh")
                   and _is(gate_activation, _UNIT_GATES, "sigmoid"))
        self.h_amax = H_AMAX if bounded else None

    def _gates(self, zx, h):
        """(h as fp32 [B,U], r [B,U], u [B,U]) from zx [B,>=2U] (the x part, bias included)."""
        h = _f32("h", h, 2)
        _check_shape("h", h, (zx.shape[0], self.U))
        U = self.U
        g = self.sig(self.s.product([(h, self.gh, self.h_amax, "h")], start=zx[:, :2 * U]))
        return h, g[:, :U], g[:, U:]


class _Gru(_GruBase):
    """TF GRUCell (reset before the recurrent product). State: h [B,U]."""

    def __init__(self, scheme, I, gates_kernel, gates_bias, candidate_kernel, candidate_bias,
                 activation=None, gate_activation=None, preact_clip=None):
        ck = _f32("candidate_kernel", candidate_kernel, 2)
        cb = _f32("candidate_bias", candidate_bias, 1)
        U = cb.shape[0]
        self._set_gates(scheme, I, U, gates_kernel, gates_bias)
        _check_shape("candidate_kernel", ck, (I + U, U))
        self.cx, self.ch = scheme.prepare(ck[:I], "candidate_kernel"), \
            scheme.prepare(ck[I:], "candidate_kernel")
        self.cb = cb
        self._set_activations(activation, gate_activation, preact_clip)

    def step(self, zx, h):
        h, r, u = self._gates(zx, h)
        U = self.U
        cand = self.act(self.s.product([(r * h, self.ch, self.h_amax, "r*h")],
                                       start=zx[:, 2 * U:]))
        h_new = u * h + (1 - u) * cand
        return h_new, h_new


class _GruResetAfter(_GruBase):
    """The reset-after GRU (CudnnCompatibleGRUCell). State: h [B,U]."""

    def __init__(self, scheme, I, gates_kernel, gates_bias, input_kernel, input_bias,
                 hidden_kernel, hidden_bias, activation=None, gate_activation=None,
                 preact_clip=None):
        ik, ib = _f32("input_kernel", input_kernel, 2), _f32("input_bias", input_bias, 1)
        hk, hb = _f32("hidden_kernel", hidden_kernel, 2), _f32("hidden_bias", hidden_bias, 1)
        U = ib.shape[0]
        self._set_gates(scheme, I, U, gates_kernel, gates_bias)
        _check_shape("input_kernel", ik, (I, U))
        _check_shape("hidden_kernel", hk, (U, U))
        _check_shape("hidden_bias", hb, (U,))
        self.cx, self.wh = scheme.prepare(ik, "input_kernel"), scheme.prepare(hk, "hidden_kernel")
        self.cb, self.hb = ib, hb
        self._set_activations(activation, gate_activation, preact_clip)

    def step(self, zx, h):
        h, r, u = self._gates(zx, h)
        U = self.U
        hh = self.s.product([(h, self.wh, self.h_amax, "h")], self.hb)
        cand = self.act(zx[:, 2 * U:] + r * hh)
        h_new = u * h + (1 - u) * cand
        return h_new, h_new


_CELLS = {"rnn": _Rnn, "lstm": _Lstm, "gru": _Gru, "gru_reset_after": _GruResetAfter}
CELL_KINDS = tuple(_CELLS)               # the `cell` argument of dynamic_rnn_int8 / _bf16


def _one_step(kind, scheme, x, state, weights):
    x = _f32("x", x, 2)
    cell = _CELLS[kind](_SCHEMES[scheme], x.shape[1], **weights)
    return cell.step(cell.hoist(x), state)


def _rnn_step_fn(scheme):
    def rnn_cell_q(x, h, kernel, bias, activation=None, preact_clip=None):
        return _one_step("rnn", scheme, x, h, dict(kernel=kernel, bias=bias,
                                                   activation=activation,
                                                   preact_clip=preact_clip))[1]
    rnn_cell_q.__name__ = "rnn_cell_" + scheme
    rnn_cell_q.__doc__ = ("reference.rnn_cell with the %s scheme. x: [B,I]; h: [B,U]; "
                          "kernel: [I+U,U]; bias: [U]. Returns h': fp32 [B,U]." % scheme)
    return rnn_cell_q


def _lstm_step_fn(scheme):
    def lstm_cell_q(x, c, h, kernel, bias, **options):
        return _one_step("lstm", scheme, x, (c, h), dict(kernel=kernel, bias=bias,
                                                         **options))[1]
    lstm_cell_q.__name__ = "lstm_cell_" + scheme
    lstm_cell_q.__doc__ = ("reference.lstm_cell with the %s scheme, the same options "
                           "(forget_bias, activation, w_i_diag/w_f_diag/w_o_diag, cell_clip, "
                           "proj_kernel, proj_clip, gate_activation, output_activation, "
                           "preact_clip, input_forget). x: [B,I]; c: [B,U]; h: [B,P]. "
                           "Returns (c': fp32 [B,U], m': fp32 [B,P])." % scheme)
    return lstm_cell_q


def _gru_step_fn(scheme):
    def gru_cell_q(x, h, gates_kernel, gates_bias, candidate_kernel, candidate_bias, **options):
        return _one_step("gru", scheme, x, h, dict(
            gates_kernel=gates_kernel, gates_bias=gates_bias,
            candidate_kernel=candidate_kernel, candidate_bias=candidate_bias, **options))[1]
    gru_cell_q.__name__ = "gru_cell_" + scheme
    gru_cell_q.__doc__ = ("reference.gru_cell with the %s scheme (options activation, "
                          "gate_activation, preact_clip). x: [B,I]; h: [B,U]. "
                          "Returns h': fp32 [B,U]." % scheme)
    return gru_cell_q


def _gru_ra_step_fn(scheme):
    def gru_cell_reset_after_q(x, h, gates_kernel, gates_bias, input_kernel, input_bias,
                               hidden_kernel, hidden_bias, **options):
        return _one_step("gru_reset_after", scheme, x, h, dict(
            gates_kernel=gates_kernel, gates_bias=gates_bias, input_kernel=input_kernel,
            input_bias=input_bias, hidden_kernel=hidden_kernel, hidden_bias=hidden_bias,
            **options))[1]
    gru_cell_reset_after_q.__name__ = "gru_cell_reset_after_" + scheme
    gru_cell_reset_after_q.__doc__ = (
        "reference.gru_cell_reset_after with the %s scheme (options activation, "
        "gate_activation, preact_clip). x: [B,I]; h: [B,U]. Returns h': fp32 [B,U]." % scheme)
    return gru_cell_reset_after_q


rnn_cell_int8, rnn_cell_bf16 = _rnn_step_fn("int8"), _rnn_step_fn("bf16")
lstm_cell_int8, lstm_cell_bf16 = _lstm_step_fn("int8"), _lstm_step_fn("bf16")
gru_cell_int8, gru_cell_bf16 = _gru_step_fn("int8"), _gru_step_fn("bf16")
gru_cell_reset_after_int8 = _gru_ra_step_fn("int8")
gru_cell_reset_after_bf16 = _gru_ra_step_fn("bf16")


def _dynamic_rnn(scheme, cell, inputs, initial_state, sequence_length, time_major, weights):
    if cell not in _CELLS:
        raise ValueError("cell: expected one of %s, got %r" % (list(CELL_KINDS), cell))
    inputs = np.asarray(inputs)
    if inputs.ndim != 3:
        raise ValueError("inputs: expected rank 3 (%s), got shape %s"
                         % ("[T,B,I]" if time_major else "[B,T,I]", inputs.shape))
    xs = inputs if time_major else inputs.swapaxes(0, 1)                       # [T,B,I]
    T, B, I = xs.shape
    if T == 0:
        raise ValueError("inputs: expected at least one time step (T >= 1), got shape %s"
                         % (inputs.shape,))
    c = _CELLS[cell](_SCHEMES[scheme], I, **weights)
    zx = c.hoist(_f32("inputs", xs, 3).reshape(T * B, I)).reshape(T, B, -1)  # per (t, row)
    if initial_state is None:
        zeros = np.zeros((B, c.U), np.float32)
        initial_state = (zeros, np.zeros((B, c.P), np.float32)) if cell == "lstm" else zeros
    outputs, state = ref.dynamic_rnn(c.step, zx, initial_state, sequence_length,
                                     time_major=True)                      # [T,B,O]
    return (outputs if time_major else outputs.swapaxes(0, 1).copy()), state


def dynamic_rnn_int8(cell, inputs, initial_state=None, sequence_length=None, time_major=False,
                     **weights):
    """reference.dynamic_rnn of one cell kind with the int8 scheme.

    cell: "rnn", "lstm", "gru" or "gru_reset_after"; inputs: [B,T,I] ([T,B,I] if time_major);
    initial_state: None (zeros) or the cell's state (h [B,U]; for "lstm" (c [B,U], h [B,P]));
    sequence_length: None or [B] ints in [0, T]; weights: the fp32 TF-layout weights and options
    under the names of the matching reference function (kernel=, bias=, ... for rnn_cell /
    lstm_cell; gates_kernel=, ... for gru_cell / gru_cell_reset_after). The input projection is
    computed once for all (t, row) (x quantized per (t, row)); each step then runs the
    recurrent product. Returns (outputs: fp32 [B,T,O] ([T,B,O]), final state), the same numbers
    as the step functions applied one step at a time.
    """
    return _dynamic_rnn("int8", cell, inputs, initial_state, sequence_length, time_major,
                        weights)


def dynamic_rnn_bf16(cell, inputs, initial_state=None, sequence_length=None, time_major=False,
                     **weights):
    """dynamic_rnn_int8's twin with the bf16 scheme (same arguments and results)."""
    return _dynamic_rnn("bf16", cell, inputs, initial_state, sequence_length, time_major,
                        weights)
