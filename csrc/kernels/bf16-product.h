/* bf16-product.h — the bf16 family's product, included by cells_template.h (FC_BF16) in place
 * of the floating-point one; the cell epilogues that follow are the template's. Operands and
 * packed layout: internal.h; the arithmetic: fastcells/reference_quant.py (bf16_matmul).
 *
 * One segment: for each row m of the tile and each column c of the panel, one fp32 chain from
 * start (the init row, the hoisted x projection, or the panel's bias row) over the pairs of k,
 * the odd element of each pair first:
 *     acc = fp32(fp32(acc + a[2i+1]*w[2i+1]) + a[2i]*w[2i]),   i = 0 .. ceil(K/2)-1
 * Both factors are bf16 (8-bit significands), so each product is exact in fp32 (outside
 * products below 2**-126: reference_quant states the domain) and a multiply-add gives the same
 * bits fused or not:
 *   widening (every ISA)   the pair dword split into two fp32 by a mask (the high half) and a
 *              16-bit shift (the low half), then FMAs (AVX2, AVX-512F, NEON's fmla) or
 *              multiply-then-add (the portable unit, built with -ffp-contract=off)
 *   AVX512_BF16            vdpbf16ps: per lane, the high pair element's product added first,
 *              then the low one's: the same chain, two multiply-adds per lane per instruction
 *   NEON BF16 (aarch64 FEAT_BF16)   bfmlalt (the odd, high elements) then bfmlalb (the even,
 *              low ones): each widens bf16 to fp32 and multiply-adds with one IEEE rounding
 *              (FPCR's, round to nearest even), so the same chain with no widening
 *              instructions. Not bfdot or bfmmla: their pair sums round to odd and flush
 *              subnormals (the Arm ARM's BFDotAdd, without FEAT_EBF16), another result.
 * Register tiles (kernels.def): widening keeps MR x 4 accumulators, both halves of each row's
 * activation pair (2 MR broadcasts) and the two halves of one weight vector at a time live:
 * 6 MR + 2 registers, so AVX2 (16) takes 2 rows and AVX-512F (32) 4; vdpbf16ps reads the pair
 * whole: 4 weight vectors + 6 x 4 accumulators + 1 broadcast = 29 of 32 at 6 rows; NEON's
 * bfmlal likewise, in 128-bit vectors (5 rows, as the f32 NEON tile: 25 of 32).
 */
#if FC_VW == 16 && defined(__AVX512BF16__) && defined(__AVX512BW__)
#include <immintrin.h>
#define BF16_DPBF16 1
#else
#define BF16_DPBF16 0
#endif
#if FC_VW == 4 && defined(__aarch64__)
#include <arm_neon.h>
#define BF16_NEON 1                 /* NEON intrinsics on float32x4_t sums (bf16_segment) */
#else
#define BF16_NEON 0
#endif
#if BF16_NEON && defined(__ARM_FEATURE_BF16_VECTOR_ARITHMETIC)
#define BF16_MLAL 1
#else
#define BF16_MLAL 0
#endif
#if (FC_VW == 16 && defined(__AVX512F__)) || (FC_VW == 8 && defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#define BF16_FMA 1                  /* widening with FMA instructions */
#else
#define BF16_FMA 0                  /* widening with multiply-then-add */
#endif

typedef uint32_t bf16_pairs __attribute__((vector_size(FC_VW * sizeof(uint32_t))));
typedef uint32_t bf16_pairs_u __attribute__((vector_size(FC_VW * sizeof(uint32_t)),
                                             aligned(sizeof(uint32_t)), may_alias));

/* dword i of an operand row (any 4-byte alignment) */
INLINE uint32_t bf16_pair(const uint32_t *row, size_t i)
{
    uint32_t d;
    memcpy(&d, row + i, sizeof d);
    return d;
}

INLINE float bf16_high_scalar(uint32_t d)   /* element 2i+1 of the pair, as fp32 */
{
    const uint32_t bits = d & 0xFFFF0000u;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

INLINE float bf16_low_scalar(uint32_t d)    /* element 2i, as fp32 */
{
    const uint32_t bits = d << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* acc + a * w, rounded once (the product is exact: fused or not, the same bits) */
INLINE vec bf16_madd(vec acc, vec a, vec w)
{
#if BF16_FMA && FC_VW == 16
    return (vec)_mm512_fmadd_ps((__m512)a, (__m512)w, (__m512)acc);
#elif BF16_FMA
    return (vec)_mm256_fmadd_ps((__m256)a, (__m256)w, (__m256)acc);
#else
    return acc + a * w;
#endif
}

/* acc[m][v] += the chain over `pairs` pair rows of w ([pairs][nv*VW] dwords) and of the
 * operand rows a + m*lda (dwords) */
INLINE void bf16_segment(const int mr, const int nv, vec acc[FC_MR][4], const uint32_t *w,
                         const uint32_t *a, size_t lda, size_t pairs)
{
    const int pwn = nv * FC_VW;
#if BF16_NEON
    /* acc in the intrinsics' type: written through casts to and from vec, GCC 12 kept acc in
     * memory and stored it every pair */
    float32x4_t sums[FC_MR][4];
    for (int m = 0; m < mr; m++)
        for (int v = 0; v < nv; v++) sums[m][v] = (float32x4_t)acc[m][v];
#endif
    for (size_t i = 0; i < pairs; i++, w += pwn) {
#if BF16_DPBF16
        __m512i wv[4];
        for (int v = 0; v < nv; v++) wv[v] = _mm512_loadu_si512((const void *)(w + v * FC_VW));
        for (int m = 0; m < mr; m++) {
            const __m512i am = _mm512_set1_epi32((int)bf16_pair(a + m * lda, i));
            for (int v = 0; v < nv; v++)
                acc[m][v] = (vec)_mm512_dpbf16_ps((__m512)acc[m][v], (__m512bh)am,
                                                  (__m512bh)wv[v]);
        }
#elif BF16_MLAL
        bfloat16x8_t wv[4];
        for (int v = 0; v < nv; v++) wv[v] = vreinterpretq_bf16_u32(vld1q_u32(w + v * FC_VW));
        for (int m = 0; m < mr; m++) {
            const bfloat16x8_t am = vreinterpretq_bf16_u32(vdupq_n_u32(bf16_pair(a + m * lda, i)));
            for (int v = 0; v < nv; v++)
                sums[m][v] = vbfmlalbq_f32(vbfmlaltq_f32(sums[m][v], am, wv[v]), am, wv[v]);
        }
#elif BF16_NEON
        float32x4_t a_high[FC_MR], a_low[FC_MR];
        for (int m = 0; m < mr; m++) {
            const uint32_t d = bf16_pair(a + m * lda, i);
            a_high[m] = vdupq_n_f32(bf16_high_scalar(d));
            a_low[m] = vdupq_n_f32(bf16_low_scalar(d));
        }
        for (int v = 0; v < nv; v++) {              /* one weight vector's halves at a time */
            const uint32x4_t d = vld1q_u32(w + v * FC_VW);
            const float32x4_t w_high = vreinterpretq_f32_u32(vandq_u32(d, vdupq_n_u32(0xFFFF0000u)));
            const float32x4_t w_low = vreinterpretq_f32_u32(vshlq_n_u32(d, 16));
            for (int m = 0; m < mr; m++)        /* fmla: the exact product rounds once either way */
                sums[m][v] = vfmaq_f32(vfmaq_f32(sums[m][v], a_high[m], w_high), a_low[m], w_low);
        }
#else
        vec a_high[FC_MR], a_low[FC_MR];
        for (int m = 0; m < mr; m++) {
            const uint32_t d = bf16_pair(a + m * lda, i);
            a_high[m] = vsplat(bf16_high_scalar(d));
            a_low[m] = vsplat(bf16_low_scalar(d));
        }
        for (int v = 0; v < nv; v++) {              /* one weight vector's halves at a time */
            const bf16_pairs d = *(const bf16_pairs_u *)(w + v * FC_VW);
            const vec w_high = (vec)(d & 0xFFFF0000u), w_low = (vec)(d << 16);
            for (int m = 0; m < mr; m++)
                acc[m][v] = bf16_madd(bf16_madd(acc[m][v], a_high[m], w_high), a_low[m], w_low);
        }
#endif
    }
#if BF16_NEON
    for (int m = 0; m < mr; m++)
        for (int v = 0; v < nv; v++) acc[m][v] = (vec)sums[m][v];
#endif
}

/* acc = (init rows, or the panel's bias row when init_rows is NULL) + the chain over a0
 * (k0 = the segment's depth; k1 must be 0) with a panel of nv vectors per row */
INLINE void tile_product_nv(const int mr, const int nv, vec acc[FC_MR][4],
                            const fc_block_args *a, size_t row, const void *init_rows)
{
    const int pwn = nv * FC_VW;
    const float *bias = (const float *)a->panel;
    const uint32_t *w = (const uint32_t *)(bias + pwn);
    tile_start(mr, nv, acc, a, row, init_rows, bias);
    bf16_segment(mr, nv, acc, w, (const uint32_t *)a->a0 + row * a->lda0, a->lda0,
                 a->k0 / 2 + a->k0 % 2);
}

/* The reset-after GRU's recurrent product (3-vector panels r, u, n; internal.h) as the
 * reference chains it: r and u from the x part (the init rows' first two vectors: x @ Wx + b),
 * n from the panel's bias row (bh). */
INLINE void tile_product_gru_ra(const int mr, vec acc[FC_MR][4], const fc_block_args *a,
                                size_t row)
{
    const float *bias = (const float *)a->panel;
    for (int m = 0; m < mr; m++) {
        const float *x_part = (const float *)a->init + (row + m) * a->ld_init;
        acc[m][0] = vload(x_part);
        acc[m][1] = vload(x_part + FC_VW);
        acc[m][2] = vload(bias + 2 * FC_VW);
    }
    bf16_segment(mr, 3, acc, (const uint32_t *)(bias + 3 * FC_VW),
                 (const uint32_t *)a->a0 + row * a->lda0, a->lda0, a->k0 / 2 + a->k0 % 2);
}

#undef BF16_DPBF16
#undef BF16_MLAL
#undef BF16_NEON
#undef BF16_FMA
