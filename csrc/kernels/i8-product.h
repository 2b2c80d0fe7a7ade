/* i8-product.h — the i8 family's product, included by cells_template.h (FC_I8) in place of the
 * floating-point one; the cell epilogues that follow are the template's. Operands and packed
 * layout: internal.h; the arithmetic: fastcells/reference_quant.py.
 *
 * One segment: for each row m of the tile and each column c of the panel,
 *     acc_i[m][c] = sum over k < k0 of qa[m][k] * q[k][c]                 exact int32
 *     acc[m][c]   = start + fp32(acc_i[m][c]) * (a0_scale[m] * col_scale[c])
 * start = the init row (the hoisted x projection) or the panel's bias row; each operation
 * rounded once (the unit is built with -ffp-contract=off). The int32 sum is the same on every
 * path below, whatever its order (|q| <= 127 on both sides and K <= FC_I8_K_MAX keep every
 * partial sum inside int32: kernels/i8-gemm.h):
 *   portable   int32 multiply-adds, 4 k of a group per column
 *   AVX2, AVX-512BW (no VNNI)   the sign moves onto the weight: u = |a| (vpabsb), s = sign(a)*w
 *              (vpsignb; AVX-512BW: vpmovb2m + masked vpsubb), vpmaddubsw (a pair is at most
 *              2*127*127: no saturation), vpmaddwd by 1, vpaddd
 *   VNNI (AVX-VNNI, AVX512-VNNI)   vpdpbusd on u = a + 128 (a xor 0x80 as u8) and w, from
 *              the panel's shift_fix = -128 * sum_k w: the int32 arithmetic wraps, and the
 *              true sum is inside int32, so the wraps cancel exactly
 *   AMX (AMX-INT8, in an AVX-512 VNNI unit)   tdpbssd, signed x signed, on tiles of 16 rows:
 *              a block of at least I8_AMX_MIN_ROWS rows computes the products of 16 rows at a
 *              time into a buffer that the chunk's tiles read (i8_amx_block); fewer rows, and
 *              a last chunk of fewer, take the VNNI path of the same unit
 *   NEON dotprod (aarch64 FEAT_DotProd)   sdot: per int32 lane the 4 signed x signed products
 *              of a quad, exact; no shift, no correction
 *   NEON i8mm (aarch64 FEAT_I8MM)   smmla: a 2 x 8 block of two activation rows (two groups
 *              each) times the 8 x 2 block of two columns (the same two groups), a 2 x 2 int32
 *              block per instruction, signed x signed, exact (i8_segment_mmla). Two groups of a
 *              panel row interleaved by dwords (zip1/zip2) are that column block; an odd last
 *              group pairs with the zero group the panel pads it with.
 */
#include "i8-gemm.h"

#if FC_VW == 16 && defined(__AVX512BW__)
#include <immintrin.h>
#define I8_BITS 512
#elif FC_VW == 8 && defined(__AVX2__)
#include <immintrin.h>
#define I8_BITS 256
#elif FC_VW == 4 && defined(__aarch64__) && defined(__ARM_FEATURE_DOTPROD)
#include <arm_neon.h>
#define I8_BITS 128
#else
#define I8_BITS 0                   /* the portable product */
#endif
#if I8_BITS == 128 && defined(__ARM_FEATURE_MATMUL_INT8)
#define I8_MMLA 1
#else
#define I8_MMLA 0
#endif
#if (I8_BITS == 512 && defined(__AVX512VNNI__)) || (I8_BITS == 256 && defined(__AVXVNNI__))
#define I8_VNNI 1
#else
#define I8_VNNI 0
#endif
#if I8_BITS == 512 && I8_VNNI && defined(__AMX_TILE__) && defined(__AMX_INT8__)
#define I8_AMX 1
#else
#define I8_AMX 0
#endif

/* The 4 int8 of group g of an activation row, as one dword (any alignment). */
INLINE int32_t i8_group(const int8_t *row, size_t g) { return fc_i8_dword(row + 4 * g); }

#if I8_BITS
/* acc + per int32 lane the exact sum of the 4 products of the int8 quads of a (an activation
 * group in every lane) and w (a column's quad in each lane): the paths of the file comment */
INLINE ivec i8_quad_madd(ivec acc, ivec a, ivec w)
{
#if I8_BITS == 128
    return (ivec)vdotq_s32((int32x4_t)acc, (int8x16_t)a, (int8x16_t)w);
#elif I8_BITS == 512 && I8_VNNI
    const __m512i u = _mm512_xor_si512((__m512i)a, _mm512_set1_epi8((char)0x80));
    return (ivec)_mm512_dpbusd_epi32((__m512i)acc, u, (__m512i)w);
#elif I8_BITS == 512
    const __m512i u = _mm512_abs_epi8((__m512i)a), zero = _mm512_setzero_si512();
    const __mmask64 negative = _mm512_movepi8_mask((__m512i)a);
    const __m512i s = _mm512_mask_sub_epi8((__m512i)w, negative, zero, (__m512i)w);
    return acc + (ivec)_mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1));
#elif I8_VNNI
    const __m256i u = _mm256_xor_si256((__m256i)a, _mm256_set1_epi8((char)0x80));
    return (ivec)_mm256_dpbusd_avx_epi32((__m256i)acc, u, (__m256i)w);
#else
    const __m256i u = _mm256_abs_epi8((__m256i)a);
    const __m256i pairs = _mm256_maddubs_epi16(u, _mm256_sign_epi8((__m256i)w, (__m256i)a));
    return acc + (ivec)_mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
#endif
}
#endif

#if I8_MMLA
/* i8_segment's products by smmla. mm[p][v][h]: the 2 x 2 int32 block of rows 2p, 2p+1 and
 * columns 4v + 2h, 4v + 2h + 1, lanes (row 2p: column 0, 1; row 2p+1: column 0, 1). Row pairs
 * read 8 bytes (two groups) of each row; an odd mr's last pair reads its one row twice. The
 * panel holds whole runs of FC_I8_TILE_GROUPS groups (zeros past K) and the operand rows whole
 * 64-byte lines (zeros past k), so a group pair past an odd group count reads zeros. */
INLINE void i8_segment_mmla(const int mr, const int nv, ivec iacc[FC_MR][4], const int8_t *w,
                            const int8_t *a, size_t lda_bytes, size_t groups)
{
    enum { PAIRS = (FC_MR + 1) / 2 };
    const int pwn = nv * FC_VW, pairs = (mr + 1) / 2;
    const size_t group_bytes = (size_t)pwn * FC_I8_KG;
    int32x4_t mm[PAIRS][4][2];
    for (int p = 0; p < pairs; p++)
        for (int v = 0; v < nv; v++) mm[p][v][0] = mm[p][v][1] = vdupq_n_s32(0);
    for (size_t g = 0; g < groups; g += 2, w += 2 * group_bytes) {
        int8x16_t rows[PAIRS];                  /* bytes 0-7: row 2p's groups g, g+1; 8-15: 2p+1's */
        for (int p = 0; p < pairs; p++) {
            const int8_t *r0 = a + 2 * p * lda_bytes + 4 * g;
            const int8_t *r1 = 2 * p + 1 < mr ? r0 + lda_bytes : r0;
            rows[p] = vcombine_s8(vld1_s8(r0), vld1_s8(r1));
        }
        for (int v = 0; v < nv; v++) {
            /* columns 4v..4v+3 of groups g and g+1, a quad each; zipped by dwords: the 8 k of
             * columns 4v, 4v+1 (cols01) and of 4v+2, 4v+3 (cols23) */
            const int32x4_t lo = vld1q_s32((const int32_t *)(w + v * 16));
            const int32x4_t hi = vld1q_s32((const int32_t *)(w + group_bytes + v * 16));
            const int8x16_t cols01 = vreinterpretq_s8_s32(vzip1q_s32(lo, hi));
            const int8x16_t cols23 = vreinterpretq_s8_s32(vzip2q_s32(lo, hi));
            for (int p = 0; p < pairs; p++) {
                mm[p][v][0] = vmmlaq_s32(mm[p][v][0], rows[p], cols01);
                mm[p][v][1] = vmmlaq_s32(mm[p][v][1], rows[p], cols23);
            }
        }
    }
    for (int p = 0; p < pairs; p++)
        for (int v = 0; v < nv; v++) {
            const int64x2_t b01 = vreinterpretq_s64_s32(mm[p][v][0]);
            const int64x2_t b23 = vreinterpretq_s64_s32(mm[p][v][1]);
            iacc[2 * p][v] = (ivec)vreinterpretq_s32_s64(vzip1q_s64(b01, b23));
            if (2 * p + 1 < mr) iacc[2 * p + 1][v] = (ivec)vreinterpretq_s32_s64(vzip2q_s64(b01, b23));
        }
}
#endif

/* iacc[m][v] = the exact int32 products of rows a + m*lda_bytes (4*groups int8 each) with the
 * panel's groups w ([groups][nv*VW][4]); shift_fix: the panel's correction row. */
INLINE void i8_segment(const int mr, const int nv, ivec iacc[FC_MR][4], const int8_t *w,
                       const int8_t *a, size_t lda_bytes, size_t groups,
                       const int32_t *shift_fix)
{
    const int pwn = nv * FC_VW;
    for (int m = 0; m < mr; m++)
        for (int v = 0; v < nv; v++) {
#if I8_VNNI
            memcpy(&iacc[m][v], shift_fix + v * FC_VW, sizeof(ivec));
#else
            iacc[m][v] = (ivec){0};
#endif
        }
    for (size_t g = 0; g < groups; g++, w += pwn * FC_I8_KG) {
#if I8_BITS
        ivec wv[4];                                 /* lane c: column c's quad of group g */
        for (int v = 0; v < nv; v++) memcpy(&wv[v], w + v * sizeof(ivec), sizeof(ivec));
        for (int m = 0; m < mr; m++) {
            const ivec am = (ivec){0} + i8_group(a + m * lda_bytes, g);
            for (int v = 0; v < nv; v++) iacc[m][v] = i8_quad_madd(iacc[m][v], am, wv[v]);
        }
#else
        for (int m = 0; m < mr; m++) {
            const int8_t *am = a + m * lda_bytes + 4 * g;
            const int32_t a0 = am[0], a1 = am[1], a2 = am[2], a3 = am[3];
            for (int v = 0; v < nv; v++)
                for (int l = 0; l < FC_VW; l++) {
                    const int8_t *wc = w + (v * FC_VW + l) * FC_I8_KG;
                    iacc[m][v][l] += a0 * wc[0] + a1 * wc[1] + a2 * wc[2] + a3 * wc[3];
                }
        }
#endif
    }
}

#if I8_AMX
/* AMX tiles (one configuration, tile t = tmm t): C tiles 0-3, `rows` x 16 int32, the products
 * of 16 columns each; A tile 4, `rows` x 64 int8: 16 groups of the activation rows; B tiles
 * 5-7, 16 x 64 int8: 16 groups of one C tile's 16 columns, a 64-byte line (16 columns x 4 k)
 * per group, which the panel stores contiguously ([G][PW][4], rows PW*4 bytes apart). The panel
 * and the operand rows hold whole runs of 16 groups, zeros past k (i8-gemm.h), so no load has
 * a tail. tdpbssd multiplies signed by signed: exact, no shift_fix. */
enum { I8_AMX_ROWS = 16, I8_AMX_COLS = 4 * 16, I8_AMX_LINE = FC_I8_TILE_GROUPS * FC_I8_KG };
/* Below this many rows a block (or its last chunk) takes the VNNI path: a tile op costs about
 * as much for a few rows as for 16. Measured with 8 (int8 LSTM H=512 T=50, the VNNI and this
 * kernel alternated, min of medians, 2-core Xeon family 6 model 167): B=8 5.63 ms here vs 5.07
 * on VNNI, B=16 9.29 vs 9.73, B=64 34.8 vs 38.5. */
enum { I8_AMX_MIN_ROWS = 16 };

INLINE void i8_amx_configure(size_t rows)
{
    fc_amx_tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.colsb[t] = I8_AMX_LINE;
        cfg.rows[t] = (uint8_t)(t <= 4 ? rows : FC_I8_TILE_GROUPS);
    }
    _tile_loadconfig(&cfg);
}

/* products[i][c] = sum over k of a0[r0 + i][k] * panel(k, c), exact int32, for the configured
 * rows i and the nv*16 columns c of the panel; products: [I8_AMX_ROWS][I8_AMX_COLS] */
INLINE void i8_amx_product(const int nv, const fc_block_args *a, size_t r0, int32_t *products)
{
    const size_t group_bytes = (size_t)nv * FC_VW * FC_I8_KG;      /* one group of the panel */
    const int8_t *w = (const int8_t *)a->panel + 3 * group_bytes;   /* past the 3 header rows */
    const size_t lda_bytes = a->lda0 * sizeof(int32_t);
    const int8_t *qa = (const int8_t *)a->a0 + r0 * lda_bytes;
    const size_t groups = a->k0 / FC_I8_KG + (a->k0 % FC_I8_KG != 0);
    const size_t runs = groups / FC_I8_TILE_GROUPS + (groups % FC_I8_TILE_GROUPS != 0);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (size_t run = 0; run < runs; run++) {
        _tile_loadd(4, qa, lda_bytes);
        _tile_loadd(5, w, group_bytes);
        _tile_dpbssd(0, 4, 5);
        _tile_loadd(6, w + I8_AMX_LINE, group_bytes);
        _tile_dpbssd(1, 4, 6);
        _tile_loadd(7, w + 2 * I8_AMX_LINE, group_bytes);
        _tile_dpbssd(2, 4, 7);
        if (nv == 4) {
            _tile_loadd(5, w + 3 * I8_AMX_LINE, group_bytes);
            _tile_dpbssd(3, 4, 5);
        }
        qa += I8_AMX_LINE;
        w += FC_I8_TILE_GROUPS * group_bytes;
    }
    const size_t ld_bytes = I8_AMX_COLS * sizeof(int32_t);
    _tile_stored(0, products, ld_bytes);
    _tile_stored(1, products + 16, ld_bytes);
    _tile_stored(2, products + 32, ld_bytes);
    if (nv == 4) _tile_stored(3, products + 48, ld_bytes);
}

/* The block's rows in chunks of 16: each chunk's products by AMX, then rows_fn runs the
 * chunk's register tiles on them (the epilogues are the template's); a block of fewer than
 * I8_AMX_MIN_ROWS rows, or a last chunk of fewer, runs the VNNI product instead. */
INLINE void i8_amx_block(const fc_block_args *a, const int nv,
                         void (*rows_fn)(const fc_block_args *, size_t, size_t))
{
    if (a->rows < I8_AMX_MIN_ROWS) {
        rows_fn(a, 0, a->rows);
        return;
    }
    int32_t products[I8_AMX_ROWS * I8_AMX_COLS] __attribute__((aligned(64)));
    fc_block_args chunk = *a;
    size_t configured = 0;          /* the rows the tiles are configured for; 0: none */
    for (size_t r0 = 0; r0 < a->rows; r0 += I8_AMX_ROWS) {
        const size_t rows = fc_min(I8_AMX_ROWS, a->rows - r0);
        chunk.i8_products = NULL;
        if (rows >= I8_AMX_MIN_ROWS) {
            if (rows != configured) i8_amx_configure(rows);
            configured = rows;
            i8_amx_product(nv, a, r0, products);
            chunk.i8_products = products;
            chunk.i8_products_row0 = r0;
        }
        rows_fn(&chunk, r0, r0 + rows);
    }
    _tile_release();
}
#define PRODUCT_BLOCK(a, nv, rows_fn) i8_amx_block(a, nv, rows_fn)
#endif

/* acc = (init rows, or the panel's bias row when init_rows is NULL) + the scaled product of a0
 * (k0 = the segment's depth; k1 must be 0) with a panel of nv vectors per row */
INLINE void tile_product_nv(const int mr, const int nv, vec acc[FC_MR][4],
                            const fc_block_args *a, size_t row, const void *init_rows)
{
    const int pwn = nv * FC_VW;
    const float *col_scale = (const float *)a->panel, *bias = col_scale + pwn;
    const int32_t *shift_fix = (const int32_t *)(bias + pwn);
    const int8_t *w = (const int8_t *)(shift_fix + pwn);
    const size_t lda_bytes = a->lda0 * sizeof(int32_t);
    ivec iacc[FC_MR][4];
#if I8_AMX
    if (a->i8_products) {           /* this chunk's products, I8_AMX_COLS int32 per row */
        const int32_t *p = a->i8_products + (row - a->i8_products_row0) * I8_AMX_COLS;
        for (int m = 0; m < mr; m++)
            for (int v = 0; v < nv; v++)
                memcpy(&iacc[m][v], p + m * I8_AMX_COLS + v * FC_VW, sizeof(ivec));
    } else
#endif
#if I8_MMLA
    i8_segment_mmla(mr, nv, iacc, w, (const int8_t *)a->a0 + row * lda_bytes, lda_bytes,
                    a->k0 / FC_I8_KG + (a->k0 % FC_I8_KG != 0));
#else
    i8_segment(mr, nv, iacc, w, (const int8_t *)a->a0 + row * lda_bytes, lda_bytes,
               a->k0 / FC_I8_KG + (a->k0 % FC_I8_KG != 0), shift_fix);
#endif
    const float *init = init_rows ? (const float *)init_rows + row * a->ld_init : NULL;
    for (int m = 0; m < mr; m++) {
        const vec row_scale = vsplat(a->a0_scale[row + m]);
        for (int v = 0; v < nv; v++) {
            const vec scale = row_scale * vload(col_scale + v * FC_VW);
            const vec p = __builtin_convertvector(iacc[m][v], vec) * scale;
            const vec start = init ? vload(init + m * a->ld_init + v * FC_VW)
                                   : vload(bias + v * FC_VW);
            acc[m][v] = start + p;
        }
    }
}

#undef I8_BITS
#undef I8_VNNI
#undef I8_AMX
#undef I8_MMLA
