"""A whole sequence forward, fastcells beside its peers: the grid, the peer adapters, a table.

    python -m fastcells bench-seq [--quick]                        (~2.5 min on 2 cores)
    python -c "import fastcells.benchmarks.sequences as b; b.run()"

The pytest-benchmark suite bench/test_bench_sequences.py imports the grid and the adapters from
here (one group per case, one test per peer). Same structure as fastcells.benchmarks.cells (one
cell call); the shared harness (Runner, Unavailable, assert_close, case_atol, warm-up, timing,
machine load) is fastcells.benchmarks._harness.

Grid: ``SeqCase(kind, B, I, H, T, variable_lengths=False)``, float32, x [B,T,I] (batch-major, the
default layout of dynamic_rnn and of torch's batch_first=True), zero initial state. ``grid()`` =
the LSTM rows of the published table, the same (B, I, H, T) for GRU (reset-after) and RNN, and one
LSTM case with sequence lengths uniform in [1, T], small B=1 LSTMs (H=32, 64, T=63, uni- and
bidirectional) and a speech-sized bidirectional 2-layer LSTM (I=H=64, T=100; layer 2 reads both
directions' outputs, as torch's nn.LSTM); ``grid(full=True)`` (FASTCELLS_BENCH_FULL=1 for
pytest) adds more. ``case.flops`` = T x the per-step formula (LSTM 8*B*H*(I+H), GRU 6*B*H*(I+H),
RNN 2*B*H*(I+H)), summed over layers and directions; for variable lengths the useful work
only, sum(lengths) x the per-row formula.

Peers (``PEERS``, in column order; each ``make_runner(peer, subject).fn`` is a zero-argument
callable computing the WHOLE forward sequence (outputs [B,T,H] and the final state) from the same
weights, to be called inside ``runner.context()``). Every runner's first result is checked against
fastcells' (float32: rtol 1e-5, atol 1e-6 scaled with I+H, see _harness.case_atol), and
fastcells itself against the float64 NumPy oracle, before anything is timed.

    fastcells        fastcells.nn.dynamic_rnn(cell, x, sequence_length, dtype=float32): one
                     native call; BasicLSTMCell(forget_bias=1.0), GRUCell(reset_after=True)
                     (torch's and ONNX linear_before_reset=1's GRU), BasicRNNCell (tanh)
    numpy-loop       fastcells.reference.*_cell per step in a Python loop, float32 (the
                     "NumPy loop"); variable lengths: reference.dynamic_rnn's masking
    torch            torch.nn.LSTM/GRU/RNN(batch_first=True); variable lengths:
                     pack_padded_sequence(enforce_sorted=False) + pad_packed_sequence
    torch-cell-loop  a Python loop of torch.nn.LSTMCell/GRUCell/RNNCell over x.unbind(1), outputs
                     stacked to [B,T,H]; variable lengths: torch.where masks (as TF's)
    onnxruntime      one ONNX LSTM/GRU/RNN node (layout 0, GRU linear_before_reset=1, weights as
                     initializers, sequence_lens fed as an input), intra_op_num_threads = ours,
                     inter_op_num_threads = 1. ONNX takes X time-major [T,B,I]: the callable
                     includes the copy x.transpose(1,0,2) -> contiguous [T,B,I] (its cost is
                     charged to onnxruntime); Y [T,1,B,H] is returned as a [B,T,H] view (free).
    The torch peers run under torch.inference_mode() with torch.set_num_threads = ours. torch's
    and ONNX's weights come from fastcells.convert.to_torch_state_dict(cell) (TF layout -> torch,
    forget_bias folded into the f bias), ONNX's by reordering those gate blocks with
    fastcells.convert.GATE_ORDER: one place for each layout fact.

Timing (``run``): per case, every available peer is warmed up (fastcells for >= 0.25 s:
OpenBLAS, torch and onnxruntime leave worker threads spinning for ~100 ms after a call, which
would take the second core away from it), then timed by _harness.round_robin: rounds that each
time every peer once in a rotated order, a peer's time being the minimum over rounds of its
round's median, so every ratio compares timings of the same rounds. Each row also gets its
floor on this machine (``floor``: fastcells.benchmarks._limits, from limits the same run
measures: multiply-add peak, GEMM rates, cache bandwidths, and the cost of an empty call).
"""
import dataclasses
import functools
import sys
import timeit

import numpy as np

import fastcells
from fastcells import convert, nn, reference
from fastcells.benchmarks import _harness, _limits
from fastcells.benchmarks._harness import (DTYPE, FORGET_BIAS, GATES, RTOL, SEED, Runner,
                                           Unavailable, assert_close, case_atol,
                                           import_torch, time_call, time_peers, warm_up)
from fastcells.cells._oracle import oracle_step
from fastcells.convert._common import reorder_gates

__all__ = ["SeqCase", "grid", "PEERS", "BASELINE", "SeqSubject", "make_subject", "make_runner",
           "measure_peak", "floor", "empty_call", "run", "Unavailable"]

KINDS = ("lstm", "gru", "rnn")       # gru: GRUCell(reset_after=True), torch's and ONNX's GRU
_GATES = {kind: GATES[kind] for kind in KINDS}
ONNX_OPSET = 17


# ---------------------------------------------------------------------------------------------
# The grid
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SeqCase:
    """A whole forward sequence: kind in lstm|gru|rnn, x [B,T,I], hidden H, float32;
    variable_lengths: sequence_length [B] drawn uniformly from [1, T] (seeded, see lengths())."""
    kind: str
    B: int
    I: int
    H: int
    T: int
    variable_lengths: bool = False
    directions: int = 1              # 2: bidirectional (outputs [B,T,2H], fw then bw)
    layers: int = 1                  # stacked; layer l > 0 reads layer l-1's outputs

    def __post_init__(self):
        if self.directions not in (1, 2):
            raise ValueError(f"directions: expected 1 or 2, got {self.directions!r}")
        if self.layers < 1:
            raise ValueError(f"layers: expected >= 1, got {self.layers!r}")

    @property
    def id(self):
        return (f"{self.kind}-B{self.B}-I{self.I}-H{self.H}-T{self.T}"
                + ("-bi" if self.directions == 2 else "")
                + (f"-L{self.layers}" if self.layers > 1 else "")
                + ("-varlen" if self.variable_lengths else ""))

    def layer_input(self, layer):
        """The input size of `layer`: I for the first, directions * H above it."""
        return self.I if layer == 0 else self.directions * self.H

    def lengths(self):
        """sequence_length [B] int64 in [1, T] (seeded), or None for full-length rows."""
        if not self.variable_lengths:
            return None
        return np.random.default_rng(SEED + 2).integers(1, self.T + 1, size=self.B)

    @property
    def flops(self):
        """T x (LSTM 8, GRU 6, RNN 2) * B*H*(I+H) (products only); with variable lengths
        sum(lengths) x the per-row cost, the work a masked step really needs."""
        rows = self.B * self.T if not self.variable_lengths else int(self.lengths().sum())
        return sum(2 * _GATES[self.kind] * rows * self.H * (self.layer_input(layer) + self.H)
                   * self.directions for layer in range(self.layers))

    def weight_bytes(self, tile_cols):
        """(bytes of recurrent weights every step reads, over all directions of one layer;
        bytes of the input weights and bias, read once per call, over all layers): float32,
        the G*H gate columns padded to the packed panels' `tile_cols`."""
        cols = -(-_GATES[self.kind] * self.H // tile_cols) * tile_cols
        recurrent = self.directions * self.H * cols * 4
        once = sum(self.directions * (self.layer_input(layer) + 1) * cols * 4
                   for layer in range(self.layers))
        return recurrent, once

    def __str__(self):
        return self.id


_TABLE_ROWS = ((1, 128, 100), (1, 256, 100), (1, 512, 100), (1, 1024, 50), (16, 256, 100),
               (64, 512, 50), (256, 1024, 20))                          # (B, I=H, T)
# small models at one row, where a call's fixed cost and the weights' streaming dominate
_SMALL_LSTM = [SeqCase("lstm", 1, H, H, 63, directions=d) for H in (32, 64) for d in (1, 2)]
_SPEECH_LSTM = SeqCase("lstm", 1, 64, 64, 100, directions=2, layers=2)


def grid(full=False):
    """default: the published table's (B, I=H, T) rows for every kind, plus lstm B16 H256 T100 with
    variable lengths (~2.5 min for run() on 2 cores);
    full: also (8, 256, 100), (16, 512, 100), (64, 1024, 50), (256, 512, 50), and the
    variable-length case for every kind and at B=64 H=512 T=50. Every grid has the small
    B=1 LSTMs (H=32, 64, T=63, uni- and bidirectional) and the bidirectional 2-layer I=H=64
    T=100 LSTM."""
    rows = list(_TABLE_ROWS)
    var = [(16, 256, 100)]
    if full:
        rows += [(8, 256, 100), (16, 512, 100), (64, 1024, 50), (256, 512, 50)]
        rows.sort()
        var.append((64, 512, 50))
    cases = []
    for kind in KINDS:
        cases += [SeqCase(kind, B, H, H, T) for B, H, T in rows]
        if full or kind == "lstm":
            cases += [SeqCase(kind, B, H, H, T, variable_lengths=True) for B, H, T in var]
        if kind == "lstm":
            cases += _SMALL_LSTM + [_SPEECH_LSTM]
    return cases


# ---------------------------------------------------------------------------------------------
# The subject: one fastcells cell, its weights, an input sequence and fastcells' result
# ---------------------------------------------------------------------------------------------

def _new_cell(kind, H, seed=SEED):
    if kind == "lstm":
        return fastcells.BasicLSTMCell(H, forget_bias=FORGET_BIAS, dtype=DTYPE, seed=seed)
    if kind == "gru":
        return fastcells.GRUCell(H, dtype=DTYPE, seed=seed, reset_after=True)
    return fastcells.BasicRNNCell(H, dtype=DTYPE, seed=seed)


def _new_cells(case):
    """cells[layer][direction], built; layer 0's forward cell has seed SEED (the cell of a
    one-layer forward case), the others their own seeds."""
    cells = []
    for layer in range(case.layers):
        row = []
        for d in range(case.directions):
            cell = _new_cell(case.kind, case.H, SEED + 100 * layer + 10 * d)
            cell.build(case.layer_input(layer))
            row.append(cell)
        cells.append(row)
    return cells


_DIRECTION = ("fw", "bw")


def _stacked(case, x, lengths, run_one):
    """A stack of (bi)directional layers from one-direction runs: run_one(layer, direction,
    x_l [B,T,I_l]) -> (outputs [B,T,H], final state), the backward direction given its input
    reversed within each row's length (NumPy: reference.reverse_sequence; torch: x.flip(1),
    full lengths only) and its outputs reversed back; layer l+1 reads the concatenation
    [fw, bw] of layer l's outputs. Returns (outputs [B,T,directions*H],
    states[layer][direction])."""
    is_numpy = isinstance(x, np.ndarray)
    reverse = ((lambda a: reference.reverse_sequence(a, lengths)) if is_numpy
               else (lambda a: a.flip(1)))
    states, inp = [], x
    for layer in range(case.layers):
        outs, row = [], []
        for d in range(case.directions):
            out, state = run_one(layer, d, inp if d == 0 else reverse(inp))
            outs.append(out if d == 0 else reverse(out))
            row.append(state)
        if len(outs) == 1:
            inp = outs[0]
        elif is_numpy:
            inp = np.concatenate(outs, axis=-1)
        else:
            inp = import_torch().cat(outs, dim=-1)
        states.append(row)
    return inp, states


@dataclasses.dataclass
class SeqSubject:
    """What every peer of one case computes from: `cell` (built, TF-initialised, seed SEED),
    `weights` (cell.get_weights()), `x` [B,T,I] standard normal, `lengths` ([B] or None), and
    `expected`: fastcells' result as {"output": [B,T,H], "c": [B,H] (LSTM), "h": [B,H]} (a
    stack: _result's names); `cells`: cells[layer][direction] (cells[0][0] is `cell`)."""
    case: SeqCase
    cell: object
    weights: dict
    x: np.ndarray
    lengths: object
    expected: dict
    cells: list = None


def _result(kind, outputs, state):
    """{"output", "c", "h"} (LSTM) or {"output", "h"} from outputs [B,T,H] and a final state;
    for a stack, state is states[layer][direction] and the names of each final state get
    "_l<layer>_<fw|bw>" ({"output": [B,T,directions*H], "c_l0_fw", "h_l0_fw", ...})."""
    if isinstance(state, list):
        result = {"output": outputs}
        for layer, row in enumerate(state):
            for d, st in enumerate(row):
                for name, value in _result(kind, None, st).items():
                    if name != "output":
                        result[f"{name}_l{layer}_{_DIRECTION[d]}"] = value
        return result
    if kind == "lstm":
        c, h = state
        return {"output": outputs, "c": c, "h": h}
    return {"output": outputs, "h": state}


def _stack_case(case):
    """True for a bidirectional or multi-layer case (results named as _result's stacks)."""
    return case.directions > 1 or case.layers > 1


def _zero_state(kind, B, H, dtype):
    z = lambda: np.zeros((B, H), dtype)                            # noqa: E731
    return (z(), z()) if kind == "lstm" else z()


@functools.lru_cache(maxsize=1)
def make_subject(case):
    """Builds the subject of `case` (the last one is cached, so the peers of a case share it)
    and checks fastcells' dynamic_rnn against the float64 NumPy oracle (reference.dynamic_rnn)."""
    cells = _new_cells(case)
    cell = cells[0][0]
    weights = {k: np.array(v) for k, v in cell.get_weights().items()}
    rng = np.random.default_rng(SEED + 1)
    x = rng.standard_normal((case.B, case.T, case.I)).astype(DTYPE)
    lengths = case.lengths()
    zero64 = _zero_state(case.kind, case.B, case.H, np.float64)
    if not _stack_case(case):
        outputs, state = nn.dynamic_rnn(cell, x, sequence_length=lengths, dtype=DTYPE)
        want = reference.dynamic_rnn(oracle_step(cell, np.float64), x.astype(np.float64),
                                     zero64, sequence_length=lengths)
    else:
        outputs, state = _fastcells_stack(cells, x, lengths)
        want = _stacked(case, x.astype(np.float64), lengths, lambda layer, d, xl: (
            reference.dynamic_rnn(oracle_step(cells[layer][d], np.float64), xl, zero64,
                                  sequence_length=lengths)))
    expected = _result(case.kind, outputs, state)
    assert_close(f"{case.id} fastcells nn.dynamic_rnn vs float64 reference.dynamic_rnn",
                 expected, _result(case.kind, *want), atol=case_atol(case))
    return SeqSubject(case, cell, weights, x, lengths, expected, cells)


def _fastcells_stack(cells, x, lengths):
    """fastcells over a stack, layer by layer: nn.bidirectional_dynamic_rnn (both directions
    in one native call) or nn.dynamic_rnn, the outputs of a bidirectional layer concatenated
    [fw, bw] for the next. Returns (outputs, states[layer][direction])."""
    states, inp = [], x
    for row in cells:
        if len(row) == 2:
            (out_fw, out_bw), (st_fw, st_bw) = nn.bidirectional_dynamic_rnn(
                row[0], row[1], inp, sequence_length=lengths, dtype=DTYPE)
            inp = np.concatenate([out_fw, out_bw], axis=-1)
            states.append([st_fw, st_bw])
        else:
            inp, st = nn.dynamic_rnn(row[0], inp, sequence_length=lengths, dtype=DTYPE)
            states.append([st])
    return inp, states


def _check(s, peer, got):
    assert_close(f"{s.case.id} {peer}", got, s.expected, atol=case_atol(s.case))


# ---------------------------------------------------------------------------------------------
# The peers
# ---------------------------------------------------------------------------------------------

def _fastcells(s):
    cell, x, lengths = s.cell, s.x, s.lengths
    if _stack_case(s.case):
        cells = s.cells

        def fn():
            return _fastcells_stack(cells, x, lengths)
    else:
        def fn():
            return nn.dynamic_rnn(cell, x, sequence_length=lengths, dtype=DTYPE)

    _check(s, "fastcells", _result(s.case.kind, *fn()))
    return Runner(fn, checked="float64 reference.dynamic_rnn")


def _numpy_loop(s):
    kind, (B, T, H), x, lengths = s.case.kind, (s.case.B, s.case.T, s.case.H), s.x, s.lengths
    step = oracle_step(s.cell, DTYPE)                # float32 weights: float32 NumPy
    if _stack_case(s.case):
        case, steps = s.case, [[oracle_step(c, DTYPE) for c in row] for row in s.cells]

        def fn():
            return _stacked(case, x, lengths, lambda layer, d, xl: reference.dynamic_rnn(
                steps[layer][d], xl, _zero_state(kind, B, H, DTYPE), sequence_length=lengths))
    elif lengths is None:
        def fn():
            state = _zero_state(kind, B, H, DTYPE)
            outs = []
            for t in range(T):
                out, state = step(x[:, t], state)
                outs.append(out)
            return np.stack(outs, axis=1), state
    else:
        def fn():
            return reference.dynamic_rnn(step, x, _zero_state(kind, B, H, DTYPE),
                                         sequence_length=lengths)

    _check(s, "numpy-loop", _result(kind, *fn()))
    return Runner(fn, checked="fastcells")


def _torch_params(torch, s, suffix=""):
    """{torch parameter name + suffix: tensor} from the fastcells cell (TF layout -> torch
    layout, forget_bias folded into bias_ih's f block: fastcells.convert)."""
    return {name + suffix: torch.from_numpy(np.ascontiguousarray(v, DTYPE))
            for name, v in convert.to_torch_state_dict(s.cell).items()}


def _torch_module(torch, s, cls_names):
    """(torch.nn class for the case's kind from `cls_names`, its extra kwargs, I, H)."""
    kind, I, H = s.case.kind, s.case.I, s.case.H
    kw = {"nonlinearity": "tanh"} if kind == "rnn" else {}
    return getattr(torch.nn, cls_names[kind]), kw, I, H


def _torch(s):
    torch = import_torch()
    torch.set_num_threads(fastcells.get_num_threads())
    kind, T = s.case.kind, s.case.T
    cls, kw, I, H = _torch_module(torch, s, {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"})
    L, D = s.case.layers, s.case.directions
    with torch.inference_mode():
        module = cls(I, H, batch_first=True, num_layers=L, bidirectional=D == 2, **kw)
        for layer, row in enumerate(s.cells):
            for d, cell in enumerate(row):
                suffix = f"_l{layer}" + ("_reverse" if d else "")
                for name, value in convert.to_torch_state_dict(cell).items():
                    getattr(module, name + suffix).copy_(
                        torch.from_numpy(np.ascontiguousarray(value, DTYPE)))
        module.eval()
        x = torch.from_numpy(s.x)
        if s.lengths is None:
            def fn():
                return module(x)
        else:
            utils = torch.nn.utils.rnn
            pack, pad = utils.pack_padded_sequence, utils.pad_packed_sequence
            lengths = torch.from_numpy(np.asarray(s.lengths, np.int64))

            def fn():
                out, state = module(pack(x, lengths, batch_first=True, enforce_sorted=False))
                return pad(out, batch_first=True, total_length=T)[0], state

        out, state = fn()
        h_n, c_n = (state[0], state[1]) if kind == "lstm" else (state, None)  # [L*D, B, H]
        finals = [[(c_n[layer * D + d].numpy(), h_n[layer * D + d].numpy()) if kind == "lstm"
                   else h_n[layer * D + d].numpy() for d in range(D)] for layer in range(L)]
        got = _result(kind, out.numpy(), finals if _stack_case(s.case) else finals[0][0])
    _check(s, "torch", got)
    return Runner(fn, context=torch.inference_mode, checked="fastcells")


def _torch_cell_loop(s):
    torch = import_torch()
    torch.set_num_threads(fastcells.get_num_threads())
    kind, B = s.case.kind, s.case.B
    if _stack_case(s.case):
        return _torch_cell_loop_stack(torch, s)
    cls, kw, I, H = _torch_module(torch, s, {"lstm": "LSTMCell", "gru": "GRUCell",
                                             "rnn": "RNNCell"})
    with torch.inference_mode():
        module = cls(I, H, **kw)
        for name, value in _torch_params(torch, s).items():
            getattr(module, name).copy_(value)
        module.eval()
        x = torch.from_numpy(s.x)
        zero = torch.zeros(B, H)
        valid = None
        if s.lengths is not None:       # valid[t]: [B,1] bool, t < length (TF's masking)
            steps = torch.arange(s.case.T).reshape(-1, 1, 1)
            valid = steps < torch.from_numpy(np.asarray(s.lengths, np.int64)).reshape(1, -1, 1)

        if kind == "lstm":
            def fn():
                h, c, outs = zero, zero, []
                for t, x_t in enumerate(x.unbind(1)):
                    h_new, c_new = module(x_t, (h, c))
                    if valid is None:
                        h, c = h_new, c_new
                        outs.append(h)
                    else:
                        v = valid[t]
                        h, c = torch.where(v, h_new, h), torch.where(v, c_new, c)
                        outs.append(torch.where(v, h_new, zero))
                return torch.stack(outs, 1), (c, h)
        else:
            def fn():
                h, outs = zero, []
                for t, x_t in enumerate(x.unbind(1)):
                    h_new = module(x_t, h)
                    if valid is None:
                        h = h_new
                        outs.append(h)
                    else:
                        v = valid[t]
                        h = torch.where(v, h_new, h)
                        outs.append(torch.where(v, h_new, zero))
                return torch.stack(outs, 1), h

        out, state = fn()
        if kind == "lstm":
            got = {"output": out.numpy(), "c": state[0].numpy(), "h": state[1].numpy()}
        else:
            got = {"output": out.numpy(), "h": state.numpy()}
    _check(s, "torch-cell-loop", got)
    return Runner(fn, context=torch.inference_mode, checked="fastcells")


def _torch_cell_loop_stack(torch, s):
    """The torch cell loop over a stack (full lengths only): one torch.nn.*Cell per layer and
    direction, composed by _stacked (the backward direction on x.flip(1))."""
    case, kind, B = s.case, s.case.kind, s.case.B
    if s.lengths is not None:
        raise Unavailable("the torch cell loop over a stack reverses whole sequences only "
                          "(no variable lengths)")
    cls, kw, _, H = _torch_module(torch, s, {"lstm": "LSTMCell", "gru": "GRUCell",
                                             "rnn": "RNNCell"})
    with torch.inference_mode():
        modules = []
        for layer, row in enumerate(s.cells):
            mods = []
            for cell in row:
                module = cls(case.layer_input(layer), H, **kw)
                for name, value in convert.to_torch_state_dict(cell).items():
                    getattr(module, name).copy_(
                        torch.from_numpy(np.ascontiguousarray(value, DTYPE)))
                module.eval()
                mods.append(module)
            modules.append(mods)
        x, zero = torch.from_numpy(s.x), torch.zeros(B, H)

        def run_one(layer, d, xl):
            module, outs = modules[layer][d], []
            if kind == "lstm":
                h, c = zero, zero
                for x_t in xl.unbind(1):
                    h, c = module(x_t, (h, c))
                    outs.append(h)
                return torch.stack(outs, 1), (c, h)
            h = zero
            for x_t in xl.unbind(1):
                h = module(x_t, h)
                outs.append(h)
            return torch.stack(outs, 1), h

        def fn():
            return _stacked(case, x, None, run_one)

        out, states = fn()
        to_np = lambda st: tuple(a.numpy() for a in st) if kind == "lstm" else st.numpy()  # noqa
        got = _result(kind, out.numpy(), [[to_np(st) for st in row] for row in states])
    _check(s, "torch-cell-loop", got)
    return Runner(fn, context=torch.inference_mode, checked="fastcells")


def _onnx_weights(cells, kind):
    """(W [D, G*H, I_l], R [D, G*H, H], B [D, 2*G*H]) of one layer's cells (one per
    direction) in ONNX's gate order (from torch's layout with convert.GATE_ORDER)."""
    if kind == "rnn":
        reorder = np.asarray
    else:
        src, dst = convert.GATE_ORDER["torch"][kind], convert.GATE_ORDER["onnx"][kind]
        reorder = lambda a: reorder_gates(a, src, dst, axis=0)      # noqa: E731
    ps = [convert.to_torch_state_dict(cell) for cell in cells]
    W = np.stack([reorder(p["weight_ih"]) for p in ps])
    R = np.stack([reorder(p["weight_hh"]) for p in ps])
    Bias = np.stack([np.concatenate([reorder(p["bias_ih"]), reorder(p["bias_hh"])]) for p in ps])
    return W, R, Bias


def onnx_model(s):
    """An ONNX ModelProto with one LSTM/GRU/RNN node per layer on the subject's weights: inputs
    X [T,B,I] (and sequence_lens [B] int32 for variable lengths); per layer l, Y_l [T,D,B,H],
    Y_h_l [D,B,H] (and Y_c_l for LSTM), D = directions ("bidirectional" for 2); layer l+1 reads
    Y_l as [T,B,D*H] (Transpose + Reshape); outputs Y [T,D,B,H] of the last layer and every
    layer's Y_h (Y_c). Layout 0, GRU linear_before_reset=1."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as e:
        raise Unavailable(f"onnx is not importable ({e}): pip install onnx onnxruntime") from None
    case = s.case
    kind, (B, I, H, T), D = case.kind, (case.B, case.I, case.H, case.T), case.directions
    cells = s.cells if s.cells is not None else [[s.cell]]
    op = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}[kind]
    seq = s.lengths is not None
    f32 = TensorProto.FLOAT
    inits, nodes, outputs = [], [], []
    x_name = "X"
    for layer, row in enumerate(cells):
        tag = "" if case.layers == 1 else f"_{layer}"
        for name, a in zip(("W", "R", "B"), _onnx_weights(row, kind)):
            inits.append(numpy_helper.from_array(np.ascontiguousarray(a, DTYPE), name + tag))
        attrs = {"hidden_size": H, "layout": 0,
                 "direction": "bidirectional" if D == 2 else "forward"}
        if kind == "gru":
            attrs["linear_before_reset"] = 1
        outs = [f"Y{tag}", f"Y_h{tag}"] + ([f"Y_c{tag}"] if kind == "lstm" else [])
        nodes.append(helper.make_node(op, [x_name, "W" + tag, "R" + tag, "B" + tag,
                                           "sequence_lens" if seq else ""], outs, **attrs))
        outputs += [helper.make_tensor_value_info(n, f32, [D, B, H]) for n in outs[1:]]
        if layer + 1 < case.layers:                        # [T,D,B,H] -> [T,B,D*H]
            nodes.append(helper.make_node("Transpose", [outs[0]], [f"Yt{tag}"],
                                          perm=[0, 2, 1, 3]))
            nodes.append(helper.make_node("Reshape", [f"Yt{tag}", "shape_TB_"],
                                          [f"X{layer + 1}"]))
            x_name = f"X{layer + 1}"
        else:
            outputs.insert(0, helper.make_tensor_value_info(outs[0], f32, [T, D, B, H]))
    if case.layers > 1:
        inits.append(numpy_helper.from_array(np.array([0, 0, -1], np.int64), "shape_TB_"))
    graph_inputs = [helper.make_tensor_value_info("X", f32, [T, B, I])]
    if seq:
        graph_inputs.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, [B]))
    graph = helper.make_graph(nodes, f"fastcells_bench_{kind}", graph_inputs, outputs,
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
                              producer_name="fastcells.benchmarks.sequences")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def ort_session(ort, model):
    """An onnxruntime session of model (a ModelProto) on the CPU at fastcells' thread count,
    one graph node at a time."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = fastcells.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def _onnxruntime(s):
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise Unavailable(f"onnxruntime is not importable ({e}): pip install onnx "
                          f"onnxruntime") from None
    sess = ort_session(ort, onnx_model(s))
    kind, x, stack, D = s.case.kind, s.x, _stack_case(s.case), s.case.directions
    per_layer = 3 if kind == "lstm" else 2              # Y_h (Y_c) of every layer follow Y
    lens = None if s.lengths is None else np.asarray(s.lengths, np.int32)

    def fn():
        feeds = {"X": np.ascontiguousarray(x.transpose(1, 0, 2))}  # [B,T,I] -> [T,B,I], charged
        if lens is not None:
            feeds["sequence_lens"] = lens
        res = sess.run(None, feeds)
        Tn, _, Bn, Hn = res[0].shape
        y = res[0].transpose(2, 0, 1, 3).reshape(Bn, Tn, D * Hn)    # [B,T,D*H]
        if not stack:
            return (y, (res[2][0], res[1][0])) if kind == "lstm" else (y, res[1][0])
        finals = []
        for layer in range(s.case.layers):
            h_n = res[1 + (per_layer - 1) * layer]
            c_n = res[2 + (per_layer - 1) * layer] if kind == "lstm" else None
            finals.append([(c_n[d], h_n[d]) if kind == "lstm" else h_n[d] for d in range(D)])
        return y, finals

    _check(s, "onnxruntime", _result(kind, *fn()))
    return Runner(fn, checked="fastcells")


PEERS = {                              # column order; the first round times them in this order
    "fastcells": _fastcells,
    "numpy-loop": _numpy_loop,
    "torch": _torch,
    "torch-cell-loop": _torch_cell_loop,
    "onnxruntime": _onnxruntime,
}
BASELINE = "fastcells"                 # ratios are peer time / this peer's time
make_runner = functools.partial(_harness.make_runner, PEERS)   # (peer, subject) -> Runner


# ---------------------------------------------------------------------------------------------
# The achievable peak and the table
# ---------------------------------------------------------------------------------------------

PEAK_SIZE = 2048


def measure_peak(n=PEAK_SIZE, min_seconds=0.2, repeat=5):
    """GFLOP/s of fastcells' own float32 GEMM, _core.PackedMatrix(b).matmul(a, out), n x n x n,
    at the current fastcells thread count: the machine's achievable peak (no OpenBLAS). Packing
    is done once, outside the timing."""
    rng = np.random.default_rng(SEED)
    a = rng.uniform(-1, 1, (n, n)).astype(DTYPE)
    b = rng.uniform(-1, 1, (n, n)).astype(DTYPE)
    packed = fastcells._core.PackedMatrix(b)
    out = np.empty((n, n), DTYPE)
    fn = functools.partial(packed.matmul, a, out)
    warm_up(fn, 0.25)
    return 2 * n ** 3 / time_call(fn, min_seconds, repeat) / 1e9


def _fmt_ms(seconds):
    if seconds is None:
        return "-"
    ms = seconds * 1e3
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.1f}"


_SHORT = {"fastcells": "fastcells", "numpy-loop": "numpy", "torch": "torch",
          "torch-cell-loop": "tcell", "onnxruntime": "ort"}


def floor(case, limits, empty_call):
    """The Floor of `case` on `limits` (_limits.row_floor): its FLOPs; the recurrent weights of
    all directions streamed every step of every layer (T x layers steps); the input weights and
    biases read once; plus `empty_call` seconds."""
    tile_cols = fastcells._core.kernel_tile(limits.isa, DTYPE)[1]
    stream, once = case.weight_bytes(tile_cols)
    return _limits.row_floor(limits, case.B, case.flops, stream, case.T * case.layers, once,
                             empty_call)


def empty_call(case, min_seconds=0.005):
    """Seconds of fastcells' call for `case`'s structure (kind, directions, layers) with
    I = H = B = T = 1: the fixed cost of a call, a floor's last term (median of 5 samples)."""
    tiny = dataclasses.replace(case, B=1, I=1, H=1, T=1, variable_lengths=False)
    fn = _fastcells(make_subject(tiny)).fn
    warm_up(fn, 0.02)
    number = _harness.calls_per_sample(fn, min_seconds)
    return _harness.median(timeit.repeat(fn, number=number, repeat=5)) / number


def run(out=sys.stdout, quick=False, cases=None, rounds=None):
    """Prints the machine line, the limits measured by this run, then per case: ms per whole
    sequence for every peer (round robin, minimum of medians), the ratio peer time / fastcells
    time (> 1: fastcells is faster), "best" = the fastest peer's ratio, fastcells' GFLOP/s, its
    floor (ms), what bounds it, % of floor (floor / fastcells time), % of the OpenBLAS-GEMM
    reference, and how busy the rest of the machine was meanwhile. quick=True: shorter, fewer
    rounds (rounds overrides). Returns {case.id: {peer: seconds or None, "other_cores",
    "floor_s", "bound"}, "peak_gflops": fastcells' GEMM GFLOP/s, "limits": Limits}."""
    min_seconds, repeat, warm_seconds, samples = _harness.table_timing(quick, rounds, 7)
    base_warm = 0.25                   # > the ~0.1 s other libraries' threads keep spinning
    cases = grid() if cases is None else cases
    threads = fastcells.get_num_threads()
    notes = _harness.peer_versions()
    limits = _limits.print_limits(out, threads, quick, [
        f"fastcells {fastcells.__version__}: whole-sequence forward, float32, x [B,T,I] "
        f"batch-major, zero initial state",
        f"peers: NumPy {np.__version__} (reference cells in a Python loop), "
        f"{', '.join(notes)}; torch/ort at {threads} thread(s), torch under inference_mode"])
    print(f"per peer: checked against fastcells (fastcells against the float64 oracle; rtol "
          f"{RTOL:g}, atol scaled with I+H), {warm_seconds * 1e3:g} ms warm-up "
          f"({base_warm * 1e3:g} ms for fastcells); then {repeat} round-robin rounds (each "
          f"times every peer once, in a rotated order), {samples} samples (3 when a call takes "
          f"> 50 ms) of >= {min_seconds * 1e3:g} ms a turn; a peer's time is the minimum over "
          f"rounds of its round's median", file=out)
    print("x = peer time / fastcells time (> 1: fastcells is faster); best = the fastest peer's "
          "x; ort includes the [B,T,I] -> [T,B,I] input copy; varlen flops count valid steps "
          "only; -bi bidirectional, -L2 two layers (layer 2 reads [fw, bw])", file=out)
    print(f"floor = the least time on this machine: B <= {_limits.BANDWIDTH_BOUND_MAX_BATCH} "
          f"each thread's share of the recurrent weights read every step at the bandwidth of "
          f"the level it fits (bound bw L2/L3/DRAM) + the input weights once; else FLOPs / "
          f"(threads x fp32 peak) (fma); + an empty call (I=H=B=T=1); %floor = floor / "
          f"fastcells time; %gemm = (FLOPs at OpenBLAS GEMM rate + empty call) / fastcells "
          f"time", file=out)
    _harness.print_disturbance_legend(out)
    others_peers = [p for p in PEERS if p != BASELINE]
    header = (f"{'case':<32}{'fastcells':>10}" + "".join(f"{_SHORT[p]:>9}" for p in others_peers)
              + "".join(f"{_SHORT[p] + ' x':>9}" for p in others_peers)
              + f"{'best x':>8}{'GFLOP/s':>9}{'floor':>9}{'bound':>8}{'%floor':>7}{'%gemm':>7}"
              + f"{'other':>7}")
    _harness.print_header(out, header, above=f"{'':<32}{'--- ms per sequence ---':>55}")
    results = {"peak_gflops": limits.packed_gemm_gflops, "limits": limits}
    empty_of = _harness.memo_by(lambda case: (case.kind, case.directions, case.layers),
                                empty_call)
    for case in cases:
        row_floor = floor(case, limits, empty_of(case))
        times, others = time_peers(
            make_subject(case), PEERS, min_seconds, repeat,
            lambda peer: base_warm if peer == BASELINE else warm_seconds, slow_call=(0.05, 3),
            samples=samples)
        results[case.id] = dict(times, other_cores=others, floor_s=row_floor.seconds,
                                bound=row_floor.bound)
        base = times[BASELINE]
        ratio = lambda p: "-" if times[p] is None else f"{times[p] / base:.2f}"   # noqa: E731
        peers_t = [times[p] for p in others_peers if times[p] is not None]
        best = f"{min(peers_t) / base:.2f}" if peers_t else "-"
        gflops = case.flops / base / 1e9
        gemm_pct = 100.0 * row_floor.gemm_seconds / base
        print(f"{case.id:<32}{_fmt_ms(base):>10}"
              + "".join(f"{_fmt_ms(times[p]):>9}" for p in others_peers)
              + "".join(f"{ratio(p):>9}" for p in others_peers)
              + f"{best:>8}{gflops:>9.1f}{_fmt_ms(row_floor.seconds):>9}{row_floor.bound:>8}"
              + f"{row_floor.percent(base):>7.1f}{gemm_pct:>7.1f}"
              + f"{'-' if others is None else f'{others:.1f}':>7}", file=out, flush=True)
    make_subject.cache_clear()
    return results
