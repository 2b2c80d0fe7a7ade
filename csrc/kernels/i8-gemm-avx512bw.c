/* i8-gemm-avx512bw.c — AVX-512BW int8 GEMM: vpabsb, vpmovb2m + masked vpsubb, vpmaddubsw,
 * vpmaddwd(1), vpaddd (contract and packed layout: i8-gemm.h). A register tile of up to 4 rows x
 * 16 columns; one dword of 4 activations broadcast per row and group; u = |a| (vpabsb) once per
 * broadcast. i8-gemm-avx512vnni.c compiles this file again with vpdpbusd as
 * I8_DOT4. */
/* I8_DOT4(sum, u, s): sum + the four products u x s of each int32 lane, exact (pairs of
 * |a| x sign(a)*w <= 2*127*127: vpmaddubsw cannot saturate). The VNNI file sets it first. */
#ifndef I8_DOT4
#define I8_SYMBOL avx512bw
#define I8_DOT4(sum, u, s) \
    _mm512_add_epi32(sum, _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1)))
#endif

#include <immintrin.h>

#include "i8-gemm.h"

#define INLINE static inline __attribute__((always_inline))

INLINE void tile(size_t mr, size_t groups, const int8_t *qa, size_t lda, const int8_t *panel,
                 int32_t *acc, size_t ldacc)
{
    __m512i sum[4];
    const __m512i zero = _mm512_setzero_si512();
    for (size_t r = 0; r < mr; r++) sum[r] = zero;
    for (size_t g = 0; g < groups; g++) {
        const __m512i w = _mm512_load_si512((const void *)(panel + g * 64));
        for (size_t r = 0; r < mr; r++) {
            const __m512i a = _mm512_set1_epi32(fc_i8_dword(qa + r * lda + 4 * g));
            const __m512i u = _mm512_abs_epi8(a);
            /* no vpsignb: negate w where a < 0 (where a == 0, u = 0 cancels the product) */
            const __m512i s = _mm512_mask_sub_epi8(w, _mm512_movepi8_mask(a), zero, w);
            sum[r] = I8_DOT4(sum[r], u, s);
        }
    }
    for (size_t r = 0; r < mr; r++) _mm512_storeu_si512((void *)(acc + r * ldacc), sum[r]);
}

#define I8_ENTRY(symbol) FC_I8_GEMM_ENTRY(symbol)
I8_ENTRY(I8_SYMBOL)
