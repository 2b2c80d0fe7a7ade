"""Tests of fastcells.reference, the NumPy oracle, against independent scalar Python loops.

The loops below use only ``math`` and plain indexing: no NumPy matmul, no reference function.
Cells are checked in float64 at 1e-13; runners are checked row by row against per-row loops.
"""
import collections
import importlib.util
import math
import pathlib
import sys
import warnings

import numpy as np
import pytest

try:
    from fastcells import reference as ref
except Exception:  # the package may be half-built while others work on it: load the files alone
    def _load(name, filename):
        path = pathlib.Path(__file__).resolve().parents[1] / "fastcells" / filename
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    _load("fastcells._nest", "_nest.py")         # reference's one import beyond NumPy
    ref = _load("fastcells_reference", "reference.py")
from fastcells._nest import flatten, pack_as  # noqa: E402

TOL = dict(rtol=1e-13, atol=1e-13)
LSTMStateTuple = collections.namedtuple("LSTMStateTuple", ("c", "h"))


# ---------------------------------------------------------------------------------------------
# Independent scalar versions (math module only)
# ---------------------------------------------------------------------------------------------

def s_sig(v):
    return 1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))


S_ACT = {None: math.tanh, "tanh": math.tanh, "relu": lambda v: max(v, 0.0),
         "sigmoid": s_sig, "linear": lambda v: v}


def s_affine(xh, kernel, bias, col):
    """bias[col] + sum_k xh[k] * kernel[k, col], in plain Python floats."""
    acc = float(bias[col])
    for k in range(len(xh)):
        acc += float(xh[k]) * float(kernel[k, col])
    return acc


def loop_rnn(x, h, kernel, bias, act=None):
    B, U = h.shape
    out = np.zeros((B, U))
    for b in range(B):
        xh = list(x[b]) + list(h[b])
        for u in range(U):
            out[b, u] = S_ACT[act](s_affine(xh, kernel, bias, u))
    return out


def loop_lstm(x, c, h, kernel, bias, forget_bias=1.0, act=None, w_i=None, w_f=None, w_o=None,
              cell_clip=None, proj=None, proj_clip=None):
    B, U = c.shape
    P = h.shape[1]
    a = S_ACT[act]
    c_new = np.zeros((B, U))
    m_new = np.zeros((B, P if proj is not None else U))
    for b in range(B):
        xh = list(x[b]) + list(h[b])
        m_row = []
        for u in range(U):
            i = s_affine(xh, kernel, bias, u)
            j = s_affine(xh, kernel, bias, U + u)
            f = s_affine(xh, kernel, bias, 2 * U + u)
            o = s_affine(xh, kernel, bias, 3 * U + u)
            cp = float(c[b, u])
            if w_i is not None:
                cn = s_sig(f + forget_bias + w_f[u] * cp) * cp + s_sig(i + w_i[u] * cp) * a(j)
            else:
                cn = s_sig(f + forget_bias) * cp + s_sig(i) * a(j)
            if cell_clip is not None:
                cn = min(max(cn, -cell_clip), cell_clip)
            c_new[b, u] = cn
            og = o + w_o[u] * cn if w_o is not None else o
            m_row.append(s_sig(og) * a(cn))
        if proj is None:
            m_new[b] = m_row
        else:
            for p in range(P):
                v = sum(m_row[u] * float(proj[u, p]) for u in range(U))
                if proj_clip is not None:
                    v = min(max(v, -proj_clip), proj_clip)
                m_new[b, p] = v
    return c_new, m_new


def loop_gru(x, h, gk, gb, ck, cb, act=None):
    B, U = h.shape
    out = np.zeros((B, U))
    for b in range(B):
        xh = list(x[b]) + list(h[b])
        r = [s_sig(s_affine(xh, gk, gb, u)) for u in range(U)]
        z = [s_sig(s_affine(xh, gk, gb, U + u)) for u in range(U)]
        xrh = list(x[b]) + [r[u] * float(h[b, u]) for u in range(U)]
        for u in range(U):
            cand = S_ACT[act](s_affine(xrh, ck, cb, u))
            out[b, u] = z[u] * float(h[b, u]) + (1.0 - z[u]) * cand
    return out


def loop_gru_reset_after(x, h, gk, gb, ik, ib, hk, hb, act=None):
    B, U = h.shape
    out = np.zeros((B, U))
    for b in range(B):
        xh = list(x[b]) + list(h[b])
        for u in range(U):
            r = s_sig(s_affine(xh, gk, gb, u))
            z = s_sig(s_affine(xh, gk, gb, U + u))
            cand = S_ACT[act](s_affine(list(x[b]), ik, ib, u) + r * s_affine(list(h[b]), hk, hb, u))
            out[b, u] = z * float(h[b, u]) + (1.0 - z) * cand
    return out


def rnd(rng, *shape, scale=1.0, dtype=np.float64):
    return (scale * rng.uniform(-1.0, 1.0, size=shape)).astype(dtype)


def lstm_weights(rng, I, U, P=None, dtype=np.float64):
    P = U if P is None else P
    return dict(kernel=rnd(rng, I + P, 4 * U, dtype=dtype), bias=rnd(rng, 4 * U, dtype=dtype))


def gru_weights(rng, I, U, dtype=np.float64):
    return dict(gates_kernel=rnd(rng, I + U, 2 * U, dtype=dtype),
                gates_bias=rnd(rng, 2 * U, dtype=dtype),
                candidate_kernel=rnd(rng, I + U, U, dtype=dtype),
                candidate_bias=rnd(rng, U, dtype=dtype))


def gru_ra_weights(rng, I, U, dtype=np.float64):
    return dict(gates_kernel=rnd(rng, I + U, 2 * U, dtype=dtype),
                gates_bias=rnd(rng, 2 * U, dtype=dtype),
                input_kernel=rnd(rng, I, U, dtype=dtype), input_bias=rnd(rng, U, dtype=dtype),
                hidden_kernel=rnd(rng, U, U, dtype=dtype), hidden_bias=rnd(rng, U, dtype=dtype))


SIZES = [(1, 1, 1), (2, 3, 1), (3, 1, 4), (2, 3, 5)]        # (B, I, U)
ACTS = [None, "tanh", "relu", "sigmoid", "linear"]


# ---------------------------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------------------------

def test_sigmoid_matches_math():
    x = np.concatenate([np.linspace(-40.0, 40.0, 2001), [0.0, -0.0, 1e-300, -1e-300, 700.0, -700.0]])
    expected = np.array([s_sig(v) for v in x])
    np.testing.assert_allclose(ref.sigmoid(x), expected, rtol=1e-15, atol=0)


def test_sigmoid_stable_at_large_magnitude_without_warnings():
    x = np.array([-1000.0, -800.0, -750.0, 710.0, 1000.0, -np.inf, np.inf])
    with np.errstate(all="raise"), warnings.catch_warnings():
        warnings.simplefilter("error")
        y = ref.sigmoid(x)
        y32 = ref.sigmoid(x.astype(np.float32))
        tiny = ref.sigmoid(np.array([-710.0]))                # subnormal, still no warning
    assert 0.0 < tiny[0] < 1e-307
    np.testing.assert_array_equal(y, [0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    np.testing.assert_array_equal(y32, np.array([0, 0, 0, 1, 1, 0, 1], np.float32))
    assert y32.dtype == np.float32


def test_sigmoid_nan_and_symmetry():
    assert np.isnan(ref.sigmoid(np.array([np.nan])))[0]
    x = np.linspace(-30, 30, 601)
    np.testing.assert_allclose(ref.sigmoid(x) + ref.sigmoid(-x), 1.0, rtol=0, atol=4.5e-16)


def test_other_activations():
    x = np.array([-2.5, -0.0, 0.0, 0.3, 7.0])
    np.testing.assert_array_equal(ref.tanh(x), np.tanh(x))
    np.testing.assert_array_equal(ref.relu(x), [0.0, 0.0, 0.0, 0.3, 7.0])
    np.testing.assert_array_equal(ref.linear(x), x)
    assert np.isnan(ref.relu(np.array([np.nan])))[0]
    for f in (ref.sigmoid, ref.tanh, ref.relu, ref.linear):
        assert f(x.astype(np.float32)).dtype == np.float32


def test_get_activation():
    assert ref.get_activation(None) is ref.tanh
    for name in ("tanh", "relu", "sigmoid", "linear"):
        assert ref.get_activation(name) is ref.ACTIVATIONS[name]
    assert set(ref.ACTIVATIONS) == {"tanh", "relu", "sigmoid", "linear"}
    f = np.sin
    assert ref.get_activation(f) is f
    with pytest.raises(ValueError, match="activation"):
        ref.get_activation("softplus")
    with pytest.raises(TypeError, match="activation"):
        ref.get_activation(3)


def test_parametric_activations_follow_onnx():
    """The ONNX operator definitions, element by element, with defaults and given alpha/beta."""
    x = np.array([-3.0, -0.5, 0.0, 0.25, 2.0, 7.0])
    cases = {
        ("hard_sigmoid", None, None): [max(0, min(1, 0.2 * v + 0.5)) for v in x],
        ("hard_sigmoid", 1 / 6, 0.5): [max(0, min(1, v / 6 + 0.5)) for v in x],
        ("leaky_relu", 0.1, None): [v if v >= 0 else 0.1 * v for v in x],
        ("thresholded_relu", 0.3, None): [v if v > 0.3 else 0.0 for v in x],
        ("scaled_tanh", 2.0, 0.5): [2.0 * math.tanh(0.5 * v) for v in x],
        ("affine", 3.0, -1.0): [3.0 * v - 1.0 for v in x],
        ("elu", 0.7, None): [v if v >= 0 else 0.7 * math.expm1(v) for v in x],
        ("softsign", None, None): [v / (1 + abs(v)) for v in x],
    }
    for (name, alpha, beta), want in cases.items():
        got = ref.get_activation((name, alpha, beta))(x)
        np.testing.assert_allclose(got, want, rtol=1e-15, atol=0, err_msg=name)


# ---------------------------------------------------------------------------------------------
# Cells against the scalar loops
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("B,I,U", SIZES)
@pytest.mark.parametrize("act", ACTS)
def test_rnn_cell_matches_loop(B, I, U, act):
    rng = np.random.default_rng(1)
    x, h = rnd(rng, B, I), rnd(rng, B, U)
    kernel, bias = rnd(rng, I + U, U), rnd(rng, U)
    got = ref.rnn_cell(x, h, kernel, bias, activation=act)
    np.testing.assert_allclose(got, loop_rnn(x, h, kernel, bias, act), **TOL)
    assert got.shape == (B, U) and got.dtype == np.float64


@pytest.mark.parametrize("B,I,U", SIZES)
@pytest.mark.parametrize("act", ACTS)
def test_basic_lstm_cell_matches_loop(B, I, U, act):
    rng = np.random.default_rng(2)
    x, c, h = rnd(rng, B, I), rnd(rng, B, U, scale=2.0), rnd(rng, B, U)
    w = lstm_weights(rng, I, U)
    c_new, m_new = ref.lstm_cell(x, c, h, w["kernel"], w["bias"], activation=act)
    ec, em = loop_lstm(x, c, h, w["kernel"], w["bias"], act=act)
    np.testing.assert_allclose(c_new, ec, **TOL)
    np.testing.assert_allclose(m_new, em, **TOL)


LSTM_OPTIONS = {
    "forget_bias0": dict(forget_bias=0.0),
    "forget_bias2.5": dict(forget_bias=2.5),
    "peepholes": dict(peep=True),
    "cell_clip": dict(cell_clip=0.3),
    "proj": dict(P=2),
    "proj_clip": dict(P=3, proj_clip=0.05),
    "all": dict(peep=True, cell_clip=0.4, P=2, proj_clip=0.1, forget_bias=0.5, act="relu"),
}


@pytest.mark.parametrize("B,I,U", SIZES)
@pytest.mark.parametrize("option", sorted(LSTM_OPTIONS))
def test_lstm_cell_options_match_loop(B, I, U, option):
    opt = LSTM_OPTIONS[option]
    rng = np.random.default_rng(3)
    P = opt.get("P")
    x, c, h = rnd(rng, B, I), rnd(rng, B, U, scale=2.0), rnd(rng, B, P or U)
    w = lstm_weights(rng, I, U, P)
    peep = [rnd(rng, U) for _ in range(3)] if opt.get("peep") else [None] * 3
    proj = rnd(rng, U, P) if P else None
    fb, act = opt.get("forget_bias", 1.0), opt.get("act")
    c_new, m_new = ref.lstm_cell(x, c, h, w["kernel"], w["bias"], forget_bias=fb, activation=act,
                                 w_i_diag=peep[0], w_f_diag=peep[1], w_o_diag=peep[2],
                                 cell_clip=opt.get("cell_clip"), proj_kernel=proj,
                                 proj_clip=opt.get("proj_clip"))
    ec, em = loop_lstm(x, c, h, w["kernel"], w["bias"], forget_bias=fb, act=act, w_i=peep[0],
                       w_f=peep[1], w_o=peep[2], cell_clip=opt.get("cell_clip"), proj=proj,
                       proj_clip=opt.get("proj_clip"))
    np.testing.assert_allclose(c_new, ec, **TOL)
    np.testing.assert_allclose(m_new, em, **TOL)
    assert c_new.shape == (B, U) and m_new.shape == (B, P or U)


# both GRUs: (oracle function name, weights, scalar loop, seed)
GRUS = {"reset_before": ("gru_cell", gru_weights, loop_gru, 4),
        "reset_after": ("gru_cell_reset_after", gru_ra_weights, loop_gru_reset_after, 5)}


@pytest.mark.parametrize("B,I,U", SIZES)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("gru", sorted(GRUS))
def test_gru_cells_match_loop(gru, B, I, U, act):
    name, weights, loop, seed = GRUS[gru]
    rng = np.random.default_rng(seed)
    x, h = rnd(rng, B, I), rnd(rng, B, U)
    w = weights(rng, I, U)
    got = getattr(ref, name)(x, h, **w, activation=act)
    np.testing.assert_allclose(got, loop(x, h, *w.values(), act=act), **TOL)


def test_callable_activation_is_used():
    rng = np.random.default_rng(6)
    x, h = rnd(rng, 2, 3), rnd(rng, 2, 4)
    kernel, bias = rnd(rng, 7, 4), rnd(rng, 4)
    got = ref.rnn_cell(x, h, kernel, bias, activation=np.sin)
    np.testing.assert_allclose(got, np.sin(np.concatenate([x, h], 1) @ kernel + bias), **TOL)


def test_cells_do_not_modify_inputs():
    rng = np.random.default_rng(7)
    x, c, h = rnd(rng, 2, 3), rnd(rng, 2, 4), rnd(rng, 2, 4)
    w = lstm_weights(rng, 3, 4)
    args = [x, c, h, w["kernel"], w["bias"]]
    copies = [a.copy() for a in args]
    ref.lstm_cell(*args, cell_clip=0.1)
    for a, b in zip(args, copies):
        np.testing.assert_array_equal(a, b)


def test_cell_shape_errors():
    x, h = np.zeros((2, 3)), np.zeros((2, 4))
    with pytest.raises(ValueError, match="kernel"):
        ref.rnn_cell(x, h, np.zeros((6, 4)), np.zeros(4))
    with pytest.raises(ValueError, match="bias"):
        ref.rnn_cell(x, h, np.zeros((7, 4)), np.zeros(1))
    with pytest.raises(ValueError, match="same B"):
        ref.rnn_cell(x, np.zeros((3, 4)), np.zeros((7, 4)), np.zeros(4))
    with pytest.raises(ValueError, match="w_i_diag"):
        ref.lstm_cell(x, h, h, np.zeros((7, 16)), np.zeros(16), w_f_diag=np.zeros(4))
    with pytest.raises(ValueError, match="proj_kernel"):
        ref.lstm_cell(x, h, np.zeros((2, 2)), np.zeros((5, 16)), np.zeros(16),
                      proj_kernel=np.zeros((2, 4)))


# ---------------------------------------------------------------------------------------------
# Each LSTM option changes the result exactly as its formula says
# ---------------------------------------------------------------------------------------------

def _lstm_setup(seed=8, B=3, I=2, U=4):
    rng = np.random.default_rng(seed)
    x, h = rnd(rng, B, I), rnd(rng, B, U)
    c = 0.2 + rng.uniform(0.0, 1.0, (B, U))          # positive, so peepholes * c have a known sign
    w = lstm_weights(rng, I, U)
    z = np.concatenate([x, h], 1) @ w["kernel"] + w["bias"]
    return x, c, h, w, np.split(z, 4, axis=1)


def test_forget_bias_equals_shifting_the_f_block():
    x, c, h, w, _ = _lstm_setup()
    U = c.shape[1]
    shifted = w["bias"].copy()
    shifted[2 * U:3 * U] += 1.75
    got = ref.lstm_cell(x, c, h, w["kernel"], w["bias"], forget_bias=1.75)
    want = ref.lstm_cell(x, c, h, w["kernel"], shifted, forget_bias=0.0)
    for g, e in zip(got, want):
        np.testing.assert_allclose(g, e, **TOL)
    default = ref.lstm_cell(x, c, h, w["kernel"], w["bias"])
    one = ref.lstm_cell(x, c, h, w["kernel"], w["bias"], forget_bias=1.0)
    np.testing.assert_array_equal(default[0], one[0])
    assert np.abs(got[0] - default[0]).max() > 1e-3


def test_zero_peepholes_equal_no_peepholes():
    x, c, h, w, _ = _lstm_setup()
    z = np.zeros(c.shape[1])
    got = ref.lstm_cell(x, c, h, w["kernel"], w["bias"], w_i_diag=z, w_f_diag=z, w_o_diag=z)
    want = ref.lstm_cell(x, c, h, w["kernel"], w["bias"])
    for g, e in zip(got, want):
        np.testing.assert_array_equal(g, e)


def test_peepholes_drive_gates_through_previous_and_new_c():
    x, c, h, w, (i, j, f, o) = _lstm_setup()
    U, z, big = c.shape[1], np.zeros(c.shape[1]), np.full(c.shape[1], 1000.0)
    # w_f * c_prev = +huge: forget gate exactly 1 -> c' = c + sig(i) tanh(j)
    c1, _ = ref.lstm_cell(x, c, h, w["kernel"], w["bias"], w_i_diag=z, w_f_diag=big, w_o_diag=z)
    np.testing.assert_allclose(c1, c + ref.sigmoid(i) * np.tanh(j), **TOL)
    # w_i * c_prev = -huge: input gate exactly 0 -> c' = sig(f + 1) c
    c2, _ = ref.lstm_cell(x, c, h, w["kernel"], w["bias"], w_i_diag=-big, w_f_diag=z, w_o_diag=z)
    np.testing.assert_allclose(c2, ref.sigmoid(f + 1.0) * c, **TOL)
    # the output peephole reads the NEW c
    w_o = np.linspace(-2.0, 3.0, U)
    c3, m3 = ref.lstm_cell(x, c, h, w["kernel"], w["bias"], w_i_diag=z, w_f_diag=z, w_o_diag=w_o)
    c0, m0 = ref.lstm_cell(x, c, h, w["kernel"], w["bias"])
    np.testing.assert_array_equal(c3, c0)
    np.testing.assert_allclose(m3, ref.sigmoid(o + w_o * c3) * np.tanh(c3), **TOL)
    assert np.abs(m3 - ref.sigmoid(o + w_o * c) * np.tanh(c3)).max() > 1e-3


def test_cell_clip_clips_stored_c_before_the_output():
    x, c, h, w, (i, j, f, o) = _lstm_setup()
    c0, _ = ref.lstm_cell(x, c, h, w["kernel"], w["bias"])
    clip = 0.5 * np.abs(c0).max()
    c1, m1 = ref.lstm_cell(x, c, h, w["kernel"], w["bias"], cell_clip=clip)
    assert np.any(np.abs(c0) > clip) and np.abs(c1).max() <= clip
    np.testing.assert_array_equal(c1, np.clip(c0, -clip, clip))
    np.testing.assert_allclose(m1, ref.sigmoid(o) * np.tanh(c1), **TOL)


def test_projection_and_proj_clip():
    rng = np.random.default_rng(9)
    B, I, U, P = 3, 2, 4, 2
    x, c, h = rnd(rng, B, I), rnd(rng, B, U), rnd(rng, B, P)
    w, proj = lstm_weights(rng, I, U, P), rnd(rng, U, P, scale=3.0)
    z = np.concatenate([x, h], 1) @ w["kernel"] + w["bias"]
    c1, m1 = ref.lstm_cell(x, c, h, w["kernel"], w["bias"], proj_kernel=proj)
    i, j, f, o = np.split(z, 4, axis=1)
    c_want = ref.sigmoid(f + 1.0) * c + ref.sigmoid(i) * np.tanh(j)
    np.testing.assert_allclose(c1, c_want, **TOL)                # projection does not touch c
    np.testing.assert_allclose(m1, (ref.sigmoid(o) * np.tanh(c_want)) @ proj, **TOL)
    clip = 0.5 * np.abs(m1).max()
    c2, m2 = ref.lstm_cell(x, c, h, w["kernel"], w["bias"], proj_kernel=proj, proj_clip=clip)
    np.testing.assert_array_equal(c2, c1)
    np.testing.assert_array_equal(m2, np.clip(m1, -clip, clip))
    assert np.any(np.abs(m1) > clip)
    # proj_clip without a projection is ignored, as TF
    a = ref.lstm_cell(x, c, rnd(rng, B, U), lstm_weights(rng, I, U)["kernel"], w["bias"])
    assert a[1].shape == (B, U)


# ---------------------------------------------------------------------------------------------
# GRU: reset-before vs reset-after
# ---------------------------------------------------------------------------------------------

def _gru_pair(rng, I, U, r_bias=None):
    """Reset-before weights and the reset-after weights built from the same matrices."""
    w = gru_weights(rng, I, U)
    if r_bias is not None:
        w["gates_bias"][:U] = r_bias
    ra = dict(gates_kernel=w["gates_kernel"], gates_bias=w["gates_bias"],
              input_kernel=w["candidate_kernel"][:I], input_bias=w["candidate_bias"],
              hidden_kernel=w["candidate_kernel"][I:], hidden_bias=np.zeros(U))
    return w, ra


def test_gru_variants_differ_in_general():
    rng = np.random.default_rng(10)
    x, h = rnd(rng, 4, 3), rnd(rng, 4, 5)
    w, ra = _gru_pair(rng, 3, 5)
    before, after = ref.gru_cell(x, h, **w), ref.gru_cell_reset_after(x, h, **ra)
    assert np.abs(before - after).max() > 1e-3


@pytest.mark.parametrize("r_bias", [1000.0, -1000.0])
def test_gru_variants_agree_when_reset_gate_saturates(r_bias):
    # r == 1: (r*h) @ Wh == r * (h @ Wh); r == 0: both candidates reduce to act(x @ Wx + b)
    rng = np.random.default_rng(11)
    x, h = rnd(rng, 4, 3), rnd(rng, 4, 5)
    w, ra = _gru_pair(rng, 3, 5, r_bias=r_bias)
    before, after = ref.gru_cell(x, h, **w), ref.gru_cell_reset_after(x, h, **ra)
    np.testing.assert_allclose(before, after, rtol=1e-14, atol=1e-15)


def test_gru_update_gate_extremes():
    rng = np.random.default_rng(12)
    x, h = rnd(rng, 2, 3), rnd(rng, 2, 4)
    w = gru_weights(rng, 3, 4)
    w["gates_bias"][4:] = 1000.0                               # u == 1: h' = h
    np.testing.assert_array_equal(ref.gru_cell(x, h, **w), h)
    w["gates_bias"][4:] = -1000.0                              # u == 0: h' = candidate
    r = ref.sigmoid(np.concatenate([x, h], 1) @ w["gates_kernel"][:, :4] + w["gates_bias"][:4])
    cand = np.tanh(np.concatenate([x, r * h], 1) @ w["candidate_kernel"] + w["candidate_bias"])
    np.testing.assert_allclose(ref.gru_cell(x, h, **w), cand, **TOL)


# ---------------------------------------------------------------------------------------------
# Runners
# ---------------------------------------------------------------------------------------------

def lstm_step(w, **opts):
    def step(x, s):
        c, m = ref.lstm_cell(x, s.c, s.h, w["kernel"], w["bias"], **opts)
        return m, LSTMStateTuple(c, m)
    return step


def rnn_step(kernel, bias):
    def step(x, h):
        h = ref.rnn_cell(x, h, kernel, bias)
        return h, h
    return step


def gru_step(w):
    def step(x, h):
        h = ref.gru_cell(x, h, **w)
        return h, h
    return step


def per_row_loop(step, x, state_leaves_fn, initial, lengths):
    """Expected dynamic_rnn: run each row alone (B=1) for exactly lengths[b] steps.

    x: [B,T,I]; initial: a state whose leaves are [B,...]; state_leaves_fn(state) -> list of leaves.
    Returns (outputs [B,T,O] zero past length, list over rows of the final leaves [1,...]).
    """
    B, T = x.shape[:2]
    outs, finals = None, []
    for b in range(B):
        s = pack_as(initial, [leaf[b:b + 1] for leaf in state_leaves_fn(initial)])
        for t in range(lengths[b]):
            o, s = step(x[b:b + 1, t], s)
            if outs is None:
                outs = np.zeros((B, T, o.shape[1]))
            outs[b, t] = o[0]
        finals.append(state_leaves_fn(s))
    return outs, finals


def _flat(state):
    return [np.asarray(a) for a in flatten(state)]


@pytest.mark.parametrize("lengths", [None, [0, 5, 2, 3], [5, 5, 5, 5], [0, 0, 0, 1], [1, 4, 5, 0]])
def test_dynamic_rnn_lstm_against_per_row_loop(lengths):
    rng = np.random.default_rng(13)
    B, T, I, U = 4, 5, 3, 2
    x = rnd(rng, B, T, I)
    w = lstm_weights(rng, I, U)
    init = LSTMStateTuple(rnd(rng, B, U), rnd(rng, B, U))
    init_copy = [a.copy() for a in init]
    step = lstm_step(w)
    out, st = ref.dynamic_rnn(step, x, init, sequence_length=lengths)
    lens = [T] * B if lengths is None else lengths
    # the loop makes outputs only for rows with length > 0; build zeros otherwise
    exp_out, finals = per_row_loop(step, x, _flat, init, lens)
    if exp_out is None:
        exp_out = np.zeros((B, T, U))
    assert out.shape == (B, T, U)
    np.testing.assert_allclose(out, exp_out, **TOL)
    assert type(st) is LSTMStateTuple
    for b in range(B):
        np.testing.assert_allclose(st.c[b], finals[b][0][0], **TOL)
        np.testing.assert_allclose(st.h[b], finals[b][1][0], **TOL)
        if lens[b] == 0:                                       # length 0: the initial state
            np.testing.assert_array_equal(st.c[b], init.c[b])
            np.testing.assert_array_equal(st.h[b], init.h[b])
        np.testing.assert_array_equal(out[b, lens[b]:], 0.0)   # zero past the length
    for a, b in zip(init, init_copy):                          # caller's arrays untouched
        np.testing.assert_array_equal(a, b)


def test_dynamic_rnn_zero_outputs_even_if_step_writes_garbage():
    x = np.ones((2, 4, 1))

    def step(x_t, s):
        return x_t + 100.0, s + x_t                            # output never zero

    out, st = ref.dynamic_rnn(step, x, np.zeros((2, 1)), sequence_length=[1, 3])
    np.testing.assert_array_equal(out[:, :, 0], [[101, 0, 0, 0], [101, 101, 101, 0]])
    np.testing.assert_array_equal(st[:, 0], [1.0, 3.0])       # state counts the valid steps


def test_dynamic_rnn_time_major_equivalence():
    rng = np.random.default_rng(14)
    B, T, I, U = 3, 4, 2, 3
    x = rnd(rng, B, T, I)
    step = gru_step(gru_weights(rng, I, U))
    h0 = rnd(rng, B, U)
    out_b, st_b = ref.dynamic_rnn(step, x, h0, sequence_length=[4, 0, 2])
    out_t, st_t = ref.dynamic_rnn(step, x.transpose(1, 0, 2), h0, sequence_length=[4, 0, 2],
                                  time_major=True)
    assert out_t.shape == (T, B, U)
    np.testing.assert_array_equal(out_t.transpose(1, 0, 2), out_b)
    np.testing.assert_array_equal(st_t, st_b)


def test_dynamic_rnn_nested_state_keeps_types():
    rng = np.random.default_rng(15)
    B, T, I, U1, U2 = 2, 3, 2, 3, 4
    Pair = collections.namedtuple("Pair", ("a", "b"))
    w1, k2, b2 = lstm_weights(rng, I, U1), rnd(rng, U1 + U2, U2), rnd(rng, U2)
    step = ref.multi_cell([lstm_step(w1), rnn_step(k2, b2)])

    def wrapped(x, s):                                         # state: Pair(LSTMStateTuple, [arr])
        out, (s1, s2) = step(x, (s.a, s.b[0]))
        return out, Pair(s1, [s2])

    init = Pair(LSTMStateTuple(rnd(rng, B, U1), rnd(rng, B, U1)), [rnd(rng, B, U2)])
    out, st = ref.dynamic_rnn(wrapped, rnd(rng, B, T, I), init, sequence_length=[3, 1])
    assert type(st) is Pair and type(st.a) is LSTMStateTuple and type(st.b) is list
    assert st.a.c.shape == (B, U1) and st.b[0].shape == (B, U2) and out.shape == (B, T, U2)


def test_dynamic_rnn_errors():
    step = rnn_step(np.zeros((3, 2)), np.zeros(2))
    h0 = np.zeros((2, 2))
    with pytest.raises(ValueError, match="T >= 1"):
        ref.dynamic_rnn(step, np.zeros((2, 0, 1)), h0)
    with pytest.raises(ValueError, match="rank 3"):
        ref.dynamic_rnn(step, np.zeros((2, 1)), h0)
    with pytest.raises(ValueError, match="sequence_length"):
        ref.dynamic_rnn(step, np.zeros((2, 3, 1)), h0, sequence_length=[1, 4])
    with pytest.raises(ValueError, match="sequence_length"):
        ref.dynamic_rnn(step, np.zeros((2, 3, 1)), h0, sequence_length=[-1, 2])
    with pytest.raises(ValueError, match="sequence_length"):
        ref.dynamic_rnn(step, np.zeros((2, 3, 1)), h0, sequence_length=[1, 2, 3])
    with pytest.raises(ValueError, match="initial_state"):
        ref.dynamic_rnn(step, np.zeros((2, 3, 1)), np.zeros((3, 2)))


def test_reverse_sequence():
    x = (10 * np.arange(4)[:, None] + np.arange(4)[None, :]).astype(float)[:, :, None]  # [B,T,1]
    got = ref.reverse_sequence(x, [0, 1, 3, 4])[:, :, 0]
    np.testing.assert_array_equal(got, [[0, 1, 2, 3], [10, 11, 12, 13],
                                        [22, 21, 20, 23], [33, 32, 31, 30]])
    np.testing.assert_array_equal(ref.reverse_sequence(x, None), x[:, ::-1])
    tm = ref.reverse_sequence(x.transpose(1, 0, 2), [0, 1, 3, 4], time_major=True)
    np.testing.assert_array_equal(tm.transpose(1, 0, 2)[:, :, 0], got)
    twice = ref.reverse_sequence(ref.reverse_sequence(x, [2, 0, 4, 1]), [2, 0, 4, 1])
    np.testing.assert_array_equal(twice, x)
    before = x.copy()
    ref.reverse_sequence(x, [4, 4, 4, 4])
    np.testing.assert_array_equal(x, before)


def test_bidirectional_alignment_with_a_transparent_step():
    # output = 2*x_t, state = running sum: alignment and consumed steps are visible directly
    x = np.arange(1.0, 13.0).reshape(3, 4, 1)
    lengths = [4, 2, 0]

    def step(x_t, s):
        return 2.0 * x_t, s + x_t

    (out_fw, out_bw), (st_fw, st_bw) = ref.bidirectional_dynamic_rnn(
        step, step, x, np.zeros((3, 1)), np.zeros((3, 1)), sequence_length=lengths)
    valid = (np.arange(4)[None, :] < np.array(lengths)[:, None])[:, :, None]
    np.testing.assert_array_equal(out_fw, np.where(valid, 2 * x, 0))
    np.testing.assert_array_equal(out_bw, np.where(valid, 2 * x, 0))   # out_bw[:, t] <-> x[:, t]
    np.testing.assert_array_equal(st_bw, st_fw)


def test_bidirectional_gru_against_per_row_backward_loop():
    rng = np.random.default_rng(16)
    B, T, I, U = 3, 5, 2, 3
    x = rnd(rng, B, T, I)
    lengths = [5, 3, 0]
    step_fw, step_bw = gru_step(gru_weights(rng, I, U)), gru_step(gru_weights(rng, I, U))
    h_fw, h_bw = rnd(rng, B, U), rnd(rng, B, U)
    (out_fw, out_bw), (st_fw, st_bw) = ref.bidirectional_dynamic_rnn(
        step_fw, step_bw, x, h_fw, h_bw, sequence_length=lengths)
    want_fw, st_want = ref.dynamic_rnn(step_fw, x, h_fw, sequence_length=lengths)
    np.testing.assert_array_equal(out_fw, want_fw)
    np.testing.assert_array_equal(st_fw, st_want)
    for b in range(B):
        h = h_bw[b:b + 1]
        for t in reversed(range(lengths[b])):                  # consume x[b, L-1] ... x[b, 0]
            o, h = step_bw(x[b:b + 1, t], h)
            np.testing.assert_allclose(out_bw[b, t], o[0], **TOL)
        np.testing.assert_allclose(st_bw[b], h[0], **TOL)      # state after consuming x[b, 0]
        np.testing.assert_array_equal(out_bw[b, lengths[b]:], 0.0)
    tm = ref.bidirectional_dynamic_rnn(step_fw, step_bw, x.transpose(1, 0, 2), h_fw, h_bw,
                                       sequence_length=lengths, time_major=True)
    np.testing.assert_array_equal(tm[0][1].transpose(1, 0, 2), out_bw)
    np.testing.assert_array_equal(tm[1][1], st_bw)


@pytest.mark.parametrize("lengths", [None, [3, 0, 1]])
def test_static_rnn_equals_dynamic_rnn(lengths):
    rng = np.random.default_rng(17)
    B, T, I, U = 3, 3, 2, 4
    x = rnd(rng, B, T, I)
    step = lstm_step(lstm_weights(rng, I, U), cell_clip=0.5)
    init = LSTMStateTuple(rnd(rng, B, U), rnd(rng, B, U))
    outs, st = ref.static_rnn(step, [x[:, t] for t in range(T)], init, sequence_length=lengths)
    out_d, st_d = ref.dynamic_rnn(step, x, init, sequence_length=lengths)
    assert isinstance(outs, list) and len(outs) == T
    np.testing.assert_array_equal(np.stack(outs, 1), out_d)
    assert type(st) is LSTMStateTuple
    np.testing.assert_array_equal(st.c, st_d.c)
    np.testing.assert_array_equal(st.h, st_d.h)
    with pytest.raises(ValueError, match="non-empty"):
        ref.static_rnn(step, [], init)


def test_multi_cell_chains_outputs_and_states():
    rng = np.random.default_rng(18)
    B, I, U1, U2 = 2, 3, 4, 2
    w1, w2 = lstm_weights(rng, I, U1), gru_weights(rng, U1, U2)
    s1, s2 = lstm_step(w1), gru_step(w2)
    x = rnd(rng, B, I)
    st1, st2 = LSTMStateTuple(rnd(rng, B, U1), rnd(rng, B, U1)), rnd(rng, B, U2)
    out, (n1, n2) = ref.multi_cell([s1, s2])(x, (st1, st2))
    c, m = loop_lstm(x, st1.c, st1.h, w1["kernel"], w1["bias"])
    h2 = loop_gru(m, st2, *w2.values())
    np.testing.assert_allclose(n1.c, c, **TOL)
    np.testing.assert_allclose(n1.h, m, **TOL)
    np.testing.assert_allclose(n2, h2, **TOL)
    np.testing.assert_allclose(out, h2, **TOL)
    assert type(n1) is LSTMStateTuple
    with pytest.raises(ValueError, match="states"):
        ref.multi_cell([s1, s2])(x, (st1,))
    with pytest.raises(ValueError, match="non-empty"):
        ref.multi_cell([])


# ---------------------------------------------------------------------------------------------
# dtypes
# ---------------------------------------------------------------------------------------------

def test_float32_in_float32_out():
    rng = np.random.default_rng(19)
    B, T, I, U = 2, 6, 3, 4
    f32 = np.float32
    x, h, c = rnd(rng, B, I, dtype=f32), rnd(rng, B, U, dtype=f32), rnd(rng, B, U, dtype=f32)
    assert ref.rnn_cell(x, h, rnd(rng, I + U, U, dtype=f32), rnd(rng, U, dtype=f32)).dtype == f32
    wl = lstm_weights(rng, I, U, dtype=f32)
    peep = [rnd(rng, U, dtype=f32) for _ in range(3)]
    c1, m1 = ref.lstm_cell(x, c, rnd(rng, B, 2, dtype=f32), rnd(rng, I + 2, 4 * U, dtype=f32),
                           wl["bias"], forget_bias=1.0, cell_clip=0.5, w_i_diag=peep[0],
                           w_f_diag=peep[1], w_o_diag=peep[2],
                           proj_kernel=rnd(rng, U, 2, dtype=f32), proj_clip=0.3)
    assert c1.dtype == f32 and m1.dtype == f32
    wg, wr = gru_weights(rng, I, U, dtype=f32), gru_ra_weights(rng, I, U, dtype=f32)
    assert ref.gru_cell(x, h, **wg).dtype == f32
    assert ref.gru_cell_reset_after(x, h, **wr).dtype == f32
    xs = rnd(rng, B, T, I, dtype=f32)
    init = LSTMStateTuple(c, h)
    out, st = ref.dynamic_rnn(lstm_step(wl), xs, init, sequence_length=[6, 2])
    assert out.dtype == f32 and st.c.dtype == f32 and st.h.dtype == f32
    # and float32 stays close to the same math in float64
    w64 = {k: v.astype(np.float64) for k, v in wl.items()}
    init64 = LSTMStateTuple(c.astype(np.float64), h.astype(np.float64))
    out64, _ = ref.dynamic_rnn(lstm_step(w64), xs.astype(np.float64), init64, sequence_length=[6, 2])
    assert out64.dtype == np.float64
    np.testing.assert_allclose(out, out64, rtol=1e-5, atol=1e-6)
