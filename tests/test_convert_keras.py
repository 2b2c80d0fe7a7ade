"""from_keras on configs as older Keras releases wrote them (no reset_after key before Keras 2.3:
a GRU is reset-before with one bias row; recurrent_activation hard_sigmoid by default) and on
broken configs (every failure a ValueError naming the layer and the key). No Keras needed: the
references are NumPy, the Keras 2 GRU / LSTM step written from the weight layout documented in
fastcells/convert/keras.py, and fastcells.reference's TF GRUCell on the same weights.

Tolerances: float32 within 1e-5 relative + 2e-6 absolute elementwise; float64 within 1e-10.
"""
import numpy as np
import pytest

from fastcells import reference
from fastcells.convert import from_keras

from test_convert import assert_close  # noqa: E402  (the converters' one comparison)


def hard_sigmoid_keras2(x):
    return np.clip(0.2 * x + 0.5, 0.0, 1.0)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def keras2_gru(x, kernel, recurrent_kernel, bias, reset_after, recurrent_activation):
    """Keras 2's GRU over x [B,T,I] from h = 0, as its GRUCell.call computes it: blocks z, r, h
    of kernel [I,3U] / recurrent_kernel [U,3U]; bias [3U] (reset before) or [2,3U] (after).
    Returns the outputs [B,T,U]."""
    B, T, _ = x.shape
    U = recurrent_kernel.shape[0]
    h = np.zeros((B, U), x.dtype)
    bx, bh = (bias[0], bias[1]) if reset_after else (bias, np.zeros_like(bias))
    kz, kr, kh = np.split(kernel, 3, axis=1)
    rz, rr, rh = np.split(recurrent_kernel, 3, axis=1)
    bz, br, bc = np.split(bx, 3)
    hz, hr, hc = np.split(bh, 3)
    outs = []
    for t in range(T):
        xt = x[:, t]
        z = recurrent_activation(xt @ kz + bz + h @ rz + hz)
        r = recurrent_activation(xt @ kr + br + h @ rr + hr)
        if reset_after:
            hh = np.tanh(xt @ kh + bc + r * (h @ rh + hc))
        else:
            hh = np.tanh(xt @ kh + bc + (r * h) @ rh)
        h = z * h + (1 - z) * hh
        outs.append(h)
    return np.stack(outs, axis=1)


def keras2_lstm(x, kernel, recurrent_kernel, bias, recurrent_activation):
    """Keras 2's LSTM over x [B,T,I] from zeros: blocks i, f, c, o. Returns [B,T,U]."""
    B, T, _ = x.shape
    U = recurrent_kernel.shape[0]
    h = c = np.zeros((B, U), x.dtype)
    outs = []
    for t in range(T):
        z = x[:, t] @ kernel + h @ recurrent_kernel + bias
        i, f, g, o = np.split(z, 4, axis=1)
        c = recurrent_activation(f) * c + recurrent_activation(i) * np.tanh(g)
        h = recurrent_activation(o) * np.tanh(c)
        outs.append(h)
    return np.stack(outs, axis=1)


def _gru_weights(I, U, reset_after, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    bias_shape = (2, 3 * U) if reset_after else (3 * U,)
    return [rng.uniform(-0.7, 0.7, s).astype(dtype)
            for s in ((I, 3 * U), (U, 3 * U), bias_shape)]


# a GRU layer config as Keras 2.0.8 writes it into model_config (no reset_after key then)
KERAS_2_0_GRU = {"name": "gru_1", "trainable": True, "return_sequences": True,
                 "return_state": False, "go_backwards": False, "stateful": False,
                 "unroll": False, "implementation": 1, "units": 4, "activation": "tanh",
                 "recurrent_activation": "hard_sigmoid", "use_bias": True,
                 "kernel_initializer": {"class_name": "VarianceScaling",
                                        "config": {"scale": 1.0, "mode": "fan_avg",
                                                   "distribution": "uniform", "seed": None}},
                 "recurrent_initializer": {"class_name": "Orthogonal",
                                           "config": {"gain": 1.0, "seed": None}},
                 "bias_initializer": {"class_name": "Zeros", "config": {}},
                 "kernel_regularizer": None, "recurrent_regularizer": None,
                 "bias_regularizer": None, "activity_regularizer": None,
                 "kernel_constraint": None, "recurrent_constraint": None,
                 "bias_constraint": None, "dropout": 0.0, "recurrent_dropout": 0.0}
X = np.random.default_rng(5).standard_normal((3, 6, 2)).astype(np.float32)    # [B,T,I]


@pytest.mark.parametrize("version", ["2.0.8", "2.1.6", "2.2.4", b"2.2.5", None])
def test_old_gru_without_reset_after_is_reset_before(version):
    """Keras < 2.3 (or no version: the bias [3U] tells) -> reset-before, the Keras 2 numbers
    and those of the TF GRUCell reference on the same weights. (Without a version,
    hard_sigmoid is ambiguous, so that config says sigmoid.)"""
    w = _gru_weights(2, 4, reset_after=False)
    cfg, gate = dict(KERAS_2_0_GRU), hard_sigmoid_keras2
    if version is None:
        cfg["recurrent_activation"], gate = "sigmoid", sigmoid
    m = from_keras(weights=w, config={"class_name": "GRU", "config": cfg},
                   keras_version=version)
    assert m.cell.reset_after is False
    got = m(X)
    assert_close(got, keras2_gru(X, *w, False, gate), "Keras 2 GRU")
    # fastcells.reference's TF GRUCell: gates [x, h] @ [r | u], candidate [x, r*h] @ c
    kz, kr, kh = np.split(w[0], 3, axis=1)
    rz, rr, rh = np.split(w[1], 3, axis=1)
    bz, br, bh = np.split(w[2], 3)
    gates_kernel = np.vstack([np.hstack([kr, kz]), np.hstack([rr, rz])])
    step = lambda x, h: (lambda h2: (h2, h2))(reference.gru_cell(   # noqa: E731
        x, h, gates_kernel, np.concatenate([br, bz]), np.vstack([kh, rh]), bh,
        gate_activation=("hard_sigmoid", 0.2, 0.5) if version else None))
    ref, _ = reference.dynamic_rnn(step, X.astype(np.float64), np.zeros((3, 4)))
    assert_close(got, ref.astype(np.float32), "reference.gru_cell")


def test_old_gru_default_recurrent_activation_is_hard_sigmoid():
    """A Keras 2.1 config without recurrent_activation: hard_sigmoid (then the default)."""
    cfg = {k: v for k, v in KERAS_2_0_GRU.items() if k != "recurrent_activation"}
    w = _gru_weights(2, 4, reset_after=False, seed=1)
    got = from_keras(weights=w, config=cfg, class_name="GRU", keras_version="2.1.6")(X)
    assert_close(got, keras2_gru(X, *w, False, hard_sigmoid_keras2))
    # Keras 2.3+ (or unknown): sigmoid; the bias [3U] still says reset-before without a version
    got = from_keras(weights=w, config=cfg, class_name="GRU")(X)
    assert_close(got, keras2_gru(X, *w, False, sigmoid))
    # an old LSTM likewise
    cfg = {"units": 3, "return_sequences": True}
    rng = np.random.default_rng(2)
    lw = [rng.uniform(-0.7, 0.7, s).astype(np.float32) for s in ((2, 12), (3, 12), (12,))]
    got = from_keras(weights=lw, config=cfg, class_name="LSTM", keras_version="2.2.4")(X)
    assert_close(got, keras2_lstm(X, *lw, hard_sigmoid_keras2))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gru_without_key_and_version_follows_the_bias(dtype):
    cfg = {"units": 4, "return_sequences": True}
    x = X.astype(dtype)
    for reset_after in (False, True):
        w = _gru_weights(2, 4, reset_after, dtype, seed=3)
        m = from_keras(weights=w, config=cfg, class_name="GRU")
        assert m.cell.reset_after is reset_after
        assert_close(m(x), keras2_gru(x, *w, reset_after, sigmoid), f"reset_after={reset_after}")


def test_version_and_key_decide_over_the_bias():
    w_before = _gru_weights(2, 4, reset_after=False)
    cfg = {"units": 4}
    # Keras >= 2.3 without the key: reset-after, so a [3U] bias is the wrong shape
    for version in ("2.3.1", 3, "3.4.1", (2, 3)):
        with pytest.raises(ValueError, match=r"expected bias of shape \(2, 12\), got \(12,\)"):
            from_keras(weights=w_before, config=cfg, class_name="GRU", keras_version=version)
    # an explicit key wins over the version
    m = from_keras(weights=w_before, config=dict(cfg, reset_after=False), class_name="GRU",
                   keras_version="3.0")
    assert m.cell.reset_after is False
    w_after = _gru_weights(2, 4, reset_after=True)
    with pytest.raises(ValueError, match=r"expected bias of shape \(12,\), got \(2, 12\)"):
        from_keras(weights=w_after, config=cfg, class_name="GRU", keras_version="2.2.4")
    # no bias, no key, no version: reset-after (the default since 2.3); Keras 2.2: before
    nb = dict(cfg, use_bias=False)
    assert from_keras(weights=w_after[:2], config=nb, class_name="GRU").cell.reset_after
    assert not from_keras(weights=w_after[:2], config=nb, class_name="GRU",
                          keras_version="2.2.0").cell.reset_after


def test_bidirectional_old_gru():
    """A Keras 2.2 Bidirectional(GRU) config: both directions reset-before."""
    inner = {"class_name": "GRU", "config": dict(KERAS_2_0_GRU, return_sequences=False)}
    w = _gru_weights(2, 4, False, seed=4) + _gru_weights(2, 4, False, seed=5)
    m = from_keras(weights=w, config={"class_name": "Bidirectional",
                                      "config": {"layer": inner, "merge_mode": "concat"}},
                   keras_version="2.2.4")
    fw = keras2_gru(X, *w[:3], False, hard_sigmoid_keras2)[:, -1]
    bw = keras2_gru(X[:, ::-1], *w[3:], False, hard_sigmoid_keras2)[:, -1]
    assert_close(m(X), np.concatenate([fw, bw], axis=-1))


# ---------------------------------------------------------------------------------------------
# broken configs: ValueError naming the layer and the key
# ---------------------------------------------------------------------------------------------

W_LSTM = [np.zeros((3, 8), np.float32), np.zeros((2, 8), np.float32), np.zeros(8, np.float32)]


@pytest.mark.parametrize("cfg,message", [
    ({}, "LSTM layer: config key 'units' is missing"),
    ({"name": "enc", "units": "2"}, "LSTM layer 'enc': config key 'units': expected an int "
                                    ">= 1, got '2'"),
    ({"units": 2.0}, "config key 'units': expected an int >= 1, got 2.0"),
    ({"units": True}, "config key 'units': expected an int >= 1, got True"),
    ({"units": 0}, "config key 'units': expected an int >= 1, got 0"),
    ({"units": None}, "config key 'units': expected an int >= 1, got None"),
    ({"units": 2, "use_bias": "no"}, "config key 'use_bias': expected true or false, got 'no'"),
    ({"units": 2, "return_sequences": [1]}, "config key 'return_sequences': expected true or "
                                            "false"),
    ({"units": 2, "go_backwards": 2}, "config key 'go_backwards': expected true or false"),
    ({"units": 2, "activation": 5}, "activation: Keras activation 5 is not supported"),
    ({"units": 2, "recurrent_activation": ["sigmoid"]}, "recurrent_activation: Keras "
                                                        "activation"),
], ids=lambda v: "" if isinstance(v, str) else "-".join(f"{k}={v[k]!r}" for k in v) or "empty")
def test_config_errors_name_layer_and_key(cfg, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[")):
        from_keras(weights=W_LSTM, config=cfg, class_name="LSTM")


def test_structure_errors():
    with pytest.raises(ValueError, match="config: a LSTM layer config must be a dict, got list"):
        from_keras(weights=W_LSTM, config=[1, 2], class_name="LSTM")
    with pytest.raises(ValueError, match="serialized 'GRU' layer needs its 'config' dict"):
        from_keras(weights=W_LSTM, config={"class_name": "GRU", "config": None})
    with pytest.raises(ValueError, match="Bidirectional layer: config key 'layer' is missing"):
        from_keras(weights=W_LSTM, config={"class_name": "Bidirectional", "config": {}})
    inner = {"class_name": "LSTM", "config": {"units": 2}}
    with pytest.raises(ValueError, match="an even number, got 3"):
        from_keras(weights=W_LSTM, config={"class_name": "Bidirectional",
                                           "config": {"layer": inner}})
    with pytest.raises(ValueError, match=r"LSTM layer: weights\[0\]: expected float32 or "
                                         r"float64 values, got int64"):
        from_keras(weights=[np.zeros((3, 8), np.int64)] + W_LSTM[1:], config={"units": 2},
                   class_name="LSTM")
    with pytest.raises(ValueError, match="weights: expected a list of arrays, got int"):
        from_keras(weights=5, config={"units": 2}, class_name="LSTM")
    with pytest.raises(ValueError, match="class_name: expected a str, got 7"):
        from_keras(weights=W_LSTM, config={"units": 2}, class_name=7)
    for bad in ("banana", "2.x", 7, 2.5):
        with pytest.raises(ValueError, match="keras_version: expected 2, 3 or a version "
                                             "string"):
            from_keras(weights=W_LSTM, config={"units": 2}, class_name="LSTM",
                       keras_version=bad)
    with pytest.raises(ValueError, match="Keras 1.x stores recurrent weights per gate"):
        from_keras(weights=W_LSTM, config={"units": 2}, class_name="LSTM",
                   keras_version="1.2.2")


def test_mutated_configs_fail_only_with_valueerror():
    """Every key of a GRU config deleted or set to values of other types: ValueError or a
    model that runs; nothing else."""
    w = _gru_weights(2, 4, reset_after=False)
    values = [None, 0, 1, -1, 4, 2.5, "", "tanh", "hard_sigmoid", "relu", True, False, [],
              [1], {}, {"class_name": "Zeros"}, {"config": {"name": "sigmoid"}}]
    n_ok = n_err = 0
    for key in list(KERAS_2_0_GRU) + ["reset_after", "time_major", "zero_output_for_mask"]:
        for value in [KeyError] + values:
            cfg = dict(KERAS_2_0_GRU)
            if value is KeyError:
                cfg.pop(key, None)
            else:
                cfg[key] = value
            for version in (None, "2.2.4"):
                try:
                    m = from_keras(weights=w, config=cfg, class_name="GRU",
                                   keras_version=version)
                except ValueError:
                    n_err += 1
                    continue
                out = m(X)
                assert isinstance(out, (np.ndarray, list))
                n_ok += 1
    assert n_ok > 100 and n_err > 50, (n_ok, n_err)
