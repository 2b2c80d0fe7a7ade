"""Every threaded path of the kernels, forced through the test-only hooks of _core (tuning.h)
and compared with fastcells.reference:

- sequences cut into several chunks per layer (chunk_steps), both directions, ragged lengths,
  stacks, on 1, 2 and 3 threads, with teams formed even at small shapes (min_flops);
- the retry path of a sequence: a worker that joins each team only after it has closed
  (stall_worker), so every team is short and is formed again after retry_steps steps;
- the take-over path: a team member that never runs its own part (slow_worker), in the teams of
  sequences and in the fixed teams of one cell step (GRU, LSTM with projection);
- the split of one cell step by panels or by rows over 1-3 threads.
Each forced run asserts that the counters show its path ran, that the numbers match the
reference (tolerances of tests/test_rnn.py), and that they are bit-identical to the default run:
the hooks change who computes what, never the arithmetic. Run with FASTCELLS_ISA=scalar, avx2,
avx512 to cover each kernel set.
"""
import contextlib

import numpy as np
import pytest

import fastcells
from fastcells import _core, nn, reference
from fastcells.cells import CudnnCompatibleGRUCell, MultiRNNCell
from conftest import CONFIGS, DTYPE_IDS, DTYPES, assert_close, randomize  # noqa: E402
from conftest import oracle_step as ref_step  # noqa: E402
from test_rnn import f64, random_lengths, random_state, zero_like_state  # noqa: E402

CONFIGS = {**CONFIGS,
           "gru_ra": lambda U, dt, s: CudnnCompatibleGRUCell(U, dtype=dt, seed=s)}
PATH_CONFIGS = ["rnn", "basic_lstm", "lstm-all", "lstm-proj", "gru", "gru_ra"]


@contextlib.contextmanager
def tuned(threads=None, **settings):
    """The hooks set (and the counters zeroed) for the block; everything restored after."""
    previous = _core._tuning(**settings)
    _core._counters(reset=True)
    try:
        if threads is None:
            yield
        else:
            with fastcells.threads(threads):
                yield
    finally:
        _core._tuning(**previous)


def make(config, U, dtype, I, seed=0):
    return randomize(CONFIGS[config](U, dtype, seed), np.random.default_rng(seed), I)


def assert_bit_equal(got, want, what):
    got_leaves, want_leaves = _leaves(got), _leaves(want)
    assert len(got_leaves) == len(want_leaves), what
    for k, (g, w) in enumerate(zip(got_leaves, want_leaves)):
        assert g.dtype == w.dtype and g.shape == w.shape, f"{what}[{k}]"
        if not np.array_equal(g, w):
            i = np.unravel_index(np.argmax(g != w), g.shape)
            raise AssertionError(f"{what}[{k}] shape {g.shape}: first difference at {i}: got "
                                 f"{g[i]!r}, default run {w[i]!r}")


def _leaves(s):
    if isinstance(s, np.ndarray):
        return [s]
    return [leaf for item in s for leaf in _leaves(item)]


def chunks_of(lengths, T, chunk):
    """Chunks one layer runs: ceil(longest length / chunk)."""
    longest = T if lengths is None else int(max(lengths))
    return -(-longest // chunk)


def test_tuning_hooks_validate_and_restore():
    before = _core._tuning()
    assert set(before) == {"chunk_steps", "retry_steps", "join_wait_ns", "steal_spins",
                           "min_flops", "stall_worker", "slow_worker"}
    assert all(v == 0 for v in before.values()), before       # the defaults: built-in values
    with pytest.raises(TypeError, match=r"_tuning: unknown settings \['chunk'\]"):
        _core._tuning(chunk=3)
    with pytest.raises(ValueError, match=r"chunk_steps: expected >= 0, got -1"):
        _core._tuning(chunk_steps=-1)
    with pytest.raises(TypeError, match=r"min_flops: expected an int, got float"):
        _core._tuning(min_flops=1.5)
    with tuned(chunk_steps=2, slow_worker=1):
        assert _core._tuning()["chunk_steps"] == 2
    assert _core._tuning() == before
    counts = _core._counters()
    assert set(counts) == {"short_teams", "late_joins", "take_overs", "chunk_steals",
                           "seq_chunks"}


# ---------------------------------------------------------------------------------------------
# sequences in many chunks: one layer, both directions, stacks; 1, 2, 3 threads
# ---------------------------------------------------------------------------------------------

def _sequence_case(config, dtype, seed, B, T, U, I):
    """A cell, ragged inputs x [B,T,I] with their lengths and a random initial state, the
    default run's result and the reference's."""
    rng = np.random.default_rng(seed)
    cell = make(config, U, dtype, I)
    x = rng.uniform(-1, 1, (B, T, I)).astype(dtype)
    lengths = random_lengths(B, T, rng)
    init = random_state(cell, B, rng)
    default = nn.dynamic_rnn(cell, x, lengths, init)
    want = reference.dynamic_rnn(ref_step(cell), f64(x), f64(init), lengths)
    return cell, x, lengths, init, default, want


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("config", PATH_CONFIGS)
def test_dynamic_rnn_in_many_chunks_matches_reference(config, dtype, threads):
    T = 17
    cell, x, lengths, init, default, want = _sequence_case(config, dtype, 21, B=7, T=T, U=33,
                                                           I=5)
    for chunk in (1, 3, 16):
        with tuned(threads, chunk_steps=chunk, min_flops=1):
            got = nn.dynamic_rnn(cell, x, lengths, init)
            counts = _core._counters()
        assert counts["seq_chunks"] == chunks_of(lengths, T, chunk), counts
        assert_close(got, want, dtype, f"{config} chunk {chunk} threads {threads}")
        assert_bit_equal(got, default, f"{config} chunk {chunk} threads {threads}")


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_bidirectional_stacks_in_many_chunks_match_reference(dtype, threads):
    rng = np.random.default_rng(22)
    B, T, I = 5, 13, 4
    cell_fw = MultiRNNCell([make("lstm-all", 17, dtype, I, 1), make("gru", 9, dtype, 5, 2)])
    cell_bw = MultiRNNCell([make("gru_ra", 16, dtype, I, 3), make("lstm-proj", 8, dtype, 16, 4),
                            make("rnn", 3, dtype, 5, 5)])
    x = rng.uniform(-1, 1, (T, B, I)).astype(dtype)
    lengths = random_lengths(B, T, rng)
    init_fw, init_bw = random_state(cell_fw, B, rng), random_state(cell_bw, B, rng)
    run = lambda: nn.bidirectional_dynamic_rnn(cell_fw, cell_bw, x, lengths, init_fw,  # noqa
                                               init_bw, time_major=True)
    default = run()
    want = reference.bidirectional_dynamic_rnn(ref_step(cell_fw), ref_step(cell_bw), f64(x),
                                               f64(init_fw), f64(init_bw), lengths, True)
    for chunk in (1, 4):
        with tuned(threads, chunk_steps=chunk, min_flops=1):
            got = run()
            counts = _core._counters()
        assert counts["seq_chunks"] == 5 * chunks_of(lengths, T, chunk), counts    # 5 layers
        assert_close(got, want, dtype, f"chunk {chunk} threads {threads}")
        assert_bit_equal(got, default, f"chunk {chunk} threads {threads}")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("config", PATH_CONFIGS)
def test_one_row_sequences_match_reference(config, dtype):
    """B = 1: each step's h is written straight into its output row and read back from there by
    the next step; with one thread the layer runs with no team, with min_flops=1 on 2 and 3
    threads as a team. Both directions, a row shorter than T and one of length 0 (final state
    h0), time- and batch-major."""
    rng = np.random.default_rng(27)
    T, I = 9, 3
    cell_fw, cell_bw = make(config, 33, dtype, I, 1), make(config, 20, dtype, I, 2)
    for length, time_major in [(None, False), (5, True), (0, False)]:
        x = rng.uniform(-1, 1, (T, 1, I) if time_major else (1, T, I)).astype(dtype)
        lengths = None if length is None else np.array([length])
        init_fw, init_bw = random_state(cell_fw, 1, rng), random_state(cell_bw, 1, rng)
        runs = {
            "uni": lambda: nn.dynamic_rnn(cell_fw, x, lengths, init_fw,  # noqa: E731
                                          time_major=time_major),
            "bi": lambda: nn.bidirectional_dynamic_rnn(cell_fw, cell_bw, x, lengths,  # noqa
                                                       init_fw, init_bw,
                                                       time_major=time_major)}
        wants = {
            "uni": reference.dynamic_rnn(ref_step(cell_fw), f64(x), f64(init_fw), lengths,
                                         time_major),
            "bi": reference.bidirectional_dynamic_rnn(ref_step(cell_fw), ref_step(cell_bw),
                                                      f64(x), f64(init_fw), f64(init_bw),
                                                      lengths, time_major)}
        for name, run in runs.items():
            default = run()
            what = f"{config} {name} length {length} time_major {time_major}"
            assert_close(default, wants[name], dtype, what)
            for threads in (1, 2, 3):
                with tuned(threads, min_flops=1):
                    got = run()
                assert_bit_equal(got, default, f"{what} threads {threads}")


# ---------------------------------------------------------------------------------------------
# the retry path (late joins, short teams) and the take-over path of sequences
# ---------------------------------------------------------------------------------------------

def _run_tuned(config, dtype, threads, seed, T, I, **hooks):
    """One dynamic_rnn of B=13 ragged rows, U=130 (enough panels for 3 members), under the
    tuning `hooks`: (its outputs, the reference's, the default run's, the lengths, the
    counters of the tuned run)."""
    cell, x, lengths, init, default, want = _sequence_case(config, dtype, seed, B=13, T=T,
                                                           U=130, I=I)
    with tuned(threads, **hooks):
        got = nn.dynamic_rnn(cell, x, lengths, init)
        counts = _core._counters()
    return got, want, default, lengths, counts


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("config", ["lstm-proj", "gru", "rnn", "gru_ra"])
def test_sequence_with_a_worker_that_joins_late_matches_reference(config, dtype, threads):
    """Worker 1 reaches every team after it closed: each team is short, runs retry_steps steps
    and is formed again; the numbers do not change."""
    got, want, default, lengths, counts = _run_tuned(
        config, dtype, threads, 23, T=11, I=3, chunk_steps=4, retry_steps=1, min_flops=1,
        stall_worker=1)
    # every team of the layer is short: one per step (retry_steps=1), each with a late join
    assert counts["short_teams"] >= int(max(lengths)), counts
    assert counts["late_joins"] >= int(max(lengths)), counts
    assert_close(got, want, dtype, f"{config} threads {threads}")
    assert_bit_equal(got, default, f"{config} threads {threads}")


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("config", ["lstm-all", "lstm-proj", "gru", "gru_ra"])
def test_sequence_with_a_member_that_never_runs_its_part_matches_reference(config, dtype,
                                                                          threads):
    """Rank 1 of every team joins (the caller waits for it) and then waits in every phase
    until another member has run its part: every part of rank 1 is taken over."""
    got, want, default, lengths, counts = _run_tuned(
        config, dtype, threads, 24, T=9, I=4, chunk_steps=3, min_flops=1, slow_worker=1,
        steal_spins=1, join_wait_ns=10 ** 9)
    # at least the gather, the projection and one product per step of rank 1's parts
    assert counts["take_overs"] >= int(max(lengths)), counts
    assert_close(got, want, dtype, f"{config} threads {threads}")
    assert_bit_equal(got, default, f"{config} threads {threads}")


# ---------------------------------------------------------------------------------------------
# one cell step: split by panels or rows over 1-3 threads, and the fixed team's take-over
# ---------------------------------------------------------------------------------------------

def one_step(cell, x, state):
    return cell(x, state)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("config", PATH_CONFIGS)
@pytest.mark.parametrize("B,U", [(1, 200), (37, 8), (13, 65)], ids=["panels", "rows", "both"])
def test_cell_step_split_across_threads_matches_reference(config, dtype, threads, B, U):
    rng = np.random.default_rng(25)
    cell = make(config, U, dtype, 6)
    x = rng.uniform(-1, 1, (B, 6)).astype(dtype)
    state = random_state(cell, B, rng)
    default = cell(x, state)
    want = ref_step(cell)(f64(x), f64(state))
    with tuned(threads, min_flops=1):
        got = cell(x, state)
    assert_close(got, want, dtype, f"{config} B{B} U{U} threads {threads}")
    assert_bit_equal(got, default, f"{config} B{B} U{U} threads {threads}")


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("config", ["gru", "lstm-proj", "lstm-all"])
def test_cell_step_fixed_team_take_over_matches_reference(config, dtype, threads):
    """The two-product steps run as a fixed team; rank 1 never runs its own parts, so both
    phases' parts of rank 1 are taken over by the others."""
    rng = np.random.default_rng(26)
    B, U = 9, 70
    cell = make(config, U, dtype, 5)
    if config == "lstm-all":                        # its projection makes it a two-product step
        assert cell.output_size != cell.num_units
    x = rng.uniform(-1, 1, (B, 5)).astype(dtype)
    state = random_state(cell, B, rng)
    default = cell(x, state)
    want = ref_step(cell)(f64(x), f64(state))
    with tuned(threads, min_flops=1, slow_worker=1):
        got = [cell(x, state) for _ in range(3)]
        counts = _core._counters()
    assert counts["take_overs"] >= 2 * 3, counts    # both phases, every call
    for k, g in enumerate(got):
        assert_close(g, want, dtype, f"{config} call {k} threads {threads}")
        assert_bit_equal(g, default, f"{config} call {k} threads {threads}")


def test_packed_sizes_near_size_max():
    """pack.c's checked size: exact below the limit, ValueError when a product overflows."""
    size_max = 2 ** 64 - 1
    assert _core._packed_bytes(10, 4, 8, 4, 64) == 1 * 11 * 64 * 4
    assert _core._packed_bytes(10, 4, 33, 8, 64) == 3 * 11 * 64 * 8
    # the largest k whose packed size fits: 1 block of (1 + k) rows x 64 columns x 4 bytes
    k = size_max // 256 - 1
    assert _core._packed_bytes(k, 1, 64, 4, 64) == (k + 1) * 256
    for args in [(k + 1, 1, 64, 4, 64),         # (1 + k) * 256 > SIZE_MAX
                 (size_max, 1, 1, 4, 64),       # 1 + k wraps
                 (1, 4, size_max // 2, 4, 64),  # gates * units wraps
                 (2 ** 40, 1, 2 ** 30, 4, 64)]: # the kernel's size wraps
        with pytest.raises(ValueError, match=r"fc_packed_bytes: the sizes are too large"):
            _core._packed_bytes(*args)
    with pytest.raises(ValueError, match=r"fc_packed_bytes: invalid arguments"):
        _core._packed_bytes(1, 0, 1, 4, 64)
