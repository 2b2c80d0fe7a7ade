"""The C kernels (fastcells._core.PackedCell) against fastcells.reference, for every instruction
set this machine can run, float32 and float64, over the sizes that break tiled code: batch rows
at 1, the register tile's rows and +-1; units at 1 and around every block width (one vector, two,
four); input sizes 0, 1 and odd. Aliasing, strided operands, read-only inputs, bad arguments.

Tolerances (stated once, used everywhere): float32 results within RTOL_F32 norm-wise and ATOL_F32
elementwise of the float64 oracle on the same (float32-rounded) weights and inputs; float64 within
TOL_F64 both ways.
"""
import os
import sys

import numpy as np
import pytest

from fastcells import _core, reference

ISAS = _core.available_isas()
MISSING = [i for i in _core.ISA_NAMES if i not in ISAS]
DTYPES = [np.float32, np.float64]
RTOL_F32, ATOL_F32 = 1e-5, 2e-6
TOL_F64 = 1e-12
GATES = {"rnn": 1, "lstm": 4, "gru": 2}
GRU_RA_NAMES = ("gates/kernel", "gates/bias", "candidate/input_projection/kernel",
                "candidate/input_projection/bias", "candidate/hidden_projection/kernel",
                "candidate/hidden_projection/bias")


def test_every_isa_is_accounted_for():
    """Paths this CPU cannot run are reported, not silently dropped."""
    assert "scalar" in ISAS
    for isa in MISSING:
        with pytest.raises(ValueError, match="isa"):
            _core.kernel_tile(isa, np.float32)
        pytest.skip(f"instruction set {isa!r} is not available on this CPU/build")


def edge_sizes(isa, dtype):
    """(batch sizes, unit counts) at and around the tile of this ISA and dtype."""
    rows, cols = _core.kernel_tile(isa, dtype)
    vw = cols // 4
    batches = sorted({1, 2, rows - 1, rows, rows + 1, 2 * rows + 1} - {0})
    units = sorted({1, vw - 1, vw, vw + 1, 2 * vw + 1, 4 * vw - 1, 4 * vw, 4 * vw + 1, 9 * vw + 3}
                   - {0})
    return batches, units


def make_weights(rng, kind, I, U, P=None, peepholes=False):
    """TF-layout weights of a cell (float64, scaled to keep gates away from saturation)."""
    P = U if P is None else P
    scale = 1.0 / np.sqrt(I + P + 1)
    if kind == "gru_ra":
        shapes = [(I + U, 2 * U), (2 * U,), (I, U), (U,), (U, U), (U,)]
        w = {n: rng.standard_normal(s) * (0.5 if len(s) == 1 else scale)
             for n, s in zip(GRU_RA_NAMES, shapes)}
    elif kind == "gru":
        w = {"gates/kernel": rng.standard_normal((I + U, 2 * U)) * scale,
             "gates/bias": rng.standard_normal(2 * U) * 0.5,
             "candidate/kernel": rng.standard_normal((I + U, U)) * scale,
             "candidate/bias": rng.standard_normal(U) * 0.5}
    else:
        G = GATES[kind]
        w = {"kernel": rng.standard_normal((I + P, G * U)) * scale,
             "bias": rng.standard_normal(G * U) * 0.5}
    if peepholes:
        w.update({n: rng.standard_normal(U) * 0.5 for n in ("w_f_diag", "w_i_diag", "w_o_diag")})
    if P != U:
        w["projection/kernel"] = rng.standard_normal((U, P)) / np.sqrt(U)
    return w


def oracle(kind, x, state, w, activation="tanh", forget_bias=1.0, cell_clip=None,
           proj_clip=None, gate_activation=None, output_activation=None, preact_clip=None,
           input_forget=False):
    """The reference step in float64; returns the new state as a tuple like PackedCell's."""
    f64 = {k: np.asarray(v, np.float64) for k, v in w.items()}
    x = np.asarray(x, np.float64)
    state = tuple(np.asarray(s, np.float64) for s in state)
    act = reference.get_activation(activation)
    if kind == "rnn":
        return (reference.rnn_cell(x, state[0], f64["kernel"], f64["bias"], act, preact_clip),)
    gates = dict(gate_activation=gate_activation, preact_clip=preact_clip)
    if kind == "gru_ra":
        return (reference.gru_cell_reset_after(x, state[0], *(f64[n] for n in GRU_RA_NAMES),
                                               activation=act, **gates),)
    if kind == "gru":
        return (reference.gru_cell(x, state[0], f64["gates/kernel"], f64["gates/bias"],
                                   f64["candidate/kernel"], f64["candidate/bias"], act, **gates),)
    return reference.lstm_cell(
        x, state[0], state[1], f64["kernel"], f64["bias"], forget_bias=forget_bias,
        activation=act, w_i_diag=f64.get("w_i_diag"), w_f_diag=f64.get("w_f_diag"),
        w_o_diag=f64.get("w_o_diag"), cell_clip=cell_clip,
        proj_kernel=f64.get("projection/kernel"), proj_clip=proj_clip,
        output_activation=output_activation, input_forget=input_forget, **gates)


def assert_close(got, want, dtype, what):
    got = np.asarray(got, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    if want.size == 0:
        return
    if dtype == np.float32:
        norm = np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30)
        assert norm <= RTOL_F32, f"{what}: norm-wise relative error {norm:.3g} > {RTOL_F32}"
        np.testing.assert_allclose(got, want, rtol=RTOL_F32, atol=ATOL_F32, err_msg=what)
    else:
        np.testing.assert_allclose(got, want, rtol=TOL_F64, atol=TOL_F64, err_msg=what)


def state_shapes(kind, B, U, P):
    return [(B, U), (B, P)] if kind == "lstm" else [(B, U)]


CASES = [  # (kind, options) covering every epilogue
    ("rnn", {}),
    ("rnn", {"activation": "relu"}),
    ("rnn", {"activation": "sigmoid"}),
    ("rnn", {"activation": "linear"}),
    ("lstm", {}),
    ("lstm", {"forget_bias": 0.0, "activation": "relu"}),
    ("lstm", {"peepholes": True, "cell_clip": 0.4}),
    ("lstm", {"proj": 3, "proj_clip": 0.2}),
    ("lstm", {"peepholes": True, "proj": 11}),
    ("gru", {}),
    ("gru", {"activation": "sigmoid"}),
    ("gru_ra", {}),
    ("gru_ra", {"activation": "relu"}),
    # ONNX / Keras options: parametric activations, gate and output activations, clips
    ("rnn", {"activation": ("leaky_relu", 0.1, None), "preact_clip": 0.8}),
    ("rnn", {"activation": ("thresholded_relu", 0.2, None)}),
    ("rnn", {"activation": ("scaled_tanh", 1.5, 0.7)}),
    ("rnn", {"activation": ("affine", 0.5, 0.25)}),
    ("rnn", {"activation": ("elu", 0.8, None)}),
    ("rnn", {"activation": "softsign"}),
    ("lstm", {"gate_activation": ("hard_sigmoid", None, None), "output_activation": "relu"}),
    ("lstm", {"preact_clip": 0.3, "input_forget": True, "peepholes": True}),
    ("lstm", {"gate_activation": ("hard_sigmoid", 1 / 6, 0.5), "activation": "softsign",
              "proj": 5}),
    ("gru", {"gate_activation": ("hard_sigmoid", None, None), "preact_clip": 0.5}),
    ("gru_ra", {"gate_activation": "tanh", "activation": ("elu", 1.0, None),
                "preact_clip": 0.6}),
]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("kind,options", CASES,
                         ids=[f"{k}-{i}" for i, (k, o) in enumerate(CASES)])
def test_step_matches_reference_at_tile_edges(isa, dtype, kind, options):
    rng = np.random.default_rng(1234)
    batches, units = edge_sizes(isa, dtype)
    opts = dict(options)
    proj = opts.pop("proj", None)
    peepholes = opts.pop("peepholes", False)
    for I in (0, 1, 7):
        for U in units:
            for B in batches:
                P = proj or U
                w = make_weights(rng, kind, I, U, P, peepholes)
                wd = {k: v.astype(dtype) for k, v in w.items()}
                cell = _core.PackedCell(kind, dtype, I, U, wd, isa=isa, **opts)
                x = rng.standard_normal((B, I)).astype(dtype)
                state = tuple(rng.standard_normal(s).astype(dtype)
                              for s in state_shapes(kind, B, U, P))
                before = [a.copy() for a in (x,) + state]
                out = tuple(np.full_like(s, np.nan) for s in state)
                cell.step(x, state, out)
                want = oracle(kind, x, state, wd, **opts)
                for name, g, e in zip(("c", "h") if kind == "lstm" else ("h",), out, want):
                    assert_close(g, e, dtype, f"{isa} {kind} {name} B={B} I={I} U={U} P={P}")
                for a, b in zip((x,) + state, before):
                    assert np.array_equal(a, b), "an input array was modified"


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("kind,proj", [("rnn", None), ("lstm", None), ("lstm", 5), ("gru", None),
                                       ("gru_ra", None)])
def test_aliasing_and_strides(isa, dtype, kind, proj):
    """In place, x aliasing the state, partially overlapping outputs, strided rows: all equal to
    the step on separate contiguous copies."""
    rng = np.random.default_rng(7)
    rows, cols = _core.kernel_tile(isa, dtype)
    B, U = rows + 1, cols // 4 + 3
    P = proj or U
    I = P                                   # so x may be the h array itself
    w = {k: v.astype(dtype) for k, v in make_weights(rng, kind, I, U, P).items()}
    cell = _core.PackedCell(kind, dtype, I, U, w, isa=isa)
    x = rng.standard_normal((B, I)).astype(dtype)
    state = tuple(rng.standard_normal(s).astype(dtype) for s in state_shapes(kind, B, U, P))
    want = tuple(np.empty_like(s) for s in state)
    cell.step(x, state, want)

    # in place
    inplace = tuple(s.copy() for s in state)
    cell.step(x, inplace, inplace)
    for g, e in zip(inplace, want):
        np.testing.assert_array_equal(g, e, err_msg="in place")

    # x is the previous h, updated in place
    st = tuple(s.copy() for s in state)
    xh = st[-1].copy()
    ref_out = tuple(np.empty_like(s) for s in state)
    cell.step(xh, st, ref_out)
    cell.step(st[-1], st, st)
    for g, e in zip(st, ref_out):
        np.testing.assert_array_equal(g, e, err_msg="x aliasing h and h_out")

    # h_out overlaps h_in shifted by one column (neither equal nor disjoint)
    buf = np.zeros((B, P + 1), dtype)
    buf[:, :P] = state[-1]
    st_in = state[:-1] + (buf[:, :P],)
    st_out = tuple(np.empty_like(s) for s in state[:-1]) + (buf[:, 1:],)
    cell.step(x, st_in, st_out)
    for g, e in zip(st_out, want):
        np.testing.assert_array_equal(g, e, err_msg="partially overlapping h")

    # strided rows in and out (views into wider arrays), read-only inputs
    wide_x = np.zeros((B, I + 5), dtype)
    wide_x[:, 2:2 + I] = x
    xv = wide_x[:, 2:2 + I]
    xv.flags.writeable = False
    wide_state = tuple(np.zeros((B, s.shape[1] * 2 + 1), dtype) for s in state)
    for ws, s in zip(wide_state, state):
        ws[:, 1:1 + s.shape[1]] = s
    sv = tuple(ws[:, 1:1 + s.shape[1]] for ws, s in zip(wide_state, state))
    outs = tuple(np.zeros((B, s.shape[1] + 3), dtype)[:, 3:] for s in state)
    cell.step(xv, sv, outs)
    for g, e in zip(outs, want):
        np.testing.assert_array_equal(g, e, err_msg="strided operands")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_nan_propagates_and_inf_saturates(isa, dtype):
    x = np.array([np.nan, np.inf, -np.inf], dtype)
    for act, want in [("tanh", [np.nan, 1, -1]), ("sigmoid", [np.nan, 1, 0]),
                      ("relu", [np.nan, np.inf, 0]), ("linear", [np.nan, np.inf, -np.inf])]:
        got = activation_through_cell(isa, dtype, act, x)
        np.testing.assert_array_equal(got, np.array(want, dtype), err_msg=act)


# ---- activation accuracy over the float range ------------------------------------------------
# Measured on this machine: float32 tanh <= 1.53 ulp, sigmoid <= 2.63 ulp (all ISAs); float64
# below. ulp = the spacing of the correctly rounded result; long double is the reference.
MAX_ULP = {"tanh": 2.0, "sigmoid": 3.0}
# FASTCELLS_SHORT_ULP=1: the sweeps below on a grid 10x (f64) to 61x (f32 bit patterns) coarser,
# same bounds; for emulated CPUs, where long double is software quad precision and the full
# sweeps take minutes (tools/aarch64/ci.sh sets it).
SHORT_ULP = os.environ.get("FASTCELLS_SHORT_ULP") == "1"


def activation_through_cell(isa, dtype, act, xs):
    """act(xs) computed by the kernels: a 1-unit RNN cell with kernel [[1], [0]] and zero bias,
    so the pre-activation is exactly x."""
    w = {"kernel": np.array([[1.0], [0.0]], dtype), "bias": np.zeros(1, dtype)}
    cell = _core.PackedCell("rnn", dtype, 1, 1, w, activation=act, isa=isa)
    x = np.ascontiguousarray(xs, dtype).reshape(-1, 1)
    out = np.empty_like(x)
    cell.step(x, (np.zeros_like(x),), (out,))
    return out.ravel()


def exact(act, x):
    """act in extended precision (long double), for ulp measurements."""
    x = x.astype(np.longdouble)
    if act == "tanh":
        return np.tanh(x)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def ulp_errors(got, want, dtype):
    rounded = want.astype(dtype)
    spacing = np.spacing(np.abs(rounded)).astype(np.longdouble)
    return np.abs(got.astype(np.longdouble) - want) / spacing


@pytest.fixture(scope="module")
def float32_sweep():
    """Every 251st float32 bit pattern (saturation, tiny and denormal inputs included) plus a
    dense sweep of [-20, 20], with the exact activations, computed once."""
    bits = np.arange(0, 2 ** 32, 251 * (61 if SHORT_ULP else 1), dtype=np.uint64).astype(np.uint32)
    xs = bits.view(np.float32)
    dense = 40_001 if SHORT_ULP else 400_001
    xs = np.concatenate([xs[np.isfinite(xs)], np.linspace(-20, 20, dense, dtype=np.float32)])
    return xs, {act: exact(act, xs) for act in MAX_ULP}


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("act", ["tanh", "sigmoid"])
def test_float32_activation_max_ulp(isa, act, float32_sweep):
    xs, exact_values = float32_sweep
    got = activation_through_cell(isa, np.float32, act, xs)
    err = ulp_errors(got, exact_values[act], np.float32)
    worst = int(np.argmax(err))
    assert err[worst] <= MAX_ULP[act], (
        f"{act} at x={xs[worst]!r}: got {got[worst]!r}, exact {exact_values[act][worst]}, "
        f"{float(err[worst]):.2f} ulp > {MAX_ULP[act]}")


MAX_ULP_F64 = {"tanh": 3.0, "sigmoid": 3.0}    # measured: tanh 2.33, sigmoid 2.79 ulp


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("act", ["tanh", "sigmoid"])
def test_float64_activation_max_ulp(isa, act):
    """Random float64 bit patterns of both signs (every exponent), a dense sweep of [-40, 40],
    and the edges: zeros, the smallest denormal, the ends of exp's range."""
    rng = np.random.default_rng(3)
    bits = rng.integers(0, 2 ** 63, 40_000 if SHORT_ULP else 400_000, dtype=np.int64).astype(np.uint64)
    bits |= rng.integers(0, 2, bits.size).astype(np.uint64) << np.uint64(63)
    xs = bits.view(np.float64)
    xs = np.concatenate([xs[np.isfinite(xs)], np.linspace(-40, 40, 20_001 if SHORT_ULP else 200_001),
                         [0.0, -0.0, 1e-300, -1e-300, 5e-324, -5e-324, 700.0, -700.0, -744.5,
                          -745.2, 1e308, -1e308]])
    got = activation_through_cell(isa, np.float64, act, xs)
    want = exact(act, xs)
    err = ulp_errors(got, want, np.float64)
    worst = int(np.argmax(err))
    assert err[worst] <= MAX_ULP_F64[act], (
        f"{act} at x={xs[worst]!r}: got {got[worst]!r}, exact {want[worst]}, "
        f"{float(err[worst]):.2f} ulp > {MAX_ULP_F64[act]}")


# ---- the bridge refuses what C must not see --------------------------------------------------
def test_bridge_rejects_bad_operands():
    w = {k: v.astype(np.float32) for k, v in make_weights(np.random.default_rng(0), "lstm", 3,
                                                          4).items()}
    cell = _core.PackedCell("lstm", np.float32, 3, 4, w)
    x = np.zeros((2, 3), np.float32)
    c, h = np.zeros((2, 4), np.float32), np.zeros((2, 4), np.float32)
    with pytest.raises(TypeError, match="x: expected dtype float32, got float64"):
        cell.step(x.astype(np.float64), (c, h), (c, h))
    with pytest.raises(ValueError, match=r"x: expected shape \(B, 3\), got \(2, 4\)"):
        cell.step(np.zeros((2, 4), np.float32), (c, h), (c, h))
    with pytest.raises(ValueError, match=r"h: expected shape \(2, 4\), got \(3, 4\)"):
        cell.step(x, (c, np.zeros((3, 4), np.float32)), (c, h))
    with pytest.raises(ValueError, match="c: the last axis must be contiguous"):
        cell.step(x, (np.zeros((2, 8), np.float32)[:, ::2], h), (c, h))
    ro = np.zeros((2, 4), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="h_out: the array is read-only"):
        cell.step(x, (c, h), (c, ro))
    with pytest.raises(ValueError, match="state: expected 2 arrays"):
        cell.step(x, (h,), (h,))
    with pytest.raises(TypeError, match="x: expected a numpy.ndarray, got list"):
        cell.step([[0.0] * 3] * 2, (c, h), (c, h))
    with pytest.raises(ValueError, match=r"weights\['kernel'\]: expected shape \(7, 16\)"):
        _core.PackedCell("lstm", np.float32, 3, 4, dict(w, kernel=np.zeros((6, 16))))
    with pytest.raises(ValueError, match="weights: expected the names"):
        _core.PackedCell("lstm", np.float32, 3, 4, {"kernel": w["kernel"]})
    with pytest.raises(ValueError, match="activation: expected one of"):
        _core.PackedCell("lstm", np.float32, 3, 4, w, activation="softplus")
    with pytest.raises(ValueError, match="num_units: expected >= 1, got 0"):
        _core.PackedCell("rnn", np.float32, 3, 0, {"kernel": np.zeros((3, 0)), "bias": []})


def test_isa_override_is_honoured():
    """Each available ISA can be forced per cell; the default is FASTCELLS_ISA or the best."""
    import os
    want = os.environ.get("FASTCELLS_ISA") or "auto"
    assert _core.default_isa() == (_core.best_isa() if want == "auto" else want)
    w = {"kernel": np.ones((2, 1), np.float32), "bias": np.zeros(1, np.float32)}
    for isa in ISAS:
        assert _core.PackedCell("rnn", np.float32, 1, 1, w, isa=isa).isa == isa


@pytest.fixture
def restore_threads():
    n = _core.get_num_threads()
    yield
    _core.set_num_threads(n)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("kind,B,I,U,proj", [
    ("lstm", 1, 300, 257, None),    # split by panels, B=1
    ("lstm", 13, 64, 100, 37),      # panels, then the projection's panels
    ("lstm", 1, 200, 120, 300),     # a team of two phases: the cell, then the projection
    ("gru", 9, 120, 150, None),     # two dependent products (a team of two phases)
    ("gru", 40, 64, 20, None),      # ... each with one panel: split by batch rows
    ("gru_ra", 4, 200, 70, None),   # projection and recurrence fused per share
    ("gru_ra", 30, 50, 10, None),   # ... split by batch rows
    ("rnn", 64, 512, 9, None),      # one panel: split by batch rows
    ("rnn", 50, 700, 3, None),      # rows not a multiple of the tile
])
@pytest.mark.parametrize("in_place", [False, True])
def test_threads_give_identical_results(isa, kind, B, I, U, proj, in_place, restore_threads):
    """The same call on 1 and 2 threads (and 3, more than cores) is bit-for-bit identical, and
    matches the reference; in_place: the new state overwrites the old (c and h aliased)."""
    rng = np.random.default_rng(11)
    P = proj or U
    w = {k: v.astype(np.float32) for k, v in make_weights(rng, kind, I, U, P).items()}
    cell = _core.PackedCell(kind, np.float32, I, U, w, isa=isa)
    x = rng.standard_normal((B, I)).astype(np.float32)
    state = tuple(rng.standard_normal(s).astype(np.float32) for s in state_shapes(kind, B, U, P))
    results = []
    for threads in (1, 2, 3):
        _core.set_num_threads(threads)
        if in_place:
            out = tuple(s.copy() for s in state)
            cell.step(x, out, out)
        else:
            out = tuple(np.empty_like(s) for s in state)
            cell.step(x, state, out)
        results.append(out)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)
    for g, e in zip(results[0], oracle(kind, x, state, w)):
        assert_close(g, e, np.float32, f"{kind} threads")


def test_set_num_threads_validates(restore_threads):
    with pytest.raises(ValueError, match="n: expected 1 <= n <= 64, got 0"):
        _core.set_num_threads(0)
    with pytest.raises(TypeError, match="n: expected an int, got float"):
        _core.set_num_threads(2.0)
    _core.set_num_threads(1)
    assert _core.get_num_threads() == 1


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs CPU affinity and at least two usable CPUs")
def test_default_threads_are_the_usable_cpus(tmp_path):
    """A process restricted to one CPU (taskset) defaults to one thread, not to the CPU count."""
    import pathlib
    import subprocess
    import fastcells
    package_parent = str(pathlib.Path(fastcells.__file__).resolve().parent.parent)
    code = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "import fastcells; print(fastcells.get_num_threads())")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         env=dict(os.environ, PYTHONPATH=package_parent), text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "1"


# ---- the packed GEMM ---------------------------------------------------------------------------
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_matmul_matches_numpy_at_tile_edges(isa, dtype, restore_threads):
    """C = A @ B (+ bias) for M, N around the tile, K in {0, 1, odd, large}; 1 and 2 threads."""
    rng = np.random.default_rng(5)
    rows, cols = _core.kernel_tile(isa, dtype)
    for M in sorted({1, rows - 1, rows, rows + 1, 3 * rows + 2, 97} - {0}):
        for N in sorted({1, cols - 1, cols, cols + 1, 2 * cols + 3} - {0}):
            for K in (0, 1, 17, 300):
                a = rng.standard_normal((M, K)).astype(dtype)
                b = rng.standard_normal((K, N)).astype(dtype)
                bias = rng.standard_normal(N).astype(dtype)
                want = a.astype(np.float64) @ b.astype(np.float64) + bias
                pm = _core.PackedMatrix(b, bias, isa=isa)
                for threads in (1, 2):
                    _core.set_num_threads(threads)
                    got = pm.matmul(a)
                    tol = dict(rtol=1e-5, atol=1e-5 * np.sqrt(K + 1)) if dtype == np.float32 \
                        else dict(rtol=TOL_F64, atol=TOL_F64 * np.sqrt(K + 1))
                    np.testing.assert_allclose(got, want, **tol,
                                               err_msg=f"{isa} M={M} N={N} K={K} T={threads}")
    # without bias, into a strided view, and with `a` overlapping `out`
    b = rng.standard_normal((cols + 1, cols + 1)).astype(dtype)
    a = rng.standard_normal((rows + 2, cols + 1)).astype(dtype)
    pm = _core.PackedMatrix(b, isa=isa)
    want = pm.matmul(a)
    np.testing.assert_allclose(want, a.astype(np.float64) @ b, rtol=1e-4 if dtype == np.float32
                               else 1e-12, atol=1e-4 if dtype == np.float32 else 1e-12)
    wide = np.zeros((rows + 2, 2 * cols + 5), dtype)
    pm.matmul(a, out=wide[:, 3:cols + 4])
    np.testing.assert_array_equal(wide[:, 3:cols + 4], want)
    inplace = a.copy()
    pm.matmul(inplace, out=inplace)
    np.testing.assert_array_equal(inplace, want)


def test_matmul_rejects_bad_operands():
    pm = _core.PackedMatrix(np.ones((3, 4), np.float32))
    with pytest.raises(ValueError, match=r"a: expected shape \(B, 3\), got \(2, 4\)"):
        pm.matmul(np.ones((2, 4), np.float32))
    with pytest.raises(TypeError, match="a: expected dtype float32, got float64"):
        pm.matmul(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"out: expected shape \(2, 4\), got \(2, 5\)"):
        pm.matmul(np.ones((2, 3), np.float32), out=np.empty((2, 5), np.float32))
    with pytest.raises(ValueError, match=r"bias: expected shape \(4,\), got \(3,\)"):
        _core.PackedMatrix(np.ones((3, 4), np.float32), bias=np.ones(3))
    with pytest.raises(TypeError, match="b: expected float32 or float64, got int64"):
        _core.PackedMatrix(np.ones((3, 4), np.int64))


@pytest.mark.parametrize("value,message", [
    ("avx9", "FASTCELLS_ISA='avx9' names no instruction set"),
    *[(isa, f"FASTCELLS_ISA='{isa}': this CPU or build cannot run that instruction set")
      for isa in MISSING],
])
def test_bad_isa_override_fails_at_import(value, message, tmp_path):
    """FASTCELLS_ISA naming no path, or one this CPU lacks, is an error at import, not a crash."""
    import os
    import pathlib
    import subprocess
    import sys
    import fastcells
    package_parent = str(pathlib.Path(fastcells.__file__).resolve().parent.parent)
    env = dict(os.environ, FASTCELLS_ISA=value, PYTHONPATH=package_parent)
    run = subprocess.run([sys.executable, "-c", "import fastcells"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert message in run.stderr, run.stderr[-2000:]
