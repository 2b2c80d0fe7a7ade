/* bf16.c — the bf16 family's conversions: fp32 -> bf16 rounding (of weights once, when a cell
 * is packed, and of the operand rows before each product) and the packing into pair panels
 * (layout: internal.h). The rounding is fastcells/reference_quant.py's round_bf16. Built with
 * baseline flags; not a hot loop next to the products it feeds (one rounding per element per
 * product against PW multiply-adds). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "checked.h"
#include "internal.h"

/* fp32 -> bf16 bits: nearest even on the fp32 bits, NaN kept NaN (quieted: top half with the
 * quiet bit), +-inf kept, overflow to +-inf, subnormals rounded like normals (no flush). */
static inline uint16_t bf16_of(float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u | 0x00400000u) >> 16);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);  /* no wrap below a NaN */
}

void fc_bf16_round_rows(const float *a, size_t lda, size_t rows, size_t k, int fixed, void *q,
                        size_t ldq, float *scales)
{
    (void)fixed;
    (void)scales;
    uint16_t *out = q;
    for (size_t r = 0; r < rows; r++) {
        const float *v = a + r * lda;
        uint16_t *row = out + r * ldq;
        for (size_t i = 0; i < k; i++) row[i] = bf16_of(v[i]);
        memset(row + k, 0, (ldq - k) * sizeof *row);
    }
}

fc_status fc_pack_bf16(fc_packed *out, const void *kernel, const void *bias, size_t k,
                       size_t gates, size_t units, size_t elem, size_t pw)
{
    if (gates == 0 || pw < gates || elem != sizeof(float)) return FC_ERR_ARG;
    const size_t nru = pw / gates, nblocks = units / nru + (units % nru != 0);
    const size_t pairs = k / 2 + k % 2, cols = gates * units;
    int overflow = 0;
    /* the bias row (f32), then [pairs][pw] dwords of two bf16 */
    const size_t panel_bytes = fc_mul3(pw, fc_add(1, pairs, &overflow), sizeof(uint32_t),
                                       &overflow);
    const size_t bytes = fc_mul(nblocks, panel_bytes, &overflow);
    (void)fc_mul3(k, cols, elem, &overflow);            /* the kernel's size */
    if (overflow) return FC_ERR_SIZE;
    unsigned char *panels = fc_aligned_alloc(bytes);
    if (!panels) return FC_ERR_NOMEM;
    memset(panels, 0, bytes);                           /* +0.0 past K and U, zero bias */
    const float *src_k = kernel, *src_b = bias;
    for (size_t j = 0; j < nblocks; j++) {
        unsigned char *panel = panels + j * panel_bytes;
        float *bias_row = (float *)panel;
        uint32_t *pair_rows = (uint32_t *)(bias_row + pw);
        const size_t unit0 = j * nru, nu = fc_min(nru, units - unit0);
        for (size_t g = 0; g < gates; g++)
            for (size_t u = 0; u < nu; u++) {
                const size_t c = g * nru + u, src_col = g * units + unit0 + u;
                if (src_b) bias_row[c] = src_b[src_col];
                for (size_t kk = 0; kk < k; kk++) {
                    const uint32_t half = bf16_of(src_k[kk * cols + src_col]);
                    pair_rows[(kk / 2) * pw + c] |= kk % 2 ? half << 16 : half;
                }
            }
    }
    *out = (fc_packed){.panels = panels, .gates = gates, .units = units, .k = k, .pw = pw,
                       .nru = nru, .nblocks = nblocks, .panel_bytes = panel_bytes};
    return FC_OK;
}
