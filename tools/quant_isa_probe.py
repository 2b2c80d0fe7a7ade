"""Check fastcells.reference_quant's instruction models against this machine's instructions.

    python tools/quant_isa_probe.py

Compiles a few one-instruction loops (vpsignb, vpmaddubsw, vpmaddwd on AVX2; vpdpbusd on
AVX512-VNNI; vdpbf16ps on AVX512-BF16) with the system C compiler into a temporary shared
library, runs each on random and extreme operands, and asserts that the model in
reference_quant gives the same bits: the int8 models, and for vdpbf16ps both which order
one instruction sums in and whole chains against reference_quant.bf16_matmul. Instructions
the CPU lacks are reported as skipped. Exits non-zero on a mismatch.
"""
import ctypes
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from fastcells import reference_quant as rq  # noqa: E402

C_SOURCE = r"""
#include <immintrin.h>
#include <stdint.h>
/* n: bytes (int8 ops, multiple of 32 or 64) or elements as stated; all buffers contiguous. */
__attribute__((target("avx2")))
void probe_sign(const int8_t *w, const int8_t *a, int8_t *out, long n) {
    for (long i = 0; i < n; i += 32)
        _mm256_storeu_si256((__m256i *)(out + i), _mm256_sign_epi8(
            _mm256_loadu_si256((const __m256i *)(w + i)),
            _mm256_loadu_si256((const __m256i *)(a + i))));
}
__attribute__((target("avx2")))
void probe_maddubs(const uint8_t *u, const int8_t *s, int16_t *out, long n) {
    for (long i = 0; i < n; i += 32)
        _mm256_storeu_si256((__m256i *)(out + i / 2), _mm256_maddubs_epi16(
            _mm256_loadu_si256((const __m256i *)(u + i)),
            _mm256_loadu_si256((const __m256i *)(s + i))));
}
__attribute__((target("avx2")))
void probe_madd(const int16_t *a, const int16_t *b, int32_t *out, long n) {  /* n int16 */
    for (long i = 0; i < n; i += 16)
        _mm256_storeu_si256((__m256i *)(out + i / 2), _mm256_madd_epi16(
            _mm256_loadu_si256((const __m256i *)(a + i)),
            _mm256_loadu_si256((const __m256i *)(b + i))));
}
__attribute__((target("avx512f,avx512vnni")))
void probe_dpbusd(int32_t *acc, const uint8_t *u, const int8_t *s, long n) {
    for (long i = 0; i < n; i += 64) {
        __m512i c = _mm512_loadu_si512((const void *)(acc + i / 4));
        c = _mm512_dpbusd_epi32(c, _mm512_loadu_si512((const void *)(u + i)),
                                _mm512_loadu_si512((const void *)(s + i)));
        _mm512_storeu_si512((void *)(acc + i / 4), c);
    }
}
/* One dot product per lane: acc[l] += sum over pairs p of the bf16 pair packed[p][l] of a
   and b (dwords, [P][L], L a multiple of 16), one vdpbf16ps per pair, pairs in order. */
__attribute__((target("avx512f,avx512bf16")))
void probe_dpbf16_chain(float *acc, const uint32_t *a, const uint32_t *b, long P, long L) {
    for (long l = 0; l < L; l += 16) {
        __m512 c = _mm512_loadu_ps(acc + l);
        for (long p = 0; p < P; p++)
            c = _mm512_dpbf16_ps(c, (__m512bh)_mm512_loadu_si512((const void *)(a + p * L + l)),
                                 (__m512bh)_mm512_loadu_si512((const void *)(b + p * L + l)));
        _mm512_storeu_ps(acc + l, c);
    }
}
__attribute__((target("avx512f,avx512bf16")))
void probe_dpbf16(float *acc, const uint16_t *a, const uint16_t *b, long n) {  /* n bf16 */
    for (long i = 0; i < n; i += 32) {
        __m512 c = _mm512_loadu_ps(acc + i / 2);
        c = _mm512_dpbf16_ps(c, (__m512bh)_mm512_loadu_si512((const void *)(a + i)),
                             (__m512bh)_mm512_loadu_si512((const void *)(b + i)));
        _mm512_storeu_ps(acc + i / 2, c);
    }
}
"""


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def build(tmp):
    src, lib = os.path.join(tmp, "probe.c"), os.path.join(tmp, "probe.so")
    with open(src, "w") as f:
        f.write(C_SOURCE)
    cc = os.environ.get("CC", "cc")
    subprocess.run([cc, "-O1", "-ffp-contract=off", "-shared", "-fPIC", src, "-o", lib],
                   check=True)
    return ctypes.CDLL(lib)


def ptr(a):
    return a.ctypes.data_as(ctypes.c_void_p)


def int8_operands(rng, n):
    """Random bytes, and the extremes: every pairing of {-128, -127, 0, 127} and {0, 1, 255}."""
    rand_a = rng.integers(-128, 128, n).astype(np.int8)
    rand_w = rng.integers(-128, 128, n).astype(np.int8)
    ext = np.array([-128, -127, -1, 0, 1, 127], np.int8)
    ea, ew = np.meshgrid(ext, ext)
    reps = -(-n // ea.size)
    return [(rand_a, rand_w),
            (np.tile(ea.ravel(), reps)[:n], np.tile(ew.ravel(), reps)[:n])]


def main():
    flags = cpu_flags()
    rng = np.random.default_rng(0)
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        lib = build(tmp)
        n = 64 * 64
        if "avx2" in flags:
            for a, w in int8_operands(rng, n):
                out = np.empty(n, np.int8)
                lib.probe_sign(ptr(w), ptr(a), ptr(out), ctypes.c_long(n))
                failures += not np.array_equal(out, rq.vpsignb_model(w, a))
                u = a.view(np.uint8)
                out16 = np.empty(n // 2, np.int16)
                lib.probe_maddubs(ptr(u), ptr(w), ptr(out16), ctypes.c_long(n))
                failures += not np.array_equal(out16, rq.vpmaddubsw_model(u, w))
                a16, b16 = (rng.integers(-32768, 32768, n).astype(np.int16) for _ in range(2))
                a16[:4] = b16[:4] = -32768
                out32 = np.empty(n // 2, np.int32)
                lib.probe_madd(ptr(a16), ptr(b16), ptr(out32), ctypes.c_long(n))
                failures += not np.array_equal(out32, rq.vpmaddwd_model(a16, b16))
            print("avx2 vpsignb, vpmaddubsw, vpmaddwd: %s"
                  % ("match the models" if not failures else "MISMATCH"))
        else:
            print("avx2: skipped (CPU lacks it)")
        if {"avx512f", "avx512_vnni"} <= flags:
            before = failures
            for a, w in int8_operands(rng, n):
                u = a.view(np.uint8)
                acc = rng.integers(-2 ** 31, 2 ** 31, n // 4).astype(np.int32)
                acc[:2] = [2 ** 31 - 1, -2 ** 31]
                want = rq.vpdpbusd_model(acc, u, w)
                lib.probe_dpbusd(ptr(acc), ptr(u), ptr(w), ctypes.c_long(n))
                failures += not np.array_equal(acc, want)
            print("avx512_vnni vpdpbusd: %s"
                  % ("matches the model" if failures == before else "MISMATCH"))
        else:
            print("avx512_vnni: skipped (CPU lacks it)")
        if {"avx512f", "avx512_bf16"} <= flags:
            m = 32 * 4096
            a = rq.bf16_bits(rng.standard_normal(m))
            b = rq.bf16_bits(rng.standard_normal(m))
            acc0 = rng.standard_normal(m // 2).astype(np.float32)
            got = acc0.copy()
            lib.probe_dpbf16(ptr(got), ptr(a), ptr(b), ctypes.c_long(m))
            fa = (a.astype(np.uint32) << 16).view(np.float32)
            fb = (b.astype(np.uint32) << 16).view(np.float32)
            p_even, p_odd = fa[0::2] * fb[0::2], fa[1::2] * fb[1::2]   # exact in fp32
            orders = {"odd then even (SDM pseudocode)": (acc0 + p_odd) + p_even,
                      "even then odd (k order)": (acc0 + p_even) + p_odd,
                      "pair summed first": acc0 + (p_even + p_odd)}
            for name, want in orders.items():
                same = np.count_nonzero(want.view(np.uint32) == got.view(np.uint32))
                print("avx512_bf16 vdpbf16ps vs %-32s %6d / %d bit-identical"
                      % (name + ":", same, got.size))
            # the whole chain of reference_quant.bf16_matmul, lanes = (row, column) pairs
            for K in (64, 257):
                x = rng.standard_normal((8, K)).astype(np.float32)
                w = rq.round_bf16(rng.standard_normal((K, 4)))
                bias = rng.standard_normal(4).astype(np.float32)
                want = rq.bf16_matmul(x, w, bias)                             # [8,4]
                K2 = K + K % 2
                xa = np.zeros((8, K2), np.uint16)
                xa[:, :K] = rq.bf16_bits(x)
                wa = np.zeros((K2, 4), np.uint16)
                wa[:K] = rq.bf16_bits(w)
                lanes_a = np.repeat(xa, 4, axis=0)                            # [32,K2]: (b, n)
                lanes_b = np.tile(wa.T, (8, 1))
                pack_a = np.ascontiguousarray(lanes_a.reshape(32, K2 // 2, 2).transpose(1, 0, 2))
                pack_b = np.ascontiguousarray(lanes_b.reshape(32, K2 // 2, 2).transpose(1, 0, 2))
                got = np.tile(bias, 8).astype(np.float32)
                lib.probe_dpbf16_chain(ptr(got), ptr(pack_a), ptr(pack_b),
                                       ctypes.c_long(K2 // 2), ctypes.c_long(32))
                same = np.array_equal(got.view(np.uint32), want.reshape(-1).view(np.uint32))
                failures += not same
                print("avx512_bf16 vdpbf16ps chain, K=%d: %s reference_quant.bf16_matmul"
                      % (K, "bit-identical to" if same else "DIFFERS from"))
        else:
            print("avx512_bf16: skipped (CPU lacks it)")
    if failures:
        print("FAILED: %d mismatching checks" % failures)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
