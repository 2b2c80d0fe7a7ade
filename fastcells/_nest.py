"""Nested states, written once: LSTMStateTuple, and the helpers that walk a state of arrays,
tuples, lists and namedtuples (LSTMStateTuple among them) depth first.

    flatten(s)              -> [leaf, ...]
    pack_as(structure, xs)  -> xs in the nesting of `structure` (namedtuple types kept)
    map_structure(fn, s)    -> fn applied to every leaf, in the nesting of `s`
    arrays_for_size(size, batch, dtype, alloc)
                            -> alloc((batch, s), dtype) for every s of a (nested) state_size
"""
import collections

import numpy as np

__all__ = ["LSTMStateTuple", "flatten", "pack_as", "map_structure", "arrays_for_size"]


class LSTMStateTuple(collections.namedtuple("LSTMStateTuple", ("c", "h"))):
    """The state of an LSTM cell with ``state_is_tuple=True``: ``(c, h)``, cell state first.

    c: [B, num_units]; h: [B, num_proj or num_units], the last output. (Keras and PyTorch order
    their LSTM states (h, c): mind the order when converting.)
    """
    __slots__ = ()
    __module__ = "fastcells.cells"          # where users import it from (and pickle finds it)

    @property
    def dtype(self):
        """The common dtype of c and h; TypeError if they differ (as TF)."""
        c, h = self
        dc, dh = getattr(c, "dtype", None), getattr(h, "dtype", None)
        if dc != dh:
            raise TypeError(f"LSTMStateTuple: inconsistent dtypes for c and h: {dc} vs {dh}")
        return dc


def flatten(s):
    """The leaves of a nested state, depth first, as a list (leaves as they are)."""
    if isinstance(s, (tuple, list)):
        return [leaf for item in s for leaf in flatten(item)]
    return [s]


def pack_as(structure, leaves):
    """Rebuilds `structure` (tuple / namedtuple / list nesting) from the flat `leaves`."""
    it = iter(leaves)

    def build(s):
        if isinstance(s, (tuple, list)):
            items = [build(v) for v in s]
            if hasattr(s, "_fields"):          # namedtuple: keep its type
                return type(s)(*items)
            return type(s)(items)
        return next(it)

    return build(structure)


def map_structure(fn, s):
    """fn(leaf) for every leaf of `s`, in the nesting of `s`."""
    return pack_as(s, [fn(leaf) for leaf in flatten(s)])


def arrays_for_size(size, batch, dtype, alloc=np.zeros):
    """``alloc((batch, s), dtype)`` for every int ``s`` of a (nested) ``state_size``; nested
    sizes give tuples, an LSTMStateTuple (any namedtuple) of sizes gives one of arrays."""
    if isinstance(size, (tuple, list)):
        parts = [arrays_for_size(s, batch, dtype, alloc) for s in size]
        return type(size)(*parts) if hasattr(size, "_fields") else tuple(parts)
    return alloc((batch, int(size)), dtype=dtype)
