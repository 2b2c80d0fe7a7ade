/* i8-gemm-ref.c — the portable int8 GEMM micro-kernel (contract: i8-gemm.h): int32 multiply-add
 * in k order, baseline flags. The oracle the vector kernels are compared with besides the
 * NumPy reference. */
#include "i8-gemm.h"

void fc_i8_gemm__ref(size_t rows, size_t groups, const int8_t *qa, size_t lda,
                     const int8_t *panel, int32_t *acc, size_t ldacc)
{
    for (size_t r = 0; r < rows; r++) {
        int32_t sums[FC_I8_NR] = {0};
        const int8_t *a = qa + r * lda;
        for (size_t g = 0; g < groups; g++) {
            const int8_t *w = panel + g * FC_I8_NR * FC_I8_KG;
            for (size_t c = 0; c < FC_I8_NR; c++)
                for (size_t b = 0; b < FC_I8_KG; b++)
                    sums[c] += (int32_t)a[g * FC_I8_KG + b] * w[c * FC_I8_KG + b];
        }
        for (size_t c = 0; c < FC_I8_NR; c++) acc[r * ldacc + c] = sums[c];
    }
}
