/* i8gemm.c — the packed int8 matrix (kernels/i8-gemm.h): per-column weight quantization and
 * packing, the per-row activation pre-pass, the kernel calls panel by panel and the fp32
 * epilogue. Built with baseline flags and -ffp-contract=off (setup.py): the epilogue's multiply
 * and add must round separately, as fastcells/reference_quant.int8_epilogue defines. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "checked.h"
#include "internal.h"
#include "kernels/i8-gemm.h"
#include "kernels/i8-quantize.h"

typedef struct i8_entry {
    const char *name, *features, *cflags;
    fc_isa isa;
    size_t mr;
    fc_i8_gemm_fn fn;
} i8_entry;

static const i8_entry i8_registry[] = {
#define FC_I8GEMM(symbol, name, isa, mr, features, cflags) \
    {name, features, cflags, FC_ISA_##isa, mr, fc_i8_gemm__##symbol},
#include "kernels/kernels.def"
};
enum { NI8 = sizeof i8_registry / sizeof i8_registry[0] };

size_t fc_i8_kernel_count(void) { return NI8; }

fc_status fc_i8_kernel_info_at(size_t index, fc_i8_kernel_info *out)
{
    if (index >= NI8) return FC_ERR_ARG;
    const i8_entry *e = &i8_registry[index];
    *out = (fc_i8_kernel_info){.name = e->name, .features = e->features, .cflags = e->cflags,
                               .isa = e->isa, .mr = e->mr, .nr = FC_I8_NR,
                               .available = fc_cpu_has_features(e->features)};
    return FC_OK;
}

size_t fc_i8_default_kernel(void)
{
    const fc_isa want = fc_default_isa();
    size_t best = 0;                                /* the portable line: always runnable */
    for (size_t i = 0; i < NI8; i++)
        if (i8_registry[i].isa <= want && fc_cpu_has_features(i8_registry[i].features)) best = i;
    return best;
}

float fc_i8_quantize(const float *v, size_t len, size_t stride, int8_t *q, size_t qstride)
{
    return i8_quantize_vector(v, len, stride, q, qstride);
}

void fc_i8_quantize_rows(const float *a, size_t lda, size_t rows, size_t k, int fixed,
                         int8_t *q, size_t ldq, float *scales)
{
    i8_quantize_rows(a, lda, rows, k, fixed, q, ldq, scales);
}

struct fc_i8_matrix {
    size_t k, n, groups, npanels;
    int8_t *panels;             /* [npanels][groups][16][4] */
    float *col_scale;           /* [npanels*16], 1 past N */
    float *bias;                /* [npanels*16], 0 past N; NULL: no bias */
    const i8_entry *kernel;
};

void fc_i8_matrix_destroy(fc_i8_matrix *mat)
{
    if (!mat) return;
    fc_aligned_free(mat->panels);
    free(mat->col_scale);
    free(mat->bias);
    free(mat);
}

fc_status fc_i8_matrix_create_q(size_t k, size_t n, const int8_t *qw, const float *col_scale,
                                const float *bias, size_t kernel, fc_i8_matrix **out)
{
    *out = NULL;
    if (k > FC_I8_K_MAX || n == 0 || kernel >= NI8) return FC_ERR_ARG;
    if (!fc_cpu_has_features(i8_registry[kernel].features)) return FC_ERR_ISA;
    const size_t groups = k / FC_I8_KG + (k % FC_I8_KG != 0);
    const size_t npanels = n / FC_I8_NR + (n % FC_I8_NR != 0);
    int overflow = 0;
    const size_t bytes = fc_mul3(npanels, groups, FC_I8_NR * FC_I8_KG, &overflow);
    (void)fc_mul(k, n, &overflow);                  /* the caller's qw */
    const size_t cols = fc_mul(npanels, FC_I8_NR * sizeof(float), &overflow);
    if (overflow) return FC_ERR_SIZE;
    fc_i8_matrix *mat = calloc(1, sizeof *mat);
    if (!mat) return FC_ERR_NOMEM;
    mat->panels = fc_aligned_alloc(bytes);
    mat->col_scale = malloc(cols);
    mat->bias = bias ? malloc(cols) : NULL;
    if (!mat->panels || !mat->col_scale || (bias && !mat->bias)) {
        fc_i8_matrix_destroy(mat);
        return FC_ERR_NOMEM;
    }
    *mat = (fc_i8_matrix){.k = k, .n = n, .groups = groups, .npanels = npanels,
                          .panels = mat->panels, .col_scale = mat->col_scale, .bias = mat->bias,
                          .kernel = &i8_registry[kernel]};
    memset(mat->panels, 0, bytes ? bytes : 1);
    for (size_t col = 0; col < npanels * FC_I8_NR; col++) {
        mat->col_scale[col] = col < n ? col_scale[col] : 1.0f;
        if (bias) mat->bias[col] = col < n ? bias[col] : 0.0f;
    }
    for (size_t kk = 0; kk < k; kk++)
        for (size_t col = 0; col < n; col++) {
            const size_t p = col / FC_I8_NR, c = col % FC_I8_NR, g = kk / FC_I8_KG;
            mat->panels[((p * groups + g) * FC_I8_NR + c) * FC_I8_KG + kk % FC_I8_KG] =
                qw[kk * n + col];
        }
    *out = mat;
    return FC_OK;
}

fc_status fc_i8_matrix_create(size_t k, size_t n, const float *b, const float *bias,
                              size_t kernel, fc_i8_matrix **out)
{
    *out = NULL;
    int overflow = 0;
    const size_t elems = fc_mul(k, n, &overflow);
    (void)fc_mul(elems, sizeof(float), &overflow);
    if (overflow) return FC_ERR_SIZE;
    if (k > FC_I8_K_MAX || n == 0) return FC_ERR_ARG;
    int8_t *qw = malloc(elems ? elems : 1);
    float *scale = malloc(n * sizeof(float));
    fc_status st = FC_ERR_NOMEM;
    if (qw && scale) {
        for (size_t col = 0; col < n; col++)            /* one scale per column */
            scale[col] = fc_i8_quantize(b + col, k, n, qw + col, n);
        st = fc_i8_matrix_create_q(k, n, qw, scale, bias, kernel, out);
    }
    free(qw);
    free(scale);
    return st;
}

void fc_i8_matrix_weights(const fc_i8_matrix *mat, int8_t *qw, float *col_scale)
{
    for (size_t col = 0; col < mat->n; col++) col_scale[col] = mat->col_scale[col];
    for (size_t kk = 0; kk < mat->k; kk++)
        for (size_t col = 0; col < mat->n; col++) {
            const size_t p = col / FC_I8_NR, c = col % FC_I8_NR, g = kk / FC_I8_KG;
            qw[kk * mat->n + col] =
                mat->panels[((p * mat->groups + g) * FC_I8_NR + c) * FC_I8_KG + kk % FC_I8_KG];
        }
}

/* The product of the padded activations qa [m, 4G] (ld = 4G bytes) panel by panel, then the
 * epilogue into c / acc. tile: [m, 16] int32 scratch. */
static void run_panels(const fc_i8_matrix *mat, size_t m, const int8_t *qa, size_t ld,
                       const float *row_scale, float *c, size_t ldc, int32_t *acc,
                       size_t ldacc, int32_t *tile)
{
    for (size_t p = 0; p < mat->npanels; p++) {
        mat->kernel->fn(m, mat->groups, qa, ld,
                        mat->panels + p * mat->groups * FC_I8_NR * FC_I8_KG, tile, FC_I8_NR);
        const size_t col0 = p * FC_I8_NR, nc = fc_min(FC_I8_NR, mat->n - col0);
        for (size_t r = 0; r < m; r++) {
            const int32_t *t = tile + r * FC_I8_NR;
            if (acc) memcpy(acc + r * ldacc + col0, t, nc * sizeof(int32_t));
            if (!c) continue;
            float *cr = c + r * ldc + col0;
            for (size_t j = 0; j < nc; j++) {
                const float scale = row_scale[r] * mat->col_scale[col0 + j];
                float z = (float)t[j] * scale;      /* the scale product first, then scaling */
                if (mat->bias) z = z + mat->bias[col0 + j];
                cr[j] = z;
            }
        }
    }
}

/* Scratch of one call: the padded activations [m, ld = 4G] (zero past k), row scales [m], the
 * tile [m, 16]. */
typedef struct i8_scratch {
    int8_t *qa;
    size_t ld;
    float *scales;
    int32_t *tile;
} i8_scratch;

static void scratch_free(i8_scratch *s)
{
    free(s->qa);
    free(s->scales);
    free(s->tile);
}

static fc_status scratch(const fc_i8_matrix *mat, size_t m, i8_scratch *s)
{
    int overflow = 0;
    s->ld = mat->groups * FC_I8_KG;
    const size_t qa_bytes = fc_mul(m, s->ld, &overflow);
    const size_t tile_bytes = fc_mul3(m, FC_I8_NR, sizeof(int32_t), &overflow);
    const size_t scale_bytes = fc_mul(m, sizeof(float), &overflow);
    if (overflow) return FC_ERR_SIZE;
    s->qa = calloc(qa_bytes ? qa_bytes : 1, 1);
    s->scales = malloc(scale_bytes ? scale_bytes : 1);
    s->tile = malloc(tile_bytes ? tile_bytes : 1);
    if (!s->qa || !s->scales || !s->tile) {
        scratch_free(s);
        return FC_ERR_NOMEM;
    }
    return FC_OK;
}

fc_status fc_i8_matmul_q(const fc_i8_matrix *mat, size_t m, const int8_t *qa, size_t lda,
                         const float *row_scale, float *c, size_t ldc, int32_t *acc,
                         size_t ldacc)
{
    i8_scratch s;
    const fc_status st = m ? scratch(mat, m, &s) : FC_OK;
    if (st != FC_OK || m == 0) return st;
    for (size_t r = 0; r < m; r++) memcpy(s.qa + r * s.ld, qa + r * lda, mat->k);
    run_panels(mat, m, s.qa, s.ld, row_scale, c, ldc, acc, ldacc, s.tile);
    scratch_free(&s);
    return FC_OK;
}

fc_status fc_i8_matmul(const fc_i8_matrix *mat, size_t m, const float *a, size_t lda, float *c,
                       size_t ldc, int32_t *acc, size_t ldacc, float *row_scale_out)
{
    i8_scratch s;
    const fc_status st = m ? scratch(mat, m, &s) : FC_OK;
    if (st != FC_OK || m == 0) return st;
    for (size_t r = 0; r < m; r++)                  /* x per row: its own scale */
        s.scales[r] = fc_i8_quantize(a + r * lda, mat->k, 1, s.qa + r * s.ld, 1);
    if (row_scale_out) memcpy(row_scale_out, s.scales, m * sizeof(float));
    run_panels(mat, m, s.qa, s.ld, s.scales, c, ldc, acc, ldacc, s.tile);
    scratch_free(&s);
    return FC_OK;
}
