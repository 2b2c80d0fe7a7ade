"""Subclasses of the fastcells cells that override ``call()`` (as TF users do) or ``__call__``.

The fastcells cells compute in their own ``__call__`` (one C call, no Python in between) and
their ``step_``; TF's ``Layer.__call__`` runs ``call()``. So that a subclass's ``call`` is what
runs, wherever the cell is stepped:

- ``init_subclass`` (RNNCell's ``__init_subclass__``) gives a subclass that defines ``call`` (and
  not ``__call__``) the ``__call__`` of TF: build if needed, then ``self.call``. A subclass that
  overrides ``call`` or ``__call__`` also gets the generic ``step_`` (``self(inputs, state)``
  copied into the state's arrays) unless it defines ``step_`` itself, so MultiRNNCell.step_
  runs the override too.
- ``native_call`` is what the fastcells classes' ``call`` runs: the class's own step, never
  the subclass's ``__call__`` (so ``super().call(inputs, state)`` inside an override computes
  the cell instead of recursing).
- ``runs_native(cell, base)`` tells the sequence runners (fastcells.rnn) whether they may run
  `cell` in C for a whole sequence: only if no override is in play (else the Python time loop
  calls the cell, hence the override, at every step).

A class is "fastcells'" if its module is fastcells or inside it; everything else is the user's.

The runners ask on every call, so the answer is cached per class (``overrides_call``): a class
gets its overrides when it is created (its namespace, and init_subclass), so one walk of its MRO
answers for its lifetime. What could change it later, assigning ``call`` or ``__call__`` on the
class or on a base, changes what ``cls.call`` / ``cls.__call__`` resolve to: the entry keeps
(weak references to) those and is recomputed when they differ. fastcells' own classes never
override (every class of their MRO is fastcells'), which ``is_own_class`` answers from a set.
"""
import weakref

import numpy as np


def _is_fastcells(klass):
    module = klass.__module__ or ""
    return module == "fastcells" or module.startswith("fastcells.")


def _first_definer(cls, *names):
    """The first class in cls's MRO whose own namespace defines one of `names` (or None)."""
    for klass in cls.__mro__:
        namespace = vars(klass)
        if any(name in namespace for name in names):
            return klass
    return None


# fastcells' own classes met so far (a handful, alive as long as the package)
_OWN_CLASSES = set()
# a user class -> (weakref to cls.call, weakref to cls.__call__, overrides_call(cls)); weak keys,
# so a class that is collected takes its entry with it
_OVERRIDES = weakref.WeakKeyDictionary()


def is_own_class(cls):
    """True if `cls` is one of fastcells' classes (cached: a class's module is fixed)."""
    if cls in _OWN_CLASSES:
        return True
    if _is_fastcells(cls):
        _OWN_CLASSES.add(cls)
        return True
    return False


def _resolves_to(ref, value):
    return ref is not None and ref() is value


def _weak(value):
    try:
        return weakref.ref(value)
    except TypeError:                 # an object without weak references: never matches
        return None


def overrides_call(cls):
    """True if a user class, ahead of fastcells' classes in cls's MRO, defines ``call`` or
    ``__call__`` (cached per class, see the module docstring)."""
    if is_own_class(cls):
        return False                  # every class of its MRO is fastcells' (or object)
    call, dunder = getattr(cls, "call", None), getattr(cls, "__call__", None)
    entry = _OVERRIDES.get(cls)
    if entry is not None and _resolves_to(entry[0], call) and _resolves_to(entry[1], dunder):
        return entry[2]
    klass = _first_definer(cls, "call", "__call__")
    result = klass is not None and not _is_fastcells(klass)
    try:
        _OVERRIDES[cls] = (_weak(call), _weak(dunder), result)
    except TypeError:                 # a class without weak references: not cached
        pass
    return result


def runs_native(cell, base):
    """True if `cell` is a `base` (a fastcells class) that computes with fastcells' own step:
    no ``call`` / ``__call__`` override of a subclass in the way."""
    return isinstance(cell, base) and not overrides_call(type(cell))


def native_call(cell, inputs, state):
    """One step of `cell` by the first fastcells ``__call__`` of its class (what the base
    classes' ``call`` does; a subclass's override of ``__call__`` is not run)."""
    for klass in type(cell).__mro__:
        if "__call__" in vars(klass) and _is_fastcells(klass):
            return klass.__call__(cell, inputs, state)
    raise TypeError(f"cell: {type(cell).__name__} has no fastcells __call__ to run")


def call_through_call(self, inputs, state, scope=None):
    """One step by the subclass's ``call(inputs, state)``, as TF's ``Layer.__call__``: builds the
    cell from ``inputs``' shape first if it is not built."""
    if not self.built:
        self.build(np.shape(inputs))
    return self.call(inputs, state)


def init_subclass(cls, **kwargs):
    """RNNCell's ``__init_subclass__``: routes a user subclass's ``call`` override (see the
    module docstring). A subclass of RNNCell itself needs nothing: RNNCell's ``__call__`` and
    ``step_`` already run ``call``."""
    owner = next(k for k in cls.__mro__[1:]
                 if getattr(vars(k).get("__init_subclass__"), "__func__", None) is init_subclass)
    super(owner, cls).__init_subclass__(**kwargs)
    if _is_fastcells(cls) or not overrides_call(cls):
        return
    call_owner = _first_definer(cls, "__call__")
    if call_owner is owner:
        return                     # a direct RNNCell subclass: its __call__ already runs call
    if _is_fastcells(call_owner):  # the user defines call only: TF's __call__ runs it
        cls.__call__ = call_through_call
    step_owner = _first_definer(cls, "step_")
    if _is_fastcells(step_owner) and step_owner is not owner:
        cls.step_ = owner.step_    # the generic step_, through self(inputs, state)
