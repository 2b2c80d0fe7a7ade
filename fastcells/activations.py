"""Activations the cells run fused in C, and the resolver that maps a cell's `activation`
argument to a C kernel name or to a Python callable (the slower NumPy path).

    fastcells.activations.tanh / relu / sigmoid / linear   NumPy functions, elementwise, any float
                                                           dtype; each carries `fused_kernel`, the
                                                           name of the C epilogue that computes it.
    resolve(activation) -> (kernel_name or None, callable)

    fastcells.activations.activation(name, alpha=None, beta=None)
                                                           the ONNX activations with parameters
                                                           ("hard_sigmoid", "leaky_relu",
                                                           "thresholded_relu", "scaled_tanh",
                                                           "affine", "elu", "softsign"), also
                                                           fused; alpha/beta as ONNX defines them
                                                           (None: ONNX's default)

`activation` may be None (the cell's default), one of the names above, one of the functions
above (also `fastcells.nn.tanh` etc., the same objects), an `activation(...)` object,
`numpy.tanh`, or any other callable on arrays (TF accepts any function); the latter runs
through the NumPy path of the cell (same math, no C kernel).
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Union

import numpy as np

from fastcells import _core, reference

__all__ = ["tanh", "relu", "sigmoid", "linear", "activation", "Activation", "FUSED", "resolve",
           "DEFAULT_ACTIVATION", "DEFAULT_GATE_ACTIVATION"]


#: what the cells compute when an activation argument is None (TF's defaults)
DEFAULT_ACTIVATION = "tanh"
DEFAULT_GATE_ACTIVATION = "sigmoid"


def _fused_function(name, doc):
    """The NumPy function of the activation `name` (its formula is fastcells.reference's),
    marked with ``fused_kernel = name``: the C epilogue that computes it."""
    formula = reference.ACTIVATIONS[name]

    def function(x):
        return formula(x)

    function.__name__ = function.__qualname__ = name
    function.__doc__ = doc
    function.fused_kernel = name
    return function


tanh = _fused_function("tanh", 'Hyperbolic tangent, elementwise (``numpy.tanh``). Fused in C as '
                               '"tanh".')
relu = _fused_function("relu", 'max(x, 0), elementwise; NaN gives NaN. Fused in C as "relu".')
sigmoid = _fused_function("sigmoid", 'Logistic 1/(1+exp(-x)), elementwise, computed without '
                                     'overflow. Fused in C as "sigmoid".')
linear = _fused_function("linear", 'Identity (TF/Keras "linear"). Fused in C as "linear".')

#: name -> function, for every activation that has a C kernel
FUSED = {"tanh": tanh, "relu": relu, "sigmoid": sigmoid, "linear": linear}

# callables from elsewhere that are exactly one of the fused functions
_ALIASES = {id(np.tanh): "tanh"}

#: activations with parameters (the C kernels' names beyond FUSED)
PARAMETRIC = tuple(name for name in _core.ACTIVATIONS if name not in FUSED)


class Activation:
    """An ONNX activation with its parameters, run fused in C by the cells; calling it applies
    it to a NumPy array (through fastcells.reference, the formulas' one home).

    name: one of PARAMETRIC (or a FUSED name); alpha, beta: floats or None for ONNX's default.
    """
    __slots__ = ("name", "alpha", "beta")

    def __init__(self, name, alpha=None, beta=None):
        if name not in _core.ACTIVATIONS:
            raise ValueError(f"activation: expected one of {sorted(_core.ACTIVATIONS)}, "
                             f"got {name!r}")
        for argname, value in (("alpha", alpha), ("beta", beta)):
            if value is not None and (isinstance(value, bool) or
                                      not isinstance(value, (int, float, np.number))):
                raise TypeError(f"{argname}: expected a number or None, got {value!r}")
        _, default_alpha, default_beta = _core.ACTIVATIONS[name]
        self.name = name
        self.alpha = float(default_alpha if alpha is None else alpha)
        self.beta = float(default_beta if beta is None else beta)

    @property
    def spec(self):
        """(name, alpha, beta), what the C kernels take."""
        return (self.name, self.alpha, self.beta)

    def __reduce__(self):
        return (Activation, self.spec)     # every pickle protocol (slots, no __dict__)

    def __call__(self, x):
        return reference.activation(self.name, self.alpha, self.beta)(x)

    def __eq__(self, other):
        return isinstance(other, Activation) and self.spec == other.spec

    def __hash__(self):
        return hash(self.spec)

    def __repr__(self):
        return f"activation({self.name!r}, alpha={self.alpha}, beta={self.beta})"


def activation(name: str, alpha: Optional[float] = None,
               beta: Optional[float] = None) -> Union[Callable[[Any], Any], Activation]:
    """The activation `name` as a callable the cells run fused in C.

    Parameters
    ----------
    name : str
        "tanh", "relu", "sigmoid", "linear" or one of the ONNX activations with parameters:
        "hard_sigmoid", "leaky_relu", "thresholded_relu", "scaled_tanh", "affine", "elu",
        "softsign".
    alpha, beta : float, optional
        As ONNX defines them; None means ONNX's default (a non-number is a TypeError).

    Returns
    -------
    callable
        One of the plain functions (tanh, relu, sigmoid, linear) when no parameter is given,
        else an Activation (which applies it to a NumPy array when called).

    Raises
    ------
    ValueError
        For an unknown name (e.g. "softplus").

    Examples
    --------
    >>> import numpy as np
    >>> from fastcells import nn
    >>> act = nn.activation("leaky_relu", alpha=0.1)
    >>> act
    activation('leaky_relu', alpha=0.1, beta=0.0)
    >>> print(act(np.array([-1.0, 2.0])))
    [-0.1  2. ]
    >>> nn.activation("tanh") is nn.tanh
    True
    """
    if name in FUSED and alpha is None and beta is None:
        return FUSED[name]
    return Activation(name, alpha, beta)


def resolve(activation, argname="activation", default=DEFAULT_ACTIVATION):
    """Maps a cell's `activation` argument to ``(kernel_spec, function)``.

    kernel_spec is what the C kernels take — a name of FUSED, or (name, alpha, beta) — when
    they compute it (then `function` is the matching NumPy function or Activation), or None for
    any other callable (then `function` is that callable, run by the NumPy path). None means
    `default`. Raises ValueError for an unknown name and TypeError for anything that is
    neither a name nor a callable; both messages name `argname`.
    """
    if activation is None:
        activation = default
    if isinstance(activation, str):
        if activation in FUSED:
            return activation, FUSED[activation]
        if activation in PARAMETRIC:
            act = Activation(activation)
            return act.spec, act
        raise ValueError(f"{argname}: expected None, a callable or one of the names "
                         f"{sorted(FUSED) + sorted(PARAMETRIC)}, got {activation!r}")
    if isinstance(activation, Activation):
        return activation.spec, activation
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
