"""Parity with the real TensorFlow 1.x cells (tf.compat.v1.nn.rnn_cell through tf_keras).

Eager TF cells built once, weights set from NumPy. Every case
runs one step and a dynamic_rnn with sequence lengths {T, 0, 3, 1} from a random initial state, in
float32 (rtol 1e-5, atol 1e-6) and float64 (1e-12), and compares TF with
  * fastcells.reference (the NumPy oracle), and
  * the public fastcells cell classes and fastcells.nn runners, with weights moved by
    TF's variable names (so names and shapes are checked too); skipped with a reason while the
    classes or runners do not exist yet.
The whole module is skipped with a reason when TensorFlow or tf_keras is not installed.
"""
import os
import warnings
import zlib

os.environ["TF_USE_LEGACY_KERAS"] = "1"      # before TensorFlow is imported: TF1 cells via tf_keras
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow", reason="TensorFlow is not installed (pip install tensorflow-cpu)")
pytest.importorskip("tf_keras", reason="tf_keras is not installed (pip install tf-keras): "
                                       "needed for tf.compat.v1.nn.rnn_cell with TF >= 2.16")

try:
    rc = tf.compat.v1.nn.rnn_cell
    rc.LSTMCell
except Exception as exc:  # e.g. Keras 3 without the legacy route
    pytest.skip("tf.compat.v1.nn.rnn_cell is not usable: %s" % exc, allow_module_level=True)

from fastcells import reference as ref  # noqa: E402

pytestmark = [pytest.mark.tf,
              pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]

B, T, I, U, P = 4, 5, 3, 4, 2
LENGTHS = np.array([T, 0, 3, 1], dtype=np.int32)
DTYPES = [np.float32, np.float64]
TOLS = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-12)}

# Case name -> (TF/fastcells class name, constructor kwargs). "activation" is a name here: TF gets
# the tf.nn function, fastcells and the reference get the name.
CASES = {
    "basic_rnn": ("BasicRNNCell", {}),
    "basic_rnn_relu": ("BasicRNNCell", dict(activation="relu")),
    "basic_lstm": ("BasicLSTMCell", {}),
    "basic_lstm_forget_bias0": ("BasicLSTMCell", dict(forget_bias=0.0)),
    "basic_lstm_not_tuple": ("BasicLSTMCell", dict(state_is_tuple=False)),
    "lstm": ("LSTMCell", {}),
    "lstm_peepholes": ("LSTMCell", dict(use_peepholes=True)),
    "lstm_cell_clip": ("LSTMCell", dict(cell_clip=0.2)),
    "lstm_num_proj": ("LSTMCell", dict(num_proj=P)),
    "lstm_proj_clip": ("LSTMCell", dict(num_proj=P, proj_clip=0.1)),
    "lstm_forget_bias": ("LSTMCell", dict(forget_bias=0.3)),
    "lstm_not_tuple": ("LSTMCell", dict(state_is_tuple=False)),
    "lstm_all": ("LSTMCell", dict(use_peepholes=True, cell_clip=0.25, num_proj=P, proj_clip=0.15,
                                  forget_bias=0.5, state_is_tuple=False, activation="relu")),
    "gru": ("GRUCell", {}),
    "gru_relu": ("GRUCell", dict(activation="relu")),
}
TF_ACT = {"relu": tf.nn.relu, "tanh": tf.math.tanh, "sigmoid": tf.math.sigmoid}

# TF variable names inside a cell's scope, longest first (so "projection/kernel" wins over "kernel").
SHORT_NAMES = ["projection/kernel", "gates/kernel", "gates/bias", "candidate/kernel",
               "candidate/bias", "w_f_diag", "w_i_diag", "w_o_diag", "kernel", "bias"]


def short_name(tf_name):
    """'rnn/multi_rnn_cell/cell_0/lstm_cell_3/projection/kernel:0' -> 'projection/kernel'."""
    name = tf_name.split(":")[0]
    for s in SHORT_NAMES:
        if name == s or name.endswith("/" + s):
            return s
    raise AssertionError("unexpected TF variable name %r" % tf_name)


# ---------------------------------------------------------------------------------------------
# Building TF cells with known weights, and the matching reference step functions
# ---------------------------------------------------------------------------------------------

def tf_kwargs(kw, dtype):
    kw = dict(kw, dtype=tf.as_dtype(dtype))
    if "activation" in kw:
        kw["activation"] = TF_ACT[kw["activation"]]
    return kw


def make_tf_cell(kind, kw, dtype, input_size, seed):
    """A built TF cell with random weights; returns (cell, {TF short name: array}, [full names])."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cell = getattr(rc, kind)(U, **tf_kwargs(kw, dtype))
    cell.build(tf.TensorShape([None, input_size]))          # once: a second build duplicates weights
    rng = np.random.default_rng(seed)
    cell.set_weights([rng.uniform(-1.0, 1.0, v.shape).astype(dtype) for v in cell.weights])
    names = [v.name for v in cell.weights]
    weights = {short_name(n): a for n, a in zip(names, cell.get_weights())}
    assert len(weights) == len(names), names
    return cell, weights, names


def state_is_tuple(kind, kw):
    return kind != "BasicRNNCell" and kind != "GRUCell" and kw.get("state_is_tuple", True)


def ref_step(kind, kw, W):
    """The reference step function for a TF cell with weights W (TF short names)."""
    act = kw.get("activation")
    if kind == "BasicRNNCell":
        def step(x, h):
            h = ref.rnn_cell(x, h, W["kernel"], W["bias"], activation=act)
            return h, h
    elif kind == "GRUCell":
        def step(x, h):
            h = ref.gru_cell(x, h, W["gates/kernel"], W["gates/bias"], W["candidate/kernel"],
                             W["candidate/bias"], activation=act)
            return h, h
    else:
        as_tuple = kw.get("state_is_tuple", True)

        def step(x, s):
            c, h = s if as_tuple else (s[:, :U], s[:, U:])
            c, m = ref.lstm_cell(x, c, h, W["kernel"], W["bias"],
                                 forget_bias=kw.get("forget_bias", 1.0), activation=act,
                                 w_i_diag=W.get("w_i_diag"), w_f_diag=W.get("w_f_diag"),
                                 w_o_diag=W.get("w_o_diag"), cell_clip=kw.get("cell_clip"),
                                 proj_kernel=W.get("projection/kernel"),
                                 proj_clip=kw.get("proj_clip"))
            return m, (rc.LSTMStateTuple(c, m) if as_tuple else np.concatenate([c, m], axis=1))
    return step


def random_state(kind, kw, dtype, rng):
    """A random (non-zero) initial state, NumPy, in TF's structure (LSTMStateTuple(c, h))."""
    H = kw.get("num_proj") or U
    if kind in ("BasicRNNCell", "GRUCell"):
        return rng.uniform(-1, 1, (B, U)).astype(dtype)
    c, h = rng.uniform(-1, 1, (B, U)).astype(dtype), rng.uniform(-1, 1, (B, H)).astype(dtype)
    return rc.LSTMStateTuple(c, h) if kw.get("state_is_tuple", True) else np.concatenate([c, h], 1)


def to_tf(s):
    if isinstance(s, tuple):
        items = [to_tf(v) for v in s]
        return type(s)(*items) if hasattr(s, "_fields") else tuple(items)
    return tf.constant(s)


def to_numpy(s):
    if isinstance(s, tuple):
        items = [to_numpy(v) for v in s]
        return type(s)(*items) if hasattr(s, "_fields") else tuple(items)
    return np.asarray(s)


def flatten(s):
    return [leaf for v in s for leaf in flatten(v)] if isinstance(s, tuple) else [np.asarray(s)]


def assert_same_state(got, want, dtype, what):
    """Same nesting (namedtuple type names and fields included), same dtypes, values close."""
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want), \
            "%s: expected a tuple of %d, got %r" % (what, len(want), type(got))
        if hasattr(want, "_fields"):
            assert type(got).__name__ == type(want).__name__ and got._fields == want._fields, \
                "%s: expected %s%s, got %r" % (what, type(want).__name__, want._fields, type(got))
        for k, (g, w) in enumerate(zip(got, want)):
            assert_same_state(g, w, dtype, "%s[%d]" % (what, k))
        return
    got = np.asarray(got)
    assert got.dtype == dtype, "%s: expected dtype %s, got %s" % (what, np.dtype(dtype), got.dtype)
    np.testing.assert_allclose(got, want, err_msg=what, **TOLS[dtype])


def tf_dynamic_rnn(cell, x, init, lengths, time_major=False):
    out, st = tf.compat.v1.nn.dynamic_rnn(cell, tf.constant(x), sequence_length=lengths,
                                          initial_state=to_tf(init), time_major=time_major)
    return np.asarray(out), to_numpy(st)


def case_seed(name, dtype):
    return zlib.crc32(("%s/%s" % (name, np.dtype(dtype).name)).encode())


def tf_case(case, dtype, seed, x_shape):
    """CASES[case] as a TF cell with the case's weights, and inputs for it: (kind, kw, TF cell,
    W {TF short name: array}, x [x_shape] uniform in [-2, 2), a random initial state), x and the
    state drawn in that order from default_rng(seed)."""
    kind, kw = CASES[case]
    cell, W, _ = make_tf_cell(kind, kw, dtype, I, case_seed(case, dtype))
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, x_shape).astype(dtype)
    return kind, kw, cell, W, x, random_state(kind, kw, dtype, rng)


# ---------------------------------------------------------------------------------------------
# TF vs fastcells.reference
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_reference_step_matches_tf(case, dtype):
    kind, kw, cell, W, x, state = tf_case(case, dtype, 1, (B, I))
    out_tf, st_tf = cell(tf.constant(x), to_tf(state))
    out_ref, st_ref = ref_step(kind, kw, W)(x, state)
    assert_same_state(out_ref, np.asarray(out_tf), dtype, "output")
    assert_same_state(st_ref, to_numpy(st_tf), dtype, "state")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_reference_dynamic_rnn_matches_tf(case, dtype):
    kind, kw, cell, W, x, init = tf_case(case, dtype, 2, (B, T, I))
    out_tf, st_tf = tf_dynamic_rnn(cell, x, init, LENGTHS)
    out_ref, st_ref = ref.dynamic_rnn(ref_step(kind, kw, W), x, init, sequence_length=LENGTHS)
    assert_same_state(out_ref, out_tf, dtype, "outputs")
    assert_same_state(st_ref, st_tf, dtype, "final_state")
    assert np.all(out_tf[1] == 0) and np.all(out_tf[3, 1:] == 0)     # TF zero-fills past length


def tf_multi_cell(dtype, seed=7):
    """TF MultiRNNCell [LSTMCell(peepholes, num_proj=P), GRUCell, BasicRNNCell] and its pieces."""
    specs = [("LSTMCell", dict(use_peepholes=True, num_proj=P, cell_clip=0.5), I),
             ("GRUCell", {}, P), ("BasicRNNCell", {}, U)]
    parts = [make_tf_cell(kind, kw, dtype, n_in, seed + k) for k, (kind, kw, n_in) in enumerate(specs)]
    multi = rc.MultiRNNCell([p[0] for p in parts])
    steps = [ref_step(kind, kw, p[1]) for (kind, kw, _), p in zip(specs, parts)]
    return multi, specs, parts, steps


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_reference_multi_cell_matches_tf(dtype):
    multi, specs, _, steps = tf_multi_cell(dtype)
    rng = np.random.default_rng(3)
    x = rng.uniform(-2, 2, (B, T, I)).astype(dtype)
    init = tuple(random_state(kind, kw, dtype, rng) for kind, kw, _ in specs)
    out_tf, st_tf = tf_dynamic_rnn(multi, x, init, LENGTHS)
    out_ref, st_ref = ref.dynamic_rnn(ref.multi_cell(steps), x, init, sequence_length=LENGTHS)
    assert_same_state(out_ref, out_tf, dtype, "outputs")
    assert_same_state(st_ref, st_tf, dtype, "final_state")


def tf_bidirectional(cell_fw, cell_bw, x, lengths, init_fw, init_bw, time_major):
    (o_fw, o_bw), (s_fw, s_bw) = tf.compat.v1.nn.bidirectional_dynamic_rnn(
        cell_fw, cell_bw, tf.constant(x), sequence_length=lengths, initial_state_fw=to_tf(init_fw),
        initial_state_bw=to_tf(init_bw), time_major=time_major)
    return (np.asarray(o_fw), np.asarray(o_bw)), (to_numpy(s_fw), to_numpy(s_bw))


BIDI = (("LSTMCell", dict(use_peepholes=True, num_proj=P)), ("GRUCell", {}))


def bidirectional_case(dtype, time_major):
    """The BIDI pair as TF cells, an input, initial states, and TF's bidirectional_dynamic_rnn:
    ((k_fw, kw_fw, W_fw), (k_bw, kw_bw, W_bw), x, init_fw, init_bw, TF's result)."""
    (k_fw, kw_fw), (k_bw, kw_bw) = BIDI
    cell_fw, W_fw, _ = make_tf_cell(k_fw, kw_fw, dtype, I, 11)
    cell_bw, W_bw, _ = make_tf_cell(k_bw, kw_bw, dtype, I, 12)
    rng = np.random.default_rng(4)
    x = rng.uniform(-2, 2, (T, B, I) if time_major else (B, T, I)).astype(dtype)
    init_fw, init_bw = random_state(k_fw, kw_fw, dtype, rng), random_state(k_bw, kw_bw, dtype, rng)
    got_tf = tf_bidirectional(cell_fw, cell_bw, x, LENGTHS, init_fw, init_bw, time_major)
    return (k_fw, kw_fw, W_fw), (k_bw, kw_bw, W_bw), x, init_fw, init_bw, got_tf


def static_case(dtype):
    """CASES["lstm_all"] as a TF cell, T inputs, an initial state and TF's static_rnn:
    (kind, kw, W, xs, init, TF's outputs, TF's final state)."""
    kind, kw = CASES["lstm_all"]
    tf_cell, W, _ = make_tf_cell(kind, kw, dtype, I, 13)
    rng = np.random.default_rng(5)
    xs = [rng.uniform(-2, 2, (B, I)).astype(dtype) for _ in range(T)]
    init = random_state(kind, kw, dtype, rng)
    outs_tf, st_tf = tf.compat.v1.nn.static_rnn(tf_cell, [tf.constant(v) for v in xs],
                                                initial_state=to_tf(init), sequence_length=LENGTHS)
    return kind, kw, W, xs, init, outs_tf, st_tf


@pytest.mark.parametrize("time_major", [False, True])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_reference_bidirectional_matches_tf(dtype, time_major):
    (k_fw, kw_fw, W_fw), (k_bw, kw_bw, W_bw), x, init_fw, init_bw, got_tf = \
        bidirectional_case(dtype, time_major)
    got_ref = ref.bidirectional_dynamic_rnn(ref_step(k_fw, kw_fw, W_fw), ref_step(k_bw, kw_bw, W_bw),
                                            x, init_fw, init_bw, sequence_length=LENGTHS,
                                            time_major=time_major)
    assert_same_state(got_ref, got_tf, dtype, "((out_fw, out_bw), (state_fw, state_bw))")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_reference_static_rnn_matches_tf(dtype):
    kind, kw, W, xs, init, outs_tf, st_tf = static_case(dtype)
    outs_ref, st_ref = ref.static_rnn(ref_step(kind, kw, W), xs, init, sequence_length=LENGTHS)
    assert len(outs_ref) == len(outs_tf) == T
    assert_same_state(tuple(outs_ref), tuple(np.asarray(o) for o in outs_tf), dtype, "outputs")
    assert_same_state(st_ref, to_numpy(st_tf), dtype, "final_state")


# ---------------------------------------------------------------------------------------------
# TF vs the fastcells public classes and runners
# ---------------------------------------------------------------------------------------------

def fastcells_or_skip(*names):
    """The fastcells package, skipping with a reason if it or one of ``names`` is missing."""
    try:
        import fastcells
    except Exception as exc:
        pytest.skip("fastcells is not importable yet: %s: %s" % (type(exc).__name__, exc))
    for name in names:
        obj = fastcells
        for part in name.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                pytest.skip("fastcells.%s does not exist yet" % name)
    return fastcells


def to_fastcells_state(fc, s):
    """A NumPy state in TF's structure -> the same structure with fastcells.LSTMStateTuple."""
    if isinstance(s, tuple):
        items = [to_fastcells_state(fc, v) for v in s]
        return fc.LSTMStateTuple(*items) if hasattr(s, "_fields") else tuple(items)
    return s


def make_fc_cell(fc, kind, kw, dtype, W):
    """The fastcells cell of the same class and options, with the TF weights set by TF names."""
    cell = getattr(fc, kind)(U, dtype=dtype, **kw)
    cell.set_weights(W)
    got = cell.get_weights()
    assert sorted(got) == sorted(W), "weight names: fastcells %s, TF %s" % (sorted(got), sorted(W))
    for name, arr in W.items():
        assert np.shape(got[name]) == arr.shape, \
            "%s: fastcells shape %s, TF shape %s" % (name, np.shape(got[name]), arr.shape)
        np.testing.assert_array_equal(got[name], arr, err_msg=name)
    return cell


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_fastcells_cell_matches_tf(case, dtype):
    kind, kw, tf_cell, W, x, state = tf_case(case, dtype, 1, (B, I))
    fc = fastcells_or_skip(kind, "LSTMStateTuple")
    cell = make_fc_cell(fc, kind, kw, dtype, W)
    # sizes and zero state as TF
    sizes = [int(v) for v in flatten(cell.state_size)]
    assert sizes == [int(v) for v in flatten(tf_cell.state_size)] and \
        type(cell.state_size).__name__ == type(tf_cell.state_size).__name__, \
        "state_size: fastcells %r, TF %r" % (cell.state_size, tf_cell.state_size)
    assert cell.output_size == tf_cell.output_size, \
        "output_size: fastcells %r, TF %r" % (cell.output_size, tf_cell.output_size)
    zs_tf = to_numpy(tf_cell.zero_state(B, tf.as_dtype(dtype)))
    assert_same_state(cell.zero_state(B, dtype), zs_tf, dtype, "zero_state")
    # one step from a random state
    out_tf, st_tf = tf_cell(tf.constant(x), to_tf(state))
    fc_state = to_fastcells_state(fc, state)
    saved = [a.copy() for a in flatten(fc_state)] + [x.copy()]
    out_fc, st_fc = cell(x, fc_state)
    assert_same_state(out_fc, np.asarray(out_tf), dtype, "output")
    assert_same_state(st_fc, to_numpy(st_tf), dtype, "state")
    for a, b in zip(flatten(fc_state) + [x], saved):              # caller's arrays untouched
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_fastcells_set_weights_accepts_full_tf_names(case, dtype):
    kind, kw = CASES[case]
    fc = fastcells_or_skip(kind)
    tf_cell, W, full_names = make_tf_cell(kind, kw, dtype, I, case_seed(case, dtype))
    cell = getattr(fc, kind)(U, dtype=dtype, **kw)
    cell.set_weights({"rnn/" + n: a for n, a in zip(full_names, tf_cell.get_weights())})
    got = cell.get_weights()
    assert sorted(got) == sorted(W)
    for name, arr in W.items():
        np.testing.assert_array_equal(got[name], arr, err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_fastcells_dynamic_rnn_matches_tf(case, dtype):
    kind, kw, tf_cell, W, x, init = tf_case(case, dtype, 2, (B, T, I))
    fc = fastcells_or_skip(kind, "LSTMStateTuple", "nn.dynamic_rnn")
    cell = make_fc_cell(fc, kind, kw, dtype, W)
    out_tf, st_tf = tf_dynamic_rnn(tf_cell, x, init, LENGTHS)
    out_fc, st_fc = fc.nn.dynamic_rnn(cell, x, sequence_length=LENGTHS,
                                      initial_state=to_fastcells_state(fc, init), dtype=dtype)
    assert_same_state(out_fc, out_tf, dtype, "outputs")
    assert_same_state(st_fc, st_tf, dtype, "final_state")
    # time_major and the zero initial state (dtype= instead of initial_state)
    out_tf, st_tf = tf.compat.v1.nn.dynamic_rnn(tf_cell, tf.constant(x.transpose(1, 0, 2)),
                                                sequence_length=LENGTHS, dtype=tf.as_dtype(dtype),
                                                time_major=True)
    out_fc, st_fc = fc.nn.dynamic_rnn(cell, x.transpose(1, 0, 2), sequence_length=LENGTHS,
                                      dtype=dtype, time_major=True)
    assert_same_state(out_fc, np.asarray(out_tf), dtype, "outputs (time_major, zero state)")
    assert_same_state(st_fc, to_numpy(st_tf), dtype, "final_state (time_major, zero state)")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_fastcells_multi_rnn_cell_matches_tf(dtype):
    fc = fastcells_or_skip("MultiRNNCell", "LSTMCell", "GRUCell", "BasicRNNCell", "LSTMStateTuple")
    multi, specs, parts, _ = tf_multi_cell(dtype)
    cells = [make_fc_cell(fc, kind, kw, dtype, p[1]) for (kind, kw, _), p in zip(specs, parts)]
    fc_multi = fc.MultiRNNCell(cells)
    rng = np.random.default_rng(3)
    init = tuple(random_state(kind, kw, dtype, rng) for kind, kw, _ in specs)
    x = rng.uniform(-2, 2, (B, I)).astype(dtype)
    out_tf, st_tf = multi(tf.constant(x), to_tf(init))
    out_fc, st_fc = fc_multi(x, to_fastcells_state(fc, init))
    assert_same_state(out_fc, np.asarray(out_tf), dtype, "output")
    assert_same_state(st_fc, to_numpy(st_tf), dtype, "state")
    if getattr(getattr(fc, "nn", None), "dynamic_rnn", None) is None:
        pytest.skip("fastcells.nn.dynamic_rnn does not exist yet (the single step passed)")
    xs = rng.uniform(-2, 2, (B, T, I)).astype(dtype)
    out_tf, st_tf = tf_dynamic_rnn(multi, xs, init, LENGTHS)
    out_fc, st_fc = fc.nn.dynamic_rnn(fc_multi, xs, sequence_length=LENGTHS,
                                      initial_state=to_fastcells_state(fc, init), dtype=dtype)
    assert_same_state(out_fc, out_tf, dtype, "outputs")
    assert_same_state(st_fc, st_tf, dtype, "final_state")


@pytest.mark.parametrize("time_major", [False, True])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_fastcells_bidirectional_matches_tf(dtype, time_major):
    fc = fastcells_or_skip("LSTMCell", "GRUCell", "LSTMStateTuple", "nn.bidirectional_dynamic_rnn")
    (k_fw, kw_fw, W_fw), (k_bw, kw_bw, W_bw), x, init_fw, init_bw, got_tf = \
        bidirectional_case(dtype, time_major)
    got_fc = fc.nn.bidirectional_dynamic_rnn(
        make_fc_cell(fc, k_fw, kw_fw, dtype, W_fw), make_fc_cell(fc, k_bw, kw_bw, dtype, W_bw), x,
        sequence_length=LENGTHS, initial_state_fw=to_fastcells_state(fc, init_fw),
        initial_state_bw=to_fastcells_state(fc, init_bw), dtype=dtype, time_major=time_major)
    assert_same_state(tuple(map(tuple, got_fc)), got_tf, dtype,
                      "((out_fw, out_bw), (state_fw, state_bw))")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_fastcells_static_rnn_matches_tf(dtype):
    fc = fastcells_or_skip("LSTMCell", "nn.static_rnn")
    kind, kw, W, xs, init, outs_tf, st_tf = static_case(dtype)
    outs_fc, st_fc = fc.nn.static_rnn(make_fc_cell(fc, kind, kw, dtype, W), xs,
                                      initial_state=to_fastcells_state(fc, init),
                                      dtype=dtype, sequence_length=LENGTHS)
    assert len(outs_fc) == T
    assert_same_state(tuple(outs_fc), tuple(np.asarray(o) for o in outs_tf), dtype, "outputs")
    assert_same_state(st_fc, to_numpy(st_tf), dtype, "final_state")
