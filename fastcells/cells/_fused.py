"""The machinery of the cells computed in C: weights (built, set, got, matched by TF name),
the packed C copy derived from them, the careful validating path behind the fast one, and the
NumPy path (fastcells.reference) for activations the C kernels lack.

    FusedCell          weights, build, set/get_weights, validation, the fallback paths
    SingleStateCell    FusedCell whose state is one array [B, U] and whose output is the state
"""
import re

import numpy as np

from fastcells import _core, _fork, _override, _serialize
from fastcells._validate import (as_array, as_weight, bridge_ready, check_clip, check_int,
                                 describe, parse_input_size, shape_text)
from fastcells.activations import DEFAULT_GATE_ACTIVATION
from fastcells.activations import resolve as _resolve_activation
from fastcells.cells._base import RNNCell
from fastcells.cells._initializers import initial_value
from fastcells.cells._spec import SUBSCOPES

_empty = np.empty
_ndarray = np.ndarray
# what the fast paths catch before re-running the call with full checking and clear messages
RETRY = (AttributeError, TypeError, ValueError, IndexError)
_PART = re.compile(r"^part_(\d+)$")


def _readonly(a):
    a.flags.writeable = False
    return a


def _readonly_view(a):
    v = a.view()
    v.flags.writeable = False
    return v


class FusedCell(RNNCell):
    """What the four concrete cells share: weights, build, set/get_weights, validation, and the
    fallback paths. Subclasses set _SPEC (their table in fastcells.cells._spec) and define
    __call__ and step_ (the fast paths), _state_arrays (validation), _new_outputs, _result and
    _reference_step (the NumPy path); _initializer_for and _has_weight when they take
    initializers or optional weights."""

    _SPEC = None                # a fastcells.cells._spec.CellSpec
    __getstate__, __setstate__ = _serialize.getstate, _serialize.setstate
    # the packed weights' format: None (the dtype), "int8" or "bf16" (fastcells.quantize); a class
    # default, so that a cell pickled before this attribute existed loads as None
    _precision = None

    @property
    def _KIND(self):
        """The C kernel's kind."""
        return self._SPEC.c_kind

    @property
    def _KERNEL_NAME(self):
        """The weight whose rows give the input size: the first one."""
        return self._SPEC.weights[0].name

    def __init__(self, num_units, activation, name, dtype, seed, kwargs):
        super().__init__(name=name, dtype=dtype, **kwargs)
        self._num_units = check_int(num_units, "num_units")
        self._fused, self._act = _resolve_activation(activation)
        self._activation = activation
        # beyond TF (ONNX/Keras cells), set by _set_options: gate and output activations,
        # the pre-activation clip, input_forget
        self._gate_activation = self._output_activation = None
        self._gate_fused, self._gate_act = DEFAULT_GATE_ACTIVATION, None
        self._out_fused, self._out_act = None, None     # None: the same as activation
        self._preact_clip = None
        self._input_forget = False
        self._rng = np.random.default_rng(seed)
        self._input_size = None
        self._weights = {}          # name -> read-only array, TF creation order
        self._packed = None         # _core.PackedCell, derived from _weights
        self._lock = _fork.new_lock(self)

    # -- per-cell description (the table, and the subclasses' options) ----------------------
    def _spec(self, input_size):
        """[(name, shape, initializer, initializer argname)] in TF's creation order, for the
        weights this cell has."""
        I, U, P = input_size, self._num_units, self._rec_size
        out = []
        for w in self._SPEC.weights:
            if self._has_weight(w):
                init, argname = self._initializer_for(w)
                out.append((w.name, w.shape(I, U, P), init, argname))
        return out

    def _has_weight(self, w):
        """Whether the cell has the optional weight `w` (a _spec.Weight)."""
        return w.when is None

    def _initializer_for(self, w):
        """(initializer, the argument that names it in messages) for the weight `w`."""
        return w.default, w.role

    def _set_options(self, gate_activation=None, output_activation=None, preact_clip=None,
                     input_forget=False):
        """The keyword-only options beyond TF (see the class docstrings)."""
        self._gate_activation = gate_activation
        self._gate_fused, gate_fn = _resolve_activation(gate_activation, "gate_activation",
                                                        default=DEFAULT_GATE_ACTIVATION)
        self._gate_act = None if gate_activation is None else gate_fn
        self._output_activation = output_activation
        if output_activation is not None:
            self._out_fused, self._out_act = _resolve_activation(output_activation,
                                                                 "output_activation")
        self._preact_clip = check_clip(preact_clip, "preact_clip")
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
        I = parse_input_size(input_size, argname)
        with self._lock:
            if self._built:
                if I != self._input_size:
                    raise ValueError(f"{argname}: the cell {self._name!r} is already built for "
                                     f"input size {self._input_size}, got {I}")
                return
            arrays = {}
            for name, shape, init, init_arg in self._spec(I):
                value = initial_value(init, init_arg, shape, self._dtype, self._rng)
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
                                      activation=self._fused, precision=self._precision,
                                      **self._packed_options())
        self._weights = stored
        self._packed = packed
        self._input_size = I
        self._built = True

    @property
    def precision(self):
        """The packed weights' format: None (the cell's dtype), "int8" or "bf16" (a copy made by
        fastcells.quantize). get_weights() always returns the float weights."""
        return self._precision

    def _set_precision(self, precision):
        """Packs the weights again in `precision` (fastcells.quantize, on its private copy)."""
        with self._lock:
            self._precision = precision
            if self._built:
                self._install(self._input_size, self._weights)

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
                            f"got {describe(weights)}")
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
            raise TypeError(f"weights: names must be str, got {describe(key)}")
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
            if prefix and prefix[-1] in SUBSCOPES:
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
            arrays[name] = as_weight(value, f"weights[{name!r}]", self._dtype)
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
        x = as_array(inputs, "inputs", self._dtype)
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
        if not bridge_ready(x):
            x = np.array(x, order="C")       # a fresh, aligned, contiguous copy
        return x

    def _check_matrix(self, a, argname, B, cols, inplace):
        """One state array: converted (call) or checked strictly (step_)."""
        if inplace:
            if not isinstance(a, _ndarray):
                raise TypeError(f"{argname}: step_ writes the new state in place, so it must be a "
                                f"numpy array of dtype {self._dtype}, got {describe(a)}")
            if a.dtype != self._dtype and a.dtype.newbyteorder("=") == self._dtype:
                raise ValueError(f"{argname}: expected an array in native byte order (dtype "
                                 f"{self._dtype}; step_ writes in place, no conversion), got "
                                 f"dtype {a.dtype.str}")
            if a.dtype != self._dtype:
                raise TypeError(f"{argname}: expected dtype {self._dtype} (step_ writes in place; "
                                f"no conversion), got dtype {a.dtype}")
        else:
            a = as_array(a, argname, self._dtype)
        if a.ndim != 2 or a.shape[1] != cols:
            raise ValueError(f"{argname}: expected shape {shape_text(B, cols)}, got shape "
                             f"{a.shape}")
        if a.shape[0] != B:
            raise ValueError(f"{argname}: expected shape {shape_text(B, cols)} (batch {B} as "
                             f"inputs), got shape {a.shape}")
        if not bridge_ready(a):
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


class SingleStateCell(FusedCell):
    """BasicRNNCell and GRUCell: the state is one array [B, U], and the output is the state.
    Their oracles take (x, h, the weights in the table's order)."""

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
        except RETRY:
            return self._call_checked(inputs, state)

    def step_(self, inputs, state):
        """One step written into `state` ([B, U], writeable, the cell dtype, last axis
        contiguous); returns `state` itself, which is also the output."""
        try:
            return self._packed.tf_step_(inputs, state)
        except RETRY:
            return self._step_checked(inputs, state)

    def _state_arrays(self, state, B, inplace):
        if isinstance(state, tuple):
            raise ValueError(f"state: expected one array of shape {shape_text(B, self._num_units)}"
                             f" for {type(self).__name__}, got {describe(state)}")
        return (self._check_matrix(state, "state", B, self._num_units, inplace),)

    def _new_outputs(self, B):
        return (_empty((B, self._num_units), self._dtype),)

    def _result(self, outs):
        return outs[0], outs[0]

    def _reference_step(self, x, parts):
        w = self._weights
        return (self._SPEC.oracle(x, parts[0], *(w[n] for n in self._SPEC.names),
                                  activation=self._act, **self._reference_options()),)
