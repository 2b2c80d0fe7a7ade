/* i8-gemm-avx512vnni.c — AVX512-VNNI int8 GEMM: vpabsb, vpmovb2m + masked vpsubb, vpdpbusd.
 * The tile of i8-gemm-avx512bw.c with vpdpbusd as its product step. */
#define I8_DOT4(sum, u, s) _mm512_dpbusd_epi32(sum, u, s)
#define I8_SYMBOL avx512vnni
#include "i8-gemm-avx512bw.c"
