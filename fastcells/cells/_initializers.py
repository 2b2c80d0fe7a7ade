"""The initializers the cells draw their weights from, and the checks of user initializers.

An initializer is ``init(shape, dtype, rng) -> array`` (shape: tuple of ints, dtype: numpy
dtype, rng: the cell's numpy.random.Generator).
"""
import numbers

import numpy as np

from fastcells._validate import describe


def glorot_uniform(shape, dtype, rng):
    """TF's default ``glorot_uniform_initializer``: U(-l, l), l = sqrt(6 / (fan_in + fan_out)),
    fan_in = shape[0], fan_out = shape[1] for a matrix; fan_in = fan_out = shape[0] for a vector
    (as TF's _compute_fans). Drawn in float64 from `rng`, returned in `dtype`."""
    shape = tuple(shape)
    if len(shape) == 0:
        fan_in = fan_out = 1
    elif len(shape) == 1:
        fan_in = fan_out = shape[0]
    else:
        receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
        fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
    limit = np.sqrt(6.0 / max(1, fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


def constant(value):
    """The initializer filling every entry with `value`."""
    def init(shape, dtype, rng):
        return np.full(shape, value, dtype=dtype)
    init.__name__ = f"constant({value!r})"
    return init


zeros = constant(0.0)
ones = constant(1.0)


def check_initializer(init, argname):
    """None -> None (the variable's default); a number -> a constant; a callable
    ``init(shape, dtype, rng)`` -> itself."""
    if init is None or callable(init):
        return init
    if isinstance(init, numbers.Real) and not isinstance(init, bool):
        return constant(float(init))
    raise TypeError(f"{argname}: expected None, a number or a callable init(shape, dtype, rng), "
                    f"got {describe(init)}")


def initial_value(init, argname, shape, dtype, rng):
    """init(shape, dtype, rng), checked: the shape asked for, real numbers."""
    value = np.asarray(init(shape, dtype, rng))
    if value.shape != shape:
        raise ValueError(f"{argname}: the initializer returned shape {value.shape} for a "
                         f"variable of shape {shape}")
    if value.dtype.kind not in "fiub":
        raise TypeError(f"{argname}: the initializer returned dtype {value.dtype}, expected "
                        f"numbers")
    return value
