"""Activations the cells run fused in C, and the resolver that maps a cell's `activation`
argument to a C kernel name or to a Python callable (the slower NumPy path).

    fastcells.activations.tanh / relu / sigmoid / linear   NumPy functions, elementwise, any float
                                                           dtype; each carries `fused_kernel`, the
                                                           name of the C epilogue that computes it.
    resolve(activation) -> (kernel_name or None, callable)

`activation` may be None (the cell's default, tanh), one of the names "tanh", "relu",
"sigmoid", "linear", one of the functions above (also `fastcells.nn.tanh` etc., the same
objects), `numpy.tanh`, or any other callable on arrays (TF accepts any function); the latter
runs through the NumPy path of the cell (same math, no C kernel).
"""
import numpy as np

__all__ = ["tanh", "relu", "sigmoid", "linear", "FUSED", "resolve"]


def tanh(x):
    """Hyperbolic tangent, elementwise (``numpy.tanh``). Fused in C as "tanh"."""
    return np.tanh(x)


def relu(x):
    """max(x, 0), elementwise; NaN gives NaN. Fused in C as "relu"."""
    return np.maximum(x, 0)


def sigmoid(x):
    """Logistic 1/(1+exp(-x)), elementwise, computed without overflow. Fused in C as "sigmoid"."""
    x = np.asarray(x)
    with np.errstate(under="ignore", over="ignore"):
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def linear(x):
    """Identity (TF/Keras "linear"). Fused in C as "linear"."""
    return np.asarray(x)


tanh.fused_kernel = "tanh"
relu.fused_kernel = "relu"
sigmoid.fused_kernel = "sigmoid"
linear.fused_kernel = "linear"

#: name -> function, for every activation that has a C kernel
FUSED = {"tanh": tanh, "relu": relu, "sigmoid": sigmoid, "linear": linear}

# callables from elsewhere that are exactly one of the fused functions
_ALIASES = {id(np.tanh): "tanh"}


def resolve(activation, argname="activation"):
    """Maps a cell's `activation` argument to ``(kernel_name, function)``.

    kernel_name is "tanh", "relu", "sigmoid" or "linear" when the C kernels compute it (then
    `function` is the matching NumPy function of this module), or None for any other callable
    (then `function` is that callable, run by the NumPy path). None means tanh.
    Raises ValueError for an unknown name and TypeError for anything that is neither a name
    nor a callable; both messages name `argname`.
    """
    if activation is None:
        return "tanh", tanh
    if isinstance(activation, str):
        fn = FUSED.get(activation)
        if fn is None:
            raise ValueError(f"{argname}: expected None, a callable or one of the names "
                             f"{sorted(FUSED)}, got {activation!r}")
        return activation, fn
    name = getattr(activation, "fused_kernel", None)
    if name in FUSED and FUSED[name] is activation:
        return name, activation
    name = _ALIASES.get(id(activation))
    if name is not None:
        return name, FUSED[name]
    if callable(activation):
        return None, activation
    raise TypeError(f"{argname}: expected None, a callable or one of the names {sorted(FUSED)}, "
                    f"got {type(activation).__name__} {activation!r}")
