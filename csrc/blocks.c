/* blocks.c — the portable loop around the block kernels: every panel of a packed product for
 * a range of batch rows, split across threads when the work repays it.
 *
 * Split by panels (each thread keeps the same slice of the weights in its own L2 from call to
 * call) or, with fewer panels than threads, by batch rows in whole register tiles. Either way
 * each output element is computed by one thread with the same arithmetic, so results do not
 * depend on the thread count. */
#include "checked.h"
#include "internal.h"
#include "tuning.h"

#define ROW_OFFSET(ptr, ld, r, es) \
    ((ptr) ? (void *)((unsigned char *)(ptr) + (r) * (ld) * (es)) : NULL)

/* Panels [j0, j1) for the rows of `a`. The job's fields are read once, into locals: stores
 * through `a` could alias them (size_t), and would make the compiler reload them per panel. */
static void run_panels(const fc_blocks_job *job, fc_block_args *a, size_t j0, size_t j1)
{
    const fc_packed *p = job->packed;
    const size_t es = job->es, pw = p->pw, nru = p->nru, units = p->units;
    const size_t panel_bytes = p->panel_bytes, init_bytes = pw * es;
    const size_t width = job->whole_panels ? pw : nru;      /* units (columns) per block */
    const int whole_panels = job->whole_panels;
    const fc_block_kernel kernel = job->kernel;
    const unsigned char *panel = (const unsigned char *)p->panels + j0 * panel_bytes +
                                 job->panel_row0 * pw * es;
    const unsigned char *init = a->init ? (const unsigned char *)a->init + j0 * init_bytes : NULL;
    for (size_t j = j0; j < j1; j++, panel += panel_bytes) {
        a->panel = panel;
        if (init) {
            a->init = init;
            init += init_bytes;
        }
        a->unit0 = j * width;
        a->nu = whole_panels ? pw : fc_min(nru, units - a->unit0);
        kernel(a);
    }
}

void fc_blocks_share_region(const fc_blocks_job *job, size_t part, size_t parts, size_t *r0,
                            size_t *r1, size_t *u0, size_t *u1)
{
    const fc_packed *p = job->packed;
    const size_t rows = job->args.rows, width = job->whole_panels ? p->pw : p->nru;
    const size_t columns = job->whole_panels ? p->nblocks * p->pw : p->units;
    if (p->nblocks >= parts) {                      /* panels j0..j1-1, all rows */
        *r0 = 0;
        *r1 = rows;
        *u0 = fc_min(fc_share_bound(p->nblocks, part, parts) * width, columns);
        *u1 = fc_min(fc_share_bound(p->nblocks, part + 1, parts) * width, columns);
        return;
    }
    /* whole tiles of rows; the last share ends at `rows` (no product can pass SIZE_MAX) */
    const size_t tiles = rows / job->tile_rows + (rows % job->tile_rows != 0);
    const size_t t0 = fc_share_bound(tiles, part, parts), t1 = fc_share_bound(tiles, part + 1, parts);
    *r0 = t0 >= tiles ? rows : t0 * job->tile_rows;
    *r1 = t1 >= tiles ? rows : t1 * job->tile_rows;
    *u0 = 0;
    *u1 = columns;
}

void fc_run_blocks_share(const fc_blocks_job *job, size_t part, size_t parts)
{
    const size_t nblocks = job->packed->nblocks;
    fc_block_args a = job->args;
    if (a.rows == 0) return;
    if (nblocks >= parts) {
        run_panels(job, &a, fc_share_bound(nblocks, part, parts),
                   fc_share_bound(nblocks, part + 1, parts));
        return;
    }
    size_t r0, r1, u0, u1;
    fc_blocks_share_region(job, part, parts, &r0, &r1, &u0, &u1);
    if (r0 >= r1) return;
    const size_t es = job->es;
    a.rows = r1 - r0;
    a.a0 = ROW_OFFSET(a.a0, a.lda0, r0, es);
    a.a1 = ROW_OFFSET(a.a1, a.lda1, r0, es);
    if (a.a0_scale) a.a0_scale += r0;
    a.init = ROW_OFFSET(a.init, a.ld_init, r0, es);
    a.c_in = ROW_OFFSET(a.c_in, a.ldc_in, r0, es);
    a.c_out = ROW_OFFSET(a.c_out, a.ldc_out, r0, es);
    a.h_in = ROW_OFFSET(a.h_in, a.ldh_in, r0, es);
    a.h_out = ROW_OFFSET(a.h_out, a.ldh_out, r0, es);
    a.s0 = ROW_OFFSET(a.s0, a.lds, r0, es);
    a.s1 = ROW_OFFSET(a.s1, a.lds, r0, es);
    run_panels(job, &a, 0, nblocks);
}

size_t fc_blocks_flops(const fc_blocks_job *job)      /* saturates at SIZE_MAX */
{
    const fc_packed *p = job->packed;
    const fc_block_args *args = &job->args;
    const size_t k = fc_sat_add(fc_sat_add(args->k0, args->k1), 1);
    return fc_sat_mul(fc_sat_mul(fc_sat_mul(2, args->rows), k), p->pw * p->nblocks);
}

size_t fc_blocks_threads(const fc_blocks_job *job, size_t min_flops_per_thread)
{
    const fc_packed *p = job->packed;
    const size_t tiles = job->args.rows / job->tile_rows + (job->args.rows % job->tile_rows != 0);
    size_t threads = fc_min((size_t)fc_get_num_threads(), fc_blocks_flops(job) / min_flops_per_thread);
    threads = fc_min(threads, p->nblocks >= threads ? threads : tiles);
    return threads < 1 ? 1 : threads;
}

/* The job by value: a worker reads it straight from the region's context, one pointer fewer
 * to chase across cores before its first panel. */
typedef struct shares {
    fc_blocks_job job;
    size_t parts;
} shares;

static void run_shares(void *ctx, size_t begin, size_t end)
{
    const shares *s = ctx;
    for (size_t part = begin; part < end; part++) fc_run_blocks_share(&s->job, part, s->parts);
}

void fc_run_blocks(const fc_blocks_job *job)
{
    if (job->args.rows == 0) return;
    const size_t parts = fc_blocks_threads(job, fc_min_flops_per_thread());
    if (parts <= 1) {
        fc_run_blocks_share(job, 0, 1);
        return;
    }
    shares s = {.job = *job, .parts = parts};
    fc_parallel_for(parts, (int)parts, run_shares, &s);
}
