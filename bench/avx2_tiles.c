/* avx2_tiles.c — the AVX2 register-tile study behind the f32/f64 AVX2 lines of
 * csrc/kernels/kernels.def: one thread computes Z = A @ W over packed panels of 4 vectors
 * (the 4 LSTM gates of 8 f32 / 4 f64 units), rows M, depth K, as one thread's share of a
 * batch-M step. Tiles MR x 4 vectors (one pass) and MR x 2 vectors (two passes over the same
 * rows, as a 2-vector tile would have to run a 4-gate panel), MR x 1 vector (four passes); each
 * with k blocking (KC rows of k per range over every tile of the panel) or without.
 * Build and run (never -march=native; the flags are the AVX2 kernel's):
 *     gcc -O3 -mavx2 -mfma bench/avx2_tiles.c -o /tmp/avx2_tiles && /tmp/avx2_tiles [M K panels]
 *     gcc -O3 -mavx2 -mfma -DTILES_F64 bench/avx2_tiles.c -o /tmp/avx2_tiles64 && /tmp/avx2_tiles64
 * Prints GFLOP/s (best of 15 runs of each variant, variants alternated within each run). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#ifdef TILES_F64
typedef double T;
#define VW 4
#define TNAME "f64"
#else
typedef float T;
#define VW 8
#define TNAME "f32"
#endif
#define PW (4 * VW)
typedef T vec __attribute__((vector_size(32)));
typedef T vec_u __attribute__((vector_size(32), aligned(sizeof(T)), may_alias));
#define INLINE static inline __attribute__((always_inline))
INLINE vec ld(const T *p) { return *(const vec_u *)p; }
INLINE void st(T *p, vec v) { *(vec_u *)p = v; }
INLINE vec bc(T s) { return s - (vec){0}; }

/* rows [0, mr) x vectors [v0, v0 + nv) of one panel w [K][PW], k in [kb, ke); the sums in z
 * (row stride PW), started from 0 when first */
INLINE void tile(int mr, int v0, int nv, const T *w, const T *a, size_t lda, size_t kb,
                 size_t ke, T *z, int first)
{
    vec acc[6][4];
    for (int m = 0; m < mr; m++)
        for (int v = 0; v < nv; v++) acc[m][v] = first ? bc(0) : ld(z + m * PW + (v0 + v) * VW);
    for (size_t k = kb; k < ke; k++) {
        vec wv[4];
        for (int v = 0; v < nv; v++) wv[v] = ld(w + k * PW + (v0 + v) * VW);
        for (int m = 0; m < mr; m++) {
            const vec am = bc(a[m * lda + k]);
            for (int v = 0; v < nv; v++) acc[m][v] += am * wv[v];
        }
    }
    for (int m = 0; m < mr; m++)
        for (int v = 0; v < nv; v++) st(z + m * PW + (v0 + v) * VW, acc[m][v]);
}

typedef void product_fn(const T *W, const T *A, T *Z, size_t M, size_t K, size_t panels,
                        size_t kc);
#define PRODUCT(NAME, MR, NV)                                                               \
    static void NAME(const T *W, const T *A, T *Z, size_t M, size_t K, size_t panels,       \
                     size_t kc)                                                             \
    {                                                                                       \
        for (size_t p = 0; p < panels; p++)                                                 \
            for (size_t kb = 0; kb < K; kb += kc) {                                         \
                const size_t ke = kb + kc < K ? kb + kc : K;                                \
                for (size_t r = 0; r + MR <= M; r += MR)                                    \
                    for (int v0 = 0; v0 < 4; v0 += NV)                                      \
                        tile(MR, v0, NV, W + p * K * PW, A + r * K, K, kb, ke,              \
                             Z + (p * M + r) * PW, kb == 0);                                \
            }                                                                               \
    }
PRODUCT(t3x4, 3, 4)
PRODUCT(t2x4, 2, 4)
PRODUCT(t6x2, 6, 2)
PRODUCT(t5x2, 5, 2)
PRODUCT(t4x2, 4, 2)
PRODUCT(t6x1, 6, 1)

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

int main(int argc, char **argv)
{
    const size_t M = argc > 1 ? (size_t)atoi(argv[1]) : 60, K = argc > 2 ? (size_t)atoi(argv[2]) : 512;
    const size_t panels = argc > 3 ? (size_t)atoi(argv[3]) : 32;
    T *W = aligned_alloc(64, panels * K * PW * sizeof(T));
    T *A = aligned_alloc(64, (M * K * sizeof(T) + 63) / 64 * 64);
    T *Z = aligned_alloc(64, panels * M * PW * sizeof(T));
    for (size_t i = 0; i < panels * K * PW; i++) W[i] = (T)(i % 7) * (T)0.01;
    for (size_t i = 0; i < M * K; i++) A[i] = (T)(i % 5) * (T)0.01;
    const struct { const char *name; product_fn *fn; size_t mr; } tiles[] = {
        {"3x4v", t3x4, 3}, {"2x4v", t2x4, 2}, {"6x2v", t6x2, 6}, {"5x2v", t5x2, 5},
        {"4x2v", t4x2, 4}, {"6x1v", t6x1, 6}};
    enum { NT = sizeof tiles / sizeof tiles[0], NKC = 4 };
    const size_t kcs[NKC] = {K, 256, 128, 64};
    double best[NT][NKC];
    for (int i = 0; i < NT; i++)
        for (int j = 0; j < NKC; j++) best[i][j] = 1e30;
    for (int run = 0; run < 15; run++)
        for (int i = 0; i < NT; i++)
            for (int j = 0; j < NKC; j++) {
                const size_t m = M / tiles[i].mr * tiles[i].mr;   /* whole tiles only */
                const double t0 = now();
                tiles[i].fn(W, A, Z, m, K, panels, kcs[j]);
                const double per_flop = (now() - t0) / (2.0 * m * K * PW * panels);
                if (per_flop < best[i][j]) best[i][j] = per_flop;
            }
    printf("%s, M=%zu K=%zu, %zu panels of %d columns: GFLOP/s, one thread, best of 15\n",
           TNAME, M, K, panels, PW);
    printf("tile (rows x vectors)   kc=K  kc=256  kc=128   kc=64\n");
    for (int i = 0; i < NT; i++) {
        printf("%-21s", tiles[i].name);
        for (int j = 0; j < NKC; j++) printf(" %7.1f", 1e-9 / best[i][j]);
        printf("\n");
    }
    return Z[1] == (T)12345;        /* keeps the products */
}
