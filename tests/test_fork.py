"""Forked children (fastcells._fork, and the C pool's pthread_atfork handler).

Each scenario runs in a fresh interpreter (subprocess) that forks; the parent of the fork waits
for its child with a deadline and kills it on expiry, so a regression (a child hung on a lock
copied held) fails the test instead of hanging the suite. The child checks its results against
values the parent computed before the fork, bit for bit, and reports through its exit status.
"""
import gc
import os
import subprocess
import sys
import textwrap

import pytest

import fastcells

# subprocesses start where the package under test lives (the checkout when built in
# place, site-packages when installed), so `python -c` imports that one
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastcells.__file__)))  # the package tested
pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
# how much slower than native this machine runs Python: the deadlines are multiplied by it
# (tools/aarch64/ci.sh sets it under qemu-user emulation; a hung child still fails, later)
SLOWDOWN = float(os.environ.get("FASTCELLS_TEST_SLOWDOWN", "1"))

# the common part of every scenario: cells at sizes that use two threads, and what they give
# before any fork (run with FASTCELLS_NUM_THREADS unset: set_num_threads(2) below)
PRELUDE = """
import os, pickle, sys, threading, time, traceback
import numpy as np
import fastcells as fc
from fastcells import nn

fc.set_num_threads(2)
rng = np.random.default_rng(0)
lstm = fc.LSTMCell(192, use_peepholes=True, num_proj=64, seed=0); lstm.build(48)
gru = fc.GRUCell(160, reset_after=True, seed=1); gru.build(64)
stack = fc.MultiRNNCell([lstm, gru])
loaded = pickle.loads(pickle.dumps(lstm))          # an unpickled cell has a tracked lock too
x = rng.standard_normal((24, 48)).astype(np.float32)
xs = rng.standard_normal((24, 9, 48)).astype(np.float32)
lengths = rng.integers(0, 10, 24)
state = lstm.zero_state(24)
want_call = lstm(x, state)
want_stack = nn.dynamic_rnn(stack, xs, lengths, dtype=np.float32)
want_bidir = nn.bidirectional_dynamic_rnn(lstm, loaded, xs, lengths, dtype=np.float32)


def flat(v):
    return [a for p in v for a in flat(p)] if isinstance(v, tuple) else [v]


def same(a, b):
    return all(np.array_equal(p, q) for p, q in zip(flat(a), flat(b)))


def child_work():
    '''In the child: set_weights on every cell, then calls from 3 threads and sequences.'''
    for cell in (lstm, gru, loaded):
        cell.set_weights(cell.get_weights())
    assert same(lstm(x, state), want_call), "one call"
    assert same(loaded(x, state), want_call), "one call of the unpickled cell"
    results = [None] * 3

    def run(k):
        results[k] = (lstm(x, state), nn.dynamic_rnn(stack, xs, lengths, dtype=np.float32))
    threads = [threading.Thread(target=run, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for call, seq in results:
        assert same(call, want_call) and same(seq, want_stack), "calls from threads"
    assert same(nn.bidirectional_dynamic_rnn(lstm, loaded, xs, lengths, dtype=np.float32),
                want_bidir), "bidirectional (two stacks on two threads)"


def fork_and_check(deadline=60.0):
    '''Forks; the child runs child_work; the parent waits up to `deadline` seconds (times
    FASTCELLS_TEST_SLOWDOWN).'''
    deadline *= float(os.environ.get("FASTCELLS_TEST_SLOWDOWN", "1"))
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        try:
            child_work()
            status = 0
        except BaseException:
            traceback.print_exc()
            status = 1
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(status)
    stop = time.monotonic() + deadline
    while time.monotonic() < stop:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return "hung"
"""


def run_scenario(body):
    script = PRELUDE + textwrap.dedent(body)
    env = dict(os.environ)
    env.pop("FASTCELLS_NUM_THREADS", None)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=180 * SLOWDOWN)
    assert done.returncode == 0 and done.stdout.strip().endswith("child: 0"), \
        f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"


def test_child_forked_while_another_thread_is_inside_set_weights():
    """A thread is inside set_weights (its _install is slowed, the cell's lock held) when the
    main thread forks: the child's set_weights and calls must work."""
    run_scenario("""
        inside, release = threading.Event(), threading.Event()
        for cell in (lstm, loaded):
            real = cell._install

            def slow_install(I, arrays, real=real):
                inside.set()
                release.wait()
                return real(I, arrays)
            cell._install = slow_install
        holders = [threading.Thread(target=c.set_weights, args=(c.get_weights(),))
                   for c in (lstm, loaded)]
        for t in holders:
            inside.clear()
            t.start()
            inside.wait()
        assert lstm._lock.locked() and loaded._lock.locked()
        for cell in (lstm, loaded):
            del cell._install                 # the child installs weights normally
        status = fork_and_check()
        release.set()
        for t in holders:
            t.join()
        print("child:", status)
    """)


def test_child_forked_while_another_thread_holds_the_lock():
    run_scenario("""
        held, release = threading.Event(), threading.Event()

        def hold():
            with gru._lock:
                held.set()
                release.wait()
        t = threading.Thread(target=hold)
        t.start()
        held.wait()
        status = fork_and_check()
        release.set()
        t.join()
        print("child:", status)
    """)


def test_child_forked_while_the_pool_runs_sequences():
    """The C pool's workers are busy with another thread's sequences at the fork: the child
    (which has none of the parent's worker threads) still runs calls and sequences on two."""
    run_scenario("""
        stop = threading.Event()

        def busy():
            while not stop.is_set():
                assert same(nn.dynamic_rnn(stack, xs, lengths, dtype=np.float32), want_stack)
        t = threading.Thread(target=busy)
        t.start()
        time.sleep(0.05)
        statuses = [fork_and_check() for _ in range(3)]
        stop.set()
        t.join()
        print("child:", max(statuses, key=lambda s: s != 0))
    """)


def test_every_cell_is_tracked_for_forks():
    import copy
    import pickle
    from fastcells import _fork
    cell = fastcells.GRUCell(3)
    dup = copy.deepcopy(cell)
    loaded = pickle.loads(pickle.dumps(cell))
    for c in (cell, dup, loaded):
        assert _fork._live_cells.get(id(c)) is c
    assert dup._lock is not cell._lock and loaded._lock is not cell._lock
    key = id(dup)
    del dup
    gc.collect()
    assert key not in _fork._live_cells, "a dead cell must not stay tracked"
