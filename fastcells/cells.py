"""The cells: TensorFlow 1.x ``tf.nn.rnn_cell`` classes whose arithmetic runs in C.

    BasicRNNCell, BasicLSTMCell, LSTMCell, GRUCell   one fused C call per step (fastcells._core)
    MultiRNNCell                                      stacks cells, as TF's
    LSTMStateTuple                                    namedtuple (c, h), as TF's
    RNNCell                                           base class (subclass it for your own cell)

Same class names, argument names and defaults, gate order, weight shapes and variable names as
TF (see API.md and FRAMEWORKS.md section 1). Arrays are NumPy; the batch is the first axis.

Decisions that TF leaves to the framework (all documented on the classes):
- ``dtype=None`` means float32; float32 and float64 are supported. The dtype is fixed at
  construction (TF takes it from the first input); a float input of the other precision is a
  TypeError, integer/bool arrays and lists are converted.
- ``seed=`` (keyword) seeds the ``numpy.random.Generator`` the initializers draw from (an int,
  None, a SeedSequence or a Generator, as ``numpy.random.default_rng``).
- An initializer (``LSTMCell(initializer=)``, ``GRUCell(kernel_initializer=, bias_initializer=)``)
  is None (TF's default), a number (a constant), or a callable ``init(shape, dtype, rng)`` that
  returns an array of that shape (shape: tuple of ints, dtype: numpy dtype, rng: the cell's
  Generator).
- Weights are stored in TF layout on the cell (the source of truth); the packed C copy is
  derived from them and rebuilt by ``set_weights``. ``cell.weights`` gives read-only views,
  ``get_weights()`` copies; nothing handed out can change the weights behind the packed copy.
- ``cell(x, state)`` returns new arrays. The output and the new state share memory (TF tensors
  are immutable, so this costs nothing there): for BasicRNNCell/GRUCell the output IS the new
  state array, for the LSTMs it is the state's ``h`` (a view of the state with
  ``state_is_tuple=False``).
- ``cell.step_(x, state)`` writes the new state into ``state``'s arrays and returns the output,
  which is (a view of) the state's h array, overwritten by the next ``step_``.
"""
import collections
import numbers
import re
import warnings

import numpy as np

from fastcells import _core, _fork, _override, _serialize
from fastcells.activations import resolve as _resolve_activation

__all__ = ["LSTMStateTuple", "RNNCell", "BasicRNNCell", "BasicLSTMCell", "LSTMCell", "GRUCell",
           "CudnnCompatibleGRUCell", "MultiRNNCell", "glorot_uniform"]

_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
_empty = np.empty
_ndarray = np.ndarray
# what the fast paths catch before re-running the call with full checking and clear messages
_RETRY = (AttributeError, TypeError, ValueError, IndexError)
# TF Layer keyword arguments that the cells accept and ignore
_IGNORED_KWARGS = frozenset({"trainable", "_scope", "_reuse", "autocast"})
# variable sub-scopes inside a cell (so that "gru_cell/gates/kernel" is not read as "kernel")
_SUBSCOPES = frozenset({"gates", "candidate", "projection", "input_projection",
                        "hidden_projection"})
_PART = re.compile(r"^part_(\d+)$")
_CELL_K = re.compile(r"^cell_(\d+)$")


# ---------------------------------------------------------------------------------------------
# LSTMStateTuple
# ---------------------------------------------------------------------------------------------

class LSTMStateTuple(collections.namedtuple("LSTMStateTuple", ("c", "h"))):
    """The state of an LSTM cell with ``state_is_tuple=True``: ``(c, h)``, cell state first.

    c: [B, num_units]; h: [B, num_proj or num_units], the last output. (Keras and PyTorch order
    their LSTM states (h, c): mind the order when converting.)
    """
    __slots__ = ()

    @property
    def dtype(self):
        """The common dtype of c and h; TypeError if they differ (as TF)."""
        c, h = self
        dc, dh = getattr(c, "dtype", None), getattr(h, "dtype", None)
        if dc != dh:
            raise TypeError(f"LSTMStateTuple: inconsistent dtypes for c and h: {dc} vs {dh}")
        return dc



# ---------------------------------------------------------------------------------------------
# Argument checking
# ---------------------------------------------------------------------------------------------

def _check_dtype(dtype, argname="dtype"):
    """None -> float32; float32/float64 in any spelling (also a TF dtype) -> numpy dtype."""
    if dtype is None:
        return _F32
    raw = getattr(dtype, "as_numpy_dtype", dtype)
    try:
        dt = np.dtype(raw)
    except TypeError:
        raise TypeError(f"{argname}: expected float32 or float64 (or None for float32), "
                        f"got {dtype!r}") from None
    if dt != _F32 and dt != _F64:
        raise TypeError(f"{argname}: expected float32 or float64 (or None for float32), "
                        f"got {dt}")
    return _F64 if dt == _F64 else _F32


def _check_int(value, argname, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{argname}: expected an int >= {minimum}, got "
                        f"{type(value).__name__} {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{argname}: expected an int >= {minimum}, got {value}")
    return value


def _check_real(value, argname):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{argname}: expected a real number, got {type(value).__name__} {value!r}")
    return float(value)


def _check_clip(value, argname):
    if value is None:
        return None
    value = _check_real(value, argname)
    if not value >= 0:
        raise ValueError(f"{argname}: expected None or a number >= 0, got {value}")
    return value


def _check_name(name, default):
    if name is None:
        return default
    if not isinstance(name, str) or not name:
        raise TypeError(f"name: expected a non-empty str or None, got {name!r}")
    return name


def _check_kwargs(cls, kwargs):
    for key in kwargs:
        if key not in _IGNORED_KWARGS:
            raise TypeError(f"{cls.__name__}() got an unexpected keyword argument {key!r}")


def _describe(obj):
    """A short description of an argument for error messages."""
    if isinstance(obj, _ndarray):
        return f"an array of shape {obj.shape} dtype {obj.dtype}"
    if isinstance(obj, LSTMStateTuple):
        return "an LSTMStateTuple(" + ", ".join(_describe(s) for s in obj) + ")"
    if isinstance(obj, tuple):
        return f"a tuple of {len(obj)}"
    if isinstance(obj, list):
        return f"a list of {len(obj)}"
    return f"{type(obj).__name__} {obj!r}"[:200]


def _as_array(a, argname, dtype):
    """`a` as an ndarray of `dtype`: lists/scalars and integer/bool arrays are converted; a float
    (or complex, or other) array of another dtype is a TypeError naming `argname`."""
    if not isinstance(a, _ndarray):
        if isinstance(a, (list, tuple, numbers.Number)):
            try:
                return np.asarray(a, dtype=dtype)
            except (TypeError, ValueError) as e:
                raise TypeError(f"{argname}: expected an array-like of numbers convertible to "
                                f"{dtype}, got {_describe(a)} ({e})") from None
        try:
            a = np.asarray(a)
        except Exception as e:
            raise TypeError(f"{argname}: expected an array, got {_describe(a)} ({e})") from None
    if a.dtype != dtype:
        if a.dtype.kind not in "iub":
            raise TypeError(f"{argname}: expected dtype {dtype} (the cell's dtype; integer "
                            f"arrays and lists are converted), got dtype {a.dtype}")
        a = a.astype(dtype)
    return a


def _as_weight(value, argname, dtype):
    """A weight: any real array-like, converted to `dtype` (a copy is made later)."""
    try:
        a = np.asarray(value)
    except Exception as e:
        raise TypeError(f"{argname}: expected an array, got {_describe(value)} ({e})") from None
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{argname}: expected a real-valued array, got dtype {a.dtype}")
    return a.astype(dtype, copy=False)


def _reraise(e, prefix):
    """Re-raises `e` (a ValueError/TypeError) with `prefix` added to its message."""
    try:
        new = type(e)(f"{prefix}{e}")
    except Exception:
        raise e
    raise new from e


def _bridge_ready(a):
    """True if the bridge can read `a` (2-D) as is: aligned, last axis contiguous, row stride a
    non-negative multiple of the item size."""
    if a.size == 0:
        return True
    item = a.itemsize
    s0, s1 = a.strides
    return (a.flags.aligned and (a.shape[1] <= 1 or s1 == item)
            and (a.shape[0] <= 1 or (s0 >= 0 and s0 % item == 0)))


def _shape_text(rows, cols):
    return f"[{rows}, {cols}]"


# ---------------------------------------------------------------------------------------------
# Initializers
# ---------------------------------------------------------------------------------------------

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


def _constant(value):
    def init(shape, dtype, rng):
        return np.full(shape, value, dtype=dtype)
    init.__name__ = f"constant({value!r})"
    return init


_zeros = _constant(0.0)
_ones = _constant(1.0)


def _check_initializer(init, argname):
    """None -> None (the variable's default); a number -> a constant; a callable
    ``init(shape, dtype, rng)`` -> itself."""
    if init is None or callable(init):
        return init
    if isinstance(init, numbers.Real) and not isinstance(init, bool):
        return _constant(float(init))
    raise TypeError(f"{argname}: expected None, a number or a callable init(shape, dtype, rng), "
                    f"got {_describe(init)}")


def _initial_value(init, argname, shape, dtype, rng):
    value = np.asarray(init(shape, dtype, rng))
    if value.shape != shape:
        raise ValueError(f"{argname}: the initializer returned shape {value.shape} for a "
                         f"variable of shape {shape}")
    if value.dtype.kind not in "fiub":
        raise TypeError(f"{argname}: the initializer returned dtype {value.dtype}, expected "
                        f"numbers")
    return value


def _readonly(a):
    a.flags.writeable = False
    return a


def _readonly_view(a):
    v = a.view()
    v.flags.writeable = False
    return v


def _parse_input_size(input_size, argname):
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
                            f"input size, got {_describe(input_size)}")
    if value is None:
        raise ValueError(f"{argname}: the input size (last entry of the shape) must be known, "
                         f"got {input_size!r}")
    return _check_int(value, argname, minimum=0)


# ---------------------------------------------------------------------------------------------
# Base class
# ---------------------------------------------------------------------------------------------

class RNNCell:
    """Base class of the cells, as TF's ``RNNCell``: subclass it and define ``state_size``,
    ``output_size`` and ``call(inputs, state) -> (output, new_state)`` (and ``build`` if the
    cell has weights) for a cell of your own that MultiRNNCell and the runners accept.

    ``dtype=None`` means float32.
    """
    __init_subclass__ = _override.init_subclass

    def __init__(self, trainable=True, name=None, dtype=None, **kwargs):
        _check_kwargs(type(self), kwargs)
        self._name = _check_name(name, _snake_case(type(self).__name__))
        self._dtype = _check_dtype(dtype)
        self._built = False

    # -- properties ------------------------------------------------------------------------
    @property
    def name(self):
        return self._name

    @property
    def dtype(self):
        """The numpy dtype of the weights, inputs, states and outputs."""
        return self._dtype

    @property
    def built(self):
        return self._built

    @property
    def state_size(self):
        raise NotImplementedError("state_size: define it in the subclass")

    @property
    def output_size(self):
        raise NotImplementedError("output_size: define it in the subclass")

    @property
    def weights(self):
        """The weights as a list of read-only arrays, in TF's creation order."""
        return []

    variables = weights

    @property
    def weight_names(self):
        """TF's variable names inside the cell's scope, in creation order."""
        return []

    def get_weights(self):
        return {}

    def set_weights(self, weights, strict=True):
        if weights:
            raise ValueError(f"weights: {type(self).__name__} {self._name!r} has no weights, "
                             f"got {list(weights)!r}")

    # -- calls -----------------------------------------------------------------------------
    def build(self, input_size):
        """Creates the weights (a no-op here)."""
        self._built = True

    def call(self, inputs, state):
        raise NotImplementedError("call: define it in the subclass")

    def __call__(self, inputs, state, scope=None):
        """One step: ``(output, new_state)``. Builds the cell on the first call."""
        if not self._built:
            self.build(np.shape(inputs))
        return self.call(inputs, state)

    def step_(self, inputs, state):
        """One step written into `state`'s arrays (which must be writeable ndarrays); returns the
        output. The generic version computes ``self(inputs, state)`` and copies the new state
        into `state`; the fastcells cells do it without copies."""
        output, new_state = self(inputs, state)
        olds, news = _flatten(state), _flatten(new_state)
        if len(olds) != len(news):
            raise ValueError(f"state: expected {len(news)} arrays, got {len(olds)}")
        for k, (old, new) in enumerate(zip(olds, news)):
            if not isinstance(old, _ndarray) or not old.flags.writeable:
                raise ValueError(f"state: step_ writes the new state in place, so every state "
                                 f"array must be a writeable numpy array; got {_describe(old)}")
            np.copyto(old, new)
        return output

    # -- states ----------------------------------------------------------------------------
    def zero_state(self, batch_size, dtype=None):
        """Zeros of shape ``[batch_size, s]`` for every ``s`` in ``state_size``, with its nesting
        (an LSTMStateTuple stays one). `dtype` must be None or the cell's dtype. New arrays on
        every call (they may be used with ``step_``)."""
        batch_size = _check_int(batch_size, "batch_size", minimum=0)
        dt = self._zero_state_dtype(dtype)
        return _zeros_like_size(self.state_size, batch_size, dt)

    def get_initial_state(self, inputs=None, batch_size=None, dtype=None):
        """As TF: the zero state for `inputs`' batch (or `batch_size`) and dtype."""
        if inputs is not None:
            shape = np.shape(inputs)
            if not shape:
                raise ValueError(f"inputs: expected an array [batch, depth], got shape {shape}")
            if batch_size is not None and _check_int(batch_size, "batch_size", 0) != shape[0]:
                raise ValueError(f"batch_size: {batch_size} does not match the batch of "
                                 f"inputs, shape {shape}")
            batch_size = shape[0]
        if batch_size is None:
            raise ValueError("batch_size: give inputs or batch_size")
        return self.zero_state(batch_size, dtype)

    def _zero_state_dtype(self, dtype):
        if dtype is None:
            return self._dtype
        dt = _check_dtype(dtype)
        if dt != self._dtype:
            raise TypeError(f"dtype: expected the cell's dtype {self._dtype} (or None), got {dt}")
        return dt

    def __repr__(self):
        return f"<{type(self).__name__} name={self._name!r} dtype={self._dtype}>"


def _snake_case(name):
    """TF's layer-name rule: "BasicLSTMCell" -> "basic_lstm_cell"."""
    name = re.sub(r"(.)([A-Z][a-z0-9]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _zeros_like_size(size, batch_size, dtype):
    if isinstance(size, tuple):
        parts = [_zeros_like_size(s, batch_size, dtype) for s in size]
        return type(size)(*parts) if hasattr(size, "_fields") else tuple(parts)
    return np.zeros((batch_size, int(size)), dtype=dtype)


def _flatten(state):
    if isinstance(state, (tuple, list)):
        return [leaf for s in state for leaf in _flatten(s)]
    return [state]


def _is_nested(size):
    return isinstance(size, (tuple, list))


# ---------------------------------------------------------------------------------------------
# The cells computed in C
# ---------------------------------------------------------------------------------------------

class _FusedCell(RNNCell):
    """What the four concrete cells share: weights, build, set/get_weights, validation, and the
    fallback paths. Subclasses set _KIND and _KERNEL_NAME and define _spec(I), __call__ and
    step_ (the fast paths), _state_arrays (validation) and _result."""

    _KIND = None
    _KERNEL_NAME = "kernel"
    __getstate__, __setstate__ = _serialize.getstate, _serialize.setstate

    def __init__(self, num_units, activation, name, dtype, seed, kwargs):
        super().__init__(name=name, dtype=dtype, **kwargs)
        self._num_units = _check_int(num_units, "num_units")
        self._fused, self._act = _resolve_activation(activation)
        self._activation = activation
        # beyond TF (ONNX/Keras cells), set by _set_options: gate and output activations,
        # the pre-activation clip, input_forget
        self._gate_activation = self._output_activation = None
        self._gate_fused, self._gate_act = "sigmoid", None
        self._out_fused, self._out_act = None, None     # None: the same as activation
        self._preact_clip = None
        self._input_forget = False
        self._rng = np.random.default_rng(seed)
        self._input_size = None
        self._weights = {}          # name -> read-only array, TF creation order
        self._packed = None         # _core.PackedCell, derived from _weights
        self._lock = _fork.new_lock(self)

    # -- per-cell description (subclasses) ---------------------------------------------------
    def _spec(self, input_size):
        """[(name, shape, initializer, initializer argname)] in TF's creation order."""
        raise NotImplementedError

    def _set_options(self, gate_activation=None, output_activation=None, preact_clip=None,
                     input_forget=False):
        """The keyword-only options beyond TF (see the class docstrings)."""
        self._gate_activation = gate_activation
        self._gate_fused, gate_fn = _resolve_activation(gate_activation, "gate_activation",
                                                        default="sigmoid")
        self._gate_act = None if gate_activation is None else gate_fn
        self._output_activation = output_activation
        if output_activation is not None:
            self._out_fused, self._out_act = _resolve_activation(output_activation,
                                                                 "output_activation")
        self._preact_clip = _check_clip(preact_clip, "preact_clip")
        if not isinstance(input_forget, bool):
            raise TypeError(f"input_forget: expected a bool, got {type(input_forget).__name__}")
        self._input_forget = input_forget

    @property
    def _fusable(self):
        """True when the C kernels compute every activation of this cell."""
        return (self._fused is not None and self._gate_fused is not None and
                (self._output_activation is None or self._out_fused is not None))

    def _packed_options(self):
        """Options of the C cell shared by every kind (subclasses add theirs)."""
        options = {"gate_activation": self._gate_fused, "preact_clip": self._preact_clip}
        if self._out_fused is not None:
            options["output_activation"] = self._out_fused
        if self._input_forget:
            options["input_forget"] = True
        return options

    def _reference_options(self):
        """The same options for fastcells.reference (the NumPy path)."""
        options = {"preact_clip": self._preact_clip}
        if self._gate_act is not None:
            options["gate_activation"] = self._gate_act
        return options

    @property
    def _rec_size(self):
        """Width of h (the recurrent part of [x, h])."""
        return self._num_units

    # -- properties ------------------------------------------------------------------------
    @property
    def num_units(self):
        return self._num_units

    @property
    def input_size(self):
        """The input depth I (None until built)."""
        return self._input_size

    @property
    def activation(self):
        """The activation as given to the constructor (None means tanh)."""
        return self._activation

    @property
    def weights(self):
        """The weights as a list of read-only views, in TF's creation order ([] until built)."""
        return [_readonly_view(a) for a in self._weights.values()]

    variables = weights

    @property
    def weight_names(self):
        """TF's variable names inside the cell's scope, in creation order (known before build)."""
        return [name for name, *_ in self._spec(0)]

    def __repr__(self):
        return (f"<{type(self).__name__} name={self._name!r} num_units={self._num_units} "
                f"input_size={self._input_size} dtype={self._dtype}>")

    # -- build and weights -----------------------------------------------------------------
    def build(self, input_size=None, **kwargs):
        """Creates the weights with TF's default initializers, drawn from the cell's Generator.

        input_size: an int, or a shape whose last entry is the input size (TF's
        ``build(inputs_shape)``; ``inputs_shape=`` is accepted as the keyword too). Building a
        built cell again with the same input size does nothing (the weights are kept); with
        another input size it is a ValueError.
        """
        argname = "input_size"
        if kwargs:
            if set(kwargs) != {"inputs_shape"} or input_size is not None:
                raise TypeError(f"build() got unexpected arguments {sorted(kwargs)}")
            input_size, argname = kwargs["inputs_shape"], "inputs_shape"
        I = _parse_input_size(input_size, argname)
        with self._lock:
            if self._built:
                if I != self._input_size:
                    raise ValueError(f"{argname}: the cell {self._name!r} is already built for "
                                     f"input size {self._input_size}, got {I}")
                return
            arrays = {}
            for name, shape, init, init_arg in self._spec(I):
                value = _initial_value(init, init_arg, shape, self._dtype, self._rng)
                arrays[name] = value
            self._install(I, arrays)

    def _install(self, I, arrays):
        """Sets the weights (already checked, in creation order) and rebuilds the packed copy.
        Nothing changes if packing fails."""
        stored = {}
        for name, value in arrays.items():
            stored[name] = _readonly(np.array(value, dtype=self._dtype, order="C", copy=True))
        packed = None
        if self._fusable:
            packed = _core.PackedCell(self._KIND, self._dtype, I, self._num_units, stored,
                                      activation=self._fused, **self._packed_options())
        self._weights = stored
        self._packed = packed
        self._input_size = I
        self._built = True

    def get_weights(self):
        """dict TF variable name (inside the cell's scope) -> a copy of the array, in TF's
        creation order. Empty until the cell is built."""
        return {name: a.copy() for name, a in self._weights.items()}

    def set_weights(self, weights, strict=True):
        """Sets the weights from a mapping name -> array (or a list in creation order, as TF's
        ``set_weights``).

        Names may be the short ones ("kernel", "gates/bias", "projection/kernel") or full TF
        names with scopes and a ``:0`` suffix ("rnn/basic_lstm_cell/kernel:0"); sharded kernels
        ("kernel/part_0", "kernel/part_1", ...) are concatenated along axis 0. Every name and
        shape is checked (ValueError naming it); arrays are copied and converted to the cell's
        dtype. An unbuilt cell is built, with the input size taken from the kernel's shape.
        With ``strict=False`` on a built cell, missing names keep their current values.
        """
        names = self.weight_names
        if isinstance(weights, (list, tuple)):
            if len(weights) != len(names):
                raise ValueError(f"weights: expected {len(names)} arrays in the order {names}, "
                                 f"got {len(weights)}")
            given = dict(zip(names, weights))
        elif hasattr(weights, "items"):
            given = self._match_names(weights, names)
        else:
            raise TypeError(f"weights: expected a mapping name -> array or a list of arrays, "
                            f"got {_describe(weights)}")
        self._set_matched(given, strict)

    def _match_names(self, mapping, names):
        """{full or short name: array} -> {short name: array}; ValueError on unknown names."""
        given, shards, origin = {}, {}, {}
        for key, value in mapping.items():
            name, part = self._match_name(key, names)
            if part is None:
                if name in origin:
                    raise ValueError(f"weights: {key!r} and {origin[name]!r} both name {name!r}")
                origin[name] = key
                given[name] = value
            else:
                slot = shards.setdefault(name, {})
                if part in slot:
                    raise ValueError(f"weights: two arrays for {name!r} part {part} ({key!r})")
                slot[part] = (key, value)
        for name, parts in shards.items():
            if name in origin:
                raise ValueError(f"weights: {name!r} given both whole ({origin[name]!r}) and "
                                 f"in parts")
            if sorted(parts) != list(range(len(parts))):
                raise ValueError(f"weights: the parts of {name!r} must be part_0 .. part_"
                                 f"{len(parts) - 1}, got {sorted(parts)}")
            arrays = [np.asarray(parts[k][1]) for k in range(len(parts))]
            try:
                given[name] = np.concatenate(arrays, axis=0)
            except ValueError as e:
                raise ValueError(f"weights: the parts of {name!r} cannot be concatenated along "
                                 f"axis 0: shapes {[a.shape for a in arrays]} ({e})") from None
            origin[name] = parts[0][0]
        return given

    def _match_name(self, key, names):
        """Returns (short name, shard index or None) for a full or short TF variable name."""
        if not isinstance(key, str):
            raise TypeError(f"weights: names must be str, got {_describe(key)}")
        text = key
        head, sep, tail = text.rpartition(":")
        if sep and tail.isdigit():
            text = head
        parts = text.split("/")
        part = None
        if len(parts) > 1 and _PART.match(parts[-1]):
            part = int(parts[-1][5:])
            parts = parts[:-1]
        best = None
        for name in names:
            np_ = name.split("/")
            if len(parts) >= len(np_) and parts[-len(np_):] == np_:
                if best is None or len(np_) > len(best.split("/")):
                    best = name
        if best is not None:
            prefix = parts[:-len(best.split("/"))]
            if prefix and prefix[-1] in _SUBSCOPES:
                best = None
        if best is None:
            raise ValueError(f"weights: unknown name {key!r} for {type(self).__name__} "
                             f"{self._name!r}; expected {names} (scope prefixes such as "
                             f"'rnn/{self._name}/' and a ':0' suffix are accepted)")
        return best, part

    def _set_matched(self, given, strict):
        """given: {short name: array-like}. Checks and installs."""
        names = self.weight_names
        missing = [n for n in names if n not in given]
        if missing and (strict or not self._built):
            raise ValueError(f"weights: missing {missing} for {type(self).__name__} "
                             f"{self._name!r} (expected all of {names})")
        arrays = {}
        for name, value in given.items():
            arrays[name] = _as_weight(value, f"weights[{name!r}]", self._dtype)
        I = self._input_size
        if I is None:
            kname = self._KERNEL_NAME
            kernel = arrays[kname]
            R = self._rec_size
            if kernel.ndim != 2 or kernel.shape[0] < R:
                raise ValueError(f"weights[{kname!r}]: expected shape [input_size + {R}, "
                                 f"{self._spec(0)[0][1][1]}], got {kernel.shape}")
            I = kernel.shape[0] - R
        spec = self._spec(I)
        full = {}
        for name, shape, *_ in spec:
            if name in arrays:
                a = arrays[name]
                if a.shape != shape:
                    depends = name.endswith("kernel") and name != "projection/kernel"
                    raise ValueError(f"weights[{name!r}]: expected shape {shape}"
                                     f"{' (input size %d)' % I if depends else ''}"
                                     f", got {a.shape}")
                full[name] = a
            else:
                full[name] = self._weights[name]
        with self._lock:
            if self._built and I != self._input_size:
                raise ValueError(f"weights: the cell is built for input size "
                                 f"{self._input_size}, the kernel implies {I}")
            self._install(I, full)

    # -- validation (the careful path) -------------------------------------------------------
    def _check_inputs(self, inputs):
        """inputs -> a [B, I] array the bridge can read (converted/copied if needed); builds
        the cell on first use."""
        x = _as_array(inputs, "inputs", self._dtype)
        if x.ndim != 2:
            I = self._input_size if self._input_size is not None else "input_size"
            raise ValueError(f"inputs: expected a 2-D array of shape [batch, {I}], got shape "
                             f"{x.shape}")
        if not self._built:
            self.build(x.shape[1])
        if x.shape[1] != self._input_size:
            raise ValueError(f"inputs: expected shape [batch, {self._input_size}] (the cell "
                             f"{self._name!r} is built for input size {self._input_size}), "
                             f"got shape {x.shape}")
        if not _bridge_ready(x):
            x = np.array(x, order="C")       # a fresh, aligned, contiguous copy
        return x

    def _check_matrix(self, a, argname, B, cols, inplace):
        """One state array: converted (call) or checked strictly (step_)."""
        if inplace:
            if not isinstance(a, _ndarray):
                raise TypeError(f"{argname}: step_ writes the new state in place, so it must be a "
                                f"numpy array of dtype {self._dtype}, got {_describe(a)}")
            if a.dtype != self._dtype:
                raise TypeError(f"{argname}: expected dtype {self._dtype} (step_ writes in place; "
                                f"no conversion), got dtype {a.dtype}")
        else:
            a = _as_array(a, argname, self._dtype)
        if a.ndim != 2 or a.shape[1] != cols:
            raise ValueError(f"{argname}: expected shape {_shape_text(B, cols)}, got shape "
                             f"{a.shape}")
        if a.shape[0] != B:
            raise ValueError(f"{argname}: expected shape {_shape_text(B, cols)} (batch {B} as "
                             f"inputs), got shape {a.shape}")
        if not _bridge_ready(a):
            if inplace:
                raise ValueError(f"{argname}: step_ needs an aligned array whose last axis is "
                                 f"contiguous, got strides {a.strides}")
            a = np.array(a, order="C")
        if inplace and not a.flags.writeable:
            raise ValueError(f"{argname}: step_ writes the new state in place, got a read-only "
                             f"array")
        return a

    def _checked(self, inputs, state, inplace):
        x = self._check_inputs(inputs)
        parts = self._state_arrays(state, x.shape[0], inplace)
        return x, parts

    def _compute(self, x, parts, outs):
        """Runs the step from arrays that passed the checks: the C kernel, or the NumPy path for
        a custom activation; writes `outs`."""
        if x.shape[0] == 0:
            return
        if self._packed is not None:
            self._packed.step(x, parts, outs)
            return
        new = self._reference_step(x, parts)
        for out, value in zip(outs, new):
            value = np.asarray(value)
            if value.shape != out.shape:
                raise ValueError(f"activation: the callable {self._act!r} gave a state of shape "
                                 f"{value.shape}, expected {out.shape}")
            out[...] = value

    def _call_checked(self, inputs, state):
        x, parts = self._checked(inputs, state, False)
        outs = self._new_outputs(x.shape[0])
        self._compute(x, parts, outs)
        return self._result(outs)

    def _step_checked(self, inputs, state):
        x, parts = self._checked(inputs, state, True)
        self._compute(x, parts, parts)
        return parts[-1]

    def call(self, inputs, state):
        """As ``__call__`` (TF's ``call``)."""
        return _override.native_call(self, inputs, state)


class _SingleStateCell(_FusedCell):
    """BasicRNNCell and GRUCell: the state is one array [B, U], and the output is the state."""

    @property
    def state_size(self):
        return self._num_units

    @property
    def output_size(self):
        return self._num_units

    def __call__(self, inputs, state, scope=None):
        """One step: returns ``(h', h')`` (the same new array twice), as TF.

        inputs: [B, I]; state: [B, U]. Lists and integer arrays are converted; the caller's
        arrays are never modified. The first call builds the cell from ``inputs.shape[-1]``.
        """
        try:
            return self._packed.tf_call(inputs, state)
        except _RETRY:
            return self._call_checked(inputs, state)

    def step_(self, inputs, state):
        """One step written into `state` ([B, U], writeable, the cell dtype, last axis
        contiguous); returns `state` itself, which is also the output."""
        try:
            return self._packed.tf_step_(inputs, state)
        except _RETRY:
            return self._step_checked(inputs, state)

    def _state_arrays(self, state, B, inplace):
        if isinstance(state, tuple):
            raise ValueError(f"state: expected one array of shape {_shape_text(B, self._num_units)}"
                             f" for {type(self).__name__}, got {_describe(state)}")
        return (self._check_matrix(state, "state", B, self._num_units, inplace),)

    def _new_outputs(self, B):
        return (_empty((B, self._num_units), self._dtype),)

    def _result(self, outs):
        return outs[0], outs[0]


class BasicRNNCell(_SingleStateCell):
    """TF's ``BasicRNNCell``: ``h' = act([x, h] @ kernel + bias)``; output = state = h'.

    num_units: U; activation: None (tanh), "tanh"/"relu"/"sigmoid"/"linear" or
    fastcells.nn.tanh/relu/sigmoid (fused in C), or any callable (NumPy path);
    reuse: accepted and ignored; name: default "basic_rnn_cell"; dtype: None (float32) or
    float64; seed: for the initializers' Generator.
    Weights: kernel [I+U, U] (glorot uniform), bias [U] (zeros).
    preact_clip (keyword, beyond TF): clip the activation's input to [-preact_clip, preact_clip]
    (ONNX ``clip``).
    """
    _KIND = "rnn"

    def __init__(self, num_units, activation=None, reuse=None, name=None, dtype=None, *,
                 preact_clip=None, seed=None, **kwargs):
        super().__init__(num_units, activation, name, dtype, seed, kwargs)
        self._set_options(preact_clip=preact_clip)

    def _spec(self, I):
        U = self._num_units
        return [("kernel", (I + U, U), glorot_uniform, "kernel"),
                ("bias", (U,), _zeros, "bias")]

    def _reference_step(self, x, parts):
        from fastcells import reference
        w = self._weights
        return (reference.rnn_cell(x, parts[0], w["kernel"], w["bias"], activation=self._act,
                                   **self._reference_options()),)


class GRUCell(_SingleStateCell):
    """TF's ``GRUCell`` (reset gate applied before the recurrent product):
    ``r, u = sig([x, h] @ gates/kernel + gates/bias)``,
    ``c = act([x, r*h] @ candidate/kernel + candidate/bias)``, ``h' = u*h + (1-u)*c``.

    kernel_initializer: None (glorot uniform), a number or a callable ``init(shape, dtype,
    rng)``, for all kernels; bias_initializer: likewise for all biases (None: gates/bias
    ones, candidate biases zeros). Other arguments as BasicRNNCell; name default "gru_cell".
    Weights: gates/kernel [I+U, 2U] (blocks r, u), gates/bias [2U], candidate/kernel [I+U, U],
    candidate/bias [U].

    reset_after=True (keyword) selects the other GRU: the reset gate scales the recurrent
    product, ``c = act(x @ Wi + bi + r * (h @ Wh + bh))`` — PyTorch's nn.GRU, Keras
    ``reset_after=True``, ONNX ``linear_before_reset=1``, cuDNN — with TF's
    ``CudnnCompatibleGRUCell`` weights: gates/kernel, gates/bias as above,
    candidate/input_projection/kernel [I, U], candidate/input_projection/bias [U],
    candidate/hidden_projection/kernel [U, U], candidate/hidden_projection/bias [U].
    The two forms differ for the same weights (r*(h@W) != (r*h)@W); neither converts exactly
    into the other.

    gate_activation, preact_clip (keywords, beyond TF): as BasicLSTMCell's, for the r and u
    gates and the candidate.
    """
    _KIND = "gru"
    _KERNEL_NAME = "gates/kernel"

    def __init__(self, num_units, activation=None, reuse=None, kernel_initializer=None,
                 bias_initializer=None, name=None, dtype=None, *, reset_after=False,
                 gate_activation=None, preact_clip=None, seed=None, **kwargs):
        if not isinstance(reset_after, bool):
            raise TypeError(f"reset_after: expected a bool, got {type(reset_after).__name__}")
        if reset_after:
            self._KIND = "gru_ra"
        super().__init__(num_units, activation, name, dtype, seed, kwargs)
        self._set_options(gate_activation=gate_activation, preact_clip=preact_clip)
        self._reset_after = reset_after
        self._kernel_init = _check_initializer(kernel_initializer, "kernel_initializer")
        self._bias_init = _check_initializer(bias_initializer, "bias_initializer")

    @property
    def reset_after(self):
        return self._reset_after

    def _spec(self, I):
        U = self._num_units
        k = self._kernel_init or glorot_uniform
        b = self._bias_init
        gates = [("gates/kernel", (I + U, 2 * U), k, "kernel_initializer"),
                 ("gates/bias", (2 * U,), b or _ones, "bias_initializer")]
        if self._reset_after:
            return gates + [
                ("candidate/input_projection/kernel", (I, U), k, "kernel_initializer"),
                ("candidate/input_projection/bias", (U,), b or _zeros, "bias_initializer"),
                ("candidate/hidden_projection/kernel", (U, U), k, "kernel_initializer"),
                ("candidate/hidden_projection/bias", (U,), b or _zeros, "bias_initializer")]
        return gates + [("candidate/kernel", (I + U, U), k, "kernel_initializer"),
                        ("candidate/bias", (U,), b or _zeros, "bias_initializer")]

    def _reference_step(self, x, parts):
        from fastcells import reference
        w = self._weights
        if self._reset_after:
            return (reference.gru_cell_reset_after(
                x, parts[0], w["gates/kernel"], w["gates/bias"],
                w["candidate/input_projection/kernel"], w["candidate/input_projection/bias"],
                w["candidate/hidden_projection/kernel"], w["candidate/hidden_projection/bias"],
                activation=self._act, **self._reference_options()),)
        return (reference.gru_cell(x, parts[0], w["gates/kernel"], w["gates/bias"],
                                   w["candidate/kernel"], w["candidate/bias"],
                                   activation=self._act, **self._reference_options()),)


class CudnnCompatibleGRUCell(GRUCell):
    """TF 1.x ``tf.contrib.cudnn_rnn.CudnnCompatibleGRUCell``: the reset-after GRU
    (``GRUCell(..., reset_after=True)``) under its own default name
    "cudnn_compatible_gru_cell"; same weights and math as that form of GRUCell."""

    def __init__(self, num_units, reuse=None, kernel_initializer=None, name=None, dtype=None, *,
                 seed=None, **kwargs):
        super().__init__(num_units, None, reuse, kernel_initializer, None,
                         name=name, dtype=dtype, reset_after=True, seed=seed, **kwargs)


class _LSTMBase(_FusedCell):
    """BasicLSTMCell and LSTMCell: state LSTMStateTuple(c [B,U], h [B,P]) or, with
    state_is_tuple=False, one array [B, U+P] = concat(c, h)."""
    _KIND = "lstm"

    def _init_lstm(self, forget_bias, state_is_tuple, num_proj):
        self._forget_bias = _check_real(forget_bias, "forget_bias")
        self._state_is_tuple = bool(state_is_tuple)
        self._num_proj = None if num_proj is None else _check_int(num_proj, "num_proj")
        self._P = self._num_proj or self._num_units

    @property
    def _rec_size(self):
        return self._P

    @property
    def state_size(self):
        """LSTMStateTuple(U, P), or the int U + P with state_is_tuple=False."""
        if self._state_is_tuple:
            return LSTMStateTuple(self._num_units, self._P)
        return self._num_units + self._P

    @property
    def output_size(self):
        return self._P

    @property
    def forget_bias(self):
        return self._forget_bias

    @property
    def state_is_tuple(self):
        return self._state_is_tuple

    def __call__(self, inputs, state, scope=None):
        """One step: ``(h', LSTMStateTuple(c', h'))``, or ``(h', concat(c', h'))`` with
        state_is_tuple=False (h' is then a view of the new state).

        inputs: [B, I]; state: LSTMStateTuple(c [B, U], h [B, P]) (a plain (c, h) tuple also
        works) or [B, U+P]. Lists and integer arrays are converted; the caller's arrays are never
        modified. The first call builds the cell from ``inputs.shape[-1]``.
        """
        try:
            if self._state_is_tuple:
                return self._packed.tf_call(inputs, state, LSTMStateTuple)
            if type(state) is _ndarray:
                U = self._num_units
                s = _empty((inputs.shape[0], U + self._P), self._dtype)
                h = s[:, U:]
                self._packed.step(inputs, (state[:, :U], state[:, U:]), (s[:, :U], h))
                return h, s
        except _RETRY:
            pass
        return self._call_checked(inputs, state)

    def step_(self, inputs, state):
        """One step written into `state`'s arrays (writeable, the cell dtype, last axis
        contiguous): LSTMStateTuple(c [B,U], h [B,P]) or [B, U+P]. Returns the output, which is
        ``state.h`` itself (or the view ``state[:, U:]``)."""
        try:
            if self._state_is_tuple:
                return self._packed.tf_step_(inputs, state, LSTMStateTuple)
            if type(state) is _ndarray:
                U = self._num_units
                t = (state[:, :U], state[:, U:])
                self._packed.step(inputs, t, t)
                return t[1]
        except _RETRY:
            pass
        return self._step_checked(inputs, state)

    def _state_arrays(self, state, B, inplace):
        U, P = self._num_units, self._P
        if self._state_is_tuple:
            if not isinstance(state, (tuple, list)) or len(state) != 2:
                raise ValueError(f"state: expected LSTMStateTuple(c={_shape_text(B, U)}, "
                                 f"h={_shape_text(B, P)}) (state_is_tuple=True), got "
                                 f"{_describe(state)}")
            return (self._check_matrix(state[0], "state.c", B, U, inplace),
                    self._check_matrix(state[1], "state.h", B, P, inplace))
        if isinstance(state, tuple):
            raise ValueError(f"state: expected one array {_shape_text(B, U + P)} = concat(c, h) "
                             f"(state_is_tuple=False), got {_describe(state)}")
        s = self._check_matrix(state, "state", B, U + P, inplace)
        return (s[:, :U], s[:, U:])

    def _new_outputs(self, B):
        U, P = self._num_units, self._P
        if self._state_is_tuple:
            return (_empty((B, U), self._dtype), _empty((B, P), self._dtype))
        s = _empty((B, U + P), self._dtype)
        return (s[:, :U], s[:, U:])

    def _result(self, outs):
        c, h = outs
        if self._state_is_tuple:
            return h, LSTMStateTuple(c, h)
        return h, c.base if c.base is not None else np.concatenate(outs, axis=1)

    def _packed_options(self):
        return dict(super()._packed_options(), forget_bias=self._forget_bias)

    def _reference_options(self):
        options = super()._reference_options()
        if self._output_activation is not None:
            options["output_activation"] = self._out_act
        options["input_forget"] = self._input_forget
        return options

    def _reference_step(self, x, parts):
        from fastcells import reference
        w = self._weights
        c, h = parts
        return reference.lstm_cell(
            x, c, h, w["kernel"], w["bias"], forget_bias=self._forget_bias, activation=self._act,
            w_i_diag=w.get("w_i_diag"), w_f_diag=w.get("w_f_diag"), w_o_diag=w.get("w_o_diag"),
            cell_clip=getattr(self, "_cell_clip", None), proj_kernel=w.get("projection/kernel"),
            proj_clip=getattr(self, "_proj_clip", None) if "projection/kernel" in w else None,
            **self._reference_options())


class BasicLSTMCell(_LSTMBase):
    """TF's ``BasicLSTMCell``: ``i, j, f, o = split([x, h] @ kernel + bias)``,
    ``c' = c*sig(f + forget_bias) + sig(i)*act(j)``, ``h' = act(c')*sig(o)``.

    forget_bias: a constant added to f at every step (not a weight); state_is_tuple: True
    (LSTMStateTuple(c, h)) or False (one array concat(c, h)); other arguments as BasicRNNCell;
    name default "basic_lstm_cell". Weights: kernel [I+U, 4U] (blocks i, j, f, o; glorot
    uniform), bias [4U] (zeros).

    Keyword-only options beyond TF (for ONNX and Keras models; the defaults are TF's cell):
    gate_activation replaces sig on i, f, o (Keras ``recurrent_activation``, ONNX f);
    output_activation replaces act on c' (ONNX h; None: the same as activation);
    preact_clip clips the input of every gate and of act(j) to [-preact_clip, preact_clip]
    (ONNX ``clip``; not c' before output_activation); input_forget: f = 1 - i (ONNX).
    Each activation may be a name, fastcells.nn.activation(name, alpha, beta) or a callable.
    """

    def __init__(self, num_units, forget_bias=1.0, state_is_tuple=True, activation=None,
                 reuse=None, name=None, dtype=None, *, gate_activation=None,
                 output_activation=None, preact_clip=None, input_forget=False, seed=None,
                 **kwargs):
        super().__init__(num_units, activation, name, dtype, seed, kwargs)
        self._init_lstm(forget_bias, state_is_tuple, None)
        self._set_options(gate_activation, output_activation, preact_clip, input_forget)

    def _spec(self, I):
        U = self._num_units
        return [("kernel", (I + U, 4 * U), glorot_uniform, "kernel"),
                ("bias", (4 * U,), _zeros, "bias")]


class LSTMCell(_LSTMBase):
    """TF's ``LSTMCell``: BasicLSTMCell plus optional peepholes, cell clipping and a projection.

    use_peepholes: add ``w_i_diag*c`` and ``w_f_diag*c`` (old c) to the i and f gates and
    ``w_o_diag*c'`` (new c) to o; cell_clip: clip c' to [-cell_clip, cell_clip]; initializer:
    None (glorot uniform), a number or a callable ``init(shape, dtype, rng)``, for the kernel,
    the peepholes and the projection (the bias is always zeros, as TF); num_proj: P, output
    ``m = (sig(o)*act(c')) @ projection/kernel``; proj_clip: clip m (ignored without num_proj,
    as TF); num_unit_shards, num_proj_shards: accepted and ignored (sharded checkpoints load
    through set_weights); other arguments as BasicLSTMCell; name default "lstm_cell".
    Weights, in creation order: kernel [I+P, 4U], bias [4U], w_f_diag, w_i_diag, w_o_diag [U]
    (with peepholes), projection/kernel [U, P] (with num_proj).
    """

    def __init__(self, num_units, use_peepholes=False, cell_clip=None, initializer=None,
                 num_proj=None, proj_clip=None, num_unit_shards=None, num_proj_shards=None,
                 forget_bias=1.0, state_is_tuple=True, activation=None, reuse=None, name=None,
                 dtype=None, *, gate_activation=None, output_activation=None, preact_clip=None,
                 input_forget=False, seed=None, **kwargs):
        super().__init__(num_units, activation, name, dtype, seed, kwargs)
        self._init_lstm(forget_bias, state_is_tuple, num_proj)
        self._set_options(gate_activation, output_activation, preact_clip, input_forget)
        self._use_peepholes = bool(use_peepholes)
        self._cell_clip = _check_clip(cell_clip, "cell_clip")
        self._proj_clip = _check_clip(proj_clip, "proj_clip")
        self._initializer = _check_initializer(initializer, "initializer")

    @property
    def use_peepholes(self):
        return self._use_peepholes

    @property
    def num_proj(self):
        return self._num_proj

    @property
    def cell_clip(self):
        return self._cell_clip

    @property
    def proj_clip(self):
        return self._proj_clip

    def _spec(self, I):
        U, P = self._num_units, self._P
        init = self._initializer or glorot_uniform
        spec = [("kernel", (I + P, 4 * U), init, "initializer"),
                ("bias", (4 * U,), _zeros, "bias")]
        if self._use_peepholes:
            spec += [(n, (U,), init, "initializer") for n in ("w_f_diag", "w_i_diag", "w_o_diag")]
        if self._num_proj is not None:
            spec.append(("projection/kernel", (U, P), init, "initializer"))
        return spec

    def _packed_options(self):
        return dict(super()._packed_options(), cell_clip=self._cell_clip,
                    proj_clip=self._proj_clip if self._num_proj is not None else None)


# ---------------------------------------------------------------------------------------------
# MultiRNNCell
# ---------------------------------------------------------------------------------------------

class MultiRNNCell(RNNCell):
    """TF's ``MultiRNNCell``: cell k's output is cell k+1's input.

    cells: a non-empty list or tuple of cells (the same dtype); state_is_tuple: True (the state
    is a tuple with one state per cell) or False (one array, the cells' states concatenated;
    refused if a cell has a nested state). Weight names are ``cell_<k>/<cell name>/<weight>``
    (TF's ``rnn/multi_rnn_cell/cell_0/basic_lstm_cell/kernel`` without the outer scopes).
    Passing the same cell twice shares its weights (as TF; a warning is issued).
    """

    def __init__(self, cells, state_is_tuple=True):
        if isinstance(cells, (str, bytes)) or not isinstance(cells, (list, tuple)):
            raise TypeError(f"cells: expected a list or tuple of RNN cells, got {_describe(cells)}")
        if not cells:
            raise ValueError("cells: expected at least one cell, got an empty sequence")
        for k, cell in enumerate(cells):
            if not (hasattr(cell, "state_size") and hasattr(cell, "output_size")
                    and callable(cell)):
                raise TypeError(f"cells[{k}]: expected an RNN cell (with state_size, output_size "
                                f"and __call__), got {_describe(cell)}")
        dtypes = [getattr(c, "dtype", None) for c in cells]
        known = {d for d in dtypes if d is not None}
        if len(known) > 1:
            raise TypeError(f"cells: expected cells of one dtype, got {[str(d) for d in dtypes]}")
        super().__init__(name="multi_rnn_cell", dtype=known.pop() if known else None)
        self._cells = tuple(cells)
        self._state_is_tuple = bool(state_is_tuple)
        if len({id(c) for c in cells}) != len(cells):
            warnings.warn("MultiRNNCell: the same cell object appears more than once; those "
                          "layers share weights (as TF)", stacklevel=2)
        if not self._state_is_tuple:
            for k, cell in enumerate(cells):
                if _is_nested(cell.state_size):
                    raise ValueError(f"cells[{k}]: has a nested state ({cell.state_size!r}), "
                                     f"which state_is_tuple=False cannot hold; build the cell "
                                     f"with state_is_tuple=False or use state_is_tuple=True")
            sizes = [int(c.state_size) for c in cells]
            self._offsets = list(zip(np.cumsum([0] + sizes[:-1]).tolist(), sizes))

    @property
    def cells(self):
        return self._cells

    @property
    def state_is_tuple(self):
        return self._state_is_tuple

    @property
    def state_size(self):
        if self._state_is_tuple:
            return tuple(c.state_size for c in self._cells)
        return sum(int(c.state_size) for c in self._cells)

    @property
    def output_size(self):
        return self._cells[-1].output_size

    @property
    def built(self):
        return all(getattr(c, "built", True) for c in self._cells)

    @property
    def weights(self):
        seen, out = set(), []
        for cell in self._cells:
            if id(cell) not in seen:
                seen.add(id(cell))
                out.extend(getattr(cell, "weights", []))
        return out

    variables = weights

    def zero_state(self, batch_size, dtype=None):
        """A tuple of the cells' zero states, or one zero array with state_is_tuple=False."""
        if self._state_is_tuple:
            return tuple(c.zero_state(batch_size, dtype) for c in self._cells)
        return super().zero_state(batch_size, dtype)

    def build(self, input_size):
        """Builds every cell: cell 0 for `input_size`, cell k+1 for cell k's output size."""
        I = _parse_input_size(input_size, "input_size")
        for cell in self._cells:
            if hasattr(cell, "build"):
                cell.build(I)
            I = cell.output_size

    def _split_state(self, state, inplace):
        n = len(self._cells)
        if self._state_is_tuple:
            if not isinstance(state, (tuple, list)) or len(state) != n:
                raise ValueError(f"state: expected a tuple of {n} states (one per cell, "
                                 f"state_size {self.state_size!r}), got {_describe(state)}")
            return state
        if isinstance(state, tuple):
            raise ValueError(f"state: expected one array [batch, {self.state_size}] "
                             f"(state_is_tuple=False), got {_describe(state)}")
        dt = self._dtype
        if inplace:
            if not isinstance(state, _ndarray):
                raise TypeError(f"state: step_ writes in place, so it must be a numpy array of "
                                f"dtype {dt}, got {_describe(state)}")
            if state.dtype != dt:
                raise TypeError(f"state: expected dtype {dt}, got dtype {state.dtype}")
        else:
            state = _as_array(state, "state", dt)
        if state.ndim != 2 or state.shape[1] != self.state_size:
            raise ValueError(f"state: expected shape [batch, {self.state_size}] (the cells' states "
                             f"concatenated), got shape {state.shape}")
        return [state[:, a:a + m] for a, m in self._offsets]

    def __call__(self, inputs, state, scope=None):
        """``(last output, tuple of new states)`` (or the new states concatenated)."""
        states = self._split_state(state, False)
        x, new = inputs, []
        for k, (cell, s) in enumerate(zip(self._cells, states)):
            try:
                x, s = cell(x, s)
            except (ValueError, TypeError) as e:
                _reraise(e, f"MultiRNNCell cells[{k}] ({getattr(cell, 'name', '?')}): ")
            new.append(s)
        if self._state_is_tuple:
            return x, tuple(new)
        return x, np.concatenate(new, axis=1)

    def call(self, inputs, state):
        return _override.native_call(self, inputs, state)

    def step_(self, inputs, state):
        """Each cell's step_ on its part of `state` (in place); returns the last output."""
        states = self._split_state(state, True)
        x = inputs
        for k, (cell, s) in enumerate(zip(self._cells, states)):
            try:
                x = cell.step_(x, s)
            except (ValueError, TypeError) as e:
                _reraise(e, f"MultiRNNCell cells[{k}] ({getattr(cell, 'name', '?')}): ")
        return x

    # -- weights ---------------------------------------------------------------------------
    def _unique_cells(self):
        seen = set()
        for k, cell in enumerate(self._cells):
            if id(cell) not in seen:
                seen.add(id(cell))
                yield k, cell

    def get_weights(self):
        """dict ``cell_<k>/<cell name>/<weight>`` -> copy, cells in order (a cell given twice
        appears under its first index only)."""
        out = {}
        for k, cell in self._unique_cells():
            for name, a in cell.get_weights().items():
                out[f"cell_{k}/{cell.name}/{name}"] = a
        return out

    def set_weights(self, weights, strict=True):
        """Sets every cell's weights from names such as ``cell_0/basic_lstm_cell/kernel`` or
        ``rnn/multi_rnn_cell/cell_0/gru_cell/gates/kernel:0`` (or a list in creation order).
        Unbuilt cells are built from their kernels' shapes. All cells are checked before any
        is changed only as far as names go; shapes are checked cell by cell."""
        unique = list(self._unique_cells())
        if isinstance(weights, (list, tuple)):
            counts = [len(c.weight_names) for _, c in unique]
            if len(weights) != sum(counts):
                raise ValueError(f"weights: expected {sum(counts)} arrays ({counts} per cell), "
                                 f"got {len(weights)}")
            groups, at = {}, 0
            for (k, cell), m in zip(unique, counts):
                groups[k] = list(weights[at:at + m])
                at += m
        elif hasattr(weights, "items"):
            first = {id(c): k for k, c in unique}
            groups = {k: {} for k, _ in unique}
            for key, value in weights.items():
                if not isinstance(key, str):
                    raise TypeError(f"weights: names must be str, got {_describe(key)}")
                parts = key.split("/")
                idx = next((i for i, p in enumerate(parts) if _CELL_K.match(p)), None)
                if idx is None:
                    raise ValueError(f"weights: unknown name {key!r} for MultiRNNCell; expected "
                                     f"names such as 'cell_0/{self._cells[0].name}/...'")
                k = int(parts[idx][5:])
                if k >= len(self._cells):
                    raise ValueError(f"weights: {key!r} names cell {k}, but the MultiRNNCell has "
                                     f"{len(self._cells)} cells")
                if first[id(self._cells[k])] != k:
                    raise ValueError(f"weights: {key!r}: cell {k} is the same object as cell "
                                     f"{first[id(self._cells[k])]}; give its weights under "
                                     f"cell_{first[id(self._cells[k])]}")
                groups[k]["/".join(parts[idx + 1:])] = value
        else:
            raise TypeError(f"weights: expected a mapping name -> array or a list of arrays, "
                            f"got {_describe(weights)}")
        for k, cell in unique:
            try:
                cell.set_weights(groups[k], strict=strict)
            except (ValueError, TypeError) as e:
                _reraise(e, f"MultiRNNCell cells[{k}] ({cell.name}): ")

    def __repr__(self):
        return f"<MultiRNNCell cells={list(self._cells)!r}>"
