/* threads.c — a small fork-safe thread pool for splitting one kernel call across cores.
 *
 * fc_parallel_for(n, T, fn, ctx) runs fn(ctx, begin, end) over [0, n) split into T contiguous,
 * equal chunks. Chunk t belongs to thread t (the caller is thread 0): the split is static, so
 * the same call shape gives every thread the same panels every time and they stay in that
 * core's L2. A worker claims its chunk before it runs it; once the caller has run its own chunk
 * it waits for the others, and claims and runs any whose thread has not started within
 * CALLER_STEAL_SPINS pause rounds — a worker that the OS has not scheduled (a busy machine)
 * delays the call by that wait, not by its chunk. Results never depend on the thread count or on who ran a chunk:
 * each output element is computed by one chunk, always with the same arithmetic.
 *
 * Workers spin for a while after each region (yielding the core now and then), then sleep on a
 * condition variable; under fc_pool_hold they keep spinning. One region runs at a time: a caller
 * that finds the pool busy (another Python thread inside a kernel, or a nested call) runs its
 * work serially instead of waiting.
 *
 * fc_team_run builds a team on the same workers: one region whose members stay together for a
 * sequence of phases (the steps of a sequence), each phase cut into one part per member. A
 * member runs its own part, then any part nobody has started, then waits for the phase to
 * finish: a member that is late or preempted loses its parts to the others instead of holding
 * them up. The team is whoever joins within a short wait, or, for one cell step (a fixed
 * team), has as many ranks as asked for, parts of a rank nobody runs being taken at once.
 */
#define _GNU_SOURCE                 /* sched_getaffinity and CPU_COUNT (Linux) */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "checked.h"
#include "internal.h"
#include "tuning.h"

#if FC_X86
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ volatile("yield" ::: "memory")   /* the spin-wait hint */
#else
#define CPU_RELAX() ((void)0)
#endif

/* A worker spins this many rounds for the next region before it sleeps, yielding the core every
 * YIELD_EVERY rounds; the caller waiting for running chunks yields after CALLER_SPINS rounds,
 * and takes a chunk whose worker has not started after CALLER_STEAL_SPINS rounds (a spinning
 * worker starts within a fraction of that; reading its claim sooner would pull the line away
 * from the worker, which writes it first thing next region). A round is one pause
 * instruction. */
enum { MAX_THREADS = 64, SPIN_ROUNDS = 1 << 16, YIELD_EVERY = 64, CALLER_SPINS = 1 << 12,
       CALLER_STEAL_SPINS = 32 };

/* Laid out by who writes what, since every cache line that moves between cores costs tens of
 * nanoseconds and a small call's region is a chain of such moves: the region's fields share the line
 * of the generation that announces them; each worker's chunk has a line of its own, which its
 * worker writes and the caller reads once, at the end. */
static struct {
    _Alignas(64) atomic_uint generation;    /* bumped to start a region */
    int chunks;                     /* the current region (valid while it runs) */
    fc_task_fn fn;
    void *ctx;
    size_t n;
    _Alignas(64) atomic_int sleepers;
    atomic_int held;                /* fc_pool_hold calls not yet released: workers stay awake */
    int started;                    /* workers running */
    pthread_mutex_t region;         /* held by the caller running a parallel region */
    pthread_mutex_t sleep_mutex;
    pthread_cond_t wake;
    unsigned created_in[MAX_THREADS];   /* generation when worker t was created */
    struct {                        /* chunk t >= 1 (chunk 0 is always the caller's) */
        _Alignas(64) atomic_uint claimed;   /* the generation in which it was last claimed */
        _Alignas(64) atomic_uint finished;  /* ... and last finished (polled by the caller) */
    } chunk[MAX_THREADS];
} pool = {
    .region = PTHREAD_MUTEX_INITIALIZER,
    .sleep_mutex = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
};

/* 0 until first asked: then the usable cores. Atomic (relaxed): one Python thread may set it
 * while another's kernel call, without the GIL, reads it. */
static atomic_int num_threads;

/* ---- test-only tuning and counters (tuning.h) ---------------------------------------------- */

fc_tuning fc_tuning_now;
static atomic_size_t counters[FC_COUNT_N];

void fc_tuning_set(const fc_tuning *tuning) { fc_tuning_now = *tuning; }
void fc_tuning_get(fc_tuning *tuning) { *tuning = fc_tuning_now; }

void fc_count(enum fc_counter_id counter)
{
    atomic_fetch_add_explicit(&counters[counter], 1, memory_order_relaxed);
}

void fc_counters_get(fc_counters *out, int reset)
{
    size_t values[FC_COUNT_N];
    for (int i = 0; i < FC_COUNT_N; i++)
        values[i] = reset ? atomic_exchange(&counters[i], 0) : atomic_load(&counters[i]);
    *out = (fc_counters){.short_teams = values[FC_COUNT_SHORT_TEAMS],
                         .late_joins = values[FC_COUNT_LATE_JOINS],
                         .take_overs = values[FC_COUNT_TAKE_OVERS],
                         .chunk_steals = values[FC_COUNT_CHUNK_STEALS],
                         .seq_chunks = values[FC_COUNT_SEQ_CHUNKS]};
}

/* Is this the worker (chunk index >= 1) or team rank that tuning.h says stalls / is slow? */
static int is_worker(int w, size_t index) { return w > 0 && (size_t)w == index; }
static int stalled(size_t index) { return is_worker(fc_tuning_now.stall_worker, index); }
static int slow(size_t rank) { return is_worker(fc_tuning_now.slow_worker, rank); }

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
    int n = atomic_load_explicit(&num_threads, memory_order_relaxed);
    if (n == 0) {                   /* first use: the usable cores, unless set meanwhile */
        int unset = 0;
        n = usable_cores();
        if (!atomic_compare_exchange_strong_explicit(&num_threads, &unset, n,
                                                     memory_order_relaxed, memory_order_relaxed))
            n = unset;
    }
    return n;
}

fc_status fc_set_num_threads(int n)
{
    if (n < 1 || n > MAX_THREADS) return FC_ERR_ARG;
    atomic_store_explicit(&num_threads, n, memory_order_relaxed);
    return FC_OK;
}

static void run_chunk(int t)
{
    const size_t begin = fc_share_bound(pool.n, (size_t)t, (size_t)pool.chunks);
    const size_t end = fc_share_bound(pool.n, (size_t)t + 1, (size_t)pool.chunks);
    if (begin < end) pool.fn(pool.ctx, begin, end);
}

/* Claims chunk t >= 1 for region `gen` (once per region; generations compare modulo 2^32), runs
 * it and marks it finished. The region's fields are read only after a successful claim: the
 * region cannot end, and so cannot be replaced, while one of its chunks is unfinished. */
static int try_chunk(int t, unsigned gen)
{
    unsigned seen = atomic_load(&pool.chunk[t].claimed);
    do {
        if ((int)(gen - seen) <= 0) return 0;   /* claimed in this region or a later one */
    } while (!atomic_compare_exchange_weak(&pool.chunk[t].claimed, &seen, gen));
    run_chunk(t);
    atomic_store_explicit(&pool.chunk[t].finished, gen, memory_order_release);
    return 1;
}

static void *worker(void *arg)
{
    const int index = (int)(size_t)arg;       /* 1-based: chunk 0 is the caller's */
    /* the generation before the region that started us, which it may already have bumped */
    unsigned seen = pool.created_in[index];
    for (;;) {
        unsigned now, spins = 0;
        while ((now = atomic_load(&pool.generation)) == seen &&
               (spins < SPIN_ROUNDS || atomic_load(&pool.held) > 0)) {
            CPU_RELAX();
            if (++spins % YIELD_EVERY == 0) sched_yield();
        }
        if (now == seen) {
            pthread_mutex_lock(&pool.sleep_mutex);
            atomic_fetch_add(&pool.sleepers, 1);
            while ((now = atomic_load(&pool.generation)) == seen && atomic_load(&pool.held) == 0)
                pthread_cond_wait(&pool.wake, &pool.sleep_mutex);
            atomic_fetch_sub(&pool.sleepers, 1);
            pthread_mutex_unlock(&pool.sleep_mutex);
            if (now == seen) continue;              /* woken by fc_pool_hold: spin again */
        }
        seen = now;
        try_chunk(index, now);
    }
    return NULL;
}

static void wake_sleepers(void);

/* Starts workers up to `want` threads (caller included); returns how many there are. */
static int ensure_workers(int want)
{
    while (pool.started + 1 < want) {
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pool.created_in[pool.started + 1] = atomic_load(&pool.generation);
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
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (threads <= 1 || pthread_mutex_trylock(&pool.region) != 0) {
        if (n) fn(ctx, 0, n);
        return;
    }
    threads = ensure_workers(threads);
    pool.fn = fn;
    pool.ctx = ctx;
    pool.n = n;
    pool.chunks = threads;
    const unsigned gen = atomic_load(&pool.generation) + 1;
    for (int t = threads; t <= pool.started; t++)     /* workers sitting this region out */
        atomic_store(&pool.chunk[t].claimed, gen);
    /* seq_cst: publishes the fields above, and pairs with the sleepers check */
    atomic_fetch_add(&pool.generation, 1);
    wake_sleepers();
    run_chunk(0);
    for (int t = 1; t < threads; t++)
        for (int spins = 1;
             atomic_load_explicit(&pool.chunk[t].finished, memory_order_acquire) != gen; spins++) {
            if (spins % CALLER_STEAL_SPINS == 0)                        /* not started yet */
                for (int late = t; late < threads; late++)
                    if (try_chunk(late, gen)) fc_count(FC_COUNT_CHUNK_STEALS);
            if (spins < CALLER_SPINS) CPU_RELAX();
            else sched_yield();
        }
    pthread_mutex_unlock(&pool.region);
}

/* ---- teams: one region whose members run phases together ---------------------------------- */

/* A member waiting for a phase looks for parts nobody has started every STEAL_SPINS rounds
 * (longer than a part's usual lag, far shorter than a preemption) and
 * yields every PHASE_SPINS. */
enum { TEAM_CLOSED = 1u << 31, STEAL_SPINS = 1 << 8, PHASE_SPINS = 1 << 12 };

struct team_shared {
    fc_team_fn fn;
    void *ctx;
    int wanted;                 /* members asked for, the caller included */
    long max_wait_ns;           /* FC_TEAM_FIXED: no joining, `wanted` parts per phase */
    int steal_spins;            /* spins before a waiting member takes unstarted parts */
    /* workers that joined (they are ranks 1..); TEAM_CLOSED once the caller stops waiting */
    _Alignas(64) atomic_uint joined;
    _Alignas(64) atomic_uint parts_done;   /* parts finished, all phases */
    struct { _Alignas(64) atomic_uint phase; } claimed[MAX_THREADS];   /* last phase of part p */
};

static long elapsed_ns(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - since->tv_sec) * 1000000000L + (now.tv_nsec - since->tv_nsec);
}

static void team_member(void *ctx, size_t begin, size_t end)
{
    struct team_shared *ts = ctx;
    fc_team team = {.shared = ts};
    unsigned state;
    if (ts->max_wait_ns == FC_TEAM_FIXED) {
        team.rank = (int)begin;
        team.size = ts->wanted;
        ts->fn(ts->ctx, &team);
        return;
    }
    if (begin == 0) {
        /* the caller: wait for the workers to join (unless running everything alone), close */
        if (end - begin == 1 && ts->wanted > 1) {
            struct timespec start;
            clock_gettime(CLOCK_MONOTONIC, &start);
            for (int spins = 0; atomic_load(&ts->joined) < (unsigned)(ts->wanted - 1); spins++) {
                CPU_RELAX();
                if (spins % 64 == 63 && elapsed_ns(&start) > ts->max_wait_ns) break;
            }
        }
        state = atomic_fetch_or(&ts->joined, TEAM_CLOSED);
        if ((int)state < ts->wanted - 1) fc_count(FC_COUNT_SHORT_TEAMS);
        team.rank = 0;
    } else {
        if (stalled(begin))                             /* tuning.h: join only once closed */
            while (!(atomic_load(&ts->joined) & TEAM_CLOSED)) sched_yield();
        state = atomic_load(&ts->joined);
        do {
            if (state & TEAM_CLOSED) {                  /* too late: the team runs without us */
                fc_count(FC_COUNT_LATE_JOINS);
                return;
            }
        } while (!atomic_compare_exchange_weak(&ts->joined, &state, state + 1));
        team.rank = (int)state + 1;
        /* the last worker wanted completes the team: nobody else can join, so it need not wait
         * for the caller to close it (one line less to pass between cores) */
        if (team.rank < ts->wanted - 1)
            while (!((state = atomic_load(&ts->joined)) & TEAM_CLOSED) &&
                   (int)state < ts->wanted - 1)
                CPU_RELAX();
        else
            state = (unsigned)team.rank;
    }
    team.size = (int)(state & ~TEAM_CLOSED) + 1;
    ts->fn(ts->ctx, &team);
}

void fc_team_run(int threads, long max_wait_ns, fc_team_fn fn, void *ctx)
{
    struct team_shared ts = {.fn = fn, .ctx = ctx, .wanted = threads < 1 ? 1 : threads,
                             .max_wait_ns = max_wait_ns,
                             .steal_spins = fc_tuning_now.steal_spins > 0
                                                ? fc_tuning_now.steal_spins
                                                : max_wait_ns == FC_TEAM_FIXED ? 1 : STEAL_SPINS};
    atomic_init(&ts.joined, 0);
    atomic_init(&ts.parts_done, 0);
    for (int p = 0; p < ts.wanted; p++) atomic_init(&ts.claimed[p].phase, 0);
    fc_parallel_for((size_t)ts.wanted, ts.wanted, team_member, &ts);
}

/* Claims part `part` for `phase` (once per phase; phases compare modulo 2^32). */
static int claim_part(struct team_shared *ts, size_t part, unsigned phase)
{
    unsigned seen = atomic_load(&ts->claimed[part].phase);
    return (int)(phase - seen) > 0 &&
           atomic_compare_exchange_strong(&ts->claimed[part].phase, &seen, phase);
}

void fc_team_phase(fc_team *team, fc_part_fn run, void *ctx)
{
    const size_t parts = (size_t)team->size;
    if (parts <= 1) {
        run(ctx, 0, 1);
        return;
    }
    struct team_shared *ts = team->shared;
    const unsigned phase = ++team->phases;
    const size_t own = (size_t)team->rank;
    if (slow(own))                                  /* tuning.h: until another takes its part */
        for (int spins = 1; (int)(phase - atomic_load(&ts->claimed[own].phase)) > 0; spins++) {
            if (spins % PHASE_SPINS == 0) sched_yield();
            else CPU_RELAX();
        }
    if (claim_part(ts, own, phase)) {
        run(ctx, own, parts);
        atomic_fetch_add(&ts->parts_done, 1);          /* seq_cst: publishes the part's writes */
    }
    /* Wait for the others; only when one is slow, take the parts nobody has started (looking
     * at them sooner would pull their lines across cores every phase). */
    const unsigned target = phase * (unsigned)parts;
    for (int spins = 1; (int)(atomic_load(&ts->parts_done) - target) < 0; spins++) {
        CPU_RELAX();
        if (spins % ts->steal_spins == 0)
            for (size_t i = 1; i < parts; i++) {
                const size_t part = (own + i) % parts;
                if (!claim_part(ts, part, phase)) continue;
                fc_count(FC_COUNT_TAKE_OVERS);
                run(ctx, part, parts);
                atomic_fetch_add(&ts->parts_done, 1);
            }
        if (spins % PHASE_SPINS == 0) sched_yield();
    }
}

static void wake_sleepers(void)
{
    if (atomic_load(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.sleep_mutex);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.sleep_mutex);
    }
}

void fc_pool_hold(void)
{
    atomic_fetch_add(&pool.held, 1);               /* seq_cst: pairs with the sleepers check */
    wake_sleepers();
}

void fc_pool_release(void)
{
    atomic_fetch_sub(&pool.held, 1);
}

/* After fork() only the forking thread exists in the child: forget the workers. */
static void after_fork_in_child(void)
{
    pthread_mutex_init(&pool.region, NULL);
    pthread_mutex_init(&pool.sleep_mutex, NULL);
    pthread_cond_init(&pool.wake, NULL);
    atomic_store(&pool.sleepers, 0);
    atomic_store(&pool.held, 0);
    pool.started = 0;
}

__attribute__((constructor)) static void register_fork_handler(void)
{
    pthread_atfork(NULL, NULL, after_fork_in_child);
}
