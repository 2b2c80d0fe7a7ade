/* pack.c — TF-layout kernel [K, G*U] (+ bias [G*U]) -> gate-interleaved panels (internal.h).
 * Runs once when a cell's weights are set, never per call. fc_pack is element-size generic:
 * values are copied bit for bit, so float32 and float64 share it; fc_pack_i8 quantizes. */
#include <stdlib.h>
#include <string.h>

#include "checked.h"
#include "internal.h"
#include "kernels/i8-gemm.h"

void *fc_aligned_alloc(size_t bytes)
{
    void *p = NULL;
    int overflow = 0;
    const size_t rounded = bytes ? fc_round_up_checked(bytes, 64, &overflow) : 64;
    if (overflow || posix_memalign(&p, 64, rounded) != 0) return NULL;
    return p;
}

void fc_aligned_free(void *p) { free(p); }

/* The bytes of the panels of a [k, gates*units] kernel (plus its bias row) for panels of pw
 * columns: FC_ERR_SIZE if that, or the kernel's own size, does not fit in size_t. */
fc_status fc_packed_bytes(size_t k, size_t gates, size_t units, size_t elem, size_t pw,
                          size_t *bytes)
{
    *bytes = 0;
    if (gates == 0 || pw < gates || elem == 0) return FC_ERR_ARG;
    const size_t nru = pw / gates, nblocks = units / nru + (units % nru != 0);
    int overflow = 0;
    const size_t rows = fc_add(1, k, &overflow), cols = fc_mul(gates, units, &overflow);
    const size_t packed = fc_mul(fc_mul3(nblocks, rows, pw, &overflow), elem, &overflow);
    (void)fc_mul3(k, cols, elem, &overflow);            /* the kernel's size */
    if (overflow) return FC_ERR_SIZE;
    *bytes = packed;
    return FC_OK;
}

fc_status fc_pack(fc_packed *out, const void *kernel, const void *bias, size_t k, size_t gates,
                  size_t units, size_t elem, size_t pw)
{
    const size_t nru = pw / gates, nblocks = units / nru + (units % nru != 0);
    const size_t rows = 1 + k, cols = gates * units;    /* no overflow: fc_packed_bytes */
    size_t bytes;
    const fc_status st = fc_packed_bytes(k, gates, units, elem, pw, &bytes);
    if (st != FC_OK) return st;
    /* kernel: [k, gates*units] row-major; bias: [gates*units] or NULL (a zero bias row). Every
     * offset below is at most the packed or the kernel's size. */
    unsigned char *panels = fc_aligned_alloc(bytes);
    if (!panels) return FC_ERR_NOMEM;
    memset(panels, 0, bytes);                           /* zero padding past U, zero bias */
    const unsigned char *src_k = kernel, *src_b = bias;
    for (size_t j = 0; j < nblocks; j++) {
        const size_t unit0 = j * nru, nu = fc_min(nru, units - unit0);
        unsigned char *panel = panels + j * rows * pw * elem;
        for (size_t g = 0; g < gates; g++) {
            const size_t dst_col = g * nru, src_col = g * units + unit0;
            if (src_b) memcpy(panel + dst_col * elem, src_b + src_col * elem, nu * elem);
            for (size_t kk = 0; kk < k; kk++)
                memcpy(panel + ((1 + kk) * pw + dst_col) * elem,
                       src_k + (kk * cols + src_col) * elem, nu * elem);
        }
    }
    *out = (fc_packed){.panels = panels, .gates = gates, .units = units, .k = k, .pw = pw,
                       .nru = nru, .nblocks = nblocks, .panel_bytes = rows * pw * elem};
    return FC_OK;
}

fc_status fc_pack_i8(fc_packed *out, const void *kernel, const void *bias, size_t k,
                     size_t gates, size_t units, size_t elem, size_t pw)
{
    if (gates == 0 || pw < gates || elem != sizeof(float) || k > FC_I8_K_MAX) return FC_ERR_ARG;
    const size_t nru = pw / gates, nblocks = units / nru + (units % nru != 0);
    const size_t groups = fc_round_up(k / FC_I8_KG + (k % FC_I8_KG != 0), FC_I8_TILE_GROUPS);
    const size_t cols = gates * units;
    int overflow = 0;
    /* header rows: col_scale, bias (f32), shift_fix (int32); then [groups][pw][4] int8, the
     * groups in whole runs of FC_I8_TILE_GROUPS (no overflow: k <= FC_I8_K_MAX) */
    const size_t panel_bytes = fc_mul(pw, fc_add(3 * sizeof(float), fc_mul(groups, FC_I8_KG,
                                                                            &overflow),
                                                 &overflow), &overflow);
    const size_t bytes = fc_mul(nblocks, panel_bytes, &overflow);
    (void)fc_mul3(k, cols, elem, &overflow);            /* the kernel's size */
    if (overflow) return FC_ERR_SIZE;
    unsigned char *panels = fc_aligned_alloc(bytes);
    int8_t *column = malloc(k ? k : 1);                 /* one quantized column */
    if (!panels || !column) {
        fc_aligned_free(panels);
        free(column);
        return FC_ERR_NOMEM;
    }
    memset(panels, 0, bytes);                           /* zero weights past K and U */
    const float *src_k = kernel, *src_b = bias;
    for (size_t j = 0; j < nblocks; j++) {
        unsigned char *panel = panels + j * panel_bytes;
        float *col_scale = (float *)panel, *bias_row = col_scale + pw;
        int32_t *shift_fix = (int32_t *)(bias_row + pw);
        int8_t *groups_at = (int8_t *)(shift_fix + pw);
        for (size_t c = 0; c < pw; c++) {
            col_scale[c] = 1.0f;
            bias_row[c] = src_b ? 0.0f : -0.0f;
        }
        const size_t unit0 = j * nru, nu = fc_min(nru, units - unit0);
        for (size_t g = 0; g < gates; g++)
            for (size_t u = 0; u < nu; u++) {
                const size_t c = g * nru + u, src_col = g * units + unit0 + u;
                col_scale[c] = fc_i8_quantize(src_k + src_col, k, cols, column, 1);
                if (src_b) bias_row[c] = src_b[src_col];
                uint32_t sum = 0;                       /* wraps: only the int32 result counts */
                for (size_t kk = 0; kk < k; kk++) {
                    groups_at[((kk / FC_I8_KG) * pw + c) * FC_I8_KG + kk % FC_I8_KG] = column[kk];
                    sum += (uint32_t)(int32_t)column[kk];
                }
                shift_fix[c] = (int32_t)(0u - 128u * sum);
            }
    }
    free(column);
    *out = (fc_packed){.panels = panels, .gates = gates, .units = units, .k = k, .pw = pw,
                       .nru = nru, .nblocks = nblocks, .panel_bytes = panel_bytes};
    return FC_OK;
}

void fc_packed_free(fc_packed *p)
{
    fc_aligned_free(p->panels);
    p->panels = NULL;
}
