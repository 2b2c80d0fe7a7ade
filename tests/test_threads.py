"""Thread-count conventions (fastcells/_threads.py): the default from FASTCELLS_NUM_THREADS,
OMP_NUM_THREADS and the affinity mask (each read in a fresh interpreter, so the environment is
the child's), bad values warned about and skipped, no thread started at import,
fastcells.threads(n) as a context manager, and the threadpoolctl controller."""
import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

import fastcells
from fastcells import _threads

# subprocesses start where the package under test lives (the checkout when built in
# place, site-packages when installed), so `python -c` imports that one
ROOT = Path(fastcells.__file__).resolve().parent.parent  # the package tested
CPUS = _threads.affinity_cpus()


def run_python(code, **env_vars):
    """Runs `code` in a fresh interpreter with FASTCELLS_NUM_THREADS / OMP_NUM_THREADS taken
    from env_vars only (None: unset); returns (stdout, stderr)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("FASTCELLS_NUM_THREADS", "OMP_NUM_THREADS")}
    env.update({k: v for k, v in env_vars.items() if v is not None})
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + env.get("PYTHONPATH", "").split(os.pathsep))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120, cwd=str(ROOT))
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout.strip(), done.stderr


PRINT_COUNT = "import fastcells; print(fastcells.get_num_threads())"


def test_omp_num_threads_one_gives_one_thread():
    out, _ = run_python(PRINT_COUNT, OMP_NUM_THREADS="1")
    assert out == "1"


def test_default_is_the_affinity_mask():
    out, err = run_python(PRINT_COUNT)
    assert out == str(CPUS), err


@pytest.mark.parametrize("fastcells_var,omp_var,expected", [
    ("1", None, 1),
    ("1", "2", 1),                      # FASTCELLS_NUM_THREADS first
    (None, "1,2", 1),                   # OpenMP's nested list: its first entry
    (None, " 1 ", 1),
    ("", "1", 1),                       # empty counts as unset
    ("1000", None, CPUS),               # capped at the affinity mask
    (None, "1000", CPUS),
])
def test_default_from_the_environment(fastcells_var, omp_var, expected):
    out, err = run_python(PRINT_COUNT, FASTCELLS_NUM_THREADS=fastcells_var,
                          OMP_NUM_THREADS=omp_var)
    assert out == str(expected), err


@pytest.mark.parametrize("fastcells_var,omp_var,expected,warned", [
    ("zero", None, CPUS, "FASTCELLS_NUM_THREADS='zero'"),
    ("0", "1", 1, "FASTCELLS_NUM_THREADS='0'"),         # skipped: OMP_NUM_THREADS is used
    ("-3", None, CPUS, "FASTCELLS_NUM_THREADS='-3'"),
    (None, "many", CPUS, "OMP_NUM_THREADS='many'"),
    ("2.5", None, CPUS, "FASTCELLS_NUM_THREADS='2.5'"),
])
def test_bad_value_warns_and_uses_the_next_rule(fastcells_var, omp_var, expected, warned):
    out, err = run_python(PRINT_COUNT, FASTCELLS_NUM_THREADS=fastcells_var,
                          OMP_NUM_THREADS=omp_var)
    assert out == str(expected), err
    assert "RuntimeWarning" in err and warned in err and "expected an int >= 1; ignored" in err, err


def test_default_num_threads_reads_the_given_environment():
    assert _threads.default_num_threads({}) == CPUS
    assert _threads.default_num_threads({"OMP_NUM_THREADS": "1"}) == 1
    with pytest.warns(RuntimeWarning, match=r"OMP_NUM_THREADS='x': expected an int >= 1; "
                                            r"ignored \(using the \d+ CPUs of the affinity "
                                            r"mask\)"):
        assert _threads.default_num_threads({"OMP_NUM_THREADS": "x"}) == CPUS
    with pytest.warns(RuntimeWarning, match=r"FASTCELLS_NUM_THREADS='-1': expected an int >= 1; "
                                            r"ignored \(using OMP_NUM_THREADS if set"):
        assert _threads.default_num_threads({"FASTCELLS_NUM_THREADS": "-1",
                                             "OMP_NUM_THREADS": "1"}) == 1


NATIVE_THREADS = """
import os
def tasks():
    return len(os.listdir('/proc/self/task'))
import numpy                            # its own threads (OpenBLAS) start here, not ours
try:
    import threadpoolctl                # optional (not installed in the aarch64 CI job)
except ImportError:
    pass
before = tasks()
import fastcells
after_import = tasks()
fastcells.set_num_threads(2)
cell = fastcells.GRUCell(256, dtype='float32', seed=0)
x = numpy.ones((64, 256), 'float32')
cell(x, cell.zero_state(64, 'float32'))
after_call = tasks()
print(before, after_import, after_call)
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")
def test_no_thread_is_started_at_import():
    out, err = run_python(NATIVE_THREADS)
    before, after_import, after_call = map(int, out.split())
    assert after_import == before, f"import started {after_import - before} threads\n{err}"
    assert after_call == before + 1, "the first two-thread call starts exactly one worker"


def test_threads_context_manager_restores_and_nests():
    start = fastcells.get_num_threads()
    with fastcells.threads(1) as n:
        assert n == 1 and fastcells.get_num_threads() == 1
        with fastcells.threads(3):
            assert fastcells.get_num_threads() == 3
        assert fastcells.get_num_threads() == 1
    assert fastcells.get_num_threads() == start
    with pytest.raises(RuntimeError, match="inside"):
        with fastcells.threads(2):
            raise RuntimeError("inside")
    assert fastcells.get_num_threads() == start
    for bad, exc in ((0, ValueError), (65, ValueError), (1.5, TypeError), (True, TypeError)):
        with pytest.raises(exc, match="n: expected"):
            with fastcells.threads(bad):
                pass
        assert fastcells.get_num_threads() == start


def test_threads_context_manager_from_many_threads():
    """Each thread's blocks restore what it saw; after all exit, the start count is back, and the
    numbers never depend on the count."""
    start = fastcells.get_num_threads()
    cell = fastcells.GRUCell(96, dtype="float32", seed=0)
    x = np.random.default_rng(0).uniform(-1, 1, (16, 96)).astype(np.float32)
    want = cell(x, cell.zero_state(16, "float32"))[0]
    errors = []

    def worker(n):
        try:
            for _ in range(20):
                with fastcells.threads(n):
                    got = cell(x, cell.zero_state(16, "float32"))[0]
                    if not np.array_equal(got, want):
                        errors.append(f"threads({n}): numbers differ")
        except Exception as e:                    # noqa: BLE001 (reported below)
            errors.append(repr(e))

    pool = [threading.Thread(target=worker, args=(n,)) for n in (1, 2, 3, 1)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors, errors
    assert fastcells.get_num_threads() == start


def test_threadpoolctl_lists_and_limits_fastcells():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not hasattr(threadpoolctl, "register"):
        pytest.skip("threadpoolctl < 3.x has no custom controllers")
    start = fastcells.get_num_threads()
    info = [lib for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "fastcells"]
    assert len(info) == 1, threadpoolctl.threadpool_info()
    assert info[0]["internal_api"] == "fastcells"
    assert info[0]["num_threads"] == start
    assert info[0]["version"] == fastcells.__version__
    assert Path(info[0]["filepath"]).resolve() == Path(fastcells._core.__file__).resolve()
    with threadpoolctl.threadpool_limits(1):
        assert fastcells.get_num_threads() == 1
    assert fastcells.get_num_threads() == start
    with threadpoolctl.threadpool_limits(limits=1, user_api="fastcells"):
        assert fastcells.get_num_threads() == 1
    assert fastcells.get_num_threads() == start
    with threadpoolctl.threadpool_limits(1000, user_api="fastcells"):
        assert fastcells.get_num_threads() == _threads.MAX_THREADS      # clamped, not refused
    assert fastcells.get_num_threads() == start


def test_import_without_threadpoolctl():
    """A fresh interpreter where threadpoolctl cannot be found: fastcells imports, registers
    nothing, and does not import it."""
    code = ("import sys\n"
            "sys.modules['threadpoolctl'] = None     # not importable, not findable\n"
            "import fastcells\n"
            "print(fastcells._threads.register_threadpoolctl(), fastcells.get_num_threads() >= 1)\n")
    out, err = run_python(code)
    assert out == "None True", err


def test_warning_is_a_runtime_warning_not_an_error():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _threads.default_num_threads({"FASTCELLS_NUM_THREADS": "2"}) == min(2, CPUS)
