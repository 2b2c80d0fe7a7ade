/* probes.c — the machine-limit probes of probes.h (the contract is there).
 *
 * Built with the baseline flags: each wide path is one function compiled for its instruction
 * set by a target attribute, and is called only where the CPU has the path's features
 * (path_features: words of kernels/features.def, as kernels.def's requirements, checked by the
 * registry's detection, fc_cpu_has_features). Multiply-add: 12 independent accumulator chains
 * (more than latency x throughput of an FMA, 4 x 2, on current x86 cores), so the loop runs at
 * the throughput of the units. int8: each chain reads its own accumulator as its u8 operand, so
 * no product is loop-invariant (the compiler cannot hoist it) and the values are don't-care.
 * bf16: vdpbf16ps accumulates into fp32 chains from one constant pair of bf16 vectors; each
 * chain grows by 2e-6 a round, so it stays finite and normal for any iters.
 * Streaming read: 8 independent sums of vector loads, 64-byte steps at least.
 */
#include <math.h>
#include <stdint.h>

#include "internal.h"
#include "probes.h"

#define CHAINS 12
#define I8_CHAINS 10            /* 3 live registers a chain on AVX2: 10 chains fit 16 ymm */
#define FMA_A 0.9999f           /* acc = acc * A + B converges to B / (1 - A) = 1: no overflow, */
#define FMA_B 1e-4f             /* no denormal, whatever iters */
#define BF16_OPERAND 1e-3f      /* bf16 products 1e-6: a chain adds 2e-6 a round */

/* What the CPU must have for each path (fc_probe_path order): features.def words */
static const char *const path_features[FC_PROBE_PATH_COUNT] = {
    [FC_PROBE_F32_BASELINE] = "",
    [FC_PROBE_F32_AVX2] = "avx avx2 fma os_avx",
    [FC_PROBE_F32_AVX512] = "avx512f os_avx512",
    [FC_PROBE_I8_AVX2] = "avx avx2 os_avx",
    [FC_PROBE_I8_AVXVNNI] = "avx avx2 avxvnni os_avx",
    [FC_PROBE_I8_AVX512VNNI] = "avx512f avx512vnni os_avx512",
    [FC_PROBE_READ_BASELINE] = "",
    [FC_PROBE_READ_AVX2] = "avx avx2 os_avx",
    [FC_PROBE_READ_AVX512] = "avx512f os_avx512",
    [FC_PROBE_BF16_AVX512BF16] = "avx512f avx512bw avx512bf16 os_avx512",
};

typedef float v4f __attribute__((vector_size(16)));

static double madd_f32_baseline(long iters)
{
    v4f acc[CHAINS], a = {FMA_A, FMA_A, FMA_A, FMA_A}, b = {FMA_B, FMA_B, FMA_B, FMA_B};
    for (int k = 0; k < CHAINS; k++) acc[k] = (v4f){0, 0, 0, (float)k};
    for (long i = 0; i < iters; i++)
        for (int k = 0; k < CHAINS; k++) acc[k] = acc[k] * a + b;
    v4f s = acc[0];
    for (int k = 1; k < CHAINS; k++) s += acc[k];
    return (s[0] + s[1] + s[2] + s[3] > 0) ? 2.0 * 4 * CHAINS * (double)iters : -1;
}

static double read_baseline(const float *buf, size_t n, long passes)
{
    v4f acc[8] = {{0}};
    for (long p = 0; p < passes; p++)
        for (size_t i = 0; i < n; i += 32)
            for (int k = 0; k < 8; k++) acc[k] += *(const v4f *)(buf + i + 4 * k);
    v4f s = acc[0];
    for (int k = 1; k < 8; k++) s += acc[k];
    return (double)s[0] + s[1] + s[2] + s[3];
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define X86_PROBES 1

__attribute__((target("avx2,fma")))
static double madd_f32_avx2(long iters)
{
    __m256 acc[CHAINS], a = _mm256_set1_ps(FMA_A), b = _mm256_set1_ps(FMA_B);
    for (int k = 0; k < CHAINS; k++) acc[k] = _mm256_set1_ps((float)k);
    for (long i = 0; i < iters; i++)
        for (int k = 0; k < CHAINS; k++) acc[k] = _mm256_fmadd_ps(acc[k], a, b);
    __m256 s = acc[0];
    for (int k = 1; k < CHAINS; k++) s = _mm256_add_ps(s, acc[k]);
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0] > 0 ? 2.0 * 8 * CHAINS * (double)iters : -1;
}

__attribute__((target("avx512f")))
static double madd_f32_avx512(long iters)
{
    __m512 acc[CHAINS], a = _mm512_set1_ps(FMA_A), b = _mm512_set1_ps(FMA_B);
    for (int k = 0; k < CHAINS; k++) acc[k] = _mm512_set1_ps((float)k);
    for (long i = 0; i < iters; i++)
        for (int k = 0; k < CHAINS; k++) acc[k] = _mm512_fmadd_ps(acc[k], a, b);
    __m512 s = acc[0];
    for (int k = 1; k < CHAINS; k++) s = _mm512_add_ps(s, acc[k]);
    return _mm512_reduce_add_ps(s) > 0 ? 2.0 * 16 * CHAINS * (double)iters : -1;
}

__attribute__((target("avx2")))
static double madd_i8_avx2(long iters)
{
    __m256i acc[I8_CHAINS], b = _mm256_set1_epi8(3), ones = _mm256_set1_epi16(1);
    for (int k = 0; k < I8_CHAINS; k++) acc[k] = _mm256_set1_epi32(k + 1);
    for (long i = 0; i < iters; i++)
        for (int k = 0; k < I8_CHAINS; k++)
            acc[k] = _mm256_add_epi32(acc[k], _mm256_madd_epi16(
                _mm256_maddubs_epi16(acc[k], b), ones));
    __m256i s = acc[0];
    for (int k = 1; k < I8_CHAINS; k++) s = _mm256_xor_si256(s, acc[k]);
    volatile int sink = _mm256_extract_epi32(s, 0);
    (void)sink;
    return 2.0 * 32 * I8_CHAINS * (double)iters;
}

__attribute__((target("avx2,avxvnni")))
static double madd_i8_avxvnni(long iters)
{
    __m256i acc[I8_CHAINS], b = _mm256_set1_epi8(3);
    for (int k = 0; k < I8_CHAINS; k++) acc[k] = _mm256_set1_epi32(k + 1);
    for (long i = 0; i < iters; i++)
        for (int k = 0; k < I8_CHAINS; k++)
            acc[k] = _mm256_dpbusd_avx_epi32(acc[k], acc[k], b);
    __m256i s = acc[0];
    for (int k = 1; k < I8_CHAINS; k++) s = _mm256_xor_si256(s, acc[k]);
    volatile int sink = _mm256_extract_epi32(s, 0);
    (void)sink;
    return 2.0 * 32 * I8_CHAINS * (double)iters;
}

__attribute__((target("avx512f,avx512vnni")))
static double madd_i8_avx512vnni(long iters)
{
    __m512i acc[I8_CHAINS], b = _mm512_set1_epi8(3);
    for (int k = 0; k < I8_CHAINS; k++) acc[k] = _mm512_set1_epi32(k + 1);
    for (long i = 0; i < iters; i++)
        for (int k = 0; k < I8_CHAINS; k++)
            acc[k] = _mm512_dpbusd_epi32(acc[k], acc[k], b);
    __m512i s = acc[0];
    for (int k = 1; k < I8_CHAINS; k++) s = _mm512_xor_si512(s, acc[k]);
    volatile int sink = _mm512_reduce_add_epi32(s);
    (void)sink;
    return 2.0 * 64 * I8_CHAINS * (double)iters;
}

__attribute__((target("avx512f,avx512bw,avx512bf16")))
static double madd_bf16_avx512bf16(long iters)
{
    __m512 acc[CHAINS];
    const __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(BF16_OPERAND),
                                           _mm512_set1_ps(BF16_OPERAND));
    for (int k = 0; k < CHAINS; k++) acc[k] = _mm512_set1_ps((float)k);
    for (long i = 0; i < iters; i++)
        for (int k = 0; k < CHAINS; k++) acc[k] = _mm512_dpbf16_ps(acc[k], a, a);
    __m512 s = acc[0];
    for (int k = 1; k < CHAINS; k++) s = _mm512_add_ps(s, acc[k]);
    /* 16 lanes x 2 bf16 products a lane, 2 operations each */
    return _mm512_reduce_add_ps(s) > 0 ? 2.0 * 32 * CHAINS * (double)iters : -1;
}

__attribute__((target("avx2")))
static double read_avx2(const float *buf, size_t n, long passes)
{
    __m256 acc[8];
    for (int k = 0; k < 8; k++) acc[k] = _mm256_setzero_ps();
    for (long p = 0; p < passes; p++)
        for (size_t i = 0; i < n; i += 64)
            for (int k = 0; k < 8; k++)
                acc[k] = _mm256_add_ps(acc[k], _mm256_load_ps(buf + i + 8 * k));
    __m256 s = acc[0];
    for (int k = 1; k < 8; k++) s = _mm256_add_ps(s, acc[k]);
    float out[8];
    _mm256_storeu_ps(out, s);
    double sum = 0;
    for (int k = 0; k < 8; k++) sum += out[k];
    return sum;
}

__attribute__((target("avx512f")))
static double read_avx512(const float *buf, size_t n, long passes)
{
    __m512 acc[8];
    for (int k = 0; k < 8; k++) acc[k] = _mm512_setzero_ps();
    for (long p = 0; p < passes; p++)
        for (size_t i = 0; i < n; i += 128)
            for (int k = 0; k < 8; k++)
                acc[k] = _mm512_add_ps(acc[k], _mm512_load_ps(buf + i + 16 * k));
    __m512 s = acc[0];
    for (int k = 1; k < 8; k++) s = _mm512_add_ps(s, acc[k]);
    return _mm512_reduce_add_ps(s);
}
#endif

int fc_probe_supported(int path)
{
    switch (path) {
    case FC_PROBE_F32_BASELINE:
    case FC_PROBE_READ_BASELINE:
        return 1;
#ifdef X86_PROBES
    case FC_PROBE_F32_AVX2:
    case FC_PROBE_F32_AVX512:
    case FC_PROBE_I8_AVX2:
    case FC_PROBE_I8_AVXVNNI:
    case FC_PROBE_I8_AVX512VNNI:
    case FC_PROBE_READ_AVX2:
    case FC_PROBE_READ_AVX512:
    case FC_PROBE_BF16_AVX512BF16:
        return fc_cpu_has_features(path_features[path]);   /* detected by fc_init (import) */
#endif
    default:
        return 0;
    }
}

double fc_probe_madd(int path, long iters)
{
    if (iters < 1 || !fc_probe_supported(path)) return -1;
    switch (path) {
    case FC_PROBE_F32_BASELINE: return madd_f32_baseline(iters);
#ifdef X86_PROBES
    case FC_PROBE_F32_AVX2: return madd_f32_avx2(iters);
    case FC_PROBE_F32_AVX512: return madd_f32_avx512(iters);
    case FC_PROBE_I8_AVX2: return madd_i8_avx2(iters);
    case FC_PROBE_I8_AVXVNNI: return madd_i8_avxvnni(iters);
    case FC_PROBE_I8_AVX512VNNI: return madd_i8_avx512vnni(iters);
    case FC_PROBE_BF16_AVX512BF16: return madd_bf16_avx512bf16(iters);
#endif
    default: return -1;
    }
}

double fc_probe_read(int path, const float *buf, size_t n, long passes)
{
    if (passes < 1 || n == 0 || n % 128 != 0 || ((uintptr_t)buf & 63) != 0
            || !fc_probe_supported(path))
        return NAN;
    switch (path) {
    case FC_PROBE_READ_BASELINE: return read_baseline(buf, n, passes);
#ifdef X86_PROBES
    case FC_PROBE_READ_AVX2: return read_avx2(buf, n, passes);
    case FC_PROBE_READ_AVX512: return read_avx512(buf, n, passes);
#endif
    default: return NAN;
    }
}
