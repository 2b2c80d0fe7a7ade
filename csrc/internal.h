/* internal.h — what the portable driver (cells.c, sequence.c, blocks.c, pack.c, dispatch.c)
 * and the kernel files share: the block-kernel arguments, the family and kernel tables, and the
 * packed cell.
 *
 * Glossary (one meaning each, everywhere):
 *   panel   PW columns of packed weights for NRU units of every gate: a bias row, then K rows
 *   tile    the register tile: MR batch rows x PW columns of accumulators held at once
 *   block   one block-kernel call: all its batch rows, tile by tile, against one panel
 *   job     one product over all panels of a packed matrix (fc_blocks_job), maybe threaded
 *   part    one of the `parts` pieces a job or a team phase is cut into, run by one thread
 *   share   what part p of a job computes: a range of panels, or of whole tiles of rows
 *   region  one fc_parallel_for: workers woken, its chunks run, all waited for
 *   chunk   a static contiguous range [begin, end) of a region; in sequence.c also the run of
 *           time steps whose input projection is computed in one product
 *   team    threads running a sequence of phases together (fc_team_run), the caller rank 0
 *   family  a weight/activation format (f32, f64, i8: int8 weights with fp32 scales, bf16):
 *           its packing, its operand format and its kernels, one per (ISA, tile)
 *           (kernels/kernels.def)
 *   operand what a product reads as its left side (x, h, r*h, m): in place in the caller's
 *           dtype, or for a reduced-precision family converted first into its own rows
 *   segment the rows of a product that meet one operand: the x rows, or the h rows
 *
 * Packed layout (pack.c). A product with G gates over U units uses panels of PW = 4*VW columns
 * (four vectors of the ISA; 3*VW for the 3-gate reset-after GRU), each panel holding
 * NRU = PW/G units of every gate side by side:
 *     panel j: row 0      bias             [PW]   (zero for the projection)
 *              rows 1..K  weight row k     [PW]   K = k0 + k1 (x rows, then h rows)
 *     column g*NRU + u of a row = gate g of unit j*NRU + u (zero past U).
 * So one register tile of MR batch rows x 4 vectors holds every gate of NRU units, and the
 * cell update runs on it before anything is stored. Panels are contiguous, 64-byte aligned.
 *
 * The i8 family (pack.c fc_pack_i8) packs one segment per fc_packed (so a cell has its x and
 * its h rows in two), with the same columns and G = ceil(K/4) groups of 4 k:
 *     panel j: col_scale  [PW] f32    the column's weight scale (1 past U)
 *              bias       [PW] f32    (-0.0 where there is none: p + -0.0 is p, bit for bit)
 *              shift_fix  [PW] int32  -128 * sum_k q[k][col], wrapped to int32 (VNNI's u8
 *                                     shift undone: kernels/i8-product.h)
 *              groups     [G][PW][4] int8   byte (g, col, b) = q[4g + b][col] (0 past K)
 * with G = ceil(K/4) rounded up to whole runs of FC_I8_TILE_GROUPS = 16 (kernels/i8-gemm.h),
 * and its kernels read a0 as int8 rows of 4G bytes (zero past k0), addressed in int32 dwords
 * (lda0 counts dwords, so row offsets in blocks.c stay element offsets), with a0_scale [rows]
 * the rows' scales. Its products have one segment (k1 = 0); panel_row0 is always 0.
 *
 * The bf16 family (bf16.c fc_pack_bf16) packs one segment per fc_packed too, in pairs of k:
 *     panel j: bias       [PW] f32    (+0.0 where there is none)
 *              pairs      [ceil(K/2)][PW] uint32: dword (i, col) = bf16 q[2i][col] in its low
 *                                     half, q[2i+1][col] in its high half (0 past K)
 * and its kernels read a0 as rows of bf16 pairs, K padded with +0.0 to even, addressed in
 * dwords (lda0 counts dwords) in the same order; a0_scale is unused.
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
    const float *a0_scale;      /* i8 family: [rows] the scale of each row of a0 */
    const int32_t *i8_products; /* i8 AMX kernels only (kernels/i8-product.h): the exact
                                   products of rows i8_products_row0.. against this panel,
                                   [16][64] int32, computed for the tiles that read them; NULL:
                                   each tile computes its own */
    size_t i8_products_row0;
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

/* The block-kernel ops: X(ID, name) -> FC_OP_<ID>, the kernel `name`_block of every family's
 * template (kernels/cells_template.h), indexed by op in fc_kernels.block. An op is a product
 * of one panel shape and the epilogue of one cell kind (or none):
 *   RNN        G=1: h_out = act(z)
 *   LSTM       G=4: c_out, h_out from i,j,f,o
 *   GRU_GATES  G=2: s0 = r*h_in, s1 = u
 *   GRU_CAND   G=1: h_out = u*h_in + (1-u)*act(z)
 *   GRU_RA     3 gates r, u, n on 3-vector panels of Wh; init = x projection:
 *              h_out = u*h_in + (1-u)*act(xn + r*(h@Whn + bhn))
 *   LINEAR3    3-vector panels, stored whole: the gru_ra input projection
 *   LINEAR     G=1: h_out = z, clipped if has_clip (projection, GEMM) */
#define FC_FOR_EACH_OP(X) \
    X(RNN, rnn) X(LSTM, lstm) X(GRU_GATES, gru_gates) X(GRU_CAND, gru_cand) \
    X(GRU_RA, gru_ra) X(LINEAR3, linear3) X(LINEAR, linear)
typedef enum fc_op {
#define FC_OP_ENUM(id, name) FC_OP_##id,
    FC_FOR_EACH_OP(FC_OP_ENUM)
#undef FC_OP_ENUM
    FC_OP_COUNT
} fc_op;

struct fc_packed;
/* Packs TF-layout weights kernel [k, gates*units] (+ bias [gates*units] or NULL: zero) into a
 * family's panels of pw columns; elem = the caller's element size (the family's act_bytes). */
typedef fc_status (*fc_pack_fn)(struct fc_packed *out, const void *kernel, const void *bias,
                                size_t k, size_t gates, size_t units, size_t elem, size_t pw);

/* Converts operand rows a [rows, k] (lda floats) into a family's operand rows q [rows, ldq]
 * (ldq elements of the format, a whole number of dwords, zero past k) and, for a format with
 * row scales, scales [rows] (ignored otherwise; `fixed`: the int8 fixed scale of an operand the
 * cell bounds by 1). */
typedef void (*fc_convert_fn)(const float *a, size_t lda, size_t rows, size_t k, int fixed,
                              void *q, size_t ldq, float *scales);

/* What a family's products read as their left operand (families.c, one per precision):
 * NATIVE reads the caller's dtype in place (group 0); a reduced-precision format is converted
 * by the drivers, before each product, into rows of `group` elements per dword (with the
 * kernels' convert, fc_kernels). */
typedef struct fc_operand_format {
    size_t group;               /* elements per dword: int8 4, bf16 2; 0: read in place */
    size_t bytes;               /* one element; group * bytes = 4 */
    size_t row_multiple;        /* elements: a converted row's length (ldq) is a multiple of
                                   it, a multiple of group (int8: 64, whole 64-byte lines) */
} fc_operand_format;

/* A weight/activation format (FC_FAMILY lines of kernels/kernels.def; tables in families.c).
 * The drivers reach weights only through pack, the operand format and the kernels, so a
 * format with other weight elements (int8 + per-column fp32 scales, bf16) is a new family,
 * template and registry lines. A family with a converted operand format packs the x rows and
 * the h rows of a cell as two products (fc_cell main_x and main), one segment each. */
typedef struct fc_family {
    const char *name;           /* "f32": the first word of its kernels' names */
    fc_dtype dtype;             /* of the caller's weights, activations, states and bias */
    fc_precision precision;     /* what a cell asks for to get this family */
    size_t weight_bytes;        /* one packed weight element */
    size_t act_bytes;           /* one activation / state / bias element (= fc_elem_size) */
    fc_pack_fn pack;
    const fc_operand_format *operands;
} fc_family;

#define FC_FAMILY(name, dtype, precision, weight_bytes, act_bytes, pack, template) \
    extern const fc_family fc_family_##name;
#include "kernels/kernels.def"

/* One kernel variant: a family's block kernels for one ISA and tile (an FC_KERNEL line). */
typedef struct fc_kernels {
    const char *name;           /* e.g. "f32-cells-6x64-avx512" */
    const fc_family *family;
    fc_isa isa;
    size_t vw;                  /* lanes per vector; PW = 4*vw */
    size_t mr;                  /* batch rows per register tile */
    fc_block_kernel block[FC_OP_COUNT];
    fc_convert_fn convert;      /* the family's operand conversion, compiled in this kernel's
                                   unit (i8: its ISA's vectors; the same bits on every ISA);
                                   NULL for a NATIVE family */
} fc_kernels;

#if defined(__x86_64__) || defined(_M_X64)
#define FC_X86 1
#else
#define FC_X86 0
#endif

/* The kernels for (isa, dtype, precision) (dispatch.c): the family's DISPATCH line of isa, or
 * the last of its UPGRADE lines this CPU runs; or registry entry isa - FC_ISA_KERNEL_BASE if
 * its family matches; NULL if not compiled in. Availability on this CPU: fc_isa_available. */
const fc_kernels *fc_kernels_for(fc_isa isa, fc_dtype dtype, fc_precision precision);

/* 1 when this CPU has every feature of `words` (space-separated fields of features.def, as the
 * requirements of kernels.def; "" = none), else 0 (dispatch.c; valid after fc_init). The int8
 * GEMM registry and the benchmarks' probes decide with it what may run. */
int fc_cpu_has_features(const char *words);

/* One packed product: panels for G gates over `units` units and K = k0 + k1 rows. */
typedef struct fc_packed {
    void *panels;               /* [nblocks][panel_bytes], 64-byte aligned */
    size_t gates, units, k, pw, nru, nblocks;
    size_t panel_bytes;         /* one panel: (1+K)*pw*elem, or the i8 layout's */
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
    fc_packed main;             /* rnn kernel / lstm kernel / gru gates / gru_ra x part;
                                   i8, bf16: the h rows only (gru_ra: as the others) */
    fc_packed cand;             /* gru candidate / gru_ra h part; i8, bf16: its h rows */
    fc_packed main_x, cand_x;   /* converted-operand families (i8, bf16): the x rows (and
                                   bias) of main / cand (gru), one segment each (i8: their
                                   column scales differ); else empty */
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
 * region (waking a spinning worker, claiming, the final count) costs about as long as this
 * much arithmetic does at one batch row, where the weights stream from L2 (a measured tuning,
 * not a bound: re-measure on a new machine). */
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
/* The i8 family's packing (layout above): kernel f32 [k, gates*units] quantized per column;
 * FC_ERR_ARG if k > FC_I8_K_MAX (kernels/i8-gemm.h) or elem is not 4. */
fc_status fc_pack_i8(fc_packed *out, const void *kernel, const void *bias, size_t k,
                     size_t gates, size_t units, size_t elem, size_t pw);
/* bf16.c: the bf16 family's packing (layout above), kernel f32 [k, gates*units] rounded to
 * bf16; FC_ERR_ARG if elem is not 4. */
fc_status fc_pack_bf16(fc_packed *out, const void *kernel, const void *bias, size_t k,
                       size_t gates, size_t units, size_t elem, size_t pw);
/* The bf16 operand format's conversion (fc_convert_fn): rows rounded to bf16 (nearest even,
 * NaN kept quiet NaN), q uint16 [rows, ldq], ldq even, +0.0 past k; fixed, scales unused. */
void fc_bf16_round_rows(const float *a, size_t lda, size_t rows, size_t k, int fixed, void *q,
                        size_t ldq, float *scales);
void fc_packed_free(fc_packed *p);
void *fc_aligned_alloc(size_t bytes);
void fc_aligned_free(void *p);

static inline size_t fc_min(size_t a, size_t b) { return a < b ? a : b; }
static inline size_t fc_max(size_t a, size_t b) { return a > b ? a : b; }
static inline size_t fc_round_up(size_t a, size_t m) { return (a + m - 1) / m * m; }

#endif /* FASTCELLS_INTERNAL_H */
