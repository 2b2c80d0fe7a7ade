/* fastcells.h — the public C API of the fastcells kernels: plain structs and functions, no Python.
 *
 * A cell (vanilla RNN, LSTM, GRU) is created once from TensorFlow-layout weights; creation packs
 * the weights into gate-interleaved panels for one instruction set. fc_cell_step then runs one
 * time step for a whole batch in one call: the fused gate product [x, h] @ kernel + bias and the
 * elementwise update, applied on the product's register tile.
 *
 * Conventions: matrices are row-major with a leading dimension (row stride, in elements) `ld*`;
 * the last axis is contiguous. Shapes are written x: [B,I]. U = num_units, P = rec_size (the
 * recurrent width: num_proj for an LSTM with projection, else U). Entry points that can fail
 * return an fc_status; everything else trusts its arguments (the Python layer validates).
 */
#ifndef FASTCELLS_H
#define FASTCELLS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum fc_status {
    FC_OK = 0,
    FC_ERR_NOMEM = 1,       /* an allocation failed */
    FC_ERR_ARG = 2,         /* an argument is out of range (the message says which) */
    FC_ERR_ISA = 3,         /* the instruction set is not compiled in or the CPU lacks it */
    FC_ERR_SIZE = 4,        /* a size (scratch, workspace, packed weights) overflows size_t */
    FC_ERR_RANGE = 5,       /* an INT8 cell's initial h is outside [-1, 1], the range of its
                               fixed scale (fc_cell_h_fixed) */
} fc_status;

typedef enum fc_dtype { FC_F32 = 0, FC_F64 = 1 } fc_dtype;

/* How a cell stores its packed weights (its kernel family, kernels/kernels.def). NATIVE: in
 * its dtype. INT8 (float32 cells only): symmetric int8 with one fp32 scale per output column
 * of each product segment, activations quantized to int8 per row (or with the fixed scale
 * 1/127 where the cell bounds them by 1), exact int32 products, bias, gates and states in
 * fp32. BF16 (float32 cells only): weights rounded to bf16 (nearest even), the activations of
 * every product (x, h, the GRU's r*h, the LSTM's m) rounded likewise, products summed in fp32
 * pair by pair, bias, gates and states in fp32. Both are the schemes
 * fastcells/reference_quant.py defines. */
typedef enum fc_precision {
    FC_PRECISION_NATIVE = 0, FC_PRECISION_INT8 = 1, FC_PRECISION_BF16 = 2
} fc_precision;

/* Instruction-set paths, from the FC_ISA lines of kernels/kernels.def in their order
 * (FC_ISA_SCALAR = 0, FC_ISA_AVX2 = 1, FC_ISA_AVX512 = 2, ...). Where an fc_isa is taken,
 * FC_ISA_KERNEL_BASE + i selects entry i of the kernel registry instead (fc_kernel_info). */
typedef enum fc_isa {
#define FC_ISA(id, name, arch) FC_ISA_##id,
#include "kernels/kernels.def"
    FC_ISA_COUNT,
    FC_ISA_KERNEL_BASE = 256,
} fc_isa;

typedef enum fc_cell_kind {
    FC_CELL_RNN = 0,
    FC_CELL_LSTM = 1,
    FC_CELL_GRU = 2,            /* TF GRUCell: reset before the recurrent product */
    FC_CELL_GRU_RA = 3,         /* reset after: c = act(x@Wi + bi + r*(h@Wh + bh)) (PyTorch,
                                   Keras reset_after, ONNX linear_before_reset, cuDNN) */
} fc_cell_kind;

/* Activations (ONNX's set, less Softplus); alpha/beta as ONNX defines them. */
typedef enum fc_activation {
    FC_ACT_TANH = 0,
    FC_ACT_RELU = 1,
    FC_ACT_SIGMOID = 2,
    FC_ACT_LINEAR = 3,
    FC_ACT_HARD_SIGMOID = 4,    /* clip(alpha*x + beta, 0, 1) */
    FC_ACT_LEAKY_RELU = 5,      /* x < 0 ? alpha*x : x */
    FC_ACT_THRESHOLDED_RELU = 6,/* x > alpha ? x : 0 */
    FC_ACT_SCALED_TANH = 7,     /* alpha * tanh(beta*x) */
    FC_ACT_AFFINE = 8,          /* alpha*x + beta */
    FC_ACT_ELU = 9,             /* x < 0 ? alpha*(exp(x) - 1) : x */
    FC_ACT_SOFTSIGN = 10,       /* x / (1 + |x|) */
    FC_ACT_COUNT = 11,
} fc_activation;

typedef struct fc_act {
    fc_activation kind;
    double alpha, beta;
} fc_act;

/* What a cell computes. TF's cells: `activation` replaces tanh where TF's does (LSTM: on j and
 * on c'), the gates are sigmoid. The other fields (default off) express ONNX/Keras cells. */
typedef struct fc_cell_desc {
    fc_cell_kind kind;
    fc_dtype dtype;
    size_t input_size;          /* I >= 0 */
    size_t num_units;           /* U >= 1 */
    size_t rec_size;            /* P: LSTM num_proj, else must equal U */
    fc_act activation;          /* the candidate (rnn: the output) */
    fc_act gate_activation;     /* gru, lstm gates (TF: sigmoid) */
    fc_act output_activation;   /* lstm: on c' before the o gate (TF: = activation) */
    int has_preact_clip;        /* clip every activation's input (not the lstm output's) to */
    double preact_clip;         /* [-preact_clip, preact_clip] (ONNX `clip`) */
    int input_forget;           /* lstm: f = 1 - i (ONNX `input_forget`) */
    double forget_bias;         /* LSTM: added to the f gate before its sigmoid */
    int has_cell_clip;          /* LSTM: clip c' to [-cell_clip, cell_clip] */
    double cell_clip;
    int has_proj_clip;          /* LSTM with projection: clip m to [-proj_clip, proj_clip] */
    double proj_clip;
    int has_peepholes;          /* LSTM: w_i_diag, w_f_diag, w_o_diag given */
    int has_projection;         /* LSTM: projection/kernel given (rec_size = num_proj) */
    fc_precision precision;     /* the packed weights' format (NATIVE: dtype) */
} fc_cell_desc;

/* TF-layout weights, C-contiguous, of the cell's dtype. Unused pointers may be NULL. */
typedef struct fc_cell_weights {
    const void *kernel;         /* rnn [I+U,U]; lstm [I+P,4U] gates i,j,f,o; gru gates [I+U,2U] r,u;
                                   gru_ra: the x part [I,3U] = [Wr Wu Wi] (x rows) */
    const void *bias;           /* [G*U]; gru_ra [3U]: br, bu, bi */
    const void *cand_kernel;    /* gru: candidate/kernel [I+U,U]; gru_ra: the h part [U,3U] =
                                   [Wr Wu Wh] (h rows) */
    const void *cand_bias;      /* gru: candidate/bias [U]; gru_ra [3U]: 0, 0, bh */
    const void *w_i_diag;       /* lstm peepholes [U] */
    const void *w_f_diag;
    const void *w_o_diag;
    const void *proj_kernel;    /* lstm projection/kernel [U,P] */
} fc_cell_weights;

typedef struct fc_cell fc_cell;    /* packed weights + the kernels they were packed for */

/* Features of this CPU (cpuid + xgetbv), detected once; the list is kernels/features.def. */
typedef enum fc_feature {
#define FC_FEATURE(id, field, name, how) FC_FEATURE_##id,
#include "kernels/features.def"
    FC_FEATURE_COUNT,
} fc_feature;
typedef struct fc_cpu_features {        /* 1 = present: sse2, avx, fma, ... os_avx512 */
#define FC_FEATURE(id, field, name, how) int field;
#include "kernels/features.def"
} fc_cpu_features;

/* Detects the CPU once and reads FASTCELLS_ISA ("scalar", "avx2", "avx512"; unset or "auto"
 * means the best available). Returns FC_ERR_ISA if the variable names a path this build or CPU
 * cannot run, FC_ERR_ARG if it names no path at all; the default then stays the best path. */
fc_status fc_init(void);
const fc_cpu_features *fc_cpu(void);
const char *fc_feature_name(fc_feature f);   /* "sse2", ..., "os_saves_avx512"; NULL past the end */
int fc_cpu_has(fc_feature f);
int fc_isa_compiled(fc_isa isa);     /* its dispatched kernels are built into this binary */
int fc_isa_available(fc_isa isa);    /* ... and runnable on this CPU */
fc_isa fc_best_isa(void);
fc_isa fc_default_isa(void);         /* what new cells use: FASTCELLS_ISA or the best */
const char *fc_isa_name(fc_isa isa);  /* "avx2"; a registry entry's kernel name; "?" */
/* Register tile of the kernels for (isa, dtype): rows of the batch x columns of one panel;
 * 0 when there is none. */
size_t fc_tile_rows(fc_isa isa, fc_dtype dtype);
size_t fc_tile_cols(fc_isa isa, fc_dtype dtype);

/* The kernel registry: the FC_KERNEL lines of kernels/kernels.def, entries 0..count-1 in that
 * order. Select entry i wherever an fc_isa is taken with FC_ISA_KERNEL_BASE + i. */
typedef struct fc_kernel_info {
    const char *name;           /* "f32-cells-6x64-avx512": family, op, MR x NR tile, ISA tag */
    const char *family;         /* "f32" */
    fc_isa isa;                 /* the path it belongs to (a ref build: FC_ISA_SCALAR) */
    fc_dtype dtype;             /* of the activations, states and bias it takes */
    fc_precision precision;     /* of the packed weights it reads */
    size_t mr, nr;              /* register tile: batch rows x panel columns (NR = 4*VW) */
    int dispatch;               /* what FASTCELLS_ISA=<isa> runs for its family (else a test
                                   kernel): 1 for a DISPATCH line, 2 for an UPGRADE line, which
                                   runs instead of it where the CPU has its features */
    int compiled;               /* linked into this binary */
    int available;              /* compiled and this CPU has every required feature */
    const char *features;       /* required features, space separated fc_cpu_features fields */
    const char *cflags;         /* extra compiler flags of its translation unit */
} fc_kernel_info;
size_t fc_kernel_count(void);
fc_status fc_kernel_info_at(size_t index, fc_kernel_info *out);    /* FC_ERR_ARG past the end */

/* Threads one kernel call may use (default: the usable cores). Results do not depend on it. */
fc_status fc_set_num_threads(int n);     /* 1..64, else FC_ERR_ARG */
int fc_get_num_threads(void);

/* Packs `weights` for `isa`. On success *out owns a copy; the caller's arrays are not kept. */
fc_status fc_cell_create(const fc_cell_desc *desc, const fc_cell_weights *weights, fc_isa isa,
                         fc_cell **out);
void fc_cell_destroy(fc_cell *cell);
fc_isa fc_cell_isa(const fc_cell *cell);
/* INT8 cells: 1 if h (and the GRU's r*h) is quantized with the fixed scale 1/127, as the cell
 * bounds it by 1 (an initial h must then lie in [-1, 1]; larger values are clipped), 0 if
 * per row; 0 for other precisions. */
int fc_cell_h_fixed(const fc_cell *cell);

/* One time step for `batch` rows.
 *   x:     [B,I]  input
 *   c_in:  [B,U]  LSTM cell state (NULL otherwise); may alias c_out exactly (same pointer and ld)
 *   h_in:  [B,P]  previous output; may alias h_out exactly
 *   c_out: [B,U]  LSTM new cell state (NULL otherwise)
 *   h_out: [B,P]  new output (= new h)
 * Any other overlap between an input and an output is also allowed: the input is copied first.
 * Returns FC_ERR_NOMEM if a scratch allocation fails, FC_ERR_SIZE if a scratch size overflows. */
fc_status fc_cell_step(const fc_cell *cell, size_t batch,
                       const void *x, size_t ldx,
                       const void *c_in, size_t ldc_in, const void *h_in, size_t ldh_in,
                       void *c_out, size_t ldc_out, void *h_out, size_t ldh_out);

/* Whole sequences (dynamic_rnn). Element strides: x[t][b][:I] is at x + t*x_stride_t +
 * b*x_stride_b, likewise out[t][b][:P]. Outputs and final states must not overlap the inputs.
 * lengths: [B] in 0..T, or NULL for all T. Past a row's length its outputs are zero and its
 * state is carried; the final state is the state after the row's last step (h0/c0 for length
 * 0). h0/c0 NULL means zeros; h_final/c_final NULL are not written. reverse: the row is read
 * reversed within its length and its outputs are written back in input order (the backward
 * direction of bidirectional_dynamic_rnn). */
typedef struct fc_seq_io {
    const void *x; size_t x_stride_t, x_stride_b;
    void *out; size_t out_stride_t, out_stride_b;
    const int64_t *lengths;
    const void *h0; size_t ldh0;
    const void *c0; size_t ldc0;
    void *h_final; size_t ldhf;
    void *c_final; size_t ldcf;
    int reverse;
} fc_seq_io;

typedef struct fc_seq_layer { const fc_cell *cell; fc_seq_io io; } fc_seq_layer;

/* Runs nstacks (1 or 2) independent stacks of layers over T steps of B rows; in a stack, layer
 * k reads what layer k-1 wrote (the caller points io.x at it). Two stacks run on two cores
 * when threads allow. Returns FC_ERR_NOMEM if a workspace allocation fails,
 * FC_ERR_SIZE if a workspace size overflows. */
fc_status fc_run_sequences(size_t T, size_t B, size_t nstacks, fc_seq_layer *const *layers,
                           const size_t *nlayers);

/* A packed right-hand matrix for repeated products C[M,N] = A[M,K] @ B[K,N] (+ bias[N]):
 * the input projection of whole sequences, and the GEMM benchmarked against BLAS. */
typedef struct fc_matrix fc_matrix;
fc_status fc_matrix_create(fc_dtype dtype, size_t k, size_t n, const void *b, const void *bias,
                           fc_isa isa, fc_matrix **out);   /* b: [K,N] C-contiguous; bias [N] or NULL */
void fc_matrix_destroy(fc_matrix *mat);
/* a: [M,K] (lda), c: [M,N] (ldc); a may overlap c (it is copied first). */
fc_status fc_matmul(const fc_matrix *mat, size_t m, const void *a, size_t lda, void *c, size_t ldc);

#ifdef __cplusplus
}
#endif
#endif /* FASTCELLS_H */
