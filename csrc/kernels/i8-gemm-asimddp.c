/* i8-gemm-asimddp.c — aarch64 dotprod int8 GEMM: sdot, signed x signed, exact (contract and
 * packed layout: i8-gemm.h). A register tile of up to 4 rows x 16 columns: 4 int32x4
 * accumulators per row (16 of 32 registers), the group's 16 columns x 4 k as 4 vectors (column
 * c's quad in lane c % 4 of vector c / 4), one dword of 4 activations broadcast per row. */
#include <arm_neon.h>

#include "i8-gemm.h"

#define INLINE static inline __attribute__((always_inline))

INLINE void tile(size_t mr, size_t groups, const int8_t *qa, size_t lda, const int8_t *panel,
                 int32_t *acc, size_t ldacc)
{
    int32x4_t sum[4][4];
    for (size_t r = 0; r < mr; r++)
        for (int v = 0; v < 4; v++) sum[r][v] = vdupq_n_s32(0);
    for (size_t g = 0; g < groups; g++) {
        int8x16_t w[4];
        for (int v = 0; v < 4; v++) w[v] = vld1q_s8(panel + g * 64 + 16 * v);
        for (size_t r = 0; r < mr; r++) {
            const int8x16_t a = vreinterpretq_s8_s32(vdupq_n_s32(fc_i8_dword(qa + r * lda + 4 * g)));
            for (int v = 0; v < 4; v++) sum[r][v] = vdotq_s32(sum[r][v], a, w[v]);
        }
    }
    for (size_t r = 0; r < mr; r++)
        for (int v = 0; v < 4; v++) vst1q_s32(acc + r * ldacc + 4 * v, sum[r][v]);
}

FC_I8_GEMM_ENTRY(asimddp)
