/* internal.h — what the portable driver (cells.c, pack.c, dispatch.c) and the per-ISA kernel
 * files share: the block-kernel arguments, the kernel table, and the packed cell.
 *
 * Packed layout (pack.c). A product with G gates over U units uses panels of PW = 4*VW columns
 * (four vectors of the ISA; 3*VW for the 3-gate reset-after GRU), each panel holding
 * NRU = PW/G units of every gate side by side:
 *     panel j: row 0      bias             [PW]   (zero for the projection)
 *              rows 1..K  weight row k     [PW]   K = k0 + k1 (x rows, then h rows)
 *     column g*NRU + u of a row = gate g of unit j*NRU + u (zero past U).
 * So one register tile of MR batch rows x 4 vectors holds every gate of NRU units, and the
 * cell update runs on it before anything is stored. Panels are contiguous, 64-byte aligned.
 */
#ifndef FASTCELLS_INTERNAL_H
#define FASTCELLS_INTERNAL_H

#include "fastcells.h"

/* Arguments of one block kernel: rows [0, rows) of the batch against one panel. Pointers to
 * batch matrices point at row 0; column offsets are added by the kernel from unit0. */
typedef struct fc_block_args {
    size_t rows;                /* batch rows */
    const void *panel;          /* this block's panel rows: the bias row, then k0+k1 weight rows;
                                   with `init`, the k0+k1 weight rows only (no bias row) */
    const void *init;           /* [rows, PW] (ld_init): accumulator start values, or NULL */
    size_t ld_init;
    const void *a0;             /* [rows,k0] first operand segment (x, or m for the projection) */
    size_t lda0, k0;
    const void *a1;             /* [rows,k1] second operand segment (h, or r*h); NULL if k1 == 0 */
    size_t lda1, k1;
    size_t unit0;               /* first unit (column within a gate) this block covers */
    size_t nu;                  /* valid units in this block, 1..NRU */
    /* epilogue operands, [rows, *] with their leading dimensions */
    const void *c_in; size_t ldc_in;    /* lstm c */
    void *c_out; size_t ldc_out;
    const void *h_in; size_t ldh_in;    /* previous h (gru epilogues) */
    void *h_out; size_t ldh_out;        /* where the block's output goes */
    void *s0; void *s1; size_t lds;     /* gru scratch: r*h and u, rows padded to whole panels */
    const void *peep_i, *peep_f, *peep_o;   /* lstm peepholes, padded to whole blocks, or NULL */
    fc_act act, gate_act, out_act;      /* candidate, gates, lstm output (fastcells.h) */
    int has_preact_clip;
    double preact_clip;
    int input_forget;
    double forget_bias;
    int has_clip;               /* lstm: cell_clip; linear: proj_clip */
    double clip;
} fc_block_args;

typedef void (*fc_block_kernel)(const fc_block_args *args);

/* One instruction set's kernels for one dtype. Adding an ISA = one more table (kernels.inc). */
typedef struct fc_kernels {
    const char *name;           /* e.g. "f32-cells-6x64-avx512" */
    fc_isa isa;
    fc_dtype dtype;
    size_t vw;                  /* lanes per vector; PW = 4*vw */
    size_t mr;                  /* batch rows per register tile */
    fc_block_kernel rnn;        /* G=1: h_out = act(z) */
    fc_block_kernel lstm;       /* G=4: c_out, h_out from i,j,f,o */
    fc_block_kernel gru_gates;  /* G=2: s0 = r*h_in, s1 = u */
    fc_block_kernel gru_cand;   /* G=1: h_out = u*h_in + (1-u)*act(z) */
    fc_block_kernel gru_ra;     /* 3 gates r, u, n on 3-vector panels of Wh; init = x projection:
                                   h_out = u*h_in + (1-u)*act(xn + r*(h@Whn + bhn)) */
    fc_block_kernel linear3;    /* 3-vector panels, whole: the gru_ra input projection */
    fc_block_kernel linear;     /* G=1: h_out = z, clipped if has_clip (projection, GEMM) */
} fc_kernels;

/* The list of compiled kernel tables (X-macro): ISA, dtype, symbol. */
#define FC_FOR_EACH_KERNELS(X) \
    X(FC_ISA_SCALAR, FC_F32, fc_kernels_f32__scalar) \
    X(FC_ISA_SCALAR, FC_F64, fc_kernels_f64__scalar) \
    FC_IF_X86(X(FC_ISA_AVX2, FC_F32, fc_kernels_f32__avx2)) \
    FC_IF_X86(X(FC_ISA_AVX2, FC_F64, fc_kernels_f64__avx2)) \
    FC_IF_X86(X(FC_ISA_AVX512, FC_F32, fc_kernels_f32__avx512)) \
    FC_IF_X86(X(FC_ISA_AVX512, FC_F64, fc_kernels_f64__avx512))

#if defined(__x86_64__) || defined(_M_X64)
#define FC_X86 1
#define FC_IF_X86(x) x
#else
#define FC_X86 0
#define FC_IF_X86(x)
#endif

#define FC_DECLARE_KERNELS(isa, dtype, sym) extern const fc_kernels sym;
FC_FOR_EACH_KERNELS(FC_DECLARE_KERNELS)
#undef FC_DECLARE_KERNELS

const fc_kernels *fc_kernels_for(fc_isa isa, fc_dtype dtype);

/* One packed product: panels for G gates over `units` units and K = k0 + k1 rows. */
typedef struct fc_packed {
    void *panels;               /* [nblocks][1+K][pw], 64-byte aligned */
    size_t gates, units, k, pw, nru, nblocks;
} fc_packed;

struct fc_matrix {
    fc_dtype dtype;
    const fc_kernels *kernels;
    size_t elem;
    fc_packed packed;           /* B [K,N] (+ bias) as G=1 panels */
};

struct fc_cell {
    fc_cell_desc desc;
    const fc_kernels *kernels;
    size_t elem;                /* sizeof the dtype */
    fc_packed main;             /* rnn kernel / lstm kernel / gru gates / gru_ra x part */
    fc_packed cand;             /* gru candidate / gru_ra h part */
    fc_packed proj;             /* lstm projection (no bias) */
    void *peepholes;            /* [3][main.nblocks*main.nru] i, f, o, zero padded; or NULL */
};

/* blocks.c: a product over all panels of `packed` for args.rows batch rows, threaded. */
typedef struct fc_blocks_job {
    fc_block_kernel kernel;
    const fc_packed *packed;
    fc_block_args args;         /* the whole batch; per block the runner sets panel, unit0, nu
                                   and offsets init by the block's columns */
    size_t panel_row0;          /* first panel row to read: 0 = the bias row */
    int whole_panels;           /* unit0 = j*pw, nu = pw: store the raw panel columns */
    size_t es, tile_rows;
} fc_blocks_job;
void fc_run_blocks(const fc_blocks_job *job);
/* One call's products: work below this many FLOPs per thread runs on one thread. A parallel
 * region (waking a spinning worker, claiming, the final count) costs about 0.15 us here; 32K
 * FLOPs take 0.15 us at peak and about 0.3 us at one row, where the weights stream from L2. */
enum { FC_MIN_FLOPS_PER_THREAD = 32 * 1024 };

/* cells.c helpers shared with sequence.c */
void fc_epilogue_params(const fc_cell_desc *d, fc_block_args *args);  /* activations, clips */
int fc_overlaps(const void *a, size_t lda, size_t cols_a, const void *b, size_t ldb,
                size_t cols_b, size_t rows, size_t es);
void fc_copy_rows(void *dst, const void *src, size_t ld, size_t rows, size_t cols, size_t es);
static inline size_t fc_elem_size(fc_dtype dtype) { return dtype == FC_F64 ? 8 : 4; }

/* Member `part` of `parts` runs its share of the job: a contiguous range of panels (the same
 * panels for the same job every time, so they stay in that core's L2), or, when there are fewer
 * panels than parts, a range of whole register tiles of rows. The shares of parts 0..parts-1
 * cover the job once; each element is computed with the same arithmetic whoever computes it. */
void fc_run_blocks_share(const fc_blocks_job *job, size_t part, size_t parts);
/* The rows [*r0, *r1) and output columns [*u0, *u1) that share writes (empty: r0 == r1). */
void fc_blocks_share_region(const fc_blocks_job *job, size_t part, size_t parts, size_t *r0,
                            size_t *r1, size_t *u0, size_t *u1);
/* FLOPs of the job's products, padding included (2 per multiply-add, the bias row as one). */
size_t fc_blocks_flops(const fc_blocks_job *job);
/* How many threads the job repays, at least `min_flops_per_thread` each (1..num_threads). */
size_t fc_blocks_threads(const fc_blocks_job *job, size_t min_flops_per_thread);

/* threads.c: fn(ctx, begin, end) over [0, n) in `threads` static contiguous chunks */
typedef void (*fc_task_fn)(void *ctx, size_t begin, size_t end);
void fc_parallel_for(size_t n, int threads, fc_task_fn fn, void *ctx);

/* A team: up to `threads` threads (the caller is rank 0) running fn(ctx, team) together, each
 * with its rank, through the same sequence of fc_team_phase calls. Workers that have not
 * joined within max_wait_ns of the start are left out (a busy machine): the team is then
 * smaller, down to the caller alone. Nested or concurrent calls run alone.
 * max_wait_ns = FC_TEAM_FIXED: no joining (it costs a round trip between cores): the team has
 * `threads` ranks whoever turns up, and a member that has finished its part takes any part not
 * started at once. For a few phases (one cell step); a long run of phases would pull parts
 * across cores whenever a member lags a little. */
enum { FC_TEAM_FIXED = -1 };
typedef struct fc_team {
    int rank, size;
    unsigned phases;            /* phases this member has entered */
    struct team_shared *shared;
} fc_team;
typedef void (*fc_team_fn)(void *ctx, fc_team *team);
void fc_team_run(int threads, long max_wait_ns, fc_team_fn fn, void *ctx);
/* One phase: run(ctx, part, size) for part = 0..size-1, each part run once by some member (its
 * own part first, then parts nobody has started); returns when every part has finished, with
 * their writes visible. Every member must call it, in the same order, with equivalent
 * arguments: a part may run on any member's ctx. */
typedef void (*fc_part_fn)(void *ctx, size_t part, size_t parts);
void fc_team_phase(fc_team *team, fc_part_fn run, void *ctx);
/* Between fc_pool_hold and fc_pool_release (calls nest) idle workers spin, yielding, instead of
 * sleeping: for a run of many regions or teams with serial work between them. hold also wakes
 * sleeping workers, which here can take milliseconds (an idle virtual CPU). */
void fc_pool_hold(void);
void fc_pool_release(void);

/* pack.c */
fc_status fc_pack(fc_packed *out, const void *kernel, const void *bias, size_t k, size_t gates,
                  size_t units, size_t elem, size_t pw);
void fc_packed_free(fc_packed *p);
void *fc_aligned_alloc(size_t bytes);
void fc_aligned_free(void *p);

static inline size_t fc_min(size_t a, size_t b) { return a < b ? a : b; }
static inline size_t fc_max(size_t a, size_t b) { return a > b ? a : b; }
static inline size_t fc_round_up(size_t a, size_t m) { return (a + m - 1) / m * m; }

#endif /* FASTCELLS_INTERNAL_H */
