/* i8-gemm.h — the int8 GEMM micro-kernels (FC_I8GEMM lines of kernels.def) and the packed
 * int8 matrix they read (csrc/i8gemm.c). The arithmetic is fastcells/reference_quant.py's.
 *
 * Packed layout. B [K,N] int8 (values in [-127, 127]) becomes panels of FC_I8_NR = 16 columns;
 * K is padded with zeros to whole groups of 4 (G = ceil(K/4) groups):
 *     panel p: [G][16][4] int8, byte (g, c, b) = B[4g + b, 16p + c]   (zero past K or N)
 * i.e. one 64-byte line per group: the dword of column c holds its 4 consecutive k. Panels are
 * contiguous and 64-byte aligned.
 *
 * Kernel contract: rows [0, rows) of qa against one panel,
 *     acc[r, c] = sum over k < 4G of qa[r, k] * panel(k, c)         exact int32
 * qa: [rows, 4G] int8 (lda bytes per row, zero past K), values in [-127, 127]; panel as above;
 * acc: [rows, 16] int32 (ldacc elements per row), written (not accumulated into). With
 * |q| <= 127 on both sides and K <= FC_I8_K_MAX every partial sum, in any order, is inside int32,
 * so every kernel gives the same integers (the AVX2 sign-moving vpmaddubsw form cannot
 * saturate: a pair is at most 2*127*127 = 32258). No tails: rows are any count, columns whole.
 */
#ifndef FASTCELLS_I8_GEMM_H
#define FASTCELLS_I8_GEMM_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fastcells.h"

enum { FC_I8_NR = 16, FC_I8_KG = 4, FC_I8_Q = 127 };
/* The i8 cell family's panels hold their groups in whole runs of FC_I8_TILE_GROUPS (zeros
 * past K), and its operand rows are whole runs of FC_I8_TILE_GROUPS * FC_I8_KG = 64 bytes
 * (zeros past k): an AMX tile reads 16 groups of 16 columns, one 64-byte line per group, and
 * 16 rows of 64 activation bytes, so no tile load needs a tail (i8-product.h). */
enum { FC_I8_TILE_GROUPS = 16 };
/* The operand of AMX's LDTILECFG, palette 1: tile t (tmm t) has rows[t] rows of colsb[t] bytes. */
typedef struct fc_amx_tile_config {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} fc_amx_tile_config;
#define FC_I8_K_MAX ((size_t)133144)        /* (2**31 - 1) // 127**2: an exact int32 sum */

typedef void (*fc_i8_gemm_fn)(size_t rows, size_t groups, const int8_t *qa, size_t lda,
                              const int8_t *panel, int32_t *acc, size_t ldacc);

#define FC_I8GEMM(symbol, name, isa, mr, features, cflags)                                     \
    void fc_i8_gemm__##symbol(size_t rows, size_t groups, const int8_t *qa, size_t lda,        \
                              const int8_t *panel, int32_t *acc, size_t ldacc);
#include "kernels.def"

/* One FC_I8GEMM line, as the bridge reports it. */
typedef struct fc_i8_kernel_info {
    const char *name, *features, *cflags;
    fc_isa isa;
    size_t mr, nr;
    int available;              /* the CPU has its features */
} fc_i8_kernel_info;

size_t fc_i8_kernel_count(void);
fc_status fc_i8_kernel_info_at(size_t index, fc_i8_kernel_info *out);
/* The kernel a new matrix uses by default: the last available line whose ISA is at most
 * fc_default_isa() (so FASTCELLS_ISA=scalar runs the portable one). */
size_t fc_i8_default_kernel(void);

/* The quantizer of reference_quant (Q = 127; amax < 2**-100: scale 1, inv 0): v[i*stride],
 * i < len, finite -> q[i*qstride], returns the scale (NaN if a value is NaN or +-inf). */
float fc_i8_quantize(const float *v, size_t len, size_t stride, int8_t *q, size_t qstride);
/* Rows a [rows, k] (lda floats) -> q [rows, ldq] int8 (ldq >= k, zero past k) and scales
 * [rows]: each row its own scale, or with `fixed` the fixed amax 1 (scale 1/Q, values clipped
 * to [-Q, Q]) of an operand the cell bounds by 1. A row with a NaN or an inf gets the scale
 * NaN (as fc_i8_quantize). */
void fc_i8_quantize_rows(const float *a, size_t lda, size_t rows, size_t k, int fixed,
                         int8_t *q, size_t ldq, float *scales);

typedef struct fc_i8_matrix fc_i8_matrix;
/* From int8 weights: qw [K,N] in [-127, 127] C-contiguous, col_scale [N], bias [N] or NULL;
 * kernel: an index of fc_i8_kernel_info_at (available). FC_ERR_ARG: K > FC_I8_K_MAX, N == 0,
 * a bad kernel; FC_ERR_SIZE: the packed size overflows. */
fc_status fc_i8_matrix_create_q(size_t k, size_t n, const int8_t *qw, const float *col_scale,
                                const float *bias, size_t kernel, fc_i8_matrix **out);
/* From fp32 weights b [K,N] (finite), quantized per column. */
fc_status fc_i8_matrix_create(size_t k, size_t n, const float *b, const float *bias,
                              size_t kernel, fc_i8_matrix **out);
void fc_i8_matrix_destroy(fc_i8_matrix *mat);
/* The packed weights back: qw [K,N], col_scale [N]. */
void fc_i8_matrix_weights(const fc_i8_matrix *mat, int8_t *qw, float *col_scale);
/* C[M,N] = fp32(acc) * (row_scale[m] * col_scale[n]) (+ bias[n]), each operation rounded once,
 * acc[M,N] = qa @ qw exact. qa: [M,K] int8 (lda bytes) in [-127, 127]; row_scale [M]; c
 * (ldc floats) and acc (ldacc int32) may each be NULL; neither may alias qa. */
fc_status fc_i8_matmul_q(const fc_i8_matrix *mat, size_t m, const int8_t *qa, size_t lda,
                         const float *row_scale, float *c, size_t ldc, int32_t *acc,
                         size_t ldacc);
/* The same from fp32 a [M,K] (lda floats, finite), quantized per row; row_scale_out [M] or
 * NULL receives the row scales. c may not alias a. */
fc_status fc_i8_matmul(const fc_i8_matrix *mat, size_t m, const float *a, size_t lda, float *c,
                       size_t ldc, int32_t *acc, size_t ldacc, float *row_scale_out);

/* The entry point of a vector kernel whose `tile(mr, groups, qa, lda, panel, acc, ldacc)`
 * handles up to 4 rows: the rows in tiles of 4, then one of 3, 2 or 1 (each height a
 * compile-time constant once tile is inlined, so its accumulators stay in registers). */
#define FC_I8_GEMM_ENTRY(symbol)                                                               \
    void fc_i8_gemm__##symbol(size_t rows, size_t groups, const int8_t *qa, size_t lda,        \
                              const int8_t *panel, int32_t *acc, size_t ldacc)                 \
    {                                                                                          \
        size_t r = 0;                                                                          \
        for (; r + 4 <= rows; r += 4)                                                          \
            tile(4, groups, qa + r * lda, lda, panel, acc + r * ldacc, ldacc);                 \
        switch (rows - r) {                                                                    \
        case 3: tile(3, groups, qa + r * lda, lda, panel, acc + r * ldacc, ldacc); break;      \
        case 2: tile(2, groups, qa + r * lda, lda, panel, acc + r * ldacc, ldacc); break;      \
        case 1: tile(1, groups, qa + r * lda, lda, panel, acc + r * ldacc, ldacc); break;      \
        default: break;                                                                        \
        }                                                                                      \
    }

/* The 4 activations of one k group of a row, as one dword (any alignment). */
static inline __attribute__((always_inline)) int32_t fc_i8_dword(const int8_t *p)
{
    int32_t d;
    memcpy(&d, p, sizeof d);
    return d;
}

#endif /* FASTCELLS_I8_GEMM_H */
