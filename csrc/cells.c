/* cells.c — creating a packed cell and running one time step: the portable driver around the
 * per-ISA block kernels. Per step and cell kind:
 *   rnn:  h' = act(z)                 one product   [x, h] @ kernel       (G=1)
 *   lstm: c', m = update(i, j, f, o)   one product   [x, m] @ kernel       (G=4)
 *         m' = clip(m @ projection)    a second product, only with num_proj
 *   gru:  r*h, u = sig(...)            [x, h] @ gates/kernel                (G=2)
 *         h' = u*h + (1-u)*act(...)    [x, r*h] @ candidate/kernel         (G=1)
 *   gru reset after: x @ [Wr Wu Wi] (3-vector panels), then h @ [Wr Wu Wh] and the update
 * Each product runs panel by panel (block of units), all batch rows per panel, so one panel
 * is loaded into cache once per step. Threads share a step by panels or rows (blocks.c): one
 * parallel region per step, the two dependent products of the GRU and of the LSTM with
 * projection as two phases of one team. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "checked.h"
#include "driver.h"
#include "internal.h"
#include "tuning.h"


void fc_cell_destroy(fc_cell *cell)
{
    if (!cell) return;
    fc_packed_free(&cell->main);
    fc_packed_free(&cell->cand);
    fc_packed_free(&cell->proj);
    fc_packed_free(&cell->main_x);
    fc_packed_free(&cell->cand_x);
    fc_aligned_free(cell->peepholes);
    free(cell);
}

fc_isa fc_cell_isa(const fc_cell *cell) { return cell->kernels->isa; }

int fc_cell_h_fixed(const fc_cell *cell) { return fc_cell_dims_of(cell).h_fixed; }

fc_status fc_cell_create(const fc_cell_desc *desc, const fc_cell_weights *w, fc_isa isa,
                         fc_cell **out)
{
    *out = NULL;
    const size_t U = desc->num_units, I = desc->input_size, P = desc->rec_size;
    if (U == 0 || (unsigned)desc->kind > FC_CELL_GRU_RA || (unsigned)desc->dtype > FC_F64 ||
        (unsigned)desc->precision > FC_PRECISION_BF16 ||
        (desc->precision != FC_PRECISION_NATIVE && desc->dtype != FC_F32) ||
        (unsigned)desc->activation.kind >= FC_ACT_COUNT ||
        (unsigned)desc->gate_activation.kind >= FC_ACT_COUNT ||
        (unsigned)desc->output_activation.kind >= FC_ACT_COUNT || !w->kernel || !w->bias)
        return FC_ERR_ARG;
    if (desc->kind == FC_CELL_LSTM ? (desc->has_projection ? !w->proj_kernel || P == 0 : P != U)
                                   : P != U)
        return FC_ERR_ARG;
    if (desc->kind == FC_CELL_GRU && (!w->cand_kernel || !w->cand_bias)) return FC_ERR_ARG;
    if (desc->has_peepholes && (!w->w_i_diag || !w->w_f_diag || !w->w_o_diag)) return FC_ERR_ARG;
    int overflow = 0;
    const size_t x_and_h_rows = fc_add(I, P, &overflow);     /* P = U but for the projection */
    if (overflow) return FC_ERR_SIZE;
    if (!fc_isa_available(isa)) return FC_ERR_ISA;
    const fc_kernels *kernels = fc_kernels_for(isa, desc->dtype, desc->precision);
    if (!kernels) return FC_ERR_ISA;
    const int split = kernels->family->operands->group != 0;  /* x, h rows apart (internal.h) */

    fc_cell *cell = calloc(1, sizeof *cell);
    if (!cell) return FC_ERR_NOMEM;
    cell->desc = *desc;
    cell->kernels = kernels;
    cell->elem = fc_elem_size(desc->dtype);
    const size_t es = cell->elem, pw = 4 * kernels->vw;
    const fc_pack_fn pack = kernels->family->pack;
    fc_status st = FC_OK;
    /* the main product (rnn, lstm, gru gates) and the gru candidate: [x, h] rows in one panel,
     * or for a converted-operand family (i8, bf16) the x rows (with the bias) and the h rows
     * as two products (main_x, main) */
    const size_t G = desc->kind == FC_CELL_LSTM ? 4 : desc->kind == FC_CELL_GRU ? 2 : 1;
    const float *h_rows = NULL, *cand_h_rows = NULL;    /* split: row I of kernel, cand_kernel */
    if (split && desc->kind != FC_CELL_GRU_RA) {
        const size_t h_at = fc_mul3(I, G, U, &overflow), cand_h_at = fc_mul(I, U, &overflow);
        if (overflow) st = FC_ERR_SIZE;                 /* (inside the caller's arrays) */
        h_rows = (const float *)w->kernel + h_at;
        if (w->cand_kernel) cand_h_rows = (const float *)w->cand_kernel + cand_h_at;
    }
    if (st == FC_OK && desc->kind != FC_CELL_GRU_RA) {
        if (split) {
            st = pack(&cell->main_x, w->kernel, w->bias, I, G, U, es, pw);
            if (st == FC_OK) st = pack(&cell->main, h_rows, NULL, P, G, U, es, pw);
        } else {
            st = pack(&cell->main, w->kernel, w->bias, x_and_h_rows, G, U, es, pw);
        }
    }
    if (st == FC_OK && desc->kind == FC_CELL_GRU) {
        if (split) {
            st = pack(&cell->cand_x, w->cand_kernel, w->cand_bias, I, 1, U, es, pw);
            if (st == FC_OK) st = pack(&cell->cand, cand_h_rows, NULL, U, 1, U, es, pw);
        } else {
            st = pack(&cell->cand, w->cand_kernel, w->cand_bias, x_and_h_rows, 1, U, es, pw);
        }
    }
    if (st == FC_OK) switch (desc->kind) {
    case FC_CELL_RNN:
    case FC_CELL_GRU:
        break;
    case FC_CELL_LSTM:
        if (desc->has_projection)
            st = pack(&cell->proj, w->proj_kernel, NULL, U, 1, P, es, pw);
        if (st == FC_OK && desc->has_peepholes) {
            /* [3][nblocks*nru]: i, f, o, zero past U so the kernels load whole vectors */
            const size_t n = cell->main.nblocks * cell->main.nru;    /* <= the packed size */
            const size_t bytes = fc_mul3(3, n, es, &overflow);
            if (overflow) { st = FC_ERR_SIZE; break; }
            unsigned char *peep = fc_aligned_alloc(bytes);
            if (!peep) { st = FC_ERR_NOMEM; break; }
            memset(peep, 0, bytes);
            memcpy(peep, w->w_i_diag, U * es);
            memcpy(peep + n * es, w->w_f_diag, U * es);
            memcpy(peep + 2 * n * es, w->w_o_diag, U * es);
            cell->peepholes = peep;
        }
        break;
    case FC_CELL_GRU_RA:                              /* 3-vector panels: r, u, n */
        if (!w->cand_kernel || !w->cand_bias) { st = FC_ERR_ARG; break; }
        st = pack(&cell->main, w->kernel, w->bias, I, 3, U, es, 3 * kernels->vw);
        if (st == FC_OK)
            st = pack(&cell->cand, w->cand_kernel, w->cand_bias, U, 3, U, es, 3 * kernels->vw);
        break;
    }
    if (st != FC_OK) {
        fc_cell_destroy(cell);
        return st;
    }
    *out = cell;
    return FC_OK;
}

/* Do the byte ranges of two [rows, cols] matrices overlap? An extent that does not fit in the
 * address space counts as overlapping (the copy it asks for then fails its size check). */
int fc_overlaps(const void *a, size_t lda, size_t cols_a, const void *b, size_t ldb,
                    size_t cols_b, size_t rows, size_t es)
{
    if (!a || !b || rows == 0) return 0;
    int overflow = 0;
    const size_t a_bytes = fc_mul(fc_add(fc_mul(rows - 1, lda, &overflow), cols_a, &overflow), es,
                                  &overflow);
    const size_t b_bytes = fc_mul(fc_add(fc_mul(rows - 1, ldb, &overflow), cols_b, &overflow), es,
                                  &overflow);
    const uintptr_t a0 = (uintptr_t)a, b0 = (uintptr_t)b;
    if (overflow || a_bytes > UINTPTR_MAX - a0 || b_bytes > UINTPTR_MAX - b0) return 1;
    return a0 < b0 + b_bytes && b0 < a0 + a_bytes;
}

/* Copy src [rows, cols] (ld) into dst [rows, cols] (contiguous). */
void fc_copy_rows(void *dst, const void *src, size_t ld, size_t rows, size_t cols, size_t es)
{
    for (size_t r = 0; r < rows; r++)
        memcpy((unsigned char *)dst + r * cols * es, (const unsigned char *)src + r * ld * es,
               cols * es);
}

void fc_epilogue_params(const fc_cell_desc *d, fc_block_args *args)
{
    args->act = d->activation;
    args->gate_act = d->gate_activation;
    args->out_act = d->output_activation;
    args->has_preact_clip = d->has_preact_clip;
    args->preact_clip = d->preact_clip;
    args->input_forget = d->input_forget;
    args->forget_bias = d->forget_bias;
}

void fc_step_epilogue(const fc_cell *cell, fc_block_args *args)
{
    const fc_cell_desc *d = &cell->desc;
    fc_epilogue_params(d, args);
    if (d->kind != FC_CELL_LSTM) return;
    if (cell->peepholes) {          /* [3][npeep]: i, f, o */
        const size_t npeep = cell->main.nblocks * cell->main.nru;
        args->peep_i = cell->peepholes;
        args->peep_f = (const unsigned char *)cell->peepholes + npeep * cell->elem;
        args->peep_o = (const unsigned char *)cell->peepholes + 2 * npeep * cell->elem;
    }
    args->has_clip = d->has_cell_clip;
    args->clip = d->cell_clip;
}

/* A step's scratch up to this size lives on the caller's stack (no allocation at small B). */
enum { SMALL_SCRATCH_BYTES = 4096 };

/* Two products of one step where the second reads every unit the first wrote (the GRU's gates,
 * then its candidate; the LSTM's cell, then its projection): one team (threads.c), the second
 * product a second phase that starts once every part of the first has finished. One parallel
 * region instead of two. */
typedef struct two_products {
    fc_blocks_job first, second;
} two_products;

static void first_part(void *ctx, size_t part, size_t parts)
{
    fc_run_blocks_share(&((const two_products *)ctx)->first, part, parts);
}

static void second_part(void *ctx, size_t part, size_t parts)
{
    fc_run_blocks_share(&((const two_products *)ctx)->second, part, parts);
}

static void two_products_team(void *ctx, fc_team *team)
{
    fc_team_phase(team, first_part, ctx);
    fc_team_phase(team, second_part, ctx);
}

/* As many threads as either product repays: a phase split finer than its product repays costs
 * one more part to finish, not a parallel region. */
static void run_two_products(two_products *tp)
{
    const size_t threads = fc_max(fc_blocks_threads(&tp->first, fc_min_flops_per_thread()),
                                  fc_blocks_threads(&tp->second, fc_min_flops_per_thread()));
    if (threads <= 1) {
        first_part(tp, 0, 1);
        second_part(tp, 0, 1);
        return;
    }
    fc_team_run((int)threads, FC_TEAM_FIXED, two_products_team, tp);
}

/* The reset-after GRU's step: the x projection and the recurrent product of the same panels
 * (or rows) run in one share, since the recurrent tiles read only their own columns of the
 * projection: one region, no phase. */
typedef struct gru_ra_step {
    fc_blocks_job project, step;
    size_t parts;
} gru_ra_step;

static void gru_ra_shares(void *ctx, size_t begin, size_t end)
{
    const gru_ra_step *s = ctx;
    for (size_t part = begin; part < end; part++) {
        fc_run_blocks_share(&s->project, part, s->parts);
        fc_run_blocks_share(&s->step, part, s->parts);
    }
}

/* Runs `kernel` over every panel of `packed` for all rows of `args` (bias-initialised). */
static void run_blocks(fc_block_kernel kernel, const fc_packed *packed, const fc_block_args *args,
                       size_t es, size_t tile_rows)
{
    const fc_blocks_job job = {.kernel = kernel, .packed = packed, .args = *args, .es = es,
                               .tile_rows = tile_rows};
    fc_run_blocks(&job);
}

/* The step of a converted-operand family (i8, bf16): a sequence of one step (sequence.c),
 * whose x projection and operand conversions are the ones a step needs. One step reads all its
 * inputs (x gathered and converted, h and c copied in) before it writes any output, so any
 * overlap between them is safe here. */
static fc_status step_as_sequence(const fc_cell *cell, size_t B, const void *x, size_t ldx,
                                  const void *c_in, size_t ldc_in, const void *h_in,
                                  size_t ldh_in, void *c_out, size_t ldc_out, void *h_out,
                                  size_t ldh_out)
{
    fc_seq_layer layer = {.cell = cell, .io = {
        .x = x, .x_stride_b = ldx, .out = h_out, .out_stride_b = ldh_out,
        .h0 = h_in, .ldh0 = ldh_in, .c0 = c_in, .ldc0 = ldc_in, .c_final = c_out,
        .ldcf = ldc_out}};
    fc_seq_layer *stack = &layer;
    const size_t nlayers = 1;
    return fc_run_sequences(1, B, 1, &stack, &nlayers);
}

fc_status fc_cell_step(const fc_cell *cell, size_t B, const void *x, size_t ldx,
                       const void *c_in, size_t ldc_in, const void *h_in, size_t ldh_in,
                       void *c_out, size_t ldc_out, void *h_out, size_t ldh_out)
{
    const fc_cell_desc *d = &cell->desc;
    const fc_kernels *kern = cell->kernels;
    const fc_cell_dims dims = fc_cell_dims_of(cell);
    const size_t es = dims.es, I = dims.I, U = dims.U, P = dims.P;
    const int lstm = dims.lstm, gru = dims.gru;
    if (B == 0) return FC_OK;
    if (dims.converted)
        return step_as_sequence(cell, B, x, ldx, c_in, ldc_in, h_in, ldh_in, c_out, ldc_out,
                                h_out, ldh_out);

    /* Inputs that overlap an output are copied first, except the aliases the kernels allow:
     * c_in == c_out (elementwise), and h_in == h_out where h_in is fully read by one product
     * before the product that writes h_out (gru, lstm with projection). */
    const int h_alias_ok = gru || dims.proj;
    const int copy_x = fc_overlaps(x, ldx, I, h_out, ldh_out, P, B, es) ||
                       fc_overlaps(x, ldx, I, c_out, ldc_out, U, B, es);
    const int copy_h = (fc_overlaps(h_in, ldh_in, P, h_out, ldh_out, P, B, es) &&
                        !(h_alias_ok && h_in == h_out && ldh_in == ldh_out)) ||
                       fc_overlaps(h_in, ldh_in, P, c_out, ldc_out, U, B, es);
    const int copy_c = lstm && ((fc_overlaps(c_in, ldc_in, U, c_out, ldc_out, U, B, es) &&
                                 !(c_in == c_out && ldc_in == ldc_out)) ||
                                fc_overlaps(c_in, ldc_in, U, h_out, ldh_out, P, B, es));

    /* scratch: copies, gru r*h and u (rows padded to whole candidate panels), lstm m */
    int overflow = 0;               /* B is any size_t: a stride-0 batch costs no memory */
    const size_t lds = gru ? fc_round_up_checked(U, cell->cand.nru, &overflow) : 0;
    const size_t n_x = copy_x ? fc_mul(B, I, &overflow) : 0;
    const size_t n_h = copy_h ? fc_mul(B, P, &overflow) : 0;
    const size_t n_c = copy_c ? fc_mul(B, U, &overflow) : 0;
    const size_t n_gru = gru ? fc_mul3(2, B, lds, &overflow) : 0;
    const size_t n_m = dims.proj ? fc_mul(B, U, &overflow) : 0;
    const size_t row_zx = cell->main.nblocks * cell->main.pw;       /* gru_ra x projection */
    const size_t n_zx = dims.gru_ra ? fc_mul(B, row_zx, &overflow) : 0;
    size_t n_total = fc_add(n_x, n_h, &overflow);
    n_total = fc_add(n_total, fc_add(n_c, n_gru, &overflow), &overflow);
    n_total = fc_add(n_total, fc_add(n_m, n_zx, &overflow), &overflow);
    const size_t scratch_bytes = fc_mul(n_total, es, &overflow);
    if (overflow) return FC_ERR_SIZE;
    _Alignas(64) unsigned char small_scratch[SMALL_SCRATCH_BYTES];  /* read by the workers too */
    unsigned char *scratch = small_scratch;
    if (scratch_bytes > sizeof small_scratch) {
        scratch = fc_aligned_alloc(scratch_bytes);
        if (!scratch) return FC_ERR_NOMEM;
    }
    unsigned char *next = scratch;
    if (copy_x) { fc_copy_rows(next, x, ldx, B, I, es); x = next; ldx = I; next += n_x * es; }
    if (copy_h) { fc_copy_rows(next, h_in, ldh_in, B, P, es); h_in = next; ldh_in = P; next += n_h * es; }
    if (copy_c) { fc_copy_rows(next, c_in, ldc_in, B, U, es); c_in = next; ldc_in = U; next += n_c * es; }

    fc_block_args args = {
        .rows = B, .a0 = x, .lda0 = ldx, .k0 = I, .a1 = h_in, .lda1 = ldh_in, .k1 = P,
        .c_in = c_in, .ldc_in = ldc_in, .c_out = c_out, .ldc_out = ldc_out,
        .h_in = h_in, .ldh_in = ldh_in, .h_out = h_out, .ldh_out = ldh_out,
    };
    fc_step_epilogue(cell, &args);
    switch (d->kind) {
    case FC_CELL_RNN:
        run_blocks(kern->block[FC_OP_RNN], &cell->main, &args, es, kern->mr);
        break;
    case FC_CELL_GRU_RA: {
        gru_ra_step ra = {
            .project = {.kernel = kern->block[FC_OP_LINEAR3], .packed = &cell->main,
                        .whole_panels = 1, .es = es, .tile_rows = kern->mr},
            .step = {.kernel = kern->block[FC_OP_GRU_RA], .packed = &cell->cand, .args = args,
                     .es = es, .tile_rows = kern->mr},
        };
        ra.project.args = (fc_block_args){.rows = B, .a0 = x, .lda0 = ldx, .k0 = I,
                                          .h_out = next, .ldh_out = row_zx};
        ra.step.args.init = next;                       /* zx: [B, row_zx] */
        ra.step.args.ld_init = row_zx;
        ra.step.args.a0 = h_in;
        ra.step.args.lda0 = ldh_in;
        ra.step.args.k0 = U;
        ra.step.args.k1 = 0;
        /* both products have the same panels (3-vector, U units) and rows, so share p of the
         * projection writes exactly the columns and rows of zx that share p of the step reads */
        const size_t flops = fc_sat_add(fc_blocks_flops(&ra.project), fc_blocks_flops(&ra.step));
        ra.parts = fc_min(fc_blocks_threads(&ra.step, 1),
                          fc_max(1, flops / fc_min_flops_per_thread()));
        fc_parallel_for(ra.parts, (int)ra.parts, gru_ra_shares, &ra);
        break;
    }
    case FC_CELL_LSTM: {
        if (!dims.proj) {
            run_blocks(kern->block[FC_OP_LSTM], &cell->main, &args, es, kern->mr);
            break;
        }
        void *m = next;                                 /* [B,U] sig(o)*act(c') */
        args.h_out = m;
        args.ldh_out = U;
        two_products tp = {
            .first = {.kernel = kern->block[FC_OP_LSTM], .packed = &cell->main, .args = args,
                      .es = es, .tile_rows = kern->mr},
            .second = {.kernel = kern->block[FC_OP_LINEAR], .packed = &cell->proj, .es = es,
                       .tile_rows = kern->mr},
        };
        tp.second.args = (fc_block_args){
            .rows = B, .a0 = m, .lda0 = U, .k0 = U, .k1 = 0,
            .h_out = h_out, .ldh_out = ldh_out,
            .has_clip = d->has_proj_clip, .clip = d->proj_clip,
        };
        run_two_products(&tp);
        break;
    }
    case FC_CELL_GRU: {
        /* s0 = r*h, s1 = u, rows lds apart; the gates store whole vectors up to
         * round_up(U, VW), which is all the candidate reads of s1 (lanes() on its blocks) */
        two_products tp = {
            .first = {.kernel = kern->block[FC_OP_GRU_GATES], .packed = &cell->main,
                      .args = args, .es = es, .tile_rows = kern->mr},
            .second = {.kernel = kern->block[FC_OP_GRU_CAND], .packed = &cell->cand,
                       .args = args, .es = es, .tile_rows = kern->mr},
        };
        tp.first.args.s0 = tp.second.args.s0 = next;
        tp.first.args.s1 = tp.second.args.s1 = next + B * lds * es;
        tp.first.args.lds = tp.second.args.lds = lds;
        tp.second.args.a1 = next;                       /* candidate: [x, r*h] */
        tp.second.args.lda1 = lds;
        run_two_products(&tp);
        break;
    }
    }
    if (scratch != small_scratch) fc_aligned_free(scratch);
    return FC_OK;
}

/* ---- packed GEMM: C = A @ B (+ bias), B packed once ------------------------------------- */

fc_status fc_matrix_create(fc_dtype dtype, size_t k, size_t n, const void *b, const void *bias,
                           fc_isa isa, fc_matrix **out)
{
    *out = NULL;
    if ((unsigned)dtype > FC_F64 || n == 0 || !b) return FC_ERR_ARG;
    if (!fc_isa_available(isa)) return FC_ERR_ISA;
    const fc_kernels *kernels = fc_kernels_for(isa, dtype, FC_PRECISION_NATIVE);
    if (!kernels) return FC_ERR_ISA;
    fc_matrix *mat = calloc(1, sizeof *mat);
    if (!mat) return FC_ERR_NOMEM;
    mat->dtype = dtype;
    mat->kernels = kernels;
    mat->elem = fc_elem_size(dtype);
    const fc_status st = kernels->family->pack(&mat->packed, b, bias, k, 1, n, mat->elem,
                                               4 * kernels->vw);
    if (st != FC_OK) {
        free(mat);
        return st;
    }
    *out = mat;
    return FC_OK;
}

void fc_matrix_destroy(fc_matrix *mat)
{
    if (!mat) return;
    fc_packed_free(&mat->packed);
    free(mat);
}

fc_status fc_matmul(const fc_matrix *mat, size_t m, const void *a, size_t lda, void *c, size_t ldc)
{
    const size_t es = mat->elem, k = mat->packed.k, n = mat->packed.units;
    if (m == 0) return FC_OK;
    void *scratch = NULL;
    if (fc_overlaps(a, lda, k, c, ldc, n, m, es)) {
        int overflow = 0;
        const size_t bytes = fc_mul3(m, k, es, &overflow);
        if (overflow) return FC_ERR_SIZE;
        scratch = fc_aligned_alloc(bytes);
        if (!scratch) return FC_ERR_NOMEM;
        fc_copy_rows(scratch, a, lda, m, k, es);
        a = scratch;
        lda = k;
    }
    const fc_block_args args = {.rows = m, .a0 = a, .lda0 = lda, .k0 = k, .k1 = 0,
                                .h_out = c, .ldh_out = ldc};
    run_blocks(mat->kernels->block[FC_OP_LINEAR], &mat->packed, &args, es, mat->kernels->mr);
    fc_aligned_free(scratch);
    return FC_OK;
}
