"""bf16 cells (fastcells.quantize(obj, "bf16"), PackedCell(precision="bf16")) against the exact
NumPy scheme of fastcells.reference_quant, on every bf16 kernel of the registry this machine
runs (the widening kernels and, with AVX512_BF16, vdpbf16ps).

Bit-exact where the cell's math after the products is exact arithmetic (hard_sigmoid gates
with relu or hard_sigmoid activations, as tests/test_int8_cells.py): every rounding of an
operand to bf16 and every fp32 sum of the pair chains must match the reference bit for bit,
step after step. With tanh/sigmoid the kernels' transcendentals differ from NumPy's by an ulp
or two: one step is compared with a stated tolerance, and the error of the scheme itself
(against float32) is bounded at T = 1000.
"""

import numpy as np
import pytest

import fastcells
from fastcells import _core, nn
from fastcells import reference_quant as rq
from test_int8_cells import (EXACT_ACTS, GATE, LSTM_OPTIONS, SIZES,  # noqa: F401 (tuning)
                             check_bidirectional_stack, check_lstm_options, check_quantized_copy,
                             check_sequence, check_tanh_sigmoid_cell, packed_options, random_state,
                             scheme_references, tuning, weights_for)

BF16_KERNELS = [k["name"] for k in _core.registered_kernels()
                if k["precision"] == "bf16" and k["available"]]
KINDS = ["rnn", "lstm", "gru", "gru_ra"]
reference_step, bf16_oracle, reference_sequence = scheme_references("bf16")


def test_every_bf16_path_this_cpu_has_is_registered():
    """The widening kernels everywhere, vdpbf16ps where the CPU has AVX512_BF16."""
    assert "bf16-cells-3x16-scalar" in BF16_KERNELS
    if _core.cpu_features().get("avx512bf16") and "avx512" in _core.available_isas():
        assert "bf16-cells-6x64-avx512bf16" in BF16_KERNELS


@pytest.mark.parametrize("kernel", BF16_KERNELS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("act", sorted(EXACT_ACTS.values()))
def test_step_is_bit_exact(kernel, kind, act):
    """One step, every tile edge of SIZES (odd and zero input sizes: a pair padded with +0):
    the same bits as reference_quant."""
    rng = np.random.default_rng(abs(hash((kernel, kind, act))) % 2 ** 32)
    options = {"activation": act, "gate_activation": GATE}
    for B, I, U in SIZES + [(3, 4, 64), (6, 1, 130)]:
        w, ref_w = weights_for(kind, rng, I, U)
        cell = _core.PackedCell(kind, np.float32, I, U, w, isa=kernel, precision="bf16",
                                **packed_options(kind, options))
        assert cell.precision == "bf16" and cell.isa == kernel
        x = rng.standard_normal((B, I)).astype(np.float32)
        state = random_state(kind, rng, B, U, U, False)        # h of any size
        got = cell.call(x, state if kind == "lstm" else (state,))
        want = reference_step(kind, x, state, ref_w, **options)
        for g, r in zip(got, want):
            np.testing.assert_array_equal(g, r, err_msg=f"{kernel} {kind} B={B} I={I} U={U}")


@pytest.mark.parametrize("kernel", BF16_KERNELS)
@pytest.mark.parametrize("extra", LSTM_OPTIONS, ids=lambda e: "-".join(sorted(e)))
def test_lstm_options_bit_exact(kernel, extra):
    """Peepholes, projection (its operand m rounded too), clips, forget bias, input_forget;
    an odd input size, h of any size."""
    check_lstm_options(kernel, extra, "bf16", reference_step, "relu", 7, False)


@pytest.mark.parametrize("kernel", BF16_KERNELS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("run", ["one_thread", "chunks_and_team"])
def test_sequence_is_bit_exact(kernel, kind, run, tuning):
    """Whole sequences with lengths (0 and T included) and an initial state of any size: the
    same bits as reference_quant.dynamic_rnn_bf16, on one thread with the default chunks and
    cut into chunks of 2 steps on a forced team of 2 (every member rounding its own
    operands); an odd input size."""
    check_sequence(kernel, kind, "bf16", reference_sequence, "relu", run, tuning, 11, False)


@pytest.mark.parametrize("kind", KINDS)
def test_bidirectional_stack_matches_reference(kind):
    """Both directions and a 2-layer MultiRNNCell, bf16 (an odd input size), against
    reference_quant run layer by layer."""
    check_bidirectional_stack(kind, "bf16", reference_sequence, "hard_sigmoid", 5)


def _bits(values):
    return np.array(values, np.uint32).view(np.float32)


# fp32 values at the edges of bf16 rounding: ties to even (down and up), just past a tie, the
# largest finite (rounds to inf), zeros of both signs, bf16's smallest normal, pi, 1/3
ROUNDING_EDGES = _bits([0x3F808000, 0x3F818000, 0x3F808001, 0xBF818000, 0x7F7FFFFF,
                        0xFF7FFFFF, 0x00000000, 0x80000000, 0x00800000, 0x40490FDB,
                        0xC0490FDB, 0x3EAAAAAB])
SUBNORMALS = _bits([0x00008000, 0x00018000, 0x00000001, 0x803F0000])


@pytest.mark.parametrize("kernel", BF16_KERNELS)
def test_operands_round_to_nearest_even_as_the_reference(kernel):
    """A linear RNN with I = U = 1, x weight 1.0 (exact in bf16), zero h weight, bias and h,
    one value per batch row: its output is the row's x as the kernels round it. The
    reference's bits at every rounding edge, inf kept, NaN out for NaN in. Subnormal operands:
    the same bits on the widening kernels; vdpbf16ps flushes them to zero whatever MXCSR says
    (the domain reference_quant states), so there they give +0."""
    weights = {"kernel": np.array([[1.0], [0.0]], np.float32), "bias": np.zeros(1, np.float32)}
    cell = _core.PackedCell("rnn", np.float32, 1, 1, weights, activation="linear",
                            isa=kernel, precision="bf16")
    x = np.concatenate([ROUNDING_EDGES, SUBNORMALS]).astype(np.float32)[:, None]
    h = np.zeros_like(x)
    (got,) = cell.call(x, (h,))
    want = rq.rnn_cell_bf16(x, h, weights["kernel"], weights["bias"], activation="linear")
    nonzero = x[:, 0] != 0                          # (0 + -0 is +0: the chain starts at +0)
    np.testing.assert_array_equal(want[nonzero], rq.round_bf16(x)[nonzero])
    edges, n_sub = slice(0, len(ROUNDING_EDGES)), len(SUBNORMALS)
    subnormal = slice(len(ROUNDING_EDGES), len(ROUNDING_EDGES) + n_sub)
    np.testing.assert_array_equal(got[edges].view(np.uint32), want[edges].view(np.uint32))
    # non-finite inputs (the reference refuses them): inf stays inf, NaN gives NaN
    special = np.array([[np.inf], [-np.inf], [np.nan]], np.float32)
    (got_special,) = cell.call(special, (np.zeros_like(special),))
    assert got_special[0, 0] == np.inf and got_special[1, 0] == -np.inf
    assert np.isnan(got_special[2, 0])
    if kernel.endswith("avx512bf16"):
        assert (got[subnormal].view(np.uint32) == 0).all(), got[subnormal]
    else:
        np.testing.assert_array_equal(got[subnormal].view(np.uint32),
                                      want[subnormal].view(np.uint32))


@pytest.mark.parametrize("kernel", BF16_KERNELS)
def test_deep_odd_segments(kernel):
    """K = 4097 (an odd segment: its last pair padded with +0) of large, cancelling products:
    the fp32 chain is the reference's bit for bit."""
    K, U, B = 4097, 20, 3
    rng = np.random.default_rng(3)
    kernel_w = (rng.standard_normal((K + U, U)) * 100).astype(np.float32)
    bias = rng.standard_normal(U).astype(np.float32)
    x = (rng.standard_normal((B, K)) * 1e3).astype(np.float32)
    h = rng.standard_normal((B, U)).astype(np.float32)
    cell = _core.PackedCell("rnn", np.float32, K, U, {"kernel": kernel_w, "bias": bias},
                            activation="linear", isa=kernel, precision="bf16")
    (got,) = cell.call(x, (h,))
    np.testing.assert_array_equal(got, rq.rnn_cell_bf16(x, h, kernel_w, bias,
                                                        activation="linear"))


@pytest.mark.parametrize("kind", KINDS)
def test_tanh_sigmoid_cells_close_to_reference(kind):
    """The default activations: one step within 4e-7 of reference_quant, and the scheme's
    error at T = 1000 against float32 within issue #12's bar for bf16 (5e-3 relative L2 of h;
    reference_quant's docstring measures 2.5-3.7e-3)."""
    check_tanh_sigmoid_cell(kind, "bf16", reference_step, 5e-3)


def test_quantize_copies_and_keeps_the_float_weights():
    cell, _, x, state, h_q = check_quantized_copy("bf16")
    assert not np.array_equal(h_q, cell(x, state)[0])       # the bf16 weights are in use
    with pytest.raises(ValueError, match="computes in float32, got the float64 cell"):
        fastcells.quantize(fastcells.GRUCell(4, dtype=np.float64), "bf16")
    with pytest.raises(TypeError, match="dtype: precision 'bf16' computes in float32"):
        _core.PackedCell("rnn", np.float64, 1, 1, {"kernel": np.zeros((2, 1)),
                                                   "bias": np.zeros(1)}, precision="bf16")


def test_steps_equal_the_sequence_and_leave_inputs_alone():
    """step_ / __call__ (one-step sequences) chained by hand give the bits of one dynamic_rnn
    call, and no input array is written."""
    cell = fastcells.GRUCell(12, activation="relu", gate_activation=GATE, seed=3)
    cell.build(6)
    q = fastcells.quantize(cell, "bf16")
    x = np.random.default_rng(1).standard_normal((2, 4, 6)).astype(np.float32)
    x_before = x.copy()
    out, _ = nn.dynamic_rnn(q, x, dtype=np.float32)
    h = np.zeros((2, 12), np.float32)
    for t in range(4):
        h = q(x[:, t], h)[0]
        np.testing.assert_array_equal(h, out[:, t])
    np.testing.assert_array_equal(x, x_before)
