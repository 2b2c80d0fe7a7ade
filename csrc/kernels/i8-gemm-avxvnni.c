/* i8-gemm-avxvnni.c — AVX-VNNI int8 GEMM: vpabsb, vpsignb, vpdpbusd (VEX). The tile of
 * i8-gemm-avx2.c with vpdpbusd as its product step (the 4 products added in int32). */
#define I8_DOT4(sum, u, s) _mm256_dpbusd_avx_epi32(sum, u, s)
#define I8_SYMBOL avxvnni
#include "i8-gemm-avx2.c"
