# Test-only hooks (csrc/tuning.h, csrc/checked.h): force the rare threaded paths and count them;
# the checked packed size. Included by _core.pyx.

_TUNING_FIELDS = ("chunk_steps", "retry_steps", "join_wait_ns", "steal_spins", "min_flops",
                  "stall_worker", "slow_worker")


def _tuning(**settings):
    """Test-only: sets some of the fields of tuning.h (0 = the built-in behaviour) and returns
    every field's previous value as a dict, which _tuning(**previous) restores. Results never
    depend on these; only which thread computes what, and how sequences are cut into chunks.
    Set them only while no kernel call runs."""
    unknown = set(settings) - set(_TUNING_FIELDS)
    if unknown:
        raise TypeError(f"_tuning: unknown settings {sorted(unknown)}; expected some of "
                        f"{list(_TUNING_FIELDS)}")
    cdef fc_tuning t
    fc_tuning_get(&t)
    previous = {"chunk_steps": t.chunk_steps, "retry_steps": t.retry_steps,
                "join_wait_ns": t.join_wait_ns, "steal_spins": t.steal_spins,
                "min_flops": t.min_flops, "stall_worker": t.stall_worker,
                "slow_worker": t.slow_worker}
    for name, value in settings.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
        if value < 0 and name != "join_wait_ns":
            raise ValueError(f"{name}: expected >= 0, got {value}")
    merged = {**previous, **settings}
    t.chunk_steps = merged["chunk_steps"]
    t.retry_steps = merged["retry_steps"]
    t.join_wait_ns = merged["join_wait_ns"]
    t.steal_spins = merged["steal_spins"]
    t.min_flops = merged["min_flops"]
    t.stall_worker = merged["stall_worker"]
    t.slow_worker = merged["slow_worker"]
    fc_tuning_set(&t)
    return previous


def _counters(bint reset=False):
    """Test-only: counts of the rare threaded paths since the last reset (tuning.h): short_teams,
    late_joins, take_overs, chunk_steals, seq_chunks. reset=True zeroes them (returning the
    counts before)."""
    cdef fc_counters c
    fc_counters_get(&c, reset)
    return {"short_teams": c.short_teams, "late_joins": c.late_joins,
            "take_overs": c.take_overs, "chunk_steals": c.chunk_steals,
            "seq_chunks": c.seq_chunks}


def _packed_bytes(size_t k, size_t gates, size_t units, size_t elem, size_t pw):
    """Test-only: the bytes fc_pack would allocate for a [k, gates*units] kernel (pack.c's
    checked size), or ValueError when a product overflows size_t."""
    cdef size_t nbytes = 0
    _check(fc_packed_bytes(k, gates, units, elem, pw, &nbytes), "fc_packed_bytes")
    return nbytes
