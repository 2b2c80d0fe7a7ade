/* probes.c — the machine-limit probes of probes.h (the contract is there).
 *
 * Built with the baseline flags: each wide path is one function compiled for its instruction
 * set by a target attribute, and is called only where the CPU has the path's features
 * (path_features: words of kernels/features.def, as kernels.def's requirements, checked by the
 * registry's detection, fc_cpu_has_features). Multiply-add: 12 independent accumulator chains
 * (more than latency x throughput of an FMA, 4 x 2, on current x86 cores), so the loop runs at
 * the throughput of the units. int8: each chain reads its own accumulator as its u8 operand, so
 * no product is loop-invariant (the compiler cannot hoist it) and the values are don't-care.
 * AMX: tdpbssd (16 x 64 by 64 x 16 int8 products) into 6 independent accumulator tiles from
 * one constant pair of operand tiles, so the loop waits on the unit's throughput, not on a
 * tile's latency; the int32 sums wrap, which is don't-care too.
 * bf16: vdpbf16ps accumulates into fp32 chains from one constant pair of bf16 vectors; each
 * chain grows by 2e-6 a round, so it stays finite and normal for any iters.
 * Streaming read: 8 independent sums of vector loads, 64-byte steps at least.
 */
#include <math.h>
#include <stdint.h>

#include "internal.h"
#include "kernels/i8-gemm.h"
#include "probes.h"

#define CHAINS 12
#define I8_CHAINS 10            /* 3 live registers a chain on AVX2: 10 chains fit 16 ymm */
#define FMA_A 0.9999f           /* acc = acc * A + B converges to B / (1 - A) = 1: no overflow, */
#define FMA_B 1e-4f             /* no denormal, whatever iters */
#define BF16_OPERAND 1e-3f      /* bf16 products 1e-6: a chain adds 2e-6 a round */

/* What the CPU must have for each path (fc_probe_path order): features.def words. (Off x86,
 * where only the baseline probes build, no path reads it.) */
static const char *const path_features[FC_PROBE_PATH_COUNT] __attribute__((unused)) = {
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
    [FC_PROBE_I8_AMX] = "amx_tile amx_int8 os_amx",
};

typedef float v4f __attribute__((vector_size(16)));

/* The two probe bodies; each instantiation below puts its target attribute in front.
 *
 * MADD_PROBE: `chains` independent chains of VEC, acc[k] = INIT then `iters` times
 * acc[k] = STEP (INIT an expression of k, STEP of acc[k]), folded into s by FOLD(s, acc[k]);
 * returns FINISH, an expression of s and work (the operations done: 2 per lane per
 * multiply-add, u8 x s8 product or bf16 product) that reads s, so no chain is dead code. */
#define MADD_PROBE(name, VEC, lanes, chains, INIT, STEP, FOLD, FINISH)                 \
    static double name(long iters)                                                  \
    {                                                                               \
        VEC acc[chains];                                                            \
        for (int k = 0; k < (chains); k++) acc[k] = (INIT);                         \
        for (long i = 0; i < iters; i++)                                            \
            for (int k = 0; k < (chains); k++) acc[k] = (STEP);                     \
        VEC s = acc[0];                                                             \
        for (int k = 1; k < (chains); k++) s = FOLD(s, acc[k]);                     \
        const double work = 2.0 * (lanes) * (chains) * (double)iters;               \
        return (FINISH);                                                            \
    }

/* READ_PROBE: 8 independent sums of VEC loads of `lanes` floats (LOAD(p)), stepping 8 * lanes
 * floats, ZERO the start, ADD(a, b) the sum; returns SUM(s) of the 8 sums folded with ADD. */
#define READ_PROBE(name, VEC, lanes, ZERO, LOAD, ADD, SUM)                               \
    static double name(const float *buf, size_t n, long passes)                     \
    {                                                                               \
        VEC acc[8];                                                                 \
        for (int k = 0; k < 8; k++) acc[k] = (ZERO);                                \
        for (long p = 0; p < passes; p++)                                           \
            for (size_t i = 0; i < n; i += 8 * (lanes))                             \
                for (int k = 0; k < 8; k++) acc[k] = ADD(acc[k], LOAD(buf + i + (lanes) * k)); \
        VEC s = acc[0];                                                             \
        for (int k = 1; k < 8; k++) s = ADD(s, acc[k]);                             \
        return SUM(s);                                                              \
    }

#define V4F_ADD(a, b) ((a) + (b))
#define V4F_LOAD(p) (*(const v4f *)(p))
#define V4F_SUM(s) ((double)(s)[0] + (s)[1] + (s)[2] + (s)[3])

MADD_PROBE(madd_f32_baseline, v4f, 4, CHAINS, ((v4f){0, 0, 0, (float)k}),
           acc[k] * FMA_A + FMA_B, V4F_ADD,
           (s[0] + s[1] + s[2] + s[3] > 0) ? work : -1)

READ_PROBE(read_baseline, v4f, 4, ((v4f){0}), V4F_LOAD, V4F_ADD, V4F_SUM)

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define X86_PROBES 1

/* the work of an int8 probe, after its fold went to a volatile sink (so the chains are kept) */
static double sunk(int fold, double work)
{
    volatile int sink = fold;
    (void)sink;
    return work;
}

/* the float sum of the 8 lanes of an AVX2 read probe's sums, in lane order, in double */
__attribute__((target("avx2")))
static double sum_avx2(__m256 s)
{
    float out[8];
    _mm256_storeu_ps(out, s);
    double sum = 0;
    for (int k = 0; k < 8; k++) sum += out[k];
    return sum;
}

__attribute__((target("avx2,fma")))
MADD_PROBE(madd_f32_avx2, __m256, 8, CHAINS, _mm256_set1_ps((float)k),
           _mm256_fmadd_ps(acc[k], _mm256_set1_ps(FMA_A), _mm256_set1_ps(FMA_B)),
           _mm256_add_ps, _mm256_cvtss_f32(s) > 0 ? work : -1)

__attribute__((target("avx512f")))
MADD_PROBE(madd_f32_avx512, __m512, 16, CHAINS, _mm512_set1_ps((float)k),
           _mm512_fmadd_ps(acc[k], _mm512_set1_ps(FMA_A), _mm512_set1_ps(FMA_B)),
           _mm512_add_ps, _mm512_reduce_add_ps(s) > 0 ? work : -1)

#define BF16_PAIR _mm512_cvtne2ps_pbh(_mm512_set1_ps(BF16_OPERAND), _mm512_set1_ps(BF16_OPERAND))

/* int8: each chain reads its own accumulator as its u8 operand (the file comment) */
__attribute__((target("avx2")))
MADD_PROBE(madd_i8_avx2, __m256i, 32, I8_CHAINS, _mm256_set1_epi32(k + 1),
           _mm256_add_epi32(acc[k], _mm256_madd_epi16(
               _mm256_maddubs_epi16(acc[k], _mm256_set1_epi8(3)), _mm256_set1_epi16(1))),
           _mm256_xor_si256, sunk(_mm256_extract_epi32(s, 0), work))

__attribute__((target("avx2,avxvnni")))
MADD_PROBE(madd_i8_avxvnni, __m256i, 32, I8_CHAINS, _mm256_set1_epi32(k + 1),
           _mm256_dpbusd_avx_epi32(acc[k], acc[k], _mm256_set1_epi8(3)),
           _mm256_xor_si256, sunk(_mm256_extract_epi32(s, 0), work))

__attribute__((target("avx512f,avx512vnni")))
MADD_PROBE(madd_i8_avx512vnni, __m512i, 64, I8_CHAINS, _mm512_set1_epi32(k + 1),
           _mm512_dpbusd_epi32(acc[k], acc[k], _mm512_set1_epi8(3)),
           _mm512_xor_si512, sunk(_mm512_reduce_add_epi32(s), work))

/* bf16: 16 fp32 lanes, 2 bf16 products a lane (the lanes argument counts products) */
__attribute__((target("avx512f,avx512bw,avx512bf16")))
MADD_PROBE(madd_bf16_avx512bf16, __m512, 32, CHAINS, _mm512_set1_ps((float)k),
           _mm512_dpbf16_ps(acc[k], BF16_PAIR, BF16_PAIR),
           _mm512_add_ps, _mm512_reduce_add_ps(s) > 0 ? work : -1)

#if defined(__x86_64__)
#define AMX_PROBE 1
enum { AMX_CHAINS = 6, AMX_ROWS = 16, AMX_ROW_BYTES = 64 };

/* AMX-INT8: C tiles 0-5 (16 x 16 int32), A tile 6 and B tile 7 (16 x 64 int8, all ones);
 * 2 operations per product, 16 x 16 x 64 products a tdpbssd */
__attribute__((target("amx-tile,amx-int8")))
static double madd_i8_amx(long iters)
{
    fc_amx_tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < AMX_CHAINS + 2; t++) {
        cfg.colsb[t] = AMX_ROW_BYTES;
        cfg.rows[t] = AMX_ROWS;
    }
    int8_t operand[AMX_ROWS * AMX_ROW_BYTES] __attribute__((aligned(64)));
    memset(operand, 1, sizeof operand);
    _tile_loadconfig(&cfg);
    _tile_loadd(6, operand, AMX_ROW_BYTES);
    _tile_loadd(7, operand, AMX_ROW_BYTES);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_zero(4);
    _tile_zero(5);
    for (long i = 0; i < iters; i++) {
        _tile_dpbssd(0, 6, 7);
        _tile_dpbssd(1, 6, 7);
        _tile_dpbssd(2, 6, 7);
        _tile_dpbssd(3, 6, 7);
        _tile_dpbssd(4, 6, 7);
        _tile_dpbssd(5, 6, 7);
    }
    int32_t sums[AMX_ROWS * AMX_ROWS] __attribute__((aligned(64)));
    int fold = 0;
#define AMX_FOLD(t) do {                                                            \
        _tile_stored(t, sums, AMX_ROWS * sizeof(int32_t));                          \
        fold ^= sums[0];                                                            \
    } while (0)
    AMX_FOLD(0);
    AMX_FOLD(1);
    AMX_FOLD(2);
    AMX_FOLD(3);
    AMX_FOLD(4);
    AMX_FOLD(5);
#undef AMX_FOLD
    _tile_release();
    return sunk(fold, 2.0 * AMX_ROWS * AMX_ROWS * AMX_ROW_BYTES * AMX_CHAINS * (double)iters);
}
#endif

__attribute__((target("avx2")))
READ_PROBE(read_avx2, __m256, 8, _mm256_setzero_ps(), _mm256_load_ps, _mm256_add_ps, sum_avx2)

__attribute__((target("avx512f")))
READ_PROBE(read_avx512, __m512, 16, _mm512_setzero_ps(), _mm512_load_ps, _mm512_add_ps,
           _mm512_reduce_add_ps)
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
#ifdef AMX_PROBE
    case FC_PROBE_I8_AMX:
#endif
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
#ifdef AMX_PROBE
    case FC_PROBE_I8_AMX: return madd_i8_amx(iters);
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
