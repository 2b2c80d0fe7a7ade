"""Pickling and copying the cells and the converted models (fastcells._serialize).

A cell pickles as its configuration and raw weights; the packed C copy is rebuilt on the first
use in the loading process. Every check here is exact (np.array_equal, same dtype, same
structure): a round trip must not change a bit, for every kind of cell and option, float32 and
float64, pickle protocols 2 to 5, through ``cell(x, state)``, ``step_`` and ``dynamic_rnn``, in
this process and in a spawned child process.
"""
import copy
import importlib.util
import os
import pickle
import subprocess
import sys
import threading
import warnings
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np

import fastcells
import pytest

from conftest import assert_identical  # noqa: E402
from fastcells import _core, nn
from fastcells.cells import (BasicLSTMCell, BasicRNNCell, CudnnCompatibleGRUCell, GRUCell,
                             LSTMCell, LSTMStateTuple, MultiRNNCell)

HERE = os.path.dirname(os.path.abspath(__file__))
# subprocesses start where the package under test lives (the checkout when built in
# place, site-packages when installed), so `python -c` imports that one
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastcells.__file__)))  # the package tested
PROTOCOLS = [2, 3, 4, 5]
DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["f32", "f64"]
B, T, I = 3, 6, 5
HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_ONNX = importlib.util.find_spec("onnx") is not None


def half_tanh(v):
    """A custom activation (a module-level function: pickles by reference; runs in NumPy)."""
    return 0.5 * np.tanh(v)


def small_uniform(shape, dtype, rng):
    """A custom initializer (module-level, so it pickles)."""
    return rng.uniform(-0.1, 0.1, size=shape).astype(dtype)


def _shared_stack(dt):
    shared = BasicRNNCell(4, dtype=dt, seed=9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # "the same cell object appears more than once"
        return MultiRNNCell([GRUCell(4, dtype=dt, seed=8), shared, shared])


# kind -> factory(dtype) -> an unbuilt cell; every cell class and option
KINDS = {
    "rnn": lambda dt: BasicRNNCell(7, dtype=dt, seed=1),
    "rnn-relu-clip": lambda dt: BasicRNNCell(7, activation="relu", preact_clip=0.8, dtype=dt,
                                             seed=2),
    "rnn-custom": lambda dt: BasicRNNCell(5, activation=half_tanh, dtype=dt, seed=3),
    "basic_lstm": lambda dt: BasicLSTMCell(6, dtype=dt, seed=4),
    "basic_lstm-concat": lambda dt: BasicLSTMCell(6, forget_bias=0.5, state_is_tuple=False,
                                                  dtype=dt, seed=5),
    "basic_lstm-options": lambda dt: BasicLSTMCell(
        6, dtype=dt, seed=6, gate_activation=nn.activation("hard_sigmoid", alpha=0.25),
        output_activation="relu", preact_clip=2.0, input_forget=True),
    "lstm-peep-proj-clips": lambda dt: LSTMCell(
        9, use_peepholes=True, cell_clip=0.7, num_proj=4, proj_clip=0.5, forget_bias=0.3,
        initializer=small_uniform, dtype=dt, seed=7),
    "lstm-scaled_tanh-concat": lambda dt: LSTMCell(
        6, activation=nn.activation("scaled_tanh", 1.2, 0.8), state_is_tuple=False,
        initializer=0.05, dtype=dt, seed=8),
    "lstm-custom": lambda dt: LSTMCell(5, activation=half_tanh, num_proj=3, dtype=dt, seed=9),
    "gru": lambda dt: GRUCell(8, kernel_initializer=0.3, bias_initializer=-0.1, dtype=dt,
                              seed=10),
    "gru-reset_after": lambda dt: GRUCell(
        8, reset_after=True, gate_activation="hard_sigmoid",
        activation=nn.activation("elu", 0.9), preact_clip=3.0, dtype=dt, seed=11),
    "cudnn_gru": lambda dt: CudnnCompatibleGRUCell(6, dtype=dt, seed=12),
    "multi-nested": lambda dt: MultiRNNCell([
        GRUCell(5, dtype=dt, seed=13),
        MultiRNNCell([LSTMCell(4, num_proj=3, use_peepholes=True, dtype=dt, seed=14),
                      BasicRNNCell(6, dtype=dt, seed=15)])]),
    "multi-concat": lambda dt: MultiRNNCell(
        [BasicLSTMCell(4, state_is_tuple=False, dtype=dt, seed=16),
         GRUCell(3, dtype=dt, seed=17)], state_is_tuple=False),
    "multi-shared": _shared_stack,
}
KIND_NAMES = sorted(KINDS)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

def built(kind, dtype, seed=0):
    """The cell of `kind`, built for input size I, with random weights (every bias and
    peephole non-zero, so every term counts)."""
    cell = KINDS[kind](dtype)
    cell.build(I)
    rng = np.random.default_rng(seed)
    cell.set_weights({name: rng.standard_normal(a.shape) * 0.5
                      for name, a in cell.get_weights().items()})
    return cell


def random_state(cell, rng):
    def leaves(size):
        if isinstance(size, tuple):
            parts = [leaves(s) for s in size]
            return type(size)(*parts) if hasattr(size, "_fields") else tuple(parts)
        return rng.uniform(-1, 1, (B, int(size))).astype(cell.dtype)
    return leaves(cell.state_size)


def inputs(cell, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, I)).astype(cell.dtype)
    xs = rng.standard_normal((B, T, I)).astype(cell.dtype)
    lengths = np.array([T, 0, T - 2])
    return x, random_state(cell, rng), xs, lengths


def copy_state(state):
    if isinstance(state, tuple):
        parts = [copy_state(s) for s in state]
        return type(state)(*parts) if hasattr(state, "_fields") else tuple(parts)
    return state.copy()




def results(cell, x, state, xs, lengths, order=("call", "step_", "rnn")):
    """What the cell computes: one step by __call__ and by step_ (on a copy of the state), and
    dynamic_rnn with lengths; computed in `order` (the first use builds the packed copy)."""
    out = {}
    for what in order:
        if what == "call":
            out["call"] = cell(x, state)
        elif what == "step_":
            st = copy_state(state)
            out["step_"] = (cell.step_(x, st), st)
        else:
            out["rnn"] = nn.dynamic_rnn(cell, xs, lengths, initial_state=state)
    return {k: out[k] for k in ("call", "step_", "rnn")}


def leaves(cell):
    if isinstance(cell, MultiRNNCell):
        return [leaf for c in cell.cells for leaf in leaves(c)]
    return [cell]


# ---------------------------------------------------------------------------------------------
# round trips
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("kind", KIND_NAMES)
def test_round_trip_is_bit_identical(kind, dtype, protocol):
    cell = built(kind, dtype)
    x, state, xs, lengths = inputs(cell)
    saved = copy_state(state)
    want = results(cell, x, state, xs, lengths)
    blob = pickle.dumps(cell, protocol=protocol)
    for order in (("call", "step_", "rnn"), ("rnn", "step_", "call"), ("step_", "rnn", "call")):
        loaded = pickle.loads(blob)
        assert type(loaded) is type(cell)
        assert (loaded.name, loaded.dtype, loaded.state_size, loaded.output_size) == \
            (cell.name, cell.dtype, cell.state_size, cell.output_size)
        assert repr(loaded) == repr(cell)
        assert_identical(loaded.get_weights(), cell.get_weights(), "get_weights()")
        assert_identical(results(loaded, x, state, xs, lengths, order), want, f"{order}")
    assert_identical(state, saved, "the caller's state")        # never written by __call__
    for leaf in leaves(loaded):
        if leaf._fusable:
            assert isinstance(leaf._packed, _core.PackedCell)
            assert leaf._packed.isa == _core.default_isa()
        else:
            assert leaf._packed is None                         # the NumPy path, as before


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_step_writes_into_the_callers_arrays_after_a_round_trip(kind):
    cell = pickle.loads(pickle.dumps(built(kind, np.float32)))
    x, state, _, _ = inputs(cell)
    st = copy_state(state)
    ids = [id(a) for a in _flat(st)]
    out = cell.step_(x, st)
    _, want = built(kind, np.float32)(x, state)
    assert [id(a) for a in _flat(st)] == ids
    assert_identical(tuple(_flat(st)), tuple(_flat(want)), "state after step_")
    assert np.shares_memory(out, _flat(st)[-1]), "step_'s output is (a view of) the state's h"


def _flat(s):
    return [a for v in s for a in _flat(v)] if isinstance(s, tuple) else [s]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("kind", KIND_NAMES)
def test_unbuilt_cell_loads_unbuilt_and_builds_the_same_weights(kind, dtype):
    cell = KINDS[kind](dtype)
    loaded = pickle.loads(pickle.dumps(cell))
    assert not loaded.built and loaded.get_weights() == {}
    x, state, xs, lengths = inputs(cell)
    got = results(loaded, x, state, xs, lengths)      # built by its first call, from its seed
    want = results(cell, x, state, xs, lengths)
    assert_identical(got, want)
    assert_identical(loaded.get_weights(), cell.get_weights(), "weights built after loading")


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_deepcopy_and_copy_are_independent(kind):
    cell = built(kind, np.float64)
    x, state, xs, lengths = inputs(cell)
    want = results(cell, x, state, xs, lengths)
    weights = cell.get_weights()
    # copy.copy of a cell is independent too (a cell never shares its weights); a shallow copy
    # of a MultiRNNCell shares its cells, as a shallow copy of a list does
    dups = [copy.deepcopy(cell)] + ([] if isinstance(cell, MultiRNNCell) else [copy.copy(cell)])
    for dup in dups:
        assert_identical(results(dup, x, state, xs, lengths), want, "copy")
        dup.set_weights({name: np.full(a.shape, 0.25) for name, a in weights.items()})
        assert not np.array_equal(dup(x, state)[0], want["call"][0])
        assert_identical(cell.get_weights(), weights, "the original's weights")
        assert_identical(results(cell, x, state, xs, lengths), want, "the original")


def test_deepcopy_keeps_a_shared_cell_shared():
    multi = built("multi-shared", np.float32)
    dup = copy.deepcopy(multi)
    assert dup.cells[1] is dup.cells[2] and dup.cells[1] is not multi.cells[1]
    loaded = pickle.loads(pickle.dumps(multi))
    assert loaded.cells[1] is loaded.cells[2]


def test_constant_and_custom_initializers_survive_unbuilt():
    cells = [LSTMCell(4, initializer=0.05, seed=1), GRUCell(3, kernel_initializer=0.3,
                                                            bias_initializer=-0.1, seed=2),
             LSTMCell(4, initializer=small_uniform, seed=3)]
    for cell in cells:
        loaded = pickle.loads(pickle.dumps(cell))
        loaded.build(I)
        cell.build(I)
        assert_identical(loaded.get_weights(), cell.get_weights(), type(cell).__name__)
    np.testing.assert_array_equal(cells[0].get_weights()["kernel"],
                                  np.full((I + 4, 16), 0.05, np.float32))


def test_loaded_weights_are_private_and_read_only():
    """Protocol 5 with out-of-band buffers: the loaded cell copies the weights, so writing into
    the buffers afterwards changes nothing; its weights cannot be written through."""
    cell = built("lstm-peep-proj-clips", np.float32)
    x, state, _, _ = inputs(cell)
    want = cell(x, state)
    buffers = []
    blob = pickle.dumps(cell, protocol=5, buffer_callback=buffers.append)
    assert len(buffers) >= len(cell.weights), "the weight arrays travel out of band"
    loaded = pickle.loads(blob, buffers=buffers)
    raw = [bytearray(b.raw()) for b in buffers]            # writeable buffers ...
    loaded2 = pickle.loads(blob, buffers=raw)
    for r in raw:                                          # ... overwritten after loading
        r[:] = bytes(len(r))
    for dup in (loaded, loaded2):
        assert_identical(dup(x, state), want)
        assert_identical(dup.get_weights(), cell.get_weights(), "weights")
        for w in dup.weights + list(dup._weights.values()):
            assert not w.flags.writeable


def test_pending_pack_is_built_once_under_many_threads():
    cell = built("lstm-peep-proj-clips", np.float32)
    x, state, _, _ = inputs(cell)
    want = cell(x, state)
    loaded = pickle.loads(pickle.dumps(cell))
    barrier = threading.Barrier(6)
    got, errors = [None] * 6, []

    def run(k):
        try:
            barrier.wait()
            got[k] = loaded(x, state)
        except Exception as e:          # reported below
            errors.append(e)
    threads = [threading.Thread(target=run, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for g in got:
        assert_identical(g, want)
    assert isinstance(loaded._packed, _core.PackedCell)


def test_pickle_holds_no_packed_weights_or_lock():
    cell = built("lstm-peep-proj-clips", np.float32)
    state = cell.__getstate__()
    assert "_packed" not in state and "_lock" not in state
    assert_identical(state["_weights"], cell.get_weights(), "pickled weights")


def test_bad_state_is_refused():
    cell = built("gru", np.float32)
    state = cell.__getstate__()
    fresh = GRUCell.__new__(GRUCell)
    with pytest.raises(ValueError, match="state: expected a GRUCell state of format"):
        fresh.__setstate__({"_num_units": 3})
    bad = dict(state, _weights=dict(state["_weights"]))
    bad["_weights"]["gates/kernel"] = np.zeros((2, 2), np.float32)
    with pytest.raises(ValueError, match=r"state: expected the weights .*gates/kernel"):
        GRUCell.__new__(GRUCell).__setstate__(bad)


def test_unpicklable_activation_raises_picklings_error_and_cloudpickle_carries_it():
    cell = BasicRNNCell(3, activation=lambda v: 0.5 * np.tanh(v), seed=0)
    cell.build(2)
    with pytest.raises((pickle.PicklingError, AttributeError), match="lambda"):
        pickle.dumps(cell)
    x = np.ones((2, 2), np.float32)
    dup = copy.deepcopy(cell)                  # deepcopy shares the function: no pickling
    assert dup.activation is cell.activation
    assert_identical(dup(x, cell.zero_state(2)), cell(x, cell.zero_state(2)))
    cloudpickle = pytest.importorskip("cloudpickle", reason="cloudpickle is not installed")
    loaded = cloudpickle.loads(cloudpickle.dumps(cell))
    assert_identical(loaded(x, cell.zero_state(2)), cell(x, cell.zero_state(2)))


# ---------------------------------------------------------------------------------------------
# other processes
# ---------------------------------------------------------------------------------------------

EXACT_CHECK = """
import pickle, sys
import numpy as np
import fastcells as fc
c = fc.LSTMCell(64, seed=0); c.build(8); d = pickle.loads(pickle.dumps(c))
x = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
s = c.zero_state(4)
assert all(np.array_equal(a, b) for a, b in zip(c(x, s)[1], d(x, s)[1]))
for make in (lambda: fc.BasicRNNCell(16, seed=1), lambda: fc.BasicLSTMCell(16, seed=2),
             lambda: fc.LSTMCell(16, use_peepholes=True, num_proj=5, cell_clip=1.0, seed=3),
             lambda: fc.GRUCell(16, seed=4), lambda: fc.GRUCell(16, reset_after=True, seed=5),
             lambda: fc.CudnnCompatibleGRUCell(16, seed=6),
             lambda: fc.MultiRNNCell([fc.GRUCell(16, seed=7), fc.LSTMCell(16, seed=8)])):
    c = make(); c.build(8)
    for protocol in (2, 3, 4, 5):
        d = pickle.loads(pickle.dumps(c, protocol=protocol))
        s = c.zero_state(4)
        flat = lambda v: [a for p in v for a in flat(p)] if isinstance(v, tuple) else [v]
        assert all(np.array_equal(a, b) for a, b in zip(flat(c(x, s)), flat(d(x, s)))), make
print("ok")
"""


def test_the_exact_command_line_check():
    done = subprocess.run([sys.executable, "-c", EXACT_CHECK], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def child_computes(cell, x, state, xs, lengths):
    """Runs in a spawned child: what the unpickled cell computes there, and its ISAs."""
    got = results(cell, x, state, xs, lengths)
    isas = [leaf._packed.isa for leaf in leaves(cell) if leaf._packed is not None]
    return got, isas


def test_spawned_child_process_computes_the_same_bits():
    jobs = []
    for kind in KIND_NAMES:
        for dtype in DTYPES:
            cell = built(kind, dtype)
            args = inputs(cell)
            jobs.append((kind, cell, args, results(cell, *args)))
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(child_computes, cell, *args) for _, cell, args, _ in jobs]
        for (kind, cell, _, want), future in zip(jobs, futures):
            got, isas = future.result(timeout=120)
            assert_identical(got, want, f"{kind} {cell.dtype} in the child")
            assert set(isas) <= {_core.default_isa()}


LOAD_ON_OTHER_ISA = """
import pickle, sys
import numpy as np
from fastcells import _core
cell, x, state = pickle.loads(sys.stdin.buffer.read())
got = cell(x, state)[0]
assert cell._packed.isa == sys.argv[1], (cell._packed.isa, sys.argv[1])
fresh = type(cell)(cell.num_units, use_peepholes=True, num_proj=4, seed=0)
fresh.set_weights(cell.get_weights())
assert np.array_equal(got, fresh(x, state)[0])
sys.stdout.buffer.write(pickle.dumps(got))
"""


def test_a_pickled_cell_runs_on_the_instruction_set_of_the_loading_process():
    others = [isa for isa in _core.available_isas() if isa != _core.default_isa()]
    if not others:
        pytest.skip(f"only one instruction set available ({_core.default_isa()})")
    cell = LSTMCell(33, use_peepholes=True, num_proj=4, seed=0)
    cell.build(I)
    x, state, _, _ = inputs(cell)
    want = cell(x, state)[0]
    for isa in others:
        env = dict(os.environ, FASTCELLS_ISA=isa)
        done = subprocess.run([sys.executable, "-c", LOAD_ON_OTHER_ISA, isa], cwd=ROOT, env=env,
                              input=pickle.dumps((cell, x, state)), capture_output=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr.decode()
        got = pickle.loads(done.stdout)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-6, err_msg=isa)


# ---------------------------------------------------------------------------------------------
# converted models
# ---------------------------------------------------------------------------------------------

def assert_model_round_trip(model, *args):
    want = model(*args)
    for protocol in PROTOCOLS:
        loaded = pickle.loads(pickle.dumps(model, protocol=protocol))
        assert type(loaded) is type(model)
        assert_identical(_tuples(loaded(*args)), _tuples(want), f"protocol {protocol}")
    assert_identical(_tuples(copy.deepcopy(model)(*args)), _tuples(want), "deepcopy")


def _tuples(v):
    """Lists -> tuples (the models return lists in places) for assert_identical."""
    if isinstance(v, (list, tuple)) and not hasattr(v, "_fields"):
        return tuple(_tuples(a) for a in v)
    return v


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
@pytest.mark.parametrize("mode, kw", [
    ("LSTM", {"num_layers": 2, "bidirectional": True, "proj_size": 3}),
    ("GRU", {"num_layers": 2, "batch_first": True}), ("RNN", {"nonlinearity": "relu"}),
    ("LSTMCell", {}), ("GRUCell", {})])
def test_torch_models_round_trip(mode, kw):
    import torch
    from fastcells.convert import from_torch
    torch.manual_seed(0)
    module = getattr(torch.nn, mode)(I, 7, **kw)
    model = from_torch(module)
    rng = np.random.default_rng(2)
    shape = (B, I) if mode.endswith("Cell") else (T, B, I)
    assert_model_round_trip(model, rng.standard_normal(shape).astype(np.float32))


def test_keras_models_round_trip():
    from fastcells.convert import from_keras, to_keras_weights
    x = np.random.default_rng(3).standard_normal((B, T, I)).astype(np.float32)
    for cell, name, cfg in [
            (GRUCell(8, reset_after=True, seed=3), "GRU",
             {"reset_after": True, "return_sequences": True, "return_state": True}),
            (BasicLSTMCell(6, forget_bias=0.0, seed=1), "LSTM", {"go_backwards": True}),
            (BasicRNNCell(6, activation="relu", seed=2), "SimpleRNN",
             {"activation": "relu", "return_sequences": True})]:
        cell.build(I)
        model = from_keras(weights=to_keras_weights(cell), config=dict(cfg, units=cell.num_units),
                           class_name=name)
        assert_model_round_trip(model, x)
    fw, bw = GRUCell(5, reset_after=True, seed=4), GRUCell(5, reset_after=True, seed=5)
    for cell in (fw, bw):
        cell.build(I)
    layer = {"class_name": "GRU", "config": {"units": 5, "reset_after": True,
                                            "return_sequences": True, "return_state": True}}
    model = from_keras(weights=to_keras_weights(fw) + to_keras_weights(bw),
                       config={"layer": layer, "merge_mode": "sum"}, class_name="Bidirectional")
    assert_model_round_trip(model, x)


def _onnx_node(op, direction, attrs, seed=0):
    """A one-node ONNX model: op LSTM (with peepholes), GRU or RNN, hidden size 4, random
    weights and biases."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(seed)
    D, U, G = (2 if direction == "bidirectional" else 1), 4, {"RNN": 1, "GRU": 3, "LSTM": 4}[op]
    shapes = [("W", (D, G * U, I)), ("R", (D, G * U, U)), ("B", (D, 2 * G * U))]
    names = ["X", "W", "R", "B"]
    if op == "LSTM":
        shapes.append(("P", (D, 3 * U)))
        names += ["", "", "", "P"]
    inits = [numpy_helper.from_array(rng.uniform(-0.6, 0.6, shape).astype(np.float32), name)
             for name, shape in shapes]
    outs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    node = helper.make_node(op, names, outs, hidden_size=U, direction=direction, **attrs)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outs], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


@pytest.mark.skipif(not HAS_ONNX, reason="onnx is not installed")
@pytest.mark.parametrize("op, direction, attrs", [
    ("LSTM", "forward", {"clip": 2.5}), ("LSTM", "bidirectional", {"input_forget": 1}),
    ("GRU", "reverse", {"linear_before_reset": 1}), ("GRU", "bidirectional", {}),
    ("RNN", "forward", {"activations": ["Relu"]})])
def test_onnx_models_round_trip(op, direction, attrs):
    from fastcells.convert import from_onnx
    model = from_onnx(_onnx_node(op, direction, attrs))
    x = np.random.default_rng(4).standard_normal((T, B, I)).astype(np.float32)
    assert_model_round_trip(model, x, np.array([T, 1, T - 1], np.int32))


def test_checkpoint_fed_cells_round_trip():
    from fastcells.convert import load_tf_checkpoint
    cell = MultiRNNCell([GRUCell(5), LSTMCell(4, use_peepholes=True, num_proj=3)])
    prefix = os.path.join(HERE, "data", "tf_ckpt", "multi_gru_lstm", "model")
    cell.set_weights(load_tf_checkpoint(prefix))
    with np.load(os.path.join(HERE, "data", "tf_ckpt", "multi_gru_lstm", "expected.npz")) as z:
        xs, lengths = z["x"], z["sequence_length"]
    want = nn.dynamic_rnn(cell, xs, lengths, dtype=xs.dtype)
    loaded = pickle.loads(pickle.dumps(cell))
    assert_identical(nn.dynamic_rnn(loaded, xs, lengths, dtype=xs.dtype), want)
    assert_identical(loaded.get_weights(), cell.get_weights(), "weights")


def test_lstm_state_tuple_pickles():
    st = LSTMStateTuple(np.zeros((2, 3)), np.ones((2, 3)))
    back = pickle.loads(pickle.dumps(st))
    assert type(back) is LSTMStateTuple
    assert_identical(back, st)
