/* probes.h — machine-limit probes of the benchmarks (fastcells.benchmarks): loops that run one
 * instruction mix at its peak on one core, so a benchmark row can be set against the limits of
 * the machine it ran on. Not used by the cells. Each returns the work it did (operations, or the
 * sum of what it read, so nothing can be optimised away); the caller times the call.
 *
 * path: which instructions (fc_probe_path); a path the CPU or the build lacks returns -1 and
 * does nothing (fc_probe_supported says which paths run here: the CPU features of the kernel
 * registry's detection, dispatch.c). Every count is > 0.
 */
#ifndef FASTCELLS_PROBES_H
#define FASTCELLS_PROBES_H
#include <stddef.h>

typedef enum fc_probe_path {
    FC_PROBE_F32_BASELINE = 0,  /* fp32 4-lane multiply + add (GCC vectors, baseline flags: SSE2 mulps+addps on x86-64) */
    FC_PROBE_F32_AVX2 = 1,      /* fp32 vfmadd231ps ymm, 8 lanes */
    FC_PROBE_F32_AVX512 = 2,    /* fp32 vfmadd231ps zmm, 16 lanes */
    FC_PROBE_I8_AVX2 = 3,       /* u8 x s8: vpmaddubsw + vpmaddwd + vpaddd ymm */
    FC_PROBE_I8_AVXVNNI = 4,    /* u8 x s8: vpdpbusd ymm (AVX-VNNI) */
    FC_PROBE_I8_AVX512VNNI = 5, /* u8 x s8: vpdpbusd zmm (AVX512-VNNI) */
    FC_PROBE_READ_BASELINE = 6, /* streaming read: 16-byte loads (GCC vectors, baseline flags) */
    FC_PROBE_READ_AVX2 = 7,     /* 32-byte loads */
    FC_PROBE_READ_AVX512 = 8,   /* 64-byte loads */
    FC_PROBE_BF16_AVX512BF16 = 9, /* bf16 pairs -> fp32: vdpbf16ps zmm (AVX512_BF16) */
    FC_PROBE_I8_AMX = 10,       /* s8 x s8: tdpbssd on 16 x 64 tiles (AMX-INT8) */
    FC_PROBE_PATH_COUNT
} fc_probe_path;

/* 1 when `path` is compiled in and this CPU (and OS) runs it, else 0. */
int fc_probe_supported(int path);
/* Multiply-add peak: `iters` rounds of 12 (int8: 10) independent multiply-add chains, one
 * vector each. Returns the arithmetic operations done (fp32: 2 per lane per multiply-add; int8:
 * 2 per u8 x s8 product; bf16: 2 per bf16 product, 2 products per fp32 lane), or -1 for an
 * unusable path. */
double fc_probe_madd(int path, long iters);
/* Streaming read: reads buf[0 .. n) `passes` times with the path's vector loads (n a multiple
 * of 128 floats, buf 64-byte aligned). Returns the sum of all values read (a sink), or NaN for
 * an unusable path or a bad n. */
double fc_probe_read(int path, const float *buf, size_t n, long passes);
#endif
