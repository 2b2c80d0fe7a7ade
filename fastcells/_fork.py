"""Fork safety of the cells' Python locks.

Every fastcells cell owns a ``threading.Lock`` (held while ``build`` or ``set_weights`` installs
new weights). ``os.fork`` copies the memory of the forking thread only: a lock that another thread
held at that moment stays held forever in the child, whose next ``set_weights`` would hang. So
every live cell is tracked here (weakly) and a child gives each one a fresh lock right after the
fork (``os.register_at_fork(after_in_child=...)``). The C thread pool resets itself in the child
with its own ``pthread_atfork`` handler.

    new_lock(cell) -> threading.Lock    a cell's lock, and the cell tracked for forks
"""
import os
import threading
import weakref

# id(cell) -> cell, every live cell that owns a lock (entries vanish with their cell). Keyed by
# id, not by the cell, so that a subclass defining __eq__ without __hash__ is tracked too.
_live_cells = weakref.WeakValueDictionary()


def new_lock(cell):
    """A new lock for `cell`, which is tracked from now on so that a forked child replaces it."""
    _live_cells[id(cell)] = cell
    return threading.Lock()


def _fresh_locks_in_child():
    """In a forked child (one thread: the one that forked): a new, unheld lock for every cell.
    A lock the forking thread itself held is released by that thread's own ``with`` block,
    which keeps the old lock object."""
    for cell in list(_live_cells.values()):
        cell._lock = threading.Lock()


if hasattr(os, "register_at_fork"):        # POSIX (Windows has no fork)
    os.register_at_fork(after_in_child=_fresh_locks_in_child)
