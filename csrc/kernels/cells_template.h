/* cells_template.h — the register-tile cell kernels of every family, written once with
 * GCC/Clang vector extensions. setup.py compiles it once per FC_KERNEL line of kernels.def,
 * each time with that line's compiler flags, through a generated unit that defines the line's
 * parameters and includes the family file (f32-cells.h, f64-cells.h, i8-cells.h, bf16-cells.h):
 *     FC_T        float or double (family file); FC_DTYPE_ID 0 or 1 (the fc_dtype value)
 *     FC_I8       1 for the i8 family: its product is i8-product.h's (the epilogues are these)
 *     FC_BF16     1 for the bf16 family: its product is bf16-product.h's
 *     FC_FAMILY_NAME   f32, f64, i8 or bf16: the family table fc_family_<name> (families.c)
 *     FC_VW       lanes per vector (16-byte vectors: 4/2, AVX2: 8/4, AVX-512: 16/8)
 *     FC_MR       batch rows per register tile (1..6)
 *     FC_ISA_ID   the fc_isa enum value
 *     FC_KERNEL_SYMBOL, FC_KERNEL_NAME   the table fc_kernels_<symbol> and its name string
 * A vector wider than the flags allow (a ref build: 16 lanes with baseline flags) is lowered by
 * the compiler to several native vectors; the arithmetic per lane is the same.
 *
 * Operation of every block kernel (see internal.h for the packed layout):
 *     Z[m, :] = bias + a0[m, :k0] @ W0 + a1[m, :k1] @ W1        Z: [rows, PW], PW = 4*VW
 * computed MR rows at a time into MR x 4 vector accumulators, then the cell's epilogue runs on
 * those registers and stores only the state/output columns [unit0, unit0+nu). Tails: panels are
 * zero-padded to whole blocks, so the product never needs a tail; the batch is cut into tiles
 * of nearly equal height, each with a compile-time row count <= MR; stores of the last block's partial vectors go lane by lane, so no load or store
 * ever touches memory outside the caller's rows and columns. Scratch rows (s0, s1) are padded to
 * whole panels by the driver and are read and written as full vectors.
 *
 * Accuracy: exp/sigmoid/tanh are vectorised here for both dtypes, with the maximum error over
 * the whole float range measured by tests/test_kernels.py (float32: tanh 1.5 ulp, sigmoid 2.6
 * ulp; float64: see the test); NaN in gives NaN out; +-inf saturate; no libm calls.
 */
#include <stdint.h>
#include <string.h>

#include "internal.h"

#define FC_CAT_(a, b) a##b
#define FC_CAT(a, b) FC_CAT_(a, b)
#define FC_FN(name) FC_CAT(FC_CAT(fc_, name), FC_CAT(__, FC_KERNEL_SYMBOL))
#define PW (4 * FC_VW)

typedef FC_T vec __attribute__((vector_size(FC_VW * sizeof(FC_T))));
typedef FC_T vec_u __attribute__((vector_size(FC_VW * sizeof(FC_T)), aligned(sizeof(FC_T)), may_alias));
#if FC_DTYPE_ID == 0
typedef int32_t ivec __attribute__((vector_size(FC_VW * sizeof(FC_T))));
#else
typedef int64_t ivec __attribute__((vector_size(FC_VW * sizeof(FC_T))));
#endif

#define INLINE static inline __attribute__((always_inline))

INLINE vec vload(const FC_T *p) { return *(const vec_u *)p; }
INLINE void vstore(FC_T *p, vec v) { *(vec_u *)p = v; }
/* s in every lane (s - 0 is s, -0.0 included, so this compiles to a broadcast) */
INLINE vec vsplat(FC_T s) { return s - (vec){0}; }
/* mask lanes (all ones) pick a, the others b */
INLINE vec vselect(ivec mask, vec a, vec b) { return (vec)((mask & (ivec)a) | (~mask & (ivec)b)); }

/* First n lanes of p (n <= VW), zeros after: never reads past p[n-1]. */
INLINE vec vload_part(const FC_T *p, size_t n)
{
    if (n == FC_VW) return vload(p);
    vec v = vsplat(0);
    for (size_t l = 0; l < n; l++) v[l] = p[l];
    return v;
}

INLINE void vstore_part(FC_T *p, vec v, size_t n)
{
    if (n == FC_VW) { vstore(p, v); return; }
    for (size_t l = 0; l < n; l++) p[l] = v[l];
}

/* clip to [-c, c]; NaN stays NaN */
INLINE vec vclip(vec x, FC_T c)
{
    x = vselect(x > c, vsplat(c), x);
    return vselect(x < -c, vsplat(-c), x);
}

/* ---- activations ------------------------------------------------------------------------- */
/* a*b + c of the activations' polynomials and argument reductions: one fused multiply-add (one
 * rounding) wherever the unit's instruction set has one. The f32 and f64 units contract
 * a*b + c into the same instruction anyway; the i8 and bf16 units are built with
 * -ffp-contract=off, for their scaling and cell update, which fastcells/reference_quant.py
 * defines operation by operation, so their activations (outside that contract) get the fused
 * form only from here. */
#define VEC_BYTES (FC_VW * (FC_DTYPE_ID == 0 ? 4 : 8))
#if VEC_BYTES == 64 && defined(__AVX512F__)
#include <immintrin.h>
#define VMADD_PS _mm512_fmadd_ps
#define VMADD_PD _mm512_fmadd_pd
#define VMADD_TS __m512
#define VMADD_TD __m512d
#elif VEC_BYTES == 32 && defined(__FMA__)
#include <immintrin.h>
#define VMADD_PS _mm256_fmadd_ps
#define VMADD_PD _mm256_fmadd_pd
#define VMADD_TS __m256
#define VMADD_TD __m256d
#elif VEC_BYTES == 16 && defined(__FMA__)
#include <immintrin.h>
#define VMADD_PS _mm_fmadd_ps
#define VMADD_PD _mm_fmadd_pd
#define VMADD_TS __m128
#define VMADD_TD __m128d
#elif VEC_BYTES == 16 && defined(__aarch64__)
#include <arm_neon.h>
#define VMADD_PS(a, b, c) vfmaq_f32(c, a, b)
#define VMADD_PD(a, b, c) vfmaq_f64(c, a, b)
#define VMADD_TS float32x4_t
#define VMADD_TD float64x2_t
#endif
INLINE vec vmadd(vec a, vec b, vec c)
{
#if !defined(VMADD_PS)
    return a * b + c;               /* no fused instruction for this vector (ref, baseline) */
#elif FC_DTYPE_ID == 0
    return (vec)VMADD_PS((VMADD_TS)a, (VMADD_TS)b, (VMADD_TS)c);
#else
    return (vec)VMADD_PD((VMADD_TD)a, (VMADD_TD)b, (VMADD_TD)c);
#endif
}
#undef VEC_BYTES

/* c[0] r^(n-1) + c[1] r^(n-2) + ... + c[n-1] by Horner's rule, highest degree first (a
 * constant c unrolls into one multiply-add per coefficient) */
INLINE vec vhorner(vec r, const FC_T *c, int n)
{
    vec p = vsplat(c[0]);
    for (int i = 1; i < n; i++) p = vmadd(p, r, vsplat(c[i]));
    return p;
}

#if FC_DTYPE_ID == 0
/* exp(x) for x <= 0 down to -104 (below: 0), relative error < 2 ulp; NaN -> NaN.
 * x = n*ln2 + r, |r| <= ln2/2; e^r by a degree-7 Taylor polynomial (truncation < 6e-9);
 * 2^n applied in two halves so results down to the denormal range round once. */
INLINE vec vexp_neg(vec x)
{
    x = vselect(x < -104.0f, vsplat(-104.0f), x);
    const vec shifter = vsplat(12582912.0f);              /* 1.5 * 2^23: round to nearest */
    vec t = vmadd(x, vsplat(1.44269504088896341f), shifter);
    vec n = t - shifter;
    vec r = vmadd(n, vsplat(-0.693145751953125f), x);      /* ln2 split hi/lo */
    r = vmadd(n, vsplat(-1.428606765330187045e-06f), r);
    static const float taylor[] = {1.0f / 5040.0f, 1.0f / 720.0f, 1.0f / 120.0f, 1.0f / 24.0f,
                                   1.0f / 6.0f, 0.5f, 1.0f, 1.0f};
    const vec p = vhorner(r, taylor, 8);
    ivec ni = __builtin_convertvector(n, ivec);
    ivec n1 = ni >> 1;                                     /* n = n1 + n2, both >= -76 */
    ivec n2 = ni - n1;
    vec s1 = (vec)((n1 + 127) << 23);
    vec s2 = (vec)((n2 + 127) << 23);
    return p * s1 * s2;
}

INLINE vec vabs(vec x) { return (vec)((ivec)x & 0x7fffffff); }

/* 1/(1+e^-x) through e = exp(-|x|) in (0,1]: no overflow, tiny results keep their precision */
INLINE vec vsigmoid(vec x)
{
    vec e = vexp_neg(-vabs(x));
    vec d = 1.0f / (1.0f + e);
    return vselect(x >= 0.0f, d, e * d);
}

/* |x| < 0.5625: x + x^3 Q(x^2), a fitted polynomial (relative error 1.4e-9 before rounding);
 * else sign(x) * (1-e)/(1+e), e = exp(-2|x|). */
INLINE vec vtanh(vec x)
{
    vec ax = vabs(x);
    vec x2 = x * x;
    static const float fit[] = {-0.0061798058450222015f, 0.02100745588541031f,
                                -0.053837429732084274f, 0.1333245187997818f,
                                -0.3333331346511841f};
    const vec q = vhorner(x2, fit, 5);
    vec small = vmadd(x * x2, q, x);
    vec e = vexp_neg(-2.0f * ax);
    vec big = (1.0f - e) / (1.0f + e);
    big = (vec)(((ivec)big & 0x7fffffff) | ((ivec)x & (int32_t)0x80000000));
    return vselect(ax < 0.5625f, small, big);
}
#else
/* exp(x) for x <= 0 down to -746 (below: 0), about 1 ulp; NaN -> NaN.
 * x = n*ln2 + r, |r| <= ln2/2; e^r by a degree-13 Taylor polynomial (truncation < 5e-18);
 * n read off the bits of x*log2(e) + 1.5*2^52 (no float->int64 instruction needed);
 * 2^n applied in two halves so results down to the denormal range round once. */
INLINE vec vexp_neg(vec x)
{
    x = vselect(x < -746.0, vsplat(-746.0), x);
    const vec shifter = vsplat(6755399441055744.0);       /* 1.5 * 2^52: round to nearest */
    const vec t = vmadd(x, vsplat(1.4426950408889634074), shifter);
    const vec n = t - shifter;
    vec r = vmadd(n, vsplat(-6.93147180369123816490e-01), x);     /* ln2 split hi/lo */
    r = vmadd(n, vsplat(-1.90821492927058770002e-10), r);
    static const double taylor[] = {1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0,
                                    1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0,
                                    1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0,
                                    1.0 / 6.0, 0.5, 1.0, 1.0};
    const vec p = vhorner(r, taylor, 14);
    const ivec ni = (ivec)t - (ivec)shifter;               /* n as an integer */
    const ivec n1 = ni >> 1, n2 = ni - n1;                 /* both >= -538 */
    const vec s1 = (vec)((n1 + 1023) << 52);
    const vec s2 = (vec)((n2 + 1023) << 52);
    return p * s1 * s2;
}

INLINE vec vabs(vec x) { return (vec)((ivec)x & 0x7fffffffffffffffLL); }

INLINE vec vsigmoid(vec x)
{
    const vec e = vexp_neg(-vabs(x));
    const vec d = 1.0 / (1.0 + e);
    return vselect(x >= 0.0, d, e * d);
}

/* |x| < 0.5: x + x^3 Q(x^2), a fitted degree-9 Q (about 1 ulp); else sign(x) * (1-e)/(1+e),
 * e = exp(-2|x|) <= 1/e, so the subtraction loses at most a bit. */
INLINE vec vtanh(vec x)
{
    const vec ax = vabs(x);
    const vec x2 = x * x;
    static const double fit[] = {5.3845885218900234e-05, -0.0002141160673309529,
                                 0.0005813178992064101, -0.0014539043483280413,
                                 0.0035918500253733082, -0.008863209691314215,
                                 0.021869487042444333, -0.0539682539186056,
                                 0.13333333333252712, -0.33333333333332904};
    const vec q = vhorner(x2, fit, 10);
    const vec small = vmadd(x * x2, q, x);
    const vec e = vexp_neg(-2.0 * ax);
    vec big = (1.0 - e) / (1.0 + e);
    big = (vec)(((ivec)big & 0x7fffffffffffffffLL) | ((ivec)x & (int64_t)0x8000000000000000ULL));
    return vselect(ax < 0.5, small, big);
}
#endif

/* NaN in gives NaN out throughout (comparisons with NaN are false, so selects keep x),
 * except thresholded_relu, which is 0 unless x > alpha, as ONNX and NumPy's where agree.
 * elu computes exp(x) - 1: near 0 its error is about 1 ulp of 1 (absolute), not relative. */
INLINE vec vrelu(vec x) { return vselect(x < 0, vsplat(0), x); }

INLINE vec vact(const fc_act *act, vec x)
{
    const FC_T alpha = (FC_T)act->alpha, beta = (FC_T)act->beta;
    switch (act->kind) {
    case FC_ACT_SIGMOID: return vsigmoid(x);
    case FC_ACT_TANH: return vtanh(x);
    case FC_ACT_RELU: return vrelu(x);
    case FC_ACT_LINEAR: return x;
    case FC_ACT_HARD_SIGMOID: {
        vec y = alpha * x + beta;
        y = vselect(y < 0, vsplat(0), y);
        return vselect(y > 1, vsplat(1), y);
    }
    case FC_ACT_LEAKY_RELU: return vselect(x < 0, alpha * x, x);
    case FC_ACT_THRESHOLDED_RELU: return vselect(x > alpha, x, vsplat(0));
    case FC_ACT_SCALED_TANH: return alpha * vtanh(beta * x);
    case FC_ACT_AFFINE: return alpha * x + beta;
    case FC_ACT_ELU: {
        const ivec negative = x < 0;
        return vselect(negative, alpha * (vexp_neg(vselect(negative, x, vsplat(0))) - 1), x);
    }
    case FC_ACT_SOFTSIGN: return x / (1 + vabs(x));
    default: return x;
    }
}

/* act(clip(x)) with the ONNX pre-activation clip, if set */
INLINE vec vact_clipped(const fc_block_args *a, const fc_act *act, vec x)
{
    if (a->has_preact_clip) x = vclip(x, (FC_T)a->preact_clip);
    return vact(act, x);
}

/* ---- the product: acc[m][v] = bias + a0 @ W0 + a1 @ W1 for mr rows ----------------------- */
/* acc[m][v] = where the product of rows row .. row+mr-1 starts: their init rows (init_rows,
 * a->ld_init apart: the hoisted x @ Wx + bias) when init_rows is not NULL, else the bias row
 * `bias` ([nv*VW]) in every row */
INLINE void tile_start(const int mr, const int nv, vec acc[FC_MR][4], const fc_block_args *a,
                       size_t row, const void *init_rows, const FC_T *bias)
{
    if (init_rows) {
        const FC_T *init = (const FC_T *)init_rows + row * a->ld_init;
        for (int m = 0; m < mr; m++)
            for (int v = 0; v < nv; v++) acc[m][v] = vload(init + m * a->ld_init + v * FC_VW);
    } else {
        for (int m = 0; m < mr; m++)
            for (int v = 0; v < nv; v++) acc[m][v] = vload(bias + v * FC_VW);
    }
}

/* Vectors per panel row of each op: 3 on the reset-after GRU's 3-gate panels, else 4. */
enum { OP_VECTORS_rnn = 4, OP_VECTORS_lstm = 4, OP_VECTORS_gru_gates = 4, OP_VECTORS_gru_cand = 4,
       OP_VECTORS_gru_ra = 3, OP_VECTORS_linear3 = 3, OP_VECTORS_linear = 4 };

#if FC_I8
#include "i8-product.h"     /* the i8 family's: int8 panels, one segment, scaled into fp32 */
#elif FC_BF16
#include "bf16-product.h"   /* the bf16 family's: pair panels, one segment, fp32 sums */
#else
/* Every element is the same chain of FMAs in k order whatever the tile height, so results do
 * not depend on how the batch is cut into tiles or split across threads. (At one row the chain
 * is latency-bound in registers but the step is bound by streaming the weights anyway.) */
INLINE void tile_segment(const int mr, const int nv, vec acc[FC_MR][4], const FC_T *w,
                         const FC_T *a, size_t lda, size_t k)
{
    const int pw = nv * FC_VW;                      /* nv = 4 everywhere but the 3-gate GRU */
    for (size_t kk = 0; kk < k; kk++, w += pw) {
        vec wv[4];
        for (int v = 0; v < nv; v++) wv[v] = vload(w + v * FC_VW);
        for (int m = 0; m < mr; m++) {
            const vec am = vsplat(a[m * lda + kk]);
            for (int v = 0; v < nv; v++) acc[m][v] += am * wv[v];
        }
    }
}

/* acc = (init rows, or the panel's bias row when init is NULL) + a0 @ W0 + a1 @ W1, for a
 * panel of nv vectors per row */
INLINE void tile_product_nv(const int mr, const int nv, vec acc[FC_MR][4],
                            const fc_block_args *a, size_t row, const void *init_rows)
{
    const FC_T *w = (const FC_T *)a->panel;
    tile_start(mr, nv, acc, a, row, init_rows, w);
    if (!init_rows) w += nv * FC_VW;                /* past the bias row */
    const FC_T *a0 = (const FC_T *)a->a0 + row * a->lda0;
    tile_segment(mr, nv, acc, w, a0, a->lda0, a->k0);
    if (a->k1)
        tile_segment(mr, nv, acc, w + a->k0 * nv * FC_VW,
                     (const FC_T *)a->a1 + row * a->lda1, a->lda1, a->k1);
}

#endif /* FC_I8, FC_BF16 */

INLINE void tile_product(const int mr, vec acc[FC_MR][4], const fc_block_args *a, size_t row)
{
    tile_product_nv(mr, 4, acc, a, row, a->init);
}

/* valid lanes of vector q of a block whose gate has nu valid units */
INLINE size_t lanes(size_t nu, size_t q)
{
    return nu <= q * FC_VW ? 0 : fc_min(FC_VW, nu - q * FC_VW);
}

/* ---- epilogues ---------------------------------------------------------------------------- */

/* G=1: h_out = act(z) (the vanilla RNN), or z clipped if has_clip (the plain product: the LSTM
 * projection m @ projection/kernel with zero bias and proj_clip, and the packed GEMM) */
INLINE void g1_tile(const int mr, const fc_block_args *a, size_t row, const int rnn)
{
    vec acc[FC_MR][4];
    tile_product(mr, acc, a, row);
    for (int m = 0; m < mr; m++) {
        FC_T *out = (FC_T *)a->h_out + (row + m) * a->ldh_out + a->unit0;
        for (int q = 0; q < 4; q++) {
            const size_t n = lanes(a->nu, q);
            if (!n) continue;
            vec v = acc[m][q];
            if (rnn) v = vact_clipped(a, &a->act, v);
            else if (a->has_clip) v = vclip(v, (FC_T)a->clip);
            vstore_part(out + q * FC_VW, v, n);
        }
    }
}

INLINE void rnn_tile(const int mr, const fc_block_args *a, size_t row) { g1_tile(mr, a, row, 1); }

/* LSTM, G=4 (i, j, f, o one vector each, VW units):
 *   c' = sig(f + fb [+ wf*c]) * c + sig(i [+ wi*c]) * act(j);  clip;  h' = sig(o [+ wo*c']) * act(c') */
INLINE void lstm_tile(const int mr, const fc_block_args *a, size_t row)
{
    vec acc[FC_MR][4];
    tile_product(mr, acc, a, row);
    const size_t n = a->nu;
    const FC_T fb = (FC_T)a->forget_bias, clip = (FC_T)a->clip;
    const int peep = a->peep_i != NULL;
    vec wi = vsplat(0), wf = vsplat(0), wo = vsplat(0);
    if (peep) {
        wi = vload((const FC_T *)a->peep_i + a->unit0);
        wf = vload((const FC_T *)a->peep_f + a->unit0);
        wo = vload((const FC_T *)a->peep_o + a->unit0);
    }
    for (int m = 0; m < mr; m++) {
        const size_t r = row + m;
        const vec c_prev = vload_part((const FC_T *)a->c_in + r * a->ldc_in + a->unit0, n);
        vec i = acc[m][0], j = acc[m][1], f = acc[m][2] + fb, o = acc[m][3];
        if (peep) {
            i += wi * c_prev;
            f += wf * c_prev;
        }
        const vec gi = vact_clipped(a, &a->gate_act, i);
        const vec gf = a->input_forget ? 1 - gi : vact_clipped(a, &a->gate_act, f);
        vec c = gf * c_prev + gi * vact_clipped(a, &a->act, j);
        if (a->has_clip) c = vclip(c, clip);
        if (peep) o += wo * c;
        const vec h = vact_clipped(a, &a->gate_act, o) * vact(&a->out_act, c);
        vstore_part((FC_T *)a->c_out + r * a->ldc_out + a->unit0, c, n);
        vstore_part((FC_T *)a->h_out + r * a->ldh_out + a->unit0, h, n);
    }
}

/* GRU, reset before, as two products (sequence.c, fc_cell_step), one per phase:
 *   gates,     G=2 (r: vectors 0-1, u: vectors 2-3, 2*VW units): s0 = gate(r)*h_in, s1 = gate(u)
 *   candidate, G=1 (4*VW units): h_out = u*h_in + (1-u)*act(z), u from s1
 * Both walk the same rows and vectors of h_in; cand (a constant) picks the epilogue. */
INLINE void gru_tile(const int mr, const fc_block_args *a, size_t row, const int cand)
{
    vec acc[FC_MR][4];
    tile_product(mr, acc, a, row);
    for (int m = 0; m < mr; m++) {
        const size_t r = row + m;
        const FC_T *h = (const FC_T *)a->h_in + r * a->ldh_in + a->unit0;
        FC_T *u_row = (FC_T *)a->s1 + r * a->lds + a->unit0;
        FC_T *dst = cand ? (FC_T *)a->h_out + r * a->ldh_out + a->unit0     /* h_out row */
                         : (FC_T *)a->s0 + r * a->lds + a->unit0;           /* r*h_in row */
        for (int q = 0; q < (cand ? 4 : 2); q++) {
            const size_t n = lanes(a->nu, q);
            if (!n) continue;
            if (cand) {
                const vec u = vload(u_row + q * FC_VW);
                const vec h_prev = vload_part(h + q * FC_VW, n);
                const vec c = vact_clipped(a, &a->act, acc[m][q]);
                vstore_part(dst + q * FC_VW, u * h_prev + (1 - u) * c, n);
            } else {
                const vec h_prev = vload_part(h + q * FC_VW, n);
                vstore(dst + q * FC_VW, vact_clipped(a, &a->gate_act, acc[m][q]) * h_prev);
                vstore(u_row + q * FC_VW, vact_clipped(a, &a->gate_act, acc[m][2 + q]));
            }
        }
    }
}

INLINE void gru_gates_tile(const int mr, const fc_block_args *a, size_t row)
{
    gru_tile(mr, a, row, 0);
}

INLINE void gru_cand_tile(const int mr, const fc_block_args *a, size_t row)
{
    gru_tile(mr, a, row, 1);
}

/* GRU, reset after, 3 gates (r, u, n one vector each, VW units) on panels of 3 vectors: the
 * recurrent product starts from the h panel's bias row (0, 0, bh); init holds the input
 * projection x@[Wr Wu Wi] + [br bu bi] (sequence.c, fc_cell_step):
 *   r = sig(xr + hr), u = sig(xu + hu), h' = u*h + (1-u)*act(xi + r*(h@Wh + bh)) */
#if FC_BF16
/* bf16: one chain per gate from its start (bf16-product.h), so r and u already hold x part */
#define RA_PRODUCT tile_product_gru_ra
#define RA_GATE_SUM(x_part, acc) (acc)
#else
#define RA_PRODUCT(mr, acc, a, row) tile_product_nv(mr, OP_VECTORS_gru_ra, acc, a, row, NULL)
#define RA_GATE_SUM(x_part, acc) (vload(x_part) + (acc))
#endif
INLINE void gru_ra_tile(const int mr, const fc_block_args *a, size_t row)
{
    vec acc[FC_MR][4];
    RA_PRODUCT(mr, acc, a, row);
    const size_t n = a->nu;
    for (int m = 0; m < mr; m++) {
        const size_t r = row + m;
        const FC_T *x_part = (const FC_T *)a->init + r * a->ld_init;
        const vec h_prev = vload_part((const FC_T *)a->h_in + r * a->ldh_in + a->unit0, n);
        const vec reset = vact_clipped(a, &a->gate_act, RA_GATE_SUM(x_part, acc[m][0]));
        const vec u = vact_clipped(a, &a->gate_act, RA_GATE_SUM(x_part + FC_VW, acc[m][1]));
        const vec c = vact_clipped(a, &a->act, vload(x_part + 2 * FC_VW) + reset * acc[m][2]);
        vstore_part((FC_T *)a->h_out + r * a->ldh_out + a->unit0, u * h_prev + (1 - u) * c, n);
    }
}

/* The input projection of the 3-gate GRU: panels of 3 vectors, stored whole (init rows). */
INLINE void linear3_tile(const int mr, const fc_block_args *a, size_t row)
{
    vec acc[FC_MR][4];
    tile_product_nv(mr, OP_VECTORS_linear3, acc, a, row, NULL);
    for (int m = 0; m < mr; m++) {
        FC_T *out = (FC_T *)a->h_out + (row + m) * a->ldh_out + a->unit0;
        for (int q = 0; q < OP_VECTORS_linear3; q++) vstore(out + q * FC_VW, acc[m][q]);
    }
}

INLINE void linear_tile(const int mr, const fc_block_args *a, size_t row)
{
    g1_tile(mr, a, row, 0);
}

/* ---- block kernels: all batch rows against one panel, MR rows at a time ------------------- */
/* MR_AT_MOST(k): k rows, or FC_MR in switch arms that a smaller FC_MR never reaches */
#define MR_AT_MOST(k) ((k) < FC_MR ? (k) : FC_MR)
/* How a block runs its rows: rows_fn(a, r0, r1) over rows [r0, r1) (name_rows below), called
 * once for all rows unless the family's product runs the rows its own way (i8-product.h: AMX
 * products of 16 rows at a time); nv: the op's OP_VECTORS. */
#ifndef PRODUCT_BLOCK
#define PRODUCT_BLOCK(a, nv, rows_fn) rows_fn(a, 0, (a)->rows)
#endif
/* name_rows: rows [r0, r1) cut into ceil((r1-r0)/MR) tiles of nearly equal height (8 rows on a
 * 6-row tile: 4 + 4, not 6 + 2), so no tile runs with a mostly idle register block. */
#define FC_BLOCK_KERNEL(name)                                                          \
    static void FC_FN(name##_rows)(const fc_block_args *a, size_t r0, size_t r1)     \
    {                                                                                  \
        const size_t rows = r1 - r0, tiles = (rows + FC_MR - 1) / FC_MR;               \
        for (size_t t = 0; t < tiles; t++) {                                           \
            const size_t row = r0 + rows * t / tiles;                                  \
            const size_t mr = r0 + rows * (t + 1) / tiles - row;                       \
            switch (mr) {                                                              \
            case 1: name##_tile(1, a, row); break;                                     \
            case 2: name##_tile(MR_AT_MOST(2), a, row); break;                         \
            case 3: name##_tile(MR_AT_MOST(3), a, row); break;                         \
            case 4: name##_tile(MR_AT_MOST(4), a, row); break;                         \
            case 5: name##_tile(MR_AT_MOST(5), a, row); break;                         \
            default: name##_tile(FC_MR, a, row); break;                                \
            }                                                                          \
        }                                                                              \
    }                                                                                  \
    static void FC_FN(name##_block)(const fc_block_args *a)                            \
    {                                                                                  \
        PRODUCT_BLOCK(a, OP_VECTORS_##name, FC_FN(name##_rows));                       \
    }

#define FC_DEFINE_BLOCK(id, name) FC_BLOCK_KERNEL(name)
FC_FOR_EACH_OP(FC_DEFINE_BLOCK)
#undef FC_DEFINE_BLOCK

/* The family's operand conversion (fc_kernels.convert): i8 quantizes on this unit's vectors
 * (i8-quantize.h: the same bits on every ISA); bf16 rounds with bf16.c's baseline loop. */
#if FC_I8
#include "i8-quantize.h"
static void FC_FN(convert)(const float *a, size_t lda, size_t rows, size_t k, int fixed,
                           void *q, size_t ldq, float *scales)
{
    i8_quantize_rows(a, lda, rows, k, fixed, q, ldq, scales);
}
#define FC_CONVERT FC_FN(convert)
#elif FC_BF16
#define FC_CONVERT fc_bf16_round_rows
#else
#define FC_CONVERT NULL
#endif

const fc_kernels FC_CAT(fc_kernels_, FC_KERNEL_SYMBOL) = {
    .name = FC_KERNEL_NAME,
    .family = &FC_CAT(fc_family_, FC_FAMILY_NAME),
    .isa = FC_ISA_ID,
    .vw = FC_VW,
    .mr = FC_MR,
#define FC_BLOCK_ENTRY(id, name) [FC_OP_##id] = FC_FN(name##_block),
    .block = {FC_FOR_EACH_OP(FC_BLOCK_ENTRY)},
#undef FC_BLOCK_ENTRY
    .convert = FC_CONVERT,
};
#undef FC_CONVERT
