/* sequence.c — whole sequences in one call: the time loop of dynamic_rnn, for one cell, a stack
 * of cells (MultiRNNCell) and two independent stacks at once (the two directions of
 * bidirectional_dynamic_rnn).
 *
 * Per layer:
 *   1. Rows are ordered by length, longest first (stable), so the rows still running at step t
 *      are a prefix of the batch: finished rows cost nothing, and their state is left as it was.
 *   2. Input projection, hoisted out of the time loop: x_t @ Wx + bias for many steps at once as
 *      one large product over the panels' bias and x rows, written in panel layout (zx) so each
 *      step's register tiles start from it. Only running rows are gathered and projected.
 *      Steps are taken in chunks so zx stays a few MiB (cache resident), whatever T and B.
 *   3. The recurrence: per step only h_{t-1} @ Wh (the panels' h rows) and the fused update, on
 *      the running prefix; h ping-pongs between two buffers, c is updated in place.
 *   4. Outputs are written in the caller's order (reversed back for a reverse layer), zero past
 *      each row's length; the final state of a row is its state after its last step (its
 *      initial state when its length is 0), as TF.
 * Arithmetic per element is the same as fc_cell_step's, so a sequence equals the same steps
 * taken one by one.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

enum { CHUNK_BYTES = 4 << 20 };         /* gathered inputs + projections per chunk of steps */

typedef struct row_order {
    size_t len, index;
} row_order;

static int longest_first(const void *a, const void *b)
{
    const row_order *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

#define AT(base, offset_elems, es) ((unsigned char *)(base) + (size_t)(offset_elems) * (es))

/* One layer; its buffers are carved from one allocation. */
static fc_status run_layer(const fc_cell *cell, size_t T, size_t B, const fc_seq_io *io)
{
    const fc_cell_desc *d = &cell->desc;
    const fc_kernels *kern = cell->kernels;
    const size_t es = cell->elem, I = d->input_size, U = d->num_units, P = d->rec_size;
    const int lstm = d->kind == FC_CELL_LSTM, gru = d->kind == FC_CELL_GRU;
    const int proj = lstm && d->has_projection;
    const int ra = d->kind == FC_CELL_GRU_RA;      /* its x part: 3-vector panels of main */
    const fc_packed *mp = &cell->main, *cp = &cell->cand;
    const size_t row_main = mp->nblocks * mp->pw, row_cand = gru ? cp->nblocks * cp->pw : 0;
    const size_t lds = gru ? fc_round_up(U, cp->nru) : 0;

    row_order *order = malloc((B ? B : 1) * sizeof *order);
    size_t *active = malloc((T + 1) * sizeof *active);     /* rows running at step t */
    if (!order || !active) {
        free(order);
        free(active);
        return FC_ERR_NOMEM;
    }
    for (size_t b = 0; b < B; b++)
        order[b] = (row_order){.len = io->lengths ? (size_t)io->lengths[b] : T, .index = b};
    qsort(order, B, sizeof *order, longest_first);
    const size_t t_max = B ? order[0].len : 0;
    for (size_t t = 0, i = B; t < t_max; t++) {
        while (i > 0 && order[i - 1].len <= t) i--;
        active[t] = i;
    }

    /* steps per chunk: gathered x, zx (and zc) for every row of every step in the chunk */
    const size_t per_step = B * (I + row_main + row_cand) * es;
    size_t chunk = per_step ? CHUNK_BYTES / per_step : t_max;
    chunk = chunk < 1 ? 1 : chunk > t_max ? t_max : chunk;
    const size_t n_xs = chunk * B * I, n_zx = chunk * B * row_main, n_zc = chunk * B * row_cand;
    const size_t n_h = B * P, n_c = lstm ? B * U : 0, n_s = gru ? 2 * B * lds : 0;
    const size_t n_m = proj ? B * U : 0;
    const size_t offs[] = {0, n_xs, n_xs + n_zx, n_xs + n_zx + n_zc,
                           n_xs + n_zx + n_zc + 2 * n_h};
    const size_t total = offs[4] + n_c + n_s + n_m;
    unsigned char *work = fc_aligned_alloc((total ? total : 1) * es);
    if (!work) {
        free(order);
        free(active);
        return FC_ERR_NOMEM;
    }
    unsigned char *xs = AT(work, offs[0], es), *zx = AT(work, offs[1], es);
    unsigned char *zc = AT(work, offs[2], es);
    unsigned char *hbuf[2] = {AT(work, offs[3], es), AT(work, offs[3] + n_h, es)};
    unsigned char *c = AT(work, offs[4], es), *s0 = c + n_c * es, *s1 = s0 + B * lds * es;
    unsigned char *m = s0 + n_s * es;
    if (n_s) memset(s0, 0, n_s * es);   /* padding lanes of u are read as whole vectors */

    /* initial state, in row order */
    for (size_t i = 0; i < B; i++) {
        const size_t b = order[i].index;
        if (io->h0) memcpy(AT(hbuf[0], i * P, es), AT(io->h0, b * io->ldh0, es), P * es);
        else memset(AT(hbuf[0], i * P, es), 0, P * es);
        if (lstm) {
            if (io->c0) memcpy(AT(c, i * U, es), AT(io->c0, b * io->ldc0, es), U * es);
            else memset(AT(c, i * U, es), 0, U * es);
        }
    }
    /* outputs past each row's length are zero */
    for (size_t b = 0; b < B; b++)
        for (size_t t = io->lengths ? (size_t)io->lengths[b] : T; t < T; t++)
            memset(AT(io->out, t * io->out_stride_t + b * io->out_stride_b, es), 0, P * es);

    fc_blocks_job project = {.kernel = kern->linear, .packed = mp, .whole_panels = 1, .es = es,
                             .tile_rows = kern->mr};
    project.args = (fc_block_args){.a0 = xs, .lda0 = I, .k0 = I, .ldh_out = row_main};
    fc_blocks_job project_cand = project;
    project_cand.packed = cp;
    project_cand.args.ldh_out = row_cand;
    project_cand.args.h_out = zc;

    fc_blocks_job step = {.packed = mp, .panel_row0 = 1 + I, .es = es, .tile_rows = kern->mr};
    step.args = (fc_block_args){.ld_init = row_main, .lda0 = P, .k0 = P,
                                .ldh_in = P, .ldh_out = P};
    fc_epilogue_params(d, &step.args);
    fc_blocks_job cand = step, projection = {.kernel = kern->linear, .packed = &cell->proj,
                                             .es = es, .tile_rows = kern->mr};
    if (lstm) {
        const size_t npeep = mp->nblocks * mp->nru;
        step.kernel = kern->lstm;
        step.args.c_in = step.args.c_out = c;
        step.args.ldc_in = step.args.ldc_out = U;
        step.args.has_clip = d->has_cell_clip;
        step.args.clip = d->cell_clip;
        if (cell->peepholes) {
            step.args.peep_i = cell->peepholes;
            step.args.peep_f = AT(cell->peepholes, npeep, es);
            step.args.peep_o = AT(cell->peepholes, 2 * npeep, es);
        }
        if (proj) {
            step.args.ldh_out = U;
            projection.args = (fc_block_args){.a0 = m, .lda0 = U, .k0 = U, .ldh_out = P,
                                              .has_clip = d->has_proj_clip, .clip = d->proj_clip};
        }
    } else if (gru) {
        step.kernel = kern->gru_gates;
        step.args.s0 = s0;
        step.args.s1 = s1;
        step.args.lds = lds;
        cand.kernel = kern->gru_cand;
        cand.packed = cp;
        cand.args.ld_init = row_cand;
        cand.args.a0 = s0;
        cand.args.lda0 = lds;
        cand.args.s1 = s1;
        cand.args.lds = lds;
    } else if (ra) {
        step.kernel = kern->gru_ra;                /* h part (cand) from its bias row, init = zx */
        step.packed = cp;
        step.panel_row0 = 0;
    } else {
        step.kernel = kern->rnn;
    }

    for (size_t t0 = 0; t0 < t_max; t0 += chunk) {
        const size_t t1 = t0 + chunk < t_max ? t0 + chunk : t_max;
        /* gather the running rows of steps [t0, t1), step-major, reversed within length for a
         * reverse layer; row r of step t sits at (row offset of t) + r */
        size_t rows = 0;
        for (size_t t = t0; t < t1; t++)
            for (size_t i = 0; i < active[t]; i++, rows++) {
                const size_t b = order[i].index;
                const size_t src_t = io->reverse ? order[i].len - 1 - t : t;
                memcpy(AT(xs, rows * I, es),
                       AT(io->x, src_t * io->x_stride_t + b * io->x_stride_b, es), I * es);
            }
        if (ra) {
            fc_gru_ra_project(cell, rows, xs, I, zx, row_main);
        } else {
            project.args.rows = rows;
            project.args.h_out = zx;
            fc_run_blocks(&project);
        }
        if (gru) {
            project_cand.args.rows = rows;
            fc_run_blocks(&project_cand);
        }

        size_t row0 = 0;                /* first gathered row of step t */
        for (size_t t = t0; t < t1; row0 += active[t], t++) {
            const size_t bt = active[t];
            unsigned char *h_prev = hbuf[t % 2], *h_next = hbuf[(t + 1) % 2];
            step.args.rows = bt;
            step.args.init = AT(zx, row0 * row_main, es);
            step.args.a0 = h_prev;
            step.args.h_in = h_prev;
            step.args.h_out = proj ? m : gru ? NULL : h_next;
            fc_run_blocks(&step);
            if (gru) {
                cand.args.rows = bt;
                cand.args.init = AT(zc, row0 * row_cand, es);
                cand.args.h_in = h_prev;
                cand.args.h_out = h_next;
                fc_run_blocks(&cand);
            }
            if (proj) {
                projection.args.rows = bt;
                projection.args.h_out = h_next;
                fc_run_blocks(&projection);
            }
            for (size_t i = 0; i < bt; i++) {
                const size_t b = order[i].index;
                const size_t out_t = io->reverse ? order[i].len - 1 - t : t;
                memcpy(AT(io->out, out_t * io->out_stride_t + b * io->out_stride_b, es),
                       AT(h_next, i * P, es), P * es);
            }
        }
    }

    /* final state: a row's h after its last step sits in hbuf[len % 2] */
    for (size_t i = 0; i < B; i++) {
        const size_t b = order[i].index;
        if (io->h_final)
            memcpy(AT(io->h_final, b * io->ldhf, es), AT(hbuf[order[i].len % 2], i * P, es),
                   P * es);
        if (lstm && io->c_final)
            memcpy(AT(io->c_final, b * io->ldcf, es), AT(c, i * U, es), U * es);
    }
    fc_aligned_free(work);
    free(order);
    free(active);
    return FC_OK;
}

typedef struct stacks_job {
    size_t T, B;
    const fc_seq_layer *layers[2];
    size_t nlayers[2];
    fc_status status[2];
} stacks_job;

static void run_stack(void *ctx, size_t begin, size_t end)
{
    stacks_job *job = ctx;
    for (size_t s = begin; s < end; s++) {
        job->status[s] = FC_OK;
        for (size_t k = 0; k < job->nlayers[s] && job->status[s] == FC_OK; k++)
            job->status[s] = run_layer(job->layers[s][k].cell, job->T, job->B,
                                       &job->layers[s][k].io);
    }
}

fc_status fc_run_sequences(size_t T, size_t B, size_t nstacks, fc_seq_layer *const *layers,
                           const size_t *nlayers)
{
    if (nstacks < 1 || nstacks > 2) return FC_ERR_ARG;
    stacks_job job = {.T = T, .B = B};
    for (size_t s = 0; s < nstacks; s++) {
        job.layers[s] = layers[s];
        job.nlayers[s] = nlayers[s];
    }
    /* Two stacks: one per core, each single-threaded inside (nested regions run serially). */
    fc_parallel_for(nstacks, nstacks == 2 ? fc_get_num_threads() : 1, run_stack, &job);
    for (size_t s = 0; s < nstacks; s++)
        if (job.status[s] != FC_OK) return job.status[s];
    return FC_OK;
}
