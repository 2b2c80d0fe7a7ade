/* i8-gemm-avxvnni.c — AVX-VNNI int8 GEMM: vpabsb, vpsignb, vpdpbusd (VEX)
 * (contract and packed layout: i8-gemm.h). A register tile of up to 4 rows x 16 columns; one
 * dword of 4 activations broadcast per row and group; u = |a| (vpabsb) once per broadcast. */
#include <immintrin.h>

#include "i8-gemm.h"

#define INLINE static inline __attribute__((always_inline))

INLINE __m256i broadcast4(const int8_t *p) { return _mm256_set1_epi32(fc_i8_dword(p)); }

INLINE void tile(size_t mr, size_t groups, const int8_t *qa, size_t lda, const int8_t *panel,
                 int32_t *acc, size_t ldacc)
{
    __m256i lo[4], hi[4];
    for (size_t r = 0; r < mr; r++) lo[r] = hi[r] = _mm256_setzero_si256();
    for (size_t g = 0; g < groups; g++) {
        const __m256i w0 = _mm256_load_si256((const __m256i *)(panel + g * 64));
        const __m256i w1 = _mm256_load_si256((const __m256i *)(panel + g * 64 + 32));
        for (size_t r = 0; r < mr; r++) {
            const __m256i a = broadcast4(qa + r * lda + 4 * g), u = _mm256_abs_epi8(a);
            /* |a| x sign(a)*w: the 4 products added in int32, no int16 step */
            lo[r] = _mm256_dpbusd_avx_epi32(lo[r], u, _mm256_sign_epi8(w0, a));
            hi[r] = _mm256_dpbusd_avx_epi32(hi[r], u, _mm256_sign_epi8(w1, a));
        }
    }
    for (size_t r = 0; r < mr; r++) {
        _mm256_storeu_si256((__m256i *)(acc + r * ldacc), lo[r]);
        _mm256_storeu_si256((__m256i *)(acc + r * ldacc + 8), hi[r]);
    }
}

FC_I8_GEMM_ENTRY(avxvnni)
