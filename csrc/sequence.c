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
 *      the running prefix; h ping-pongs between two buffers (one row: from output row to
 *      output row, written there by the kernel), c is updated in place.
 *   Threads: a chunk of steps runs as one team (threads.c): each thread keeps the same panels
 *   (its slice of Wh stays in its core's L2, the DeepCPU split), or with a single panel the
 *   same rows, and each step is one phase of the team (two for the GRU and the LSTM with
 *   projection, whose second product reads every unit of the first).
 *   4. Outputs are written in the caller's order (reversed back for a reverse layer), zero past
 *      each row's length; the final state of a row is its state after its last step (its
 *      initial state when its length is 0), as TF.
 * Arithmetic per element is the same as fc_cell_step's, so a sequence equals the same steps
 * taken one by one.
 * Reduced-precision families (i8, bf16: a converted operand format, internal.h): the gathered
 * inputs are converted (int8: quantized per (step, row); bf16: rounded) as they are gathered,
 * and each product's operand (h, the gru's r*h, the lstm's m) is converted by every member
 * into its own buffer just before the phase that reads it (all rows: a member may run any
 * part), so no phase is added; the x rows of the panels are a product apart (main_x).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "checked.h"
#include "driver.h"
#include "internal.h"
#include "tuning.h"

enum { CHUNK_BYTES = 4 << 20 };         /* gathered inputs + projections per chunk of steps */
/* A step is shared by as many threads as get this many FLOPs each. Measured (B=1 LSTM I=H,
 * T=63, one stack, min per call of 1 and 2 threads alternated every 20 calls, 30-40 rounds,
 * 2-core Zen 3 VM, no other work running): H=32 (8.4K FLOPs a step) 41 us on one thread,
 * 43 on two; H=64 (33K) 107-111 vs 75-93; H=128 (132K) 368-371 vs 230-251; H=256 (526K)
 * 1631-1637 vs 915-955. So a phase's end (a spin barrier) costs about 8K FLOPs of one row's
 * work. (With another process on a core two threads lose: H=64 113 vs 118, H=128 775 vs
 * 794; the retry and take-over paths bound that loss.) */
enum { MIN_FLOPS_PER_MEMBER = 16 * 1024 };
/* That is for weights of the activations' width (f32, f64). At one row a step streams its
 * weights, so a family with narrower weights does a FLOP in less time, and the barrier costs
 * act_bytes / weight_bytes times as many of its FLOPs: each member gets that many times
 * MIN_FLOPS_PER_MEMBER (i8 4x, bf16 2x). Measured (int8, B=1, T=100, 1 and 2 threads
 * alternated, min of medians of 5 rounds, 2-core Xeon (family 6 model 167), us per sequence):
 * reset-after GRU H=128 (99K FLOPs a step) 192 on one thread vs 258 on two; RNN H=256 (131K)
 * 260 vs 292; LSTM H=128 (132K) 316 vs 298; reset-after GRU H=256 (197K) 543 vs 521. */
/* A team is formed per chunk of steps. A spinning worker joins almost at once; one that
 * is asleep can take far longer to wake (an idle virtual CPU), and one whose core is taken
 * (another process, or another library's spinning threads) joins when it is scheduled. So the
 * caller waits only JOIN_WAIT_NS and runs with whoever joined; a team short of members runs
 * about RETRY_FLOPS of steps and is formed again, so a late worker (kept awake by
 * fc_pool_hold for the rest of the call) soon joins. Chunks are about CHUNK_FLOPS of work,
 * large enough that forming a team per chunk costs little. tuning.h overrides each of these
 * for tests. */
enum { JOIN_WAIT_NS = 5 * 1000, CHUNK_FLOPS = 16 << 20, RETRY_FLOPS = 8 << 20 };
/* ... but at least this many rows (steps x running rows) per chunk, so that the projection
 * reads each weight of Wx that many times: at one row it would stream Wx every step. */
enum { MIN_PROJECTION_ROWS = 64 };

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

/* One chunk of steps of one layer, run by every member of a team with its rank, as a sequence
 * of phases (threads.c): gather the chunk's inputs, project them, then per step the products
 * (one phase, two for the GRU and the LSTM with projection, whose second product reads every
 * unit of the first). A member's own part of a product is the same panels every step, so its
 * slice of the recurrent weights stays in its core's L2; the part of the product that writes h
 * also copies what it wrote to the caller's outputs, unless the product writes h straight into
 * them (direct_out). A layer of one member runs the same loop with no team (team NULL): its
 * phases are plain calls. Read-only to the members. */
typedef struct layer_loop {
    const fc_seq_io *io;
    const row_order *order;
    const size_t *active;           /* rows running at step t */
    size_t t0, t1, I, P, es;        /* this chunk: steps [t0, t1) */
    size_t t_begin;                 /* this team's first step; t0: gather and project first */
    size_t members, retry_steps;    /* a team short of `members` runs only retry_steps steps */
    size_t t_done;                  /* written by rank 0: the step the team stopped before */
    unsigned char *xs, *zx, *zc, *hbuf[2];
    int gru, proj;
    /* converted: xs holds the gathered rows converted, [rows][ldq_x] elements of the operand
     * format (int8 with scales xs_scale; bf16); each member m converts a product's operand into
     * q_rows + m*q_member_bytes ([B][ldq] elements), its scales at q_scales + m*B; h_fixed
     * (i8): h and r*h with the fixed scale; convert: the cell's kernels' */
    int converted, h_fixed;
    const fc_operand_format *operands;
    fc_convert_fn convert;
    size_t ldq_x, ldq, B;
    float *xs_scale, *q_scales;
    unsigned char *q_rows;
    size_t q_member_bytes;
    /* B = 1 and the output rows of two steps never overlap: step t writes its h into its output
     * row (step_output) and step t+1 reads it there; hbuf[0] holds only h0 */
    int direct_out;
    fc_blocks_job project, project_cand;    /* zx (zc) = xs @ Wx + bias, for a chunk */
    fc_blocks_job step, cand, projection;   /* per step; rows, init, h set per step */
} layer_loop;

/* A member's view of the loop: its copies of the jobs, set for its current step t. */
typedef struct member {
    const layer_loop *L;
    size_t t, rows;                 /* rows: gathered rows of the chunk */
    fc_blocks_job project, project_cand, step, cand, projection;
    unsigned char *q;               /* converted: this member's operand [B][ldq], scales */
    float *q_scale;
} member;

/* Output row [P] of step t of row 0 (direct_out: B = 1), reversed within its length for a
 * reverse layer. */
static unsigned char *step_output(const layer_loop *L, size_t t)
{
    const size_t out_t = L->io->reverse ? L->order[0].len - 1 - t : t;
    return AT(L->io->out, out_t * L->io->out_stride_t, L->es);
}

/* A phase of the team, or with no team (a one-member layer) the one part, here. */
static void phase(fc_team *team, fc_part_fn run, void *ctx)
{
    if (team) fc_team_phase(team, run, ctx);
    else run(ctx, 0, 1);
}

/* Gathers part of the running rows of steps [t0, t1), step-major, reversed within length for a
 * reverse layer; row r of step t sits at (row offset of t) + r. */
static void gather_part(void *ctx, size_t part, size_t parts)
{
    const member *m = ctx;
    const layer_loop *L = m->L;
    const fc_seq_io *io = L->io;
    const size_t mine0 = fc_share_bound(m->rows, part, parts);
    const size_t mine1 = fc_share_bound(m->rows, part + 1, parts);
    for (size_t t = L->t0, row = 0; t < L->t1 && row < mine1; t++)
        for (size_t i = 0; i < L->active[t]; i++, row++) {
            if (row < mine0 || row >= mine1) continue;
            const size_t b = L->order[i].index;
            const size_t src_t = io->reverse ? L->order[i].len - 1 - t : t;
            const void *x = AT(io->x, src_t * io->x_stride_t + b * io->x_stride_b, L->es);
            if (L->converted)
                L->convert(x, L->I, 1, L->I, 0, L->xs + row * L->ldq_x * L->operands->bytes,
                           L->ldq_x, L->xs_scale + row);
            else
                memcpy(AT(L->xs, row * L->I, L->es), x, L->I * L->es);
        }
}

static void project_part(void *ctx, size_t part, size_t parts)
{
    const member *m = ctx;
    fc_run_blocks_share(&m->project, part, parts);
    if (m->L->gru) fc_run_blocks_share(&m->project_cand, part, parts);
}

static void gates_part(void *ctx, size_t part, size_t parts)   /* gru gates, lstm before m@P */
{
    const member *m = ctx;
    fc_run_blocks_share(&m->step, part, parts);
}

/* The product that writes h of step t (step, gru candidate or lstm projection), then the same
 * part of h copied to the outputs of its rows (unless it wrote them: direct_out). */
static void output_part(void *ctx, size_t part, size_t parts)
{
    const member *m = ctx;
    const layer_loop *L = m->L;
    const fc_seq_io *io = L->io;
    const fc_blocks_job *job = L->proj ? &m->projection : L->gru ? &m->cand : &m->step;
    fc_run_blocks_share(job, part, parts);
    if (L->direct_out) return;
    size_t r0, r1, u0, u1;
    fc_blocks_share_region(job, part, parts, &r0, &r1, &u0, &u1);
    const unsigned char *h = L->hbuf[(m->t + 1) % 2];
    for (size_t i = r0; u0 < u1 && i < r1; i++) {
        const size_t b = L->order[i].index;
        const size_t out_t = io->reverse ? L->order[i].len - 1 - m->t : m->t;
        memcpy(AT(io->out, out_t * io->out_stride_t + b * io->out_stride_b + u0, L->es),
               AT(h, i * L->P + u0, L->es), (u1 - u0) * L->es);
    }
}

/* converted: rows [rows, k] of a product's operand (ld floats) into this member's buffer,
 * which its job already reads. */
static void convert_operand(const member *m, const void *a, size_t ld, size_t rows, size_t k,
                            int fixed)
{
    m->L->convert(a, ld, rows, k, fixed, m->q, m->L->ldq, m->q_scale);
}

static void time_loop(void *ctx, fc_team *team)   /* team NULL: one member, no team */
{
    const layer_loop *L = ctx;
    const size_t es = L->es;
    member m = {.L = L, .project = L->project, .project_cand = L->project_cand,
                .step = L->step, .cand = L->cand, .projection = L->projection};
    if (L->converted) {             /* every product over h reads this member's copy */
        const size_t rank = team ? (size_t)team->rank : 0;
        m.q = L->q_rows + rank * L->q_member_bytes;
        m.q_scale = L->q_scales + rank * L->B;
        m.step.args.a0 = m.cand.args.a0 = m.projection.args.a0 = m.q;
        m.step.args.a0_scale = m.cand.args.a0_scale = m.projection.args.a0_scale = m.q_scale;
    }
    const size_t t0 = L->t0, t1 = L->t1;
    for (size_t t = t0; t < t1; t++) m.rows += L->active[t];
    if (L->t_begin == t0) {
        phase(team, gather_part, &m);
        m.project.args.rows = m.project_cand.args.rows = m.rows;
        phase(team, project_part, &m);
    }

    /* A team short of members (a worker not scheduled in time) stops early, and the caller
     * forms a new one: a late worker joins after retry_steps steps, not after the chunk. */
    const size_t t_stop = team && (size_t)team->size < L->members
                              ? L->t_begin + fc_min(t1 - L->t_begin, L->retry_steps) : t1;
    size_t row0 = 0;                /* first gathered row of step t */
    for (size_t t = t0; t < L->t_begin; t++) row0 += L->active[t];
    for (size_t t = L->t_begin; t < t_stop; row0 += L->active[t], t++) {
        const size_t bt = L->active[t];
        unsigned char *h_prev = L->direct_out && t > 0 ? step_output(L, t - 1) : L->hbuf[t % 2];
        unsigned char *h_next = L->direct_out ? step_output(L, t) : L->hbuf[(t + 1) % 2];
        m.t = t;
        m.step.args.rows = m.cand.args.rows = m.projection.args.rows = bt;
        m.step.args.init = AT(L->zx, row0 * m.step.args.ld_init, es);
        m.step.args.h_in = h_prev;
        if (L->converted) convert_operand(&m, h_prev, L->P, bt, L->P, L->h_fixed);
        else m.step.args.a0 = h_prev;
        if (!L->proj && !L->gru) m.step.args.h_out = h_next;
        m.cand.args.init = AT(L->zc, row0 * m.cand.args.ld_init, es);
        m.cand.args.h_in = h_prev;
        m.cand.args.h_out = m.projection.args.h_out = h_next;
        if (L->gru || L->proj) phase(team, gates_part, &m);
        if (L->converted && L->gru)     /* the candidate's operand r*h: s0, rows lds apart */
            convert_operand(&m, L->step.args.s0, L->step.args.lds, bt, L->P, L->h_fixed);
        if (L->converted && L->proj)    /* the projection's operand m (i8: per row) */
            convert_operand(&m, L->step.args.h_out, L->step.args.ldh_out, bt,
                             L->projection.args.k0, 0);
        phase(team, output_part, &m);
    }
    if (!team || team->rank == 0) ((layer_loop *)ctx)->t_done = t_stop;
}

/* Members of a layer's team: as many threads as one step's products repay (the longest step:
 * all B rows), at least MIN_FLOPS_PER_MEMBER each, scaled by the family's weight width
 * (tuning.h: min_flops). */
static size_t layer_members(const fc_cell *cell, size_t B)
{
    const fc_cell_dims dims = fc_cell_dims_of(cell);
    fc_blocks_job widest = {.packed = dims.gru_ra ? &cell->cand : &cell->main,
                            .tile_rows = cell->kernels->mr};
    widest.args.rows = B;
    widest.args.k0 = dims.P;                    /* the step's product: h rows of its panels */
    const fc_family *family = cell->kernels->family;
    const size_t min_flops = fc_tuning_now.min_flops
                                 ? fc_tuning_now.min_flops
                                 : MIN_FLOPS_PER_MEMBER * (family->act_bytes / family->weight_bytes);
    return fc_blocks_threads(&widest, min_flops);
}

/* One layer on up to max_members threads; its buffers are carved from one allocation. */
static fc_status run_layer(const fc_cell *cell, size_t T, size_t B, const fc_seq_io *io,
                           size_t max_members)
{
    const fc_cell_desc *d = &cell->desc;
    const fc_kernels *kern = cell->kernels;
    const fc_cell_dims dims = fc_cell_dims_of(cell);
    const size_t es = dims.es, I = dims.I, U = dims.U, P = dims.P;
    const int lstm = dims.lstm, gru = dims.gru, proj = dims.proj;
    const int ra = dims.gru_ra;                    /* its x part: 3-vector panels of main */
    const fc_packed *mp = &cell->main, *cp = &cell->cand;
    const size_t row_main = mp->nblocks * mp->pw, row_cand = gru ? cp->nblocks * cp->pw : 0;

    /* i8 with the fixed scale: h0 must lie in [-1, 1], as the reference requires (a NaN goes
     * through, as NaN) */
    for (size_t b = 0; dims.h_fixed && io->h0 && b < B; b++)
        for (size_t i = 0; i < P; i++)
            if (fabsf(((const float *)io->h0)[b * io->ldh0 + i]) > 1.0f) return FC_ERR_RANGE;

    /* steps: the longest row's length (lengths are B real values; B alone may be any size) */
    size_t t_max = B && !io->lengths ? T : 0;
    for (size_t b = 0; io->lengths && b < B; b++) t_max = fc_max(t_max, (size_t)io->lengths[b]);

    /* Sizes first, every product checked: B and T are any size_t (a stride-0 batch or time
     * axis costs the caller no memory). row_main, row_cand <= the packed sizes. */
    int overflow = 0;
    const size_t lds = gru ? fc_round_up_checked(U, cp->nru, &overflow) : 0;
    const size_t row_width = fc_add(I, fc_add(row_main, row_cand, &overflow), &overflow);
    const size_t per_step = fc_mul3(B, row_width, es, &overflow);
    const size_t n_h = fc_mul(B, P, &overflow), n_c = lstm ? fc_mul(B, U, &overflow) : 0;
    const size_t n_s = gru ? fc_mul3(2, B, lds, &overflow) : 0;
    const size_t n_m = proj ? fc_mul(B, U, &overflow) : 0;
    if (overflow) return FC_ERR_SIZE;

    /* steps per chunk: gathered x, zx (and zc) for every row of every step in the chunk, and
     * about CHUNK_FLOPS of work (a team is formed per chunk); FLOPs saturate (they only choose) */
    const size_t flops_per_step = fc_sat_add(
        fc_sat_mul(fc_sat_mul(fc_sat_mul(2, B), fc_sat_add(I + P, 1)), row_main + row_cand),
        proj ? fc_sat_mul(fc_sat_mul(fc_sat_mul(2, B), U), P) : 0);
    size_t chunk = per_step ? CHUNK_BYTES / per_step : t_max;
    if (flops_per_step && B)        /* but enough rows to keep the projection a GEMM */
        chunk = fc_min(chunk, fc_max(CHUNK_FLOPS / flops_per_step,
                                     MIN_PROJECTION_ROWS / B + (MIN_PROJECTION_ROWS % B != 0)));
    if (fc_tuning_now.chunk_steps) chunk = fc_tuning_now.chunk_steps;
    chunk = chunk < 1 ? 1 : chunk > t_max ? t_max : chunk;
    const size_t chunk_rows = fc_mul(chunk, B, &overflow);
    const int conv = dims.converted;
    const size_t n_xs = conv ? 0 : fc_mul(chunk_rows, I, &overflow);    /* conv: below */
    const size_t n_zx = fc_mul(chunk_rows, row_main, &overflow);
    const size_t n_zc = fc_mul(chunk_rows, row_cand, &overflow);
    size_t offs[5] = {0, n_xs};
    offs[2] = fc_add(offs[1], n_zx, &overflow);
    offs[3] = fc_add(offs[2], n_zc, &overflow);
    offs[4] = fc_add(offs[3], fc_mul(2, n_h, &overflow), &overflow);
    const size_t total = fc_add(fc_add(offs[4], n_c, &overflow), fc_add(n_s, n_m, &overflow),
                                &overflow);
    /* then the row order [B] and the rows running per step [t_max], size_t aligned */
    const size_t order_at = fc_round_up_checked(fc_mul(total, es, &overflow), sizeof(size_t),
                                                &overflow);
    const size_t active_at = fc_add(order_at, fc_mul(B, sizeof(row_order), &overflow),
                                    &overflow);
    size_t work_bytes = fc_add(active_at, fc_mul(t_max, sizeof(size_t), &overflow), &overflow);
    /* converted, then (64-byte aligned): the converted gathered rows [chunk_rows][ldq_x] and
     * their scales; per member, an operand [B][ldq] and its scales (ldq: the widest operand,
     * P or U; both in elements of the operand format, whole runs of its row_multiple) */
    const size_t members = fc_min(layer_members(cell, B), max_members);
    const fc_operand_format *ops = dims.operands;
    const size_t ldq_x = conv ? fc_round_up_checked(I, ops->row_multiple, &overflow) : 0;
    const size_t ldq = conv ? fc_round_up_checked(fc_max(P, U), ops->row_multiple, &overflow)
                            : 0;
    const size_t q_member_bytes = conv ? fc_mul3(B, ldq, ops->bytes, &overflow) : 0;
    size_t conv_at[4] = {0};
    const size_t conv_bytes[4] = {
        conv ? fc_mul3(chunk_rows, ldq_x, ops->bytes, &overflow) : 0,
        fc_mul(chunk_rows, sizeof(float), &overflow),
        fc_mul(members, q_member_bytes, &overflow), fc_mul3(members, B, sizeof(float), &overflow)};
    for (int i = 0; i < 4 && conv; i++) {
        conv_at[i] = fc_round_up_checked(work_bytes, 64, &overflow);
        work_bytes = fc_add(conv_at[i], conv_bytes[i], &overflow);
    }
    const size_t lda_q_x = conv ? ldq_x / ops->group : I;      /* lda0 of the x operand */
    const size_t lda_q = conv ? ldq / ops->group : 0;          /* ... of the others (dwords) */
    if (overflow) return FC_ERR_SIZE;
    unsigned char *work = fc_aligned_alloc(work_bytes ? work_bytes : 1);
    if (!work) return FC_ERR_NOMEM;
    unsigned char *xs = AT(work, offs[0], es), *zx = AT(work, offs[1], es);
    unsigned char *zc = AT(work, offs[2], es);
    unsigned char *hbuf[2] = {AT(work, offs[3], es), AT(work, offs[3] + n_h, es)};
    unsigned char *c = AT(work, offs[4], es), *s0 = c + n_c * es, *s1 = s0 + B * lds * es;
    unsigned char *m = s0 + n_s * es;
    row_order *order = (row_order *)(work + order_at);
    size_t *active = (size_t *)(work + active_at);         /* rows running at step t */
    if (n_s) memset(s0, 0, n_s * es);   /* padding lanes of u are read as whole vectors */

    for (size_t b = 0; b < B; b++)
        order[b] = (row_order){.len = io->lengths ? (size_t)io->lengths[b] : T, .index = b};
    if (io->lengths && B > 1) qsort(order, B, sizeof *order, longest_first);   /* else in order */
    for (size_t t = 0, i = B; t < t_max; t++) {
        while (i > 0 && order[i - 1].len <= t) i--;
        active[t] = i;
    }

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

    layer_loop loop = {.io = io, .order = order, .active = active, .I = I, .P = P, .es = es,
                       .xs = conv ? work + conv_at[0] : xs,
                       .converted = conv, .h_fixed = dims.h_fixed, .operands = ops,
                       .convert = cell->kernels->convert,
                       .ldq_x = ldq_x, .ldq = ldq, .B = B,
                       .xs_scale = (float *)(work + conv_at[1]),
                       .q_rows = work + conv_at[2],
                       .q_scales = (float *)(work + conv_at[3]), .q_member_bytes = q_member_bytes,
                       .hbuf = {hbuf[0], hbuf[1]}, .gru = gru, .proj = proj,
                       .direct_out = B == 1 && (t_max <= 1 || io->out_stride_t >= P)};
    /* the input projection: zx (and for gru zc) rows = xs rows @ Wx + bias, panel layout */
    loop.project = (fc_blocks_job){.kernel = kern->block[ra ? FC_OP_LINEAR3 : FC_OP_LINEAR],
                                   .packed = conv && !ra ? &cell->main_x : mp,
                                   .whole_panels = 1, .es = es, .tile_rows = kern->mr};
    loop.project.args = (fc_block_args){.a0 = loop.xs, .lda0 = lda_q_x,
                                        .k0 = I, .h_out = zx, .ldh_out = row_main,
                                        .a0_scale = conv ? loop.xs_scale : NULL};
    loop.project_cand = loop.project;
    loop.project_cand.packed = conv ? &cell->cand_x : cp;
    loop.project_cand.args.h_out = zc;
    loop.project_cand.args.ldh_out = row_cand;

    /* the recurrence: h rows of the panels, starting from zx; init is set per step */
    /* (converted: h rows apart, operands converted per member, lda0 in dwords: internal.h) */
    fc_blocks_job step = {.packed = mp, .panel_row0 = conv ? 0 : 1 + I, .es = es,
                          .tile_rows = kern->mr};
    step.args = (fc_block_args){.ld_init = row_main, .lda0 = conv ? lda_q : P, .k0 = P,
                                .ldh_in = P, .ldh_out = P};
    fc_step_epilogue(cell, &step.args);
    fc_blocks_job cand = step;
    if (lstm) {
        step.kernel = kern->block[FC_OP_LSTM];
        step.args.c_in = step.args.c_out = c;
        step.args.ldc_in = step.args.ldc_out = U;
        if (proj) {
            step.args.h_out = m;
            step.args.ldh_out = U;
            loop.projection = (fc_blocks_job){.kernel = kern->block[FC_OP_LINEAR],
                                              .packed = &cell->proj,
                                              .es = es, .tile_rows = kern->mr};
            loop.projection.args = (fc_block_args){.a0 = m, .lda0 = conv ? lda_q : U,
                                                   .k0 = U, .ldh_out = P,
                                                   .has_clip = d->has_proj_clip,
                                                   .clip = d->proj_clip};
        }
    } else if (gru) {
        step.kernel = kern->block[FC_OP_GRU_GATES];
        step.args.s0 = s0;
        step.args.s1 = s1;
        step.args.lds = lds;
        cand.kernel = kern->block[FC_OP_GRU_CAND];
        cand.packed = cp;
        cand.args.ld_init = row_cand;
        cand.args.a0 = s0;          /* converted: its converted copy, per member */
        cand.args.lda0 = conv ? lda_q : lds;
        cand.args.s1 = s1;
        cand.args.lds = lds;
    } else if (ra) {
        step.kernel = kern->block[FC_OP_GRU_RA];                /* h part (cand) from its bias row, init = zx */
        step.packed = cp;
        step.panel_row0 = 0;
    } else {
        step.kernel = kern->block[FC_OP_RNN];
    }
    loop.step = step;
    loop.cand = cand;
    loop.zx = zx;
    loop.zc = zc;

    loop.members = members;
    const fc_tuning *tuning = &fc_tuning_now;
    loop.retry_steps = tuning->retry_steps ? tuning->retry_steps
                       : flops_per_step ? fc_max(1, RETRY_FLOPS / flops_per_step) : t_max;
    const long join_wait_ns = tuning->join_wait_ns > 0 ? tuning->join_wait_ns
                              : tuning->join_wait_ns < 0 ? 0 : JOIN_WAIT_NS;
    for (loop.t0 = 0; loop.t0 < t_max; loop.t0 = loop.t1) {
        loop.t1 = loop.t0 + fc_min(chunk, t_max - loop.t0);
        fc_count(FC_COUNT_SEQ_CHUNKS);
        for (loop.t_begin = loop.t0; loop.t_begin < loop.t1; loop.t_begin = loop.t_done)
            if (loop.members > 1) fc_team_run((int)loop.members, join_wait_ns, time_loop, &loop);
            else time_loop(&loop, NULL);
    }

    /* final state: a row's h after its last step sits in hbuf[len % 2], or with direct_out in
     * its last output row (h_final may overlap it: memmove); with no step it is h0 (hbuf[0]) */
    for (size_t i = 0; i < B; i++) {
        const size_t b = order[i].index, len = order[i].len;
        const unsigned char *h = loop.direct_out && len ? step_output(&loop, len - 1)
                                                        : AT(hbuf[len % 2], i * P, es);
        if (io->h_final) memmove(AT(io->h_final, b * io->ldhf, es), h, P * es);
        if (lstm && io->c_final)
            memcpy(AT(io->c_final, b * io->ldcf, es), AT(c, i * U, es), U * es);
    }
    fc_aligned_free(work);
    return FC_OK;
}

typedef struct stacks_job {
    size_t T, B;
    const fc_seq_layer *layers[2];
    size_t nlayers[2];
    size_t max_members;             /* threads a layer may use: 1 when two stacks run at once */
    fc_status status[2];
} stacks_job;

static void run_stack(void *ctx, size_t begin, size_t end)
{
    stacks_job *job = ctx;
    for (size_t s = begin; s < end; s++) {
        job->status[s] = FC_OK;
        for (size_t k = 0; k < job->nlayers[s] && job->status[s] == FC_OK; k++)
            job->status[s] = run_layer(job->layers[s][k].cell, job->T, job->B,
                                       &job->layers[s][k].io, job->max_members);
    }
}

fc_status fc_run_sequences(size_t T, size_t B, size_t nstacks, fc_seq_layer *const *layers,
                           const size_t *nlayers)
{
    if (nstacks < 1 || nstacks > 2) return FC_ERR_ARG;
    /* Two stacks: one per core, each single-threaded inside (nested regions would run
     * serially). One stack: its layers' teams. */
    const int threads = fc_get_num_threads();
    stacks_job job = {.T = T, .B = B, .max_members = nstacks == 2 ? 1 : (size_t)threads};
    int pooled = nstacks == 2 && threads > 1;       /* any worker needed in this call */
    for (size_t s = 0; s < nstacks; s++) {
        job.layers[s] = layers[s];
        job.nlayers[s] = nlayers[s];
        for (size_t k = 0; k < nlayers[s] && !pooled; k++)
            pooled = fc_min(layer_members(layers[s][k].cell, B), job.max_members) > 1;
    }
    if (!pooled) {                  /* no worker to keep awake, no region to open */
        run_stack(&job, 0, nstacks);
    } else {
        fc_pool_hold();             /* keep the workers awake from team to team */
        fc_parallel_for(nstacks, nstacks == 2 ? threads : 1, run_stack, &job);
        fc_pool_release();
    }
    for (size_t s = 0; s < nstacks; s++)
        if (job.status[s] != FC_OK) return job.status[s];
    return FC_OK;
}
