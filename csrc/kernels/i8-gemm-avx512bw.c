/* i8-gemm-avx512bw.c — AVX-512BW int8 GEMM: vpabsb, vpmovb2m + masked vpsubb, vpmaddubsw, vpmaddwd(1), vpaddd
 * (contract and packed layout: i8-gemm.h). A register tile of up to 4 rows x 16 columns; one
 * dword of 4 activations broadcast per row and group; u = |a| (vpabsb) once per broadcast. */
#include <immintrin.h>

#include "i8-gemm.h"

#define INLINE static inline __attribute__((always_inline))

INLINE __m512i broadcast4(const int8_t *p) { return _mm512_set1_epi32(fc_i8_dword(p)); }

INLINE void tile(size_t mr, size_t groups, const int8_t *qa, size_t lda, const int8_t *panel,
                 int32_t *acc, size_t ldacc)
{
    __m512i sum[4];
    const __m512i ones = _mm512_set1_epi16(1), zero = _mm512_setzero_si512();
    for (size_t r = 0; r < mr; r++) sum[r] = zero;
    for (size_t g = 0; g < groups; g++) {
        const __m512i w = _mm512_load_si512((const void *)(panel + g * 64));
        for (size_t r = 0; r < mr; r++) {
            const __m512i a = broadcast4(qa + r * lda + 4 * g), u = _mm512_abs_epi8(a);
            /* no vpsignb: negate w where a < 0 (where a == 0, u = 0 cancels the product) */
            const __m512i s = _mm512_mask_sub_epi8(w, _mm512_movepi8_mask(a), zero, w);
            sum[r] = _mm512_add_epi32(sum[r], _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), ones));
        }
    }
    for (size_t r = 0; r < mr; r++) _mm512_storeu_si512((void *)(acc + r * ldacc), sum[r]);
}

FC_I8_GEMM_ENTRY(avx512bw)
