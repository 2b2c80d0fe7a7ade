/* i8-quantize.h — the int8 activation quantizer of fastcells/reference_quant.py, as static
 * inline C that each unit compiles for its own flags: i8gemm.c with the baseline's (the packing
 * and the int8 matrix, fc_i8_quantize*), and every i8 cell kernel (cells_template.h) with its
 * ISA's, so the operand rows of a sequence's steps are quantized on the kernel's vectors. Plain
 * C, no intrinsics, no float reductions (it vectorizes without -ffast-math), so every build
 * gives the same bits, provided that it is compiled with -ffp-contract=off, as setup.py compiles
 * both: otherwise v * inv + shifter may fuse into one FMA and round once. Contracts:
 * i8-gemm.h. */
#ifndef FASTCELLS_I8_QUANTIZE_H
#define FASTCELLS_I8_QUANTIZE_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "i8-gemm.h"

/* clip(rint(x), -Q, Q) as int8: x + 1.5*2^23 - 1.5*2^23 rounds half to even (the default
 * mode) for |x| < 2^22, and any larger |x| clips to Q either way, so this is rint's result
 * without a libm call (baseline SSE2 has no round instruction); NaN gives -Q (never UB). */
static inline int8_t i8_quantized(float x)
{
    const float shifter = 0x1.8p23f;
    float r = (x + shifter) - shifter;
    r = r >= -(float)FC_I8_Q ? r : -(float)FC_I8_Q;
    r = r <= (float)FC_I8_Q ? r : (float)FC_I8_Q;
    return (int8_t)r;
}

/* The bits of |x| as an int32: magnitudes order as their bits do, and the bits of an inf or a
 * NaN, and only theirs, are at least I8_NOT_FINITE_BITS. The row scans below compare and take
 * maxima of these integers, which vectorize without -ffast-math (float maxima and sums do
 * not), so each row costs a few vector instructions per vector of values. */
enum { I8_NOT_FINITE_BITS = 0x7f800000 };
static inline int32_t i8_magnitude_bits(float x)
{
    int32_t bits;
    memcpy(&bits, &x, sizeof bits);
    return bits & 0x7fffffff;
}

static inline float i8_float_of_bits(int32_t bits)
{
    float x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

/* The largest i8_magnitude_bits of v[i * stride], i < len (0 for len 0). */
static inline int32_t i8_max_magnitude_bits(const float *v, size_t len, size_t stride)
{
    int32_t amax_bits = 0;
    for (size_t i = 0; i < len; i++) {
        const int32_t bits = i8_magnitude_bits(v[i * stride]);
        amax_bits = bits > amax_bits ? bits : amax_bits;
    }
    return amax_bits;
}

/* fc_i8_quantize (i8-gemm.h). A vector that has an inf or a NaN gets the scale NaN, so what is
 * computed from it is NaN, as in float arithmetic (its int8 values are defined but
 * meaningless: those of the largest magnitude that is not a NaN, as below). */
static inline float i8_quantize_vector(const float *v, size_t len, size_t stride, int8_t *q,
                                       size_t qstride)
{
    const int32_t amax_bits = i8_max_magnitude_bits(v, len, stride);
    const int not_finite = amax_bits >= I8_NOT_FINITE_BITS;
    float amax = i8_float_of_bits(amax_bits);
    if (not_finite) {                               /* rare: the largest that is not a NaN */
        amax = 0.0f;
        for (size_t i = 0; i < len; i++) {
            const float a = fabsf(v[i * stride]);
            amax = a > amax ? a : amax;
        }
    }
    const int zero = amax < 0x1p-100f;
    const float scale = not_finite ? NAN : zero ? 1.0f : amax / (float)FC_I8_Q;
    const float inv = zero ? 0.0f : (float)FC_I8_Q / amax;
    if (stride == 1 && qstride == 1)                /* the rows of activations: vectorized */
        for (size_t i = 0; i < len; i++) q[i] = i8_quantized(v[i] * inv);
    else
        for (size_t i = 0; i < len; i++) q[i * qstride] = i8_quantized(v[i * stride] * inv);
    return scale;
}

/* fc_i8_quantize_rows (i8-gemm.h): a [rows, k] (lda floats) -> q [rows, ldq], scales [rows] */
static inline void i8_quantize_rows(const float *a, size_t lda, size_t rows, size_t k,
                                    int fixed, int8_t *q, size_t ldq, float *scales)
{
    for (size_t r = 0; r < rows; r++) {
        const float *v = a + r * lda;
        int8_t *qr = q + r * ldq;
        if (fixed) {                                /* amax = 1: scale 1/Q, inv Q exactly */
            for (size_t i = 0; i < k; i++) qr[i] = i8_quantized(v[i] * (float)FC_I8_Q);
            scales[r] = i8_max_magnitude_bits(v, k, 1) >= I8_NOT_FINITE_BITS
                            ? NAN : 1.0f / (float)FC_I8_Q;
        } else {
            scales[r] = i8_quantize_vector(v, k, 1, qr, 1);
        }
        memset(qr + k, 0, ldq - k);
    }
}

#endif
