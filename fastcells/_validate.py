"""Argument checking at the boundary, written once for the cells, the runners and the
converters: every message names the argument, the expected and the got.

    check_dtype, check_int, check_real, check_clip, check_name, check_kwargs   scalars
    as_array, as_weight                     array-likes -> ndarrays of the cell's dtype
    bridge_ready(a)                         can the C bridge read the 2-D `a` as is?
    parse_input_size(input_size, argname)   TF's build(inputs_shape) -> the input depth
    describe(obj), shape_text(rows, cols), reraise(e, prefix)   message helpers
"""
import numbers

import numpy as np

from fastcells._nest import LSTMStateTuple

F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)
# TF Layer keyword arguments that the cells accept and ignore
IGNORED_KWARGS = frozenset({"trainable", "_scope", "_reuse", "autocast"})
_ndarray = np.ndarray


def check_dtype(dtype, argname="dtype"):
    """None -> float32; float32/float64 in any spelling (also a TF dtype) -> numpy dtype."""
    if dtype is None:
        return F32
    raw = getattr(dtype, "as_numpy_dtype", dtype)
    try:
        dt = np.dtype(raw)
    except TypeError:
        raise TypeError(f"{argname}: expected float32 or float64 (or None for float32), "
                        f"got {dtype!r}") from None
    if dt != F32 and dt != F64:
        raise TypeError(f"{argname}: expected float32 or float64 (or None for float32), "
                        f"got {dt}")
    return F64 if dt == F64 else F32


def check_int(value, argname, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{argname}: expected an int >= {minimum}, got "
                        f"{type(value).__name__} {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{argname}: expected an int >= {minimum}, got {value}")
    return value


def check_real(value, argname):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{argname}: expected a real number, got {type(value).__name__} {value!r}")
    return float(value)


def check_clip(value, argname):
    if value is None:
        return None
    value = check_real(value, argname)
    if not value >= 0:
        raise ValueError(f"{argname}: expected None or a number >= 0, got {value}")
    return value


def check_name(name, default):
    if name is None:
        return default
    if not isinstance(name, str) or not name:
        raise TypeError(f"name: expected a non-empty str or None, got {name!r}")
    return name


def check_kwargs(cls, kwargs):
    for key in kwargs:
        if key not in IGNORED_KWARGS:
            raise TypeError(f"{cls.__name__}() got an unexpected keyword argument {key!r}")


def describe(obj):
    """A short description of an argument for error messages."""
    if isinstance(obj, _ndarray):
        return f"an array of shape {obj.shape} dtype {obj.dtype}"
    if isinstance(obj, LSTMStateTuple):
        return "an LSTMStateTuple(" + ", ".join(describe(s) for s in obj) + ")"
    if isinstance(obj, tuple):
        return f"a tuple of {len(obj)}"
    if isinstance(obj, list):
        return f"a list of {len(obj)}"
    return f"{type(obj).__name__} {obj!r}"[:200]


def as_array(a, argname, dtype):
    """`a` as an ndarray of `dtype`: lists/scalars, integer/bool arrays and `dtype` in the other
    byte order are converted; a float (or complex, or other) array of another dtype is a
    TypeError naming `argname`."""
    if not isinstance(a, _ndarray):
        if isinstance(a, (list, tuple, numbers.Number)):
            try:
                return np.asarray(a, dtype=dtype)
            except (TypeError, ValueError) as e:
                raise TypeError(f"{argname}: expected an array-like of numbers convertible to "
                                f"{dtype}, got {describe(a)} ({e})") from None
        try:
            a = np.asarray(a)
        except Exception as e:
            raise TypeError(f"{argname}: expected an array, got {describe(a)} ({e})") from None
    elif type(a) is not _ndarray:
        a = np.asarray(a)         # a subclass as a plain view: its shape is the array struct's
    if a.dtype != dtype:
        if a.dtype.newbyteorder("=") == dtype:          # the same numbers in swapped bytes
            return a.astype(dtype)                      # a native copy (never computed on)
        if a.dtype.kind not in "iub":
            raise TypeError(f"{argname}: expected dtype {dtype} (the cell's dtype; integer "
                            f"arrays and lists are converted), got dtype {a.dtype}")
        a = a.astype(dtype)
    return a


def as_weight(value, argname, dtype):
    """A weight: any real array-like, converted to `dtype` (a copy is made later)."""
    try:
        a = np.asarray(value)
    except Exception as e:
        raise TypeError(f"{argname}: expected an array, got {describe(value)} ({e})") from None
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{argname}: expected a real-valued array, got dtype {a.dtype}")
    return a.astype(dtype, copy=False)


def reraise(e, prefix):
    """Re-raises `e` (a ValueError/TypeError) with `prefix` added to its message."""
    try:
        new = type(e)(f"{prefix}{e}")
    except Exception:
        raise e
    raise new from e


def bridge_ready(a):
    """True if the bridge can read `a` (2-D) as is: aligned, last axis contiguous, row stride a
    non-negative multiple of the item size."""
    if a.size == 0:
        return True
    item = a.itemsize
    s0, s1 = a.strides
    return (a.flags.aligned and (a.shape[1] <= 1 or s1 == item)
            and (a.shape[0] <= 1 or (s0 >= 0 and s0 % item == 0)))


def shape_text(rows, cols):
    return f"[{rows}, {cols}]"


def parse_input_size(input_size, argname):
    """An int, or a shape (tuple, list, TensorShape) whose last entry is the input size."""
    value = input_size
    if value is not None and not isinstance(value, numbers.Integral):
        if hasattr(value, "as_list"):           # tf.TensorShape
            try:
                value = value.as_list()
            except ValueError:                 # unknown rank
                value = None
        if isinstance(value, np.ndarray):
            value = value.tolist()
        if isinstance(value, (tuple, list)):
            value = value[-1] if value else None
            value = getattr(value, "value", value)      # TF1 Dimension
        elif value is not None:
            raise TypeError(f"{argname}: expected an int or a shape whose last entry is the "
                            f"input size, got {describe(input_size)}")
    if value is None:
        raise ValueError(f"{argname}: the input size (last entry of the shape) must be known, "
                         f"got {input_size!r}")
    return check_int(value, argname, minimum=0)
