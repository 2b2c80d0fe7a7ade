# The C API of fastcells as Cython sees it: the one place where the bridge (_core.pyx and the
# files it includes) declares C. Only what the bridge uses is declared; the values of enums come
# from the headers themselves.
from libc.stdint cimport int64_t

cdef extern from "fastcells.h" nogil:
    ctypedef enum fc_status:
        FC_OK, FC_ERR_NOMEM, FC_ERR_ARG, FC_ERR_ISA, FC_ERR_SIZE, FC_ERR_RANGE
    ctypedef enum fc_dtype:
        FC_F32, FC_F64
    ctypedef enum fc_precision:
        FC_PRECISION_NATIVE, FC_PRECISION_INT8, FC_PRECISION_BF16
    ctypedef enum fc_isa:
        FC_ISA_COUNT, FC_ISA_KERNEL_BASE
    ctypedef enum fc_cell_kind:
        FC_CELL_RNN, FC_CELL_LSTM, FC_CELL_GRU, FC_CELL_GRU_RA
    ctypedef enum fc_activation:
        FC_ACT_TANH, FC_ACT_RELU, FC_ACT_SIGMOID, FC_ACT_LINEAR, FC_ACT_HARD_SIGMOID,
        FC_ACT_LEAKY_RELU, FC_ACT_THRESHOLDED_RELU, FC_ACT_SCALED_TANH, FC_ACT_AFFINE,
        FC_ACT_ELU, FC_ACT_SOFTSIGN
    ctypedef struct fc_act:
        fc_activation kind
        double alpha, beta
    ctypedef struct fc_cell_desc:
        fc_cell_kind kind
        fc_dtype dtype
        size_t input_size, num_units, rec_size
        fc_act activation
        fc_act gate_activation
        fc_act output_activation
        int has_preact_clip
        double preact_clip
        int input_forget
        double forget_bias
        int has_cell_clip
        double cell_clip
        int has_proj_clip
        double proj_clip
        int has_peepholes, has_projection
        fc_precision precision
    ctypedef struct fc_cell_weights:
        const void *kernel
        const void *bias
        const void *cand_kernel
        const void *cand_bias
        const void *w_i_diag
        const void *w_f_diag
        const void *w_o_diag
        const void *proj_kernel
    ctypedef struct fc_cell:
        pass
    ctypedef enum fc_feature:
        FC_FEATURE_COUNT
    ctypedef struct fc_kernel_info:
        const char *name
        const char *family
        fc_isa isa
        fc_dtype dtype
        fc_precision precision
        size_t mr, nr
        int dispatch, compiled, available
        const char *features
        const char *cflags

    fc_status fc_init()
    fc_status fc_set_num_threads(int n)
    int fc_get_num_threads()
    const char *fc_feature_name(fc_feature f)
    int fc_cpu_has(fc_feature f)
    size_t fc_kernel_count()
    fc_status fc_kernel_info_at(size_t index, fc_kernel_info *out)
    int fc_isa_compiled(fc_isa isa)
    int fc_isa_available(fc_isa isa)
    fc_isa fc_best_isa()
    fc_isa fc_default_isa()
    const char *fc_isa_name(fc_isa isa)
    size_t fc_tile_rows(fc_isa isa, fc_dtype dtype)
    size_t fc_tile_cols(fc_isa isa, fc_dtype dtype)
    fc_status fc_cell_create(const fc_cell_desc *desc, const fc_cell_weights *weights,
                             fc_isa isa, fc_cell **out)
    void fc_cell_destroy(fc_cell *cell)
    int fc_cell_h_fixed(const fc_cell *cell)
    ctypedef struct fc_seq_io:
        const void *x
        size_t x_stride_t, x_stride_b
        void *out
        size_t out_stride_t, out_stride_b
        const int64_t *lengths
        const void *h0
        size_t ldh0
        const void *c0
        size_t ldc0
        void *h_final
        size_t ldhf
        void *c_final
        size_t ldcf
        int reverse
    ctypedef struct fc_seq_layer:
        const fc_cell *cell
        fc_seq_io io
    fc_status fc_run_sequences(size_t T, size_t B, size_t nstacks,
                               fc_seq_layer *const *layers, const size_t *nlayers)
    ctypedef struct fc_matrix:
        pass
    fc_status fc_matrix_create(fc_dtype dtype, size_t k, size_t n, const void *b,
                               const void *bias, fc_isa isa, fc_matrix **out)
    void fc_matrix_destroy(fc_matrix *mat)
    fc_status fc_matmul(const fc_matrix *mat, size_t m, const void *a, size_t lda, void *c,
                        size_t ldc)
    fc_status fc_cell_step(const fc_cell *cell, size_t batch,
                           const void *x, size_t ldx,
                           const void *c_in, size_t ldc_in, const void *h_in, size_t ldh_in,
                           void *c_out, size_t ldc_out, void *h_out, size_t ldh_out)


# Test-only hooks (csrc/tuning.h, csrc/checked.h): force the rare threaded paths and count them;
# the checked packed size.
cdef extern from "tuning.h" nogil:
    ctypedef struct fc_tuning:
        size_t chunk_steps, retry_steps
        long join_wait_ns
        int steal_spins
        size_t min_flops
        int stall_worker, slow_worker
    ctypedef struct fc_counters:
        size_t short_teams, late_joins, take_overs, chunk_steals, seq_chunks
    void fc_tuning_set(const fc_tuning *tuning)
    void fc_tuning_get(fc_tuning *tuning)
    void fc_counters_get(fc_counters *counters, int reset)

cdef extern from "checked.h" nogil:
    fc_status fc_packed_bytes(size_t k, size_t gates, size_t units, size_t elem, size_t pw,
                              size_t *bytes)


# The benchmarks' machine-limit probes (csrc/probes/probes.h), exposed as _core._probe_*.
cdef extern from "probes/probes.h" nogil:
    ctypedef enum fc_probe_path:
        FC_PROBE_PATH_COUNT
    int fc_probe_supported(int path)
    double fc_probe_madd(int path, long iters)
    double fc_probe_read(int path, const float *buf, size_t n, long passes)


# The int8 GEMM (csrc/kernels/i8-gemm.h): packed int8 weights, exact int32 products.
from libc.stdint cimport int8_t, int32_t

cdef extern from "kernels/i8-gemm.h" nogil:
    ctypedef struct fc_i8_kernel_info:
        const char *name
        const char *features
        const char *cflags
        fc_isa isa
        size_t mr, nr
        int available
    size_t fc_i8_kernel_count()
    fc_status fc_i8_kernel_info_at(size_t index, fc_i8_kernel_info *out)
    size_t fc_i8_default_kernel()
    ctypedef struct fc_i8_matrix:
        pass
    fc_status fc_i8_matrix_create_q(size_t k, size_t n, const int8_t *qw, const float *col_scale,
                                    const float *bias, size_t kernel, fc_i8_matrix **out)
    fc_status fc_i8_matrix_create(size_t k, size_t n, const float *b, const float *bias,
                                  size_t kernel, fc_i8_matrix **out)
    void fc_i8_matrix_destroy(fc_i8_matrix *mat)
    void fc_i8_matrix_weights(const fc_i8_matrix *mat, int8_t *qw, float *col_scale)
    fc_status fc_i8_matmul_q(const fc_i8_matrix *mat, size_t m, const int8_t *qa, size_t lda,
                             const float *row_scale, float *c, size_t ldc, int32_t *acc,
                             size_t ldacc)
    fc_status fc_i8_matmul(const fc_i8_matrix *mat, size_t m, const float *a, size_t lda,
                           float *c, size_t ldc, int32_t *acc, size_t ldacc,
                           float *row_scale_out)
