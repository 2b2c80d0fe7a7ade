/* i8-gemm-avx2.c — AVX2 int8 GEMM: vpabsb, vpsignb, vpmaddubsw, vpmaddwd(1), vpaddd
 * (contract and packed layout: i8-gemm.h). A register tile of up to 4 rows x 16 columns; one
 * dword of 4 activations broadcast per row and group; u = |a| (vpabsb) once per broadcast.
 * i8-gemm-avxvnni.c compiles this file again with vpdpbusd as I8_DOT4. */
#include <immintrin.h>

#include "i8-gemm.h"

#define INLINE static inline __attribute__((always_inline))

/* I8_DOT4(sum, u, s): sum + the four products u x s of each int32 lane, exact (pairs of
 * |a| x sign(a)*w <= 2*127*127: vpmaddubsw cannot saturate). The VNNI file sets it first. */
#ifndef I8_DOT4
#define I8_SYMBOL avx2
#define I8_DOT4(sum, u, s) \
    _mm256_add_epi32(sum, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)))
#endif

INLINE void tile(size_t mr, size_t groups, const int8_t *qa, size_t lda, const int8_t *panel,
                 int32_t *acc, size_t ldacc)
{
    __m256i lo[4], hi[4];
    for (size_t r = 0; r < mr; r++) lo[r] = hi[r] = _mm256_setzero_si256();
    for (size_t g = 0; g < groups; g++) {
        const __m256i w0 = _mm256_load_si256((const __m256i *)(panel + g * 64));
        const __m256i w1 = _mm256_load_si256((const __m256i *)(panel + g * 64 + 32));
        for (size_t r = 0; r < mr; r++) {
            const __m256i a = _mm256_set1_epi32(fc_i8_dword(qa + r * lda + 4 * g));
            const __m256i u = _mm256_abs_epi8(a);
            lo[r] = I8_DOT4(lo[r], u, _mm256_sign_epi8(w0, a));
            hi[r] = I8_DOT4(hi[r], u, _mm256_sign_epi8(w1, a));
        }
    }
    for (size_t r = 0; r < mr; r++) {
        _mm256_storeu_si256((__m256i *)(acc + r * ldacc), lo[r]);
        _mm256_storeu_si256((__m256i *)(acc + r * ldacc + 8), hi[r]);
    }
}

#define I8_ENTRY(symbol) FC_I8_GEMM_ENTRY(symbol)
I8_ENTRY(I8_SYMBOL)
