"""Keras: from_keras (SimpleRNN / LSTM / GRU and Bidirectional, from layer objects read by
duck typing or from weight lists + config dicts) and the inverse map to_keras_weights. Keras is
never imported.

The Keras weight layout (``get_weights()``, the same in Keras 2.0 to 3), I inputs, U units:
    SimpleRNN  kernel [I, U], recurrent_kernel [U, U], bias [U]
    LSTM       kernel [I, 4U], recurrent_kernel [U, 4U], bias [4U]; gate blocks i, f, c, o
    GRU        kernel [I, 3U], recurrent_kernel [U, 3U]; gate blocks z (update), r (reset),
               h (candidate); reset_after False: bias [3U],
                   hh = act(x W_h + b_h + (r * h) U_h)          (reset before the matmul)
               reset_after True: bias [2, 3U] (input bias row, recurrent bias row),
                   hh = act(x W_h + b_h + r * (h U_h + rb_h))   (reset after it)
               then h' = z * h + (1 - z) * hh.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Union

import numpy as np

from fastcells.activations import DEFAULT_ACTIVATION, DEFAULT_GATE_ACTIVATION
from fastcells.cells import LSTMStateTuple, MultiRNNCell
from fastcells.convert._common import (GATE_ORDER, activation_spec, as_input, float_dtype,
                                       gru_framework_weights, new_cell, reorder_gates,
                                       split_tf_weights, tf_gru_weights, tf_lstm_weights,
                                       tf_rnn_weights)
from fastcells.reference import reverse_sequence
from fastcells.rnn import bidirectional_dynamic_rnn, dynamic_rnn


if TYPE_CHECKING:
    from numpy.typing import ArrayLike

_KERAS_KINDS = {"SimpleRNN": "rnn", "LSTM": "lstm", "GRU": "gru"}
# Keras activation names the cells take (None: the cell's default)
_KERAS_ACTS = {"tanh": "tanh", "sigmoid": "sigmoid", "relu": "relu", "linear": "linear",
               "hard_sigmoid": "hard_sigmoid"}


def _keras_version_of(layer):
    """(major, minor) of the Keras a layer object comes from: keras.__version__ for the
    'keras' package (Keras 2.x or 3), tf_keras.__version__; TF's built-in Keras is (2, 99)."""
    import sys
    top = type(layer).__module__.split(".")[0]
    if top in ("keras", "tf_keras"):
        version = getattr(sys.modules.get(top), "__version__", None)
        if version is not None:
            return _supported_version(version, "keras.__version__")
        return (3, 0) if top == "keras" else (2, 99)
    return (2, 99)


def parse_keras_version(version, argname="keras_version"):
    """(major, minor) from 2, 3, "2.2.4", "2.3.0-tf", (2, 2) or None (unknown)."""
    if version is None:
        return None
    if isinstance(version, (int, np.integer)) and not isinstance(version, bool):
        if int(version) in (1, 2, 3):
            return (int(version), 99 if int(version) == 2 else 0)
    elif isinstance(version, bytes):
        return parse_keras_version(version.decode("utf-8", "replace"), argname)
    elif isinstance(version, str):
        parts = version.strip().split(".")
        digits = ["".join(ch for ch in p[:3] if ch.isdigit()) for p in parts[:2]]
        if len(digits) == 2 and all(digits) and parts[0].isdigit():
            return (int(digits[0]), int(digits[1]))
        if len(parts) == 1 and parts[0].isdigit():
            return parse_keras_version(int(parts[0]), argname)
    elif isinstance(version, tuple) and len(version) == 2 and all(
            isinstance(v, int) for v in version):
        return version
    raise ValueError(f"{argname}: expected 2, 3 or a version string such as '2.2.4' (a saved "
                     f"model's keras_version), got {version!r}")


def _supported_version(version, argname="keras_version"):
    version = parse_keras_version(version, argname)
    if version is not None and version[0] < 2:
        raise ValueError(f"{argname}: Keras {version[0]}.x stores recurrent weights per gate; "
                         f"fastcells reads the layout of Keras 2.0 and later")
    return version


# the Keras release that changed the LSTM / GRU defaults: recurrent_activation hard_sigmoid ->
# sigmoid, GRU reset_after False -> True (a config written before it may lack the keys)
_KERAS_NEW_DEFAULTS = (2, 3)


def _keras_act_name(value, argname):
    if isinstance(value, dict):                 # a serialized activation
        value = value.get("config", value.get("class_name"))
        if isinstance(value, dict):
            value = value.get("name", value.get("activation"))
    if value is None:
        value = "linear"
    if callable(value):
        value = getattr(value, "__name__", repr(value))
    if not isinstance(value, str) or value not in _KERAS_ACTS:
        raise ValueError(f"{argname}: Keras activation {value!r} is not supported (supported: "
                         f"{sorted(_KERAS_ACTS)})")
    return value


def _keras_act(name, keras_version, argname):
    """keras_version: (major, minor) or None."""
    if name == "hard_sigmoid":
        major = None if keras_version is None else keras_version[0]
        if major not in (1, 2, 3):
            raise ValueError(f"{argname}: 'hard_sigmoid' means clip(0.2x+0.5) in tf-keras / "
                             f"Keras 2 and clip(x/6+0.5) in Keras 3; pass keras_version=2 or 3")
        return activation_spec("hard_sigmoid",
                               {"alpha": 0.2 if major < 3 else 1.0 / 6, "beta": 0.5})
    return name


class _Config:
    """A layer config read key by key: a missing key or a value of the wrong type is a
    ValueError naming the layer and the key."""

    def __init__(self, cfg, class_name):
        if not isinstance(cfg, dict):
            raise ValueError(f"config: a {class_name} layer config must be a dict, got "
                             f"{type(cfg).__name__}")
        self.cfg = cfg
        name = cfg.get("name")
        self.label = f"{class_name} layer {name!r}" if isinstance(name, str) else \
            f"{class_name} layer"

    def __contains__(self, key):
        return key in self.cfg

    def error(self, key, message):
        return ValueError(f"{self.label}: config key {key!r}: {message}")

    def int(self, key, minimum=1):
        if key not in self.cfg:
            raise ValueError(f"{self.label}: config key {key!r} is missing")
        v = self.cfg[key]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
            raise self.error(key, f"expected an int >= {minimum}, got {v!r}")
        return int(v)

    def bool(self, key, default):
        v = self.cfg.get(key, default)
        if v is None and default is not None:
            v = default
        if isinstance(v, (bool, np.bool_)) or (isinstance(v, (int, np.integer))
                                               and v in (0, 1)):
            return bool(v)
        raise self.error(key, f"expected true or false, got {v!r}")

    def get(self, key, default=None):
        return self.cfg.get(key, default)


def _keras_unwrap(config, class_name):
    """(class name, inner config) from a serialized {"class_name", "config"} or a plain config."""
    if isinstance(config, dict) and "class_name" in config and isinstance(
            config.get("config"), dict):
        return config["class_name"], config["config"]
    if isinstance(config, dict) and "class_name" in config:
        raise ValueError(f"config: a serialized {config['class_name']!r} layer needs its "
                         f"'config' dict, got {type(config.get('config')).__name__}")
    if class_name is None:
        raise ValueError("config: a plain layer config needs class_name= ('SimpleRNN', 'LSTM', "
                         "'GRU' or 'Bidirectional'), or pass {'class_name': ..., 'config': ...}")
    return class_name, config


def _keras_layer_cell(class_name, cfg, weights, keras_version, dtype=None):
    """A fastcells cell + the run options for one Keras SimpleRNN / LSTM / GRU layer.
    keras_version: (major, minor) or None (unknown)."""
    if not isinstance(class_name, str):
        raise ValueError(f"class_name: expected a str, got {class_name!r}")
    base = class_name[:-2] if class_name.endswith(("V1", "V2")) else class_name
    kind = _KERAS_KINDS.get(base)
    if kind is None:
        raise ValueError(f"class_name: expected SimpleRNN, LSTM, GRU or Bidirectional, got "
                         f"{class_name!r}")
    cfg = _Config(cfg, class_name)
    U = cfg.int("units")
    use_bias = cfg.bool("use_bias", True)
    try:
        weights = [np.asarray(w) for w in weights]
    except (TypeError, ValueError) as e:
        raise ValueError(f"{cfg.label}: weights: not arrays ({e})") from None
    if len(weights) != (3 if use_bias else 2):
        raise ValueError(f"weights: a Keras {base} with use_bias={use_bias} has "
                         f"{3 if use_bias else 2} arrays [kernel, recurrent_kernel"
                         f"{', bias' if use_bias else ''}], got {len(weights)}")
    for k, w in enumerate(weights):
        if w.dtype.kind != "f" or w.dtype.itemsize < 4:
            raise ValueError(f"{cfg.label}: weights[{k}]: expected float32 or float64 values, "
                             f"got {w.dtype}")
    K, RK = weights[0], weights[1]
    dt = float_dtype(dtype or K.dtype, "weights")
    G = {"rnn": 1, "lstm": 4, "gru": 3}[kind]
    if K.ndim != 2 or K.shape[1] != G * U or RK.shape != (U, G * U) or K.shape[0] < 1:
        raise ValueError(f"weights: expected kernel [input_dim, {G * U}] and recurrent_kernel "
                         f"[{U}, {G * U}] for {base}(units={U}), got {K.shape} and {RK.shape}")
    old = keras_version is not None and keras_version < _KERAS_NEW_DEFAULTS
    reset_after = False
    if kind == "gru":
        reset_after = _keras_reset_after(cfg, keras_version, weights[2] if use_bias else None,
                                         U, old)
    if use_bias:
        b = weights[2]
        want = (2, G * U) if kind == "gru" and reset_after else (G * U,)
        if b.shape != want:
            raise ValueError(f"weights: expected bias of shape {want}, got {b.shape}")
    else:
        b = np.zeros((2, G * U) if kind == "gru" and reset_after else (G * U,), dt)
    act = _keras_act_name(cfg.get("activation", "tanh"), f"{cfg.label}: activation")
    options = {"activation": None if act == DEFAULT_ACTIVATION else _keras_act(act, keras_version,
                                                                  "activation")}
    if kind != "rnn":
        ract = _keras_act_name(cfg.get("recurrent_activation",
                                       "hard_sigmoid" if old else "sigmoid"),
                               f"{cfg.label}: recurrent_activation")
        if ract != DEFAULT_GATE_ACTIVATION:
            options["gate_activation"] = _keras_act(ract, keras_version, "recurrent_activation")
    order = GATE_ORDER["keras"].get(kind)
    if kind == "lstm":
        w = tf_lstm_weights(K, RK, b, order)
    elif kind == "gru":
        bx, bh = (b[0], b[1]) if reset_after else (b, np.zeros_like(b))
        w = tf_gru_weights(K, RK, bx, bh, order, reset_after)
    else:
        w = tf_rnn_weights(K, RK, b)
    cell = new_cell(kind, U, dt, reset_after=reset_after, **options)
    cell.set_weights(w)
    run = {k: cfg.bool(k, False) for k in ("return_sequences", "return_state", "go_backwards",
                                           "time_major", "zero_output_for_mask")}
    return kind, cell, run


def _keras_reset_after(cfg, keras_version, bias, U, old):
    """A GRU's reset_after: the config's key; when a config written before Keras 2.3 lacks
    it, False (then the default); with no version known, from the bias shape ([3U]: False,
    [2, 3U]: True); with no bias either, True (the default since Keras 2.3)."""
    if "reset_after" in cfg:
        return cfg.bool("reset_after", True)
    if keras_version is not None:
        return not old
    if bias is not None and bias.shape == (3 * U,):
        return False
    return True


def from_keras(layer: Any = None, *, weights: Optional[Sequence[ArrayLike]] = None,
               config: Optional[dict] = None, class_name: Optional[str] = None,
               keras_version: Union[int, str, tuple, None] = None
               ) -> Union[KerasRNN, KerasBidirectional]:
    """A fastcells model computing what a Keras recurrent layer computes (in inference).

    Either ``from_keras(layer)`` with a tf-keras or Keras 3 layer object (read through
    ``get_config()`` / ``get_weights()``; Keras is not imported by fastcells), or
    ``from_keras(weights=[...], config={...})`` without Keras: `weights` as ``get_weights()``
    gives them ([kernel, recurrent_kernel(, bias)], a Bidirectional's forward arrays then
    backward ones), `config` as ``get_config()`` gives it (then ``class_name=`` says the layer
    class) or serialized as ``{"class_name": ..., "config": ...}`` (as in model JSON).
    keras_version: 2, 3 or the version string a saved model records (``keras_version`` in an
    HDF5 file's attributes or a model JSON, e.g. "2.2.4"); a layer object tells it itself.
    It decides what ``hard_sigmoid`` means (Keras 2: clip(0.2x + 0.5, 0, 1); Keras 3:
    clip(x/6 + 0.5, 0, 1); from a config without a version it is an error) and the defaults
    of keys an older config lacks: before Keras 2.3, LSTM / GRU ``recurrent_activation``
    defaulted to hard_sigmoid and GRU ``reset_after`` to False (reset-before, one bias row
    [3U]); from 2.3 on (and when no version is given), sigmoid and True. A GRU config without
    ``reset_after`` and without a version is read from the bias shape: [3U] reset-before,
    [2, 3U] reset-after (with use_bias False: reset-after, the default since Keras 2.3).

    Layers: SimpleRNN, LSTM, GRU (reset_after True or False; the v1 layers too) and
    Bidirectional around them (merge_mode concat, sum, mul, ave, None; a backward_layer of
    its own). Honoured: units, activation and recurrent_activation (tanh, sigmoid,
    hard_sigmoid, relu, linear), use_bias, return_sequences, return_state, go_backwards
    (outputs in processing order, as Keras), time_major (tf-keras), zero_output_for_mask.
    unit_forget_bias, initializers, regularizers, constraints and dropout do nothing at
    inference; stateful layers are run from the given (or zero) initial state.

    Returns a callable ``model(inputs, initial_state=None, mask=None)`` giving what the layer
    gives: the output ([B,T,U] with return_sequences, else [B,U]), or with return_state the
    list ``[output, h]`` (``[output, h, c]`` for LSTM; a Bidirectional's forward states then
    backward states). `mask` ([B,T] bool) follows Keras masking exactly: a masked step keeps
    the state and repeats the previous output (zeros with zero_output_for_mask).

    Parameters
    ----------
    layer : Keras layer, optional
        A tf-keras or Keras 3 SimpleRNN / LSTM / GRU / Bidirectional layer object.
    weights : list of array_like, optional
        Keyword, with `config` instead of `layer`: as ``get_weights()`` gives them.
    config : dict, optional
        Keyword: as ``get_config()`` gives it, or serialized ``{"class_name", "config"}``.
    class_name : str, optional
        Keyword: the layer class when `config` is a plain config.
    keras_version : int, str or (major, minor), optional
        Keyword: 2, 3 or a version string such as "2.2.4" (see above).

    Returns
    -------
    KerasRNN or KerasBidirectional
        The callable model; ``.cells`` lists the fastcells cells it runs.

    Raises
    ------
    ValueError
        A config that is not a dict, lacks ``units`` or holds a value of the wrong type
        (units not an int >= 1, a flag not true/false, an activation that is not a name), and
        weights of the wrong number, dtype or shape, naming the layer and the key.
    TypeError
        Both a layer and weights/config given, or neither.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcells.convert import from_keras
    >>> rng = np.random.default_rng(0)
    >>> weights = [0.1 * rng.standard_normal((3, 16)), 0.1 * rng.standard_normal((4, 16)),
    ...            np.zeros(16)]                    # kernel, recurrent_kernel, bias (I=3, U=4)
    >>> weights = [w.astype(np.float32) for w in weights]
    >>> model = from_keras(weights=weights, config={"units": 4, "return_sequences": True},
    ...                    class_name="LSTM")
    >>> model(np.ones((2, 5, 3), np.float32)).shape               # [B, T, U]
    (2, 5, 4)
    >>> model.cells
    [<LSTMCell name='lstm_cell' num_units=4 input_size=3 dtype=float32>]
    """
    keras_version = _supported_version(keras_version)
    if layer is not None:
        if weights is not None or config is not None:
            raise TypeError("from_keras: give a layer object, or weights= and config=, not both")
        name = type(layer).__name__
        version = keras_version or _keras_version_of(layer)
        if name == "Bidirectional":
            fw, bw = layer.forward_layer, layer.backward_layer
            return KerasBidirectional(
                _keras_layer_cell(type(fw).__name__, fw.get_config(), fw.get_weights(),
                                  keras_version or _keras_version_of(fw)),
                _keras_layer_cell(type(bw).__name__, bw.get_config(), bw.get_weights(),
                                  keras_version or _keras_version_of(bw)),
                layer.get_config().get("merge_mode", "concat"), layer)
        if not hasattr(layer, "get_config") or not hasattr(layer, "get_weights"):
            raise TypeError(f"layer: expected a Keras layer (with get_config and get_weights), "
                            f"got {name}")
        return KerasRNN(*_keras_layer_cell(name, layer.get_config(), layer.get_weights(),
                                           version))
    if weights is None or config is None:
        raise TypeError("from_keras: give a layer object, or both weights= and config=")
    cls, cfg = _keras_unwrap(config, class_name)
    try:
        weights = list(weights)
    except TypeError:
        raise ValueError(f"weights: expected a list of arrays, got "
                         f"{type(weights).__name__}") from None
    if cls == "Bidirectional":
        bcfg_all = _Config(cfg, cls)
        if not isinstance(cfg.get("layer"), dict):
            raise ValueError(f"{bcfg_all.label}: config key 'layer' is missing or not a "
                             f"serialized layer ({{'class_name': ..., 'config': ...}})")
        fcls, fcfg = _keras_unwrap(cfg["layer"], None)
        if cfg.get("backward_layer") is not None:
            bcls, bcfg = _keras_unwrap(cfg["backward_layer"], None)
        else:
            if not isinstance(fcfg, dict):
                raise ValueError(f"{bcfg_all.label}: config key 'layer': its config is not a "
                                 f"dict")
            bcls, bcfg = fcls, dict(fcfg, go_backwards=not fcfg.get("go_backwards", False))
        if len(weights) % 2:
            raise ValueError(f"weights: a Bidirectional layer has its forward arrays then its "
                             f"backward ones, an even number, got {len(weights)}")
        n = len(weights) // 2
        return KerasBidirectional(
            _keras_layer_cell(fcls, fcfg, weights[:n], keras_version),
            _keras_layer_cell(bcls, bcfg, weights[n:], keras_version),
            cfg.get("merge_mode", "concat"), None)
    return KerasRNN(*_keras_layer_cell(cls, cfg, weights, keras_version))


def _keras_states(kind, st):
    return [st.h, st.c] if kind == "lstm" else [st]


def _keras_init(kind, cell, states, B, dt, what):
    """Keras initial_state ([h] or [h, c]) -> a fastcells state."""
    n = 2 if kind == "lstm" else 1
    if not isinstance(states, (list, tuple)):
        states = [states]
    if len(states) != n:
        raise ValueError(f"{what}: expected {n} arrays ({'[h, c]' if n == 2 else '[h]'}), got "
                         f"{len(states)}")
    arrs = [np.ascontiguousarray(as_input(a, dt, what)) for a in states]
    for a in arrs:
        if a.shape != (B, cell.num_units):
            raise ValueError(f"{what}: expected arrays of shape {(B, cell.num_units)}, got "
                             f"{a.shape}")
    return LSTMStateTuple(arrs[1], arrs[0]) if kind == "lstm" else arrs[0]


def _prefix_lengths(mask):
    """[B] lengths if every row of the bool mask [B,T] is a run of Trues then Falses, else
    None."""
    lengths = mask.sum(axis=1)
    T = mask.shape[1]
    if np.array_equal(mask, np.arange(T)[None, :] < lengths[:, None]):
        return lengths.astype(np.int64)
    return None


def _keras_sequence(kind, cell, x, init, mask, go_backwards, zero_out, dt):
    """One Keras recurrent layer over x [B,T,I] (batch-major): (outputs [B,T,U] in processing
    order, final fastcells state), with Keras masking."""
    B, T = x.shape[:2]
    if mask is None:
        return dynamic_rnn(cell, x[:, ::-1] if go_backwards else x, None, init, dt)
    lengths = _prefix_lengths(mask)
    if lengths is not None:                  # right padding: one sequence call
        if go_backwards:
            xs = reverse_sequence(x, lengths)
        else:
            xs = x
        out, st = dynamic_rnn(cell, xs, lengths, init, dt)
        rows = np.arange(B)
        if go_backwards:                     # masked steps come first: shift right
            t = np.arange(T)[None, :]
            src = t - (T - lengths[:, None])
            valid = src >= 0
            out = np.where(valid[..., None], out[rows[:, None], np.clip(src, 0, T - 1)], 0)
        elif not zero_out:                   # repeat the last valid output
            last = out[rows, np.maximum(lengths - 1, 0)] * (lengths > 0)[:, None]
            out = np.where((np.arange(T)[None, :] < lengths[:, None])[..., None], out,
                           last[:, None, :]).astype(dt, copy=False)
        return out, st
    # any other mask: one fused cell call per step
    state = init if init is not None else cell.zero_state(B, dt)
    order = range(T - 1, -1, -1) if go_backwards else range(T)
    prev = np.zeros((B, cell.output_size), dt)
    outs = []
    for t in order:
        o, new = cell(np.ascontiguousarray(x[:, t]), state)
        m = mask[:, t][:, None]
        if kind == "lstm":
            state = LSTMStateTuple(np.where(m, new.c, state.c), np.where(m, new.h, state.h))
        else:
            state = np.where(m, new, state)
        o = np.where(m, o, 0 if zero_out else prev)
        outs.append(o)
        prev = o
    return np.stack(outs, axis=1), state


def _keras_inputs(inputs, mask, time_major, dt):
    x = as_input(inputs, dt, "inputs")
    if x.ndim != 3:
        raise ValueError(f"inputs: expected a 3-D array "
                         f"{'[time, batch, features]' if time_major else '[batch, time, features]'}"
                         f", got shape {x.shape}")
    if time_major:
        x = x.swapaxes(0, 1)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != x.shape[:2]:
            raise ValueError(f"mask: expected shape {x.shape[:2]} ([batch, time]), got "
                             f"{mask.shape}")
        mask = mask.astype(bool)
    return x, mask


class KerasRNN:
    """A Keras SimpleRNN / LSTM / GRU layer on fastcells (what from_keras returns for one).

    Called as ``model(inputs, initial_state=None, mask=None)``: inputs [B,T,I] ([T,B,I] with
    time_major), initial_state ``[h]`` or ``[h, c]`` (LSTM) of [B,U] arrays, mask [B,T] bool.
    Returns the output ([B,T,U] with return_sequences, else [B,U]), or with return_state the
    list ``[output, h]`` (``[output, h, c]`` for LSTM). ``.cell`` / ``.cells``: the cell.

    Parameters
    ----------
    kind : str
        "rnn", "lstm" or "gru".
    cell : fastcells cell
        The cell that computes the layer.
    run : dict
        The layer's return_sequences, return_state, go_backwards, time_major and
        zero_output_for_mask flags.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcells.convert import from_keras
    >>> shapes = [(3, 16), (4, 16), (16,)]          # kernel, recurrent_kernel, bias (I=3, U=4)
    >>> weights = [np.full(shape, 0.1, np.float32) for shape in shapes]
    >>> model = from_keras(weights=weights, config={"units": 4, "return_state": True},
    ...                    class_name="LSTM")
    >>> type(model).__name__, [a.shape for a in model(np.ones((2, 5, 3), np.float32))]
    ('KerasRNN', [(2, 4), (2, 4), (2, 4)])
    """

    def __init__(self, kind: str, cell: Any, run: dict) -> None:
        self.kind, self.cell, self.run = kind, cell, run
        self.dtype = cell.dtype

    @property
    def cells(self):
        return [self.cell]

    def __repr__(self):
        return f"<KerasRNN {self.kind} units={self.cell.num_units} {self.run}>"

    def __call__(self, inputs: ArrayLike, initial_state: Any = None,
                 mask: Optional[ArrayLike] = None) -> Any:
        r, dt = self.run, self.dtype
        x, mask = _keras_inputs(inputs, mask, r["time_major"], dt)
        init = None
        if initial_state is not None:
            init = _keras_init(self.kind, self.cell, initial_state, x.shape[0], dt,
                               "initial_state")
        out, st = _keras_sequence(self.kind, self.cell, x, init, mask, r["go_backwards"],
                                  r["zero_output_for_mask"], dt)
        if r["return_sequences"]:
            y = out.swapaxes(0, 1) if r["time_major"] else out
        else:
            y = out[:, -1]
        if r["return_state"]:
            return [y] + _keras_states(self.kind, st)
        return y


_MERGE = {"concat": lambda a, b: np.concatenate([a, b], axis=-1), "sum": lambda a, b: a + b,
          "mul": lambda a, b: a * b, "ave": lambda a, b: (a + b) / 2}


class KerasBidirectional:
    """A Keras Bidirectional layer on fastcells (what from_keras returns for one).

    Called as ``model(inputs, initial_state=None, mask=None)``; initial_state: the forward
    states then the backward states. Returns the merged output (a list [forward, backward]
    with merge_mode None), with return_state followed by the forward then backward states.
    ``.cells`` = [forward, backward].

    Parameters
    ----------
    fw, bw : tuple
        (kind, cell, run flags) of the forward and the backward layer, as KerasRNN takes them.
    merge_mode : str or None
        "concat", "sum", "mul", "ave" or None (another value is a ValueError).
    layer : Keras layer or None
        The source layer object, if any.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcells.convert import from_keras
    >>> I, U = 3, 4
    >>> weights = [np.full((I, 4 * U), 0.1, np.float32), np.full((U, 4 * U), -0.1, np.float32),
    ...            np.zeros(4 * U, np.float32)]    # kernel, recurrent_kernel, bias
    >>> config = {"class_name": "Bidirectional",
    ...           "config": {"layer": {"class_name": "LSTM", "config": {"units": 4}}}}
    >>> model = from_keras(weights=weights + weights, config=config)   # forward, backward
    >>> type(model).__name__, model(np.ones((2, 5, 3), np.float32)).shape   # concat
    ('KerasBidirectional', (2, 8))
    """

    def __init__(self, fw: tuple, bw: tuple, merge_mode: Optional[str], layer: Any) -> None:
        (self.kind, self.fw, self.rf), (kind_bw, self.bw, self.rb) = fw, bw
        self.kind_bw = kind_bw
        if merge_mode is not None and merge_mode not in _MERGE:
            raise ValueError(f"merge_mode: expected concat, sum, mul, ave or None, got "
                             f"{merge_mode!r}")
        self.merge_mode = merge_mode
        self.dtype = self.fw.dtype
        if self.bw.dtype != self.dtype:
            raise TypeError("weights: the forward and backward layers have different dtypes")

    @property
    def cells(self):
        return [self.fw, self.bw]

    def __call__(self, inputs: ArrayLike, initial_state: Any = None,
                 mask: Optional[ArrayLike] = None) -> Any:
        rf, rb, dt = self.rf, self.rb, self.dtype
        x, mask = _keras_inputs(inputs, mask, rf["time_major"], dt)
        B = x.shape[0]
        init_f = init_b = None
        if initial_state is not None:
            states = list(initial_state)
            nf = 2 if self.kind == "lstm" else 1
            nb = 2 if self.kind_bw == "lstm" else 1
            if len(states) != nf + nb:
                raise ValueError(f"initial_state: expected {nf + nb} arrays (forward states "
                                 f"then backward states), got {len(states)}")
            init_f = _keras_init(self.kind, self.fw, states[:nf], B, dt, "initial_state")
            init_b = _keras_init(self.kind_bw, self.bw, states[nf:], B, dt, "initial_state")
        seqs = rf["return_sequences"]
        if mask is None and not rf["go_backwards"] and rb["go_backwards"]:
            # the usual case: both directions in one native call, bw already in input order
            (o_f, o_b), (s_f, s_b) = bidirectional_dynamic_rnn(self.fw, self.bw, x, None,
                                                               init_f, init_b, dt)
            y_f = o_f if seqs else o_f[:, -1]
            y_b = o_b if seqs else o_b[:, 0]
        else:
            # Keras forces zero_output_for_mask = return_sequences on both sublayers
            o_f, s_f = _keras_sequence(self.kind, self.fw, x, init_f, mask, rf["go_backwards"],
                                       seqs, dt)
            o_b, s_b = _keras_sequence(self.kind_bw, self.bw, x, init_b, mask,
                                       rb["go_backwards"], rb["return_sequences"], dt)
            y_f = o_f if seqs else o_f[:, -1]
            y_b = o_b[:, ::-1] if rb["return_sequences"] else o_b[:, -1]
        if seqs and rf["time_major"]:
            y_f, y_b = y_f.swapaxes(0, 1), y_b.swapaxes(0, 1)
        y = [y_f, y_b] if self.merge_mode is None else _MERGE[self.merge_mode](y_f, y_b)
        if rf["return_state"]:
            states = _keras_states(self.kind, s_f) + _keras_states(self.kind_bw, s_b)
            return (y if isinstance(y, list) else [y]) + states
        return y


def to_keras_weights(cell: Any) -> List[np.ndarray]:
    """Keras ``set_weights`` arrays for a fastcells cell.

    Also for a MultiRNNCell (the layers' lists concatenated, as a Sequential of those layers
    gives them) or a model from from_keras.

    BasicRNNCell -> SimpleRNN ``[kernel, recurrent_kernel, bias]``; BasicLSTMCell / LSTMCell ->
    LSTM (forget_bias folded into the bias; build the Keras layer with
    ``unit_forget_bias`` irrelevant, it is an initializer); GRUCell -> GRU(reset_after=False);
    GRUCell(reset_after=True) -> GRU(reset_after=True) (bias [2, 3U]). Give the Keras layer the
    cell's ``activation``. Not expressible (ValueError): peepholes, cell_clip, num_proj,
    the fastcells-only options.

    Parameters
    ----------
    cell : fastcells cell, MultiRNNCell, KerasRNN or KerasBidirectional
        A built cell, a stack of built cells (one Keras layer per cell), or a model from
        from_keras (its layers).

    Returns
    -------
    list of numpy.ndarray
        ``[kernel, recurrent_kernel, bias]`` per layer, in Keras' gate order.

    Examples
    --------
    >>> import fastcells
    >>> from fastcells.convert import to_keras_weights
    >>> cell = fastcells.GRUCell(4, reset_after=True, seed=0)
    >>> cell.build(3)
    >>> [a.shape for a in to_keras_weights(cell)]
    [(3, 12), (4, 12), (2, 12)]
    """
    if isinstance(cell, KerasRNN):
        return to_keras_weights(cell.cell)
    if isinstance(cell, KerasBidirectional):
        return to_keras_weights(cell.fw) + to_keras_weights(cell.bw)
    if isinstance(cell, MultiRNNCell):
        return [a for c in cell.cells for a in to_keras_weights(c)]
    kind, w = split_tf_weights(cell)
    if kind == "rnn":
        return [w["Wx"], w["Wh"], w["b"]]
    if kind == "lstm":
        if "proj" in w:
            raise ValueError(f"cell: {cell.name!r} has num_proj; Keras LSTM has no projection")
        tf, order = GATE_ORDER["tf"]["lstm"], GATE_ORDER["keras"]["lstm"]
        return [reorder_gates(w[k], tf, order) for k in ("Wx", "Wh", "b")]
    kernel, rkernel, bx, bh = gru_framework_weights(w, GATE_ORDER["keras"]["gru"])
    return [kernel, rkernel, np.stack([bx, bh]) if w["reset_after"] else bx]
