"""Thread-count conventions: the default from the environment, a context manager, threadpoolctl.

Default count, decided once at import (no thread is created then: the pool starts its workers at
the first call that uses them):
  1. FASTCELLS_NUM_THREADS, if set to an int >= 1;
  2. else OMP_NUM_THREADS (its first entry, as OpenMP reads "4,2"), if an int >= 1;
  3. else the CPUs in this process's affinity mask.
Either variable's value is capped at the CPUs of the affinity mask (never more threads than
cores this process may run on; ``set_num_threads`` still accepts up to 64). A variable that is
set but is not an int >= 1 is ignored with a RuntimeWarning that names it, its value and what
is used instead (the next rule). An empty variable counts as unset.

``threads(n)`` sets the count for a ``with`` block and restores the previous count on exit;
blocks nest. The count is one per process: Python threads inside ``threads()`` blocks at the
same time share it (the most recently opened block's), and the count from before is back once
every block has closed.

With threadpoolctl installed, a controller is registered for fastcells (user_api and
internal_api "fastcells"), so ``threadpool_limits(1)`` limits fastcells and ``threadpool_info()``
lists it.

Importing this module (fastcells does, last) applies the default and registers the controller.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import threading
import warnings
from typing import Iterator

from fastcells import _core

MAX_THREADS = 64                    # fc_set_num_threads' range: 1..64
_ENV_VARIABLES = ("FASTCELLS_NUM_THREADS", "OMP_NUM_THREADS")
_lock = threading.Lock()


def affinity_cpus():
    """CPUs this process may run on (its affinity mask), at most MAX_THREADS."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):           # no affinity API (not Linux)
        n = os.cpu_count() or 1
    return max(1, min(n, MAX_THREADS))


def _parse_count(name, value):
    """An env variable's thread count, or None if it is not an int >= 1."""
    text = value.split(",")[0].strip() if name == "OMP_NUM_THREADS" else value.strip()
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n >= 1:
        return n
    return None


def default_num_threads(environ=None):
    """The default thread count from `environ` (os.environ) and the affinity mask (see the
    module docstring); warns about a set variable that is not an int >= 1."""
    environ = os.environ if environ is None else environ
    cpus = affinity_cpus()
    for k, name in enumerate(_ENV_VARIABLES):
        value = environ.get(name)
        if value is None or value.strip() == "":
            continue
        n = _parse_count(name, value)
        if n is not None:
            return min(n, cpus)
        fallback = (" or ".join(_ENV_VARIABLES[k + 1:]) + " if set, else " if
                    k + 1 < len(_ENV_VARIABLES) else "")
        warnings.warn(f"{name}={value!r}: expected an int >= 1; ignored (using {fallback}"
                      f"the {cpus} CPUs of the affinity mask)", RuntimeWarning, stacklevel=3)
    return cpus


def apply_default():
    _core.set_num_threads(default_num_threads())


_open_blocks = []                   # (token, n) of the threads() blocks open now, oldest first
_count_outside = [0]                # the count when the first of them opened


@contextlib.contextmanager
def threads(n: int) -> Iterator[int]:
    """``with fastcells.threads(n):`` kernel calls in the block use up to n threads (1..64).

    The previous count is restored on exit, also when the block raises. Blocks nest, and may
    be open in several Python threads at once: while any is open the count is that of the
    most recently opened one still open; when the last closes, the count from before the first
    is back. Results are identical for any count.

    Parameters
    ----------
    n : int
        The thread count inside the block, 1..64.

    Returns
    -------
    context manager
        Yields `n` to ``with ... as``.

    Raises
    ------
    TypeError
        If `n` is not an int.
    ValueError
        If `n` is outside 1..64.

    Examples
    --------
    >>> import fastcells
    >>> before = fastcells.get_num_threads()
    >>> with fastcells.threads(1) as n:
    ...     print(n, fastcells.get_num_threads())
    1 1
    >>> fastcells.get_num_threads() == before
    True
    """
    token = object()
    with _lock:
        outside = _core.get_num_threads()
        _core.set_num_threads(n)        # validates n: TypeError / ValueError naming it
        if not _open_blocks:
            _count_outside[0] = outside
        _open_blocks.append((token, n))
    try:
        yield n
    finally:
        with _lock:
            _open_blocks[:] = [block for block in _open_blocks if block[0] is not token]
            _core.set_num_threads(_open_blocks[-1][1] if _open_blocks else _count_outside[0])


def register_threadpoolctl():
    """Registers the fastcells controller with threadpoolctl if it is installed (it is imported
    only then). Returns the controller class, or None."""
    if importlib.util.find_spec("threadpoolctl") is None:
        return None
    import threadpoolctl
    if not (hasattr(threadpoolctl, "register") and hasattr(threadpoolctl, "LibController")):
        return None                                 # threadpoolctl < 3.x: no custom controllers
    from fastcells import __version__

    class FastcellsController(threadpoolctl.LibController):
        """fastcells' thread pool, through the exported fc_get/fc_set_num_threads of _core."""
        user_api = "fastcells"
        internal_api = "fastcells"
        # the extension module's file name; the symbols tell it from other modules named _core
        filename_prefixes = ("_core.",)
        check_symbols = ("fc_get_num_threads", "fc_set_num_threads")

        def get_num_threads(self):
            return self.dynlib.fc_get_num_threads()

        def set_num_threads(self, num_threads):
            return self.dynlib.fc_set_num_threads(max(1, min(int(num_threads), MAX_THREADS)))

        def get_version(self):
            return __version__

    threadpoolctl.register(FastcellsController)
    return FastcellsController


apply_default()
register_threadpoolctl()
