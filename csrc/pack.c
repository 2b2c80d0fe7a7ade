/* pack.c — TF-layout kernel [K, G*U] (+ bias [G*U]) -> gate-interleaved panels (internal.h).
 * Runs once when a cell's weights are set, never per call. Element-size generic: values are
 * copied bit for bit, so float32 and float64 share this code. */
#include <stdlib.h>
#include <string.h>

#include "checked.h"
#include "internal.h"

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
                       .nru = nru, .nblocks = nblocks};
    return FC_OK;
}

void fc_packed_free(fc_packed *p)
{
    fc_aligned_free(p->panels);
    p->panels = NULL;
}
