/* tuning.h — test-only hooks into the threaded paths, so that tests can force and count what a
 * busy machine does by chance: sequences cut into many chunks, teams formed short, a worker
 * that joins late or never runs its own part. Every field 0 (the default) means the built-in
 * behaviour; results never depend on these settings, only which thread computes what.
 * Set them only while no kernel call is running (they are read without synchronisation). */
#ifndef FASTCELLS_TUNING_H
#define FASTCELLS_TUNING_H

#include "internal.h"

typedef struct fc_tuning {
    size_t chunk_steps;     /* sequences: steps per chunk (0: by CHUNK_BYTES and CHUNK_FLOPS) */
    size_t retry_steps;     /* sequences: steps a short team runs before the next is formed */
    long join_wait_ns;      /* sequences: how long the caller waits for workers to join a team
                               (0: JOIN_WAIT_NS; < 0: do not wait at all) */
    int steal_spins;        /* teams: spins of a waiting member before it takes parts nobody
                               has started (0: STEAL_SPINS, 1 for a fixed team) */
    size_t min_flops;       /* FLOPs a thread (team member) must get (0: the built-in values),
                               so that small shapes run threaded */
    int stall_worker;       /* pool worker w >= 1 (0: none) joins every joined team only once
                               it has closed: a late join, the team short (a retry) */
    int slow_worker;        /* the member of rank w >= 1 (0: none) of any team waits in every
                               phase until another member has taken its part: a take-over */
} fc_tuning;

/* Counts of the rare paths, since the last reset (relaxed atomics; exact once calls return). */
typedef struct fc_counters {
    size_t short_teams;     /* joined teams closed with fewer members than wanted */
    size_t late_joins;      /* workers that reached a joined team after it closed */
    size_t take_overs;      /* team parts run by a member other than their rank's */
    size_t chunk_steals;    /* fc_parallel_for chunks run by the caller for a late worker */
    size_t seq_chunks;      /* chunks of steps run by sequence layers */
} fc_counters;

void fc_tuning_set(const fc_tuning *tuning);
void fc_tuning_get(fc_tuning *tuning);
void fc_counters_get(fc_counters *counters, int reset);

/* For the drivers: the current settings (threads.c owns them) and the counters they bump. */
extern fc_tuning fc_tuning_now;
enum fc_counter_id {        /* the fields of fc_counters, in order */
    FC_COUNT_SHORT_TEAMS, FC_COUNT_LATE_JOINS, FC_COUNT_TAKE_OVERS,
    FC_COUNT_CHUNK_STEALS, FC_COUNT_SEQ_CHUNKS, FC_COUNT_N
};
void fc_count(enum fc_counter_id counter);

/* FLOPs a thread of one cell step must get: FC_MIN_FLOPS_PER_THREAD unless tuned. */
static inline size_t fc_min_flops_per_thread(void)
{
    return fc_tuning_now.min_flops ? fc_tuning_now.min_flops : FC_MIN_FLOPS_PER_THREAD;
}

#endif /* FASTCELLS_TUNING_H */
