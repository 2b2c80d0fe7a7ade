/* threads.c — a small fork-safe thread pool for splitting one kernel call across cores.
 *
 * fc_parallel_for(n, T, fn, ctx) runs fn(ctx, begin, end) over [0, n) split into T contiguous,
 * equal chunks, chunk 0 on the calling thread. The split is static, so the same call shape gives
 * every thread the same panels every time (they stay in that core's L2), and results never
 * depend on the thread count (each output element is computed by exactly one thread, always with
 * the same arithmetic). Workers spin for a while after each region (yielding the core now and
 * then), then sleep on a condition variable. One region runs at a time: a caller that finds the pool busy (another Python thread
 * inside a kernel) runs its work serially instead of waiting.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"

#if FC_X86
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

/* A worker spins this many rounds for the next region before it sleeps; waiting threads yield
 * the core every YIELD_EVERY rounds, and the caller waiting at the barrier yields after
 * CALLER_SPINS rounds, so a busy machine (more runnable threads than cores) is not made slower
 * by threads burning a time slice each. */
enum { MAX_THREADS = 64, SPIN_ROUNDS = 1 << 16, YIELD_EVERY = 64, CALLER_SPINS = 1 << 12 };

static struct {
    pthread_mutex_t region;         /* held by the caller running a parallel region */
    pthread_mutex_t sleep_mutex;
    pthread_cond_t wake;
    atomic_uint generation;         /* bumped to start a region */
    atomic_int sleepers;
    atomic_int pending;             /* workers that have not finished the current region */
    int started;                    /* workers running */
    fc_task_fn fn;
    void *ctx;
    size_t n;
    int active;                     /* threads taking part in the current region */
} pool = {
    .region = PTHREAD_MUTEX_INITIALIZER,
    .sleep_mutex = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
};

static int num_threads;             /* 0 until first asked: then the usable cores */
static unsigned start_generation[MAX_THREADS];  /* the generation a new worker has seen */

static int usable_cores(void)
{
#ifdef CPU_COUNT
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        const int n = CPU_COUNT(&set);
        if (n > 0) return n < MAX_THREADS ? n : MAX_THREADS;
    }
#endif
    const long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n < MAX_THREADS ? (int)n : MAX_THREADS;
}

int fc_get_num_threads(void)
{
    if (num_threads == 0) num_threads = usable_cores();
    return num_threads;
}

fc_status fc_set_num_threads(int n)
{
    if (n < 1 || n > MAX_THREADS) return FC_ERR_ARG;
    num_threads = n;
    return FC_OK;
}

static void run_chunk(int t, int threads)
{
    const size_t begin = pool.n * (size_t)t / (size_t)threads;
    const size_t end = pool.n * (size_t)(t + 1) / (size_t)threads;
    if (begin < end) pool.fn(pool.ctx, begin, end);
}

static void *worker(void *arg)
{
    const int index = (int)(size_t)arg;       /* 1-based: chunk 0 is the caller's */
    unsigned seen = start_generation[index];     /* set before pthread_create */
    for (;;) {
        unsigned now;
        int spins = 0;
        while ((now = atomic_load(&pool.generation)) == seen && spins < SPIN_ROUNDS) {
            CPU_RELAX();
            if (++spins % YIELD_EVERY == 0) sched_yield();
        }
        if (now == seen) {
            pthread_mutex_lock(&pool.sleep_mutex);
            atomic_fetch_add(&pool.sleepers, 1);
            while ((now = atomic_load(&pool.generation)) == seen)
                pthread_cond_wait(&pool.wake, &pool.sleep_mutex);
            atomic_fetch_sub(&pool.sleepers, 1);
            pthread_mutex_unlock(&pool.sleep_mutex);
        }
        seen = now;
        if (index < pool.active) run_chunk(index, pool.active);
        atomic_fetch_sub(&pool.pending, 1);
    }
    return NULL;
}

/* Starts workers up to `want` (total threads, caller included); returns how many can run. */
static int ensure_workers(int want)
{
    while (pool.started + 1 < want) {
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        /* The region about to start must be one this worker waits for. */
        start_generation[pool.started + 1] = atomic_load(&pool.generation);
        const int err = pthread_create(&thread, &attr, worker, (void *)(size_t)(pool.started + 1));
        pthread_attr_destroy(&attr);
        if (err) break;
        pool.started++;
    }
    return pool.started + 1 < want ? pool.started + 1 : want;
}

void fc_parallel_for(size_t n, int threads, fc_task_fn fn, void *ctx)
{
    if (threads > (int)n) threads = (int)n;
    if (threads <= 1 || pthread_mutex_trylock(&pool.region) != 0) {
        if (n) fn(ctx, 0, n);
        return;
    }
    threads = ensure_workers(threads);
    pool.fn = fn;
    pool.ctx = ctx;
    pool.n = n;
    pool.active = threads;
    atomic_store(&pool.pending, pool.started);
    atomic_fetch_add(&pool.generation, 1);        /* seq_cst: pairs with the sleepers check */
    if (atomic_load(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.sleep_mutex);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.sleep_mutex);
    }
    run_chunk(0, threads);
    for (int spins = 0; atomic_load(&pool.pending) > 0; spins++) {
        if (spins < CALLER_SPINS) CPU_RELAX();
        else sched_yield();
    }
    pthread_mutex_unlock(&pool.region);
}

/* After fork() only the forking thread exists in the child: forget the workers. */
static void after_fork_in_child(void)
{
    pthread_mutex_init(&pool.region, NULL);
    pthread_mutex_init(&pool.sleep_mutex, NULL);
    pthread_cond_init(&pool.wake, NULL);
    atomic_store(&pool.sleepers, 0);
    atomic_store(&pool.pending, 0);
    pool.started = 0;
}

__attribute__((constructor)) static void register_fork_handler(void)
{
    pthread_atfork(NULL, NULL, after_fork_in_child);
}
