/* blocks.c — the portable loop around the block kernels: every panel of a packed product for
 * a range of batch rows, split across threads when the work repays it.
 *
 * Split by panels (each thread keeps the same slice of the weights in its own L2 from call to
 * call) or, with fewer panels than threads, by batch rows in whole register tiles. Either way
 * each output element is computed by one thread with the same arithmetic, so results do not
 * depend on the thread count. */
#include "internal.h"

/* Work below this many FLOPs per thread runs on one thread: waking a worker and the barrier
 * cost about a microsecond, which a smaller share does not repay. */
enum { MIN_FLOPS_PER_THREAD = 64 * 1024 };

typedef struct task {
    const fc_blocks_job *job;
    size_t rows_per_task;           /* 0: tasks are panels, else ranges of batch rows */
} task;

#define ROW_OFFSET(ptr, ld, r, es) \
    ((ptr) ? (void *)((unsigned char *)(ptr) + (r) * (ld) * (es)) : NULL)

static void run_panels(const fc_blocks_job *job, fc_block_args *a, size_t j0, size_t j1)
{
    const fc_packed *p = job->packed;
    const size_t es = job->es, panel_bytes = (1 + p->k) * p->pw * es;
    const unsigned char *init = a->init;
    for (size_t j = j0; j < j1; j++) {
        a->panel = (const unsigned char *)p->panels + j * panel_bytes + job->panel_row0 * p->pw * es;
        if (init) a->init = init + j * p->pw * es;
        if (job->whole_panels) {
            a->unit0 = j * p->pw;
            a->nu = p->pw;
        } else {
            a->unit0 = j * p->nru;
            a->nu = fc_min(p->nru, p->units - a->unit0);
        }
        job->kernel(a);
    }
}

static void blocks_task(void *ctx, size_t begin, size_t end)
{
    const task *t = ctx;
    const fc_blocks_job *job = t->job;
    fc_block_args a = job->args;
    if (t->rows_per_task == 0) {
        run_panels(job, &a, begin, end);
        return;
    }
    const size_t r0 = begin * t->rows_per_task, r1 = fc_min(end * t->rows_per_task, a.rows);
    if (r0 >= r1) return;
    const size_t es = job->es;
    a.rows = r1 - r0;
    a.a0 = ROW_OFFSET(a.a0, a.lda0, r0, es);
    a.a1 = ROW_OFFSET(a.a1, a.lda1, r0, es);
    a.init = ROW_OFFSET(a.init, a.ld_init, r0, es);
    a.c_in = ROW_OFFSET(a.c_in, a.ldc_in, r0, es);
    a.c_out = ROW_OFFSET(a.c_out, a.ldc_out, r0, es);
    a.h_in = ROW_OFFSET(a.h_in, a.ldh_in, r0, es);
    a.h_out = ROW_OFFSET(a.h_out, a.ldh_out, r0, es);
    a.s0 = ROW_OFFSET(a.s0, a.lds, r0, es);
    a.s1 = ROW_OFFSET(a.s1, a.lds, r0, es);
    run_panels(job, &a, 0, job->packed->nblocks);
}

void fc_run_blocks(const fc_blocks_job *job)
{
    const fc_packed *p = job->packed;
    const fc_block_args *args = &job->args;
    if (args->rows == 0) return;
    const size_t flops = 2 * args->rows * (args->k0 + args->k1 + 1) * p->pw * p->nblocks;
    size_t threads = fc_min((size_t)fc_get_num_threads(), flops / MIN_FLOPS_PER_THREAD);
    task t = {.job = job};
    if (threads <= 1) {
        blocks_task(&t, 0, p->nblocks);
        return;
    }
    if (p->nblocks >= threads) {
        fc_parallel_for(p->nblocks, (int)threads, blocks_task, &t);
        return;
    }
    const size_t tiles = (args->rows + job->tile_rows - 1) / job->tile_rows;
    threads = fc_min(threads, tiles);
    t.rows_per_task = (tiles + threads - 1) / threads * job->tile_rows;
    fc_parallel_for((args->rows + t.rows_per_task - 1) / t.rows_per_task, (int)threads,
                    blocks_task, &t);
}
