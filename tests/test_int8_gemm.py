"""The packed int8 GEMM (_core.Int8PackedMatrix, the FC_I8GEMM kernels of kernels.def) against
fastcells.reference_quant, which defines its arithmetic: for every kernel this CPU runs, the
int32 accumulators are equal to reference_quant.int8_matmul and the fp32 results to
reference_quant.int8_epilogue bit for bit (assert_array_equal, no tolerance), the weight and
activation quantizers to quantize_weights_int8 / quantize_rows, over the sizes that break the
16-column panels, the 4-row tiles and the groups of 4 k, and with every operand at its extremes
(+-127, 0, mixes, K = INT8_K_MAX) where no intermediate may saturate.
"""
import numpy as np
import pytest

from fastcells import _core
from fastcells import reference_quant as rq

KERNELS = _core.int8_gemm_kernels()
RUNNABLE = [k["name"] for k in KERNELS if k["available"]]
NOT_RUNNABLE = [k["name"] for k in KERNELS if not k["available"]]

# rows around the 4-row tile, depths around the groups of 4, columns around the 16-col panel
ROWS = [1, 3, 4, 5, 9]
DEPTHS = [1, 3, 4, 5, 17, 64]
COLS = [1, 15, 16, 17, 33]


def kernel_param():
    params = [pytest.param(name, id=name) for name in RUNNABLE]
    params += [pytest.param(name, id=name, marks=pytest.mark.skip(
        reason=f"{name}: this CPU lacks its features")) for name in NOT_RUNNABLE]
    return params


def assert_equal(expected, actual, what):
    expected = np.asarray(expected)
    actual = np.asarray(actual)
    assert expected.shape == actual.shape, (what, expected.shape, actual.shape)
    if expected.dtype.kind == "f":
        bad = expected.view(np.uint32) != actual.astype(np.float32).view(np.uint32)
    else:
        bad = expected.astype(np.int64) != actual.astype(np.int64)
    if np.any(bad):
        idx = tuple(np.argwhere(bad)[0])
        raise AssertionError(f"{what}: {int(bad.sum())} of {bad.size} differ, first at {idx}: "
                             f"expected {expected[idx]!r}, got {actual[idx]!r} "
                             f"(shape {expected.shape})")


def test_registry_has_a_portable_kernel_and_one_default():
    names = [k["name"] for k in KERNELS]
    assert names[0] == "i8-gemm-4x16-ref" and KERNELS[0]["available"]
    assert sum(k["default"] for k in KERNELS) == 1
    default = next(k for k in KERNELS if k["default"])
    assert default["available"]
    # the last runnable line at or below the path FASTCELLS_ISA (or the best) selects
    order = _core.ISA_NAMES.index
    allowed = [k for k in KERNELS
               if k["available"] and order(k["isa"]) <= order(_core.default_isa())]
    assert default is allowed[-1]
    for k in KERNELS:
        assert k["name"] == f"i8-gemm-{k['mr']}x{k['nr']}-{k['name'].rsplit('-', 1)[1]}", k
        assert k["nr"] == 16 and 1 <= k["mr"] <= 6, k


@pytest.mark.parametrize("kernel", kernel_param())
@pytest.mark.parametrize("m", ROWS)
@pytest.mark.parametrize("k", DEPTHS)
@pytest.mark.parametrize("n", COLS)
def test_float_product_is_the_reference_bit_for_bit(kernel, m, k, n):
    rng = np.random.default_rng(1000 * m + 10 * k + n)
    b = rng.standard_normal((k, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    a = (rng.standard_normal((m, k)) * 3).astype(np.float32)
    a_before, b_before = a.copy(), b.copy()
    mat = _core.Int8PackedMatrix(b, bias, kernel=kernel)
    assert mat.kernel == kernel
    c, acc, row_scale = mat.matmul(a)
    qw, col_scale = rq.quantize_weights_int8(b)
    qa, ref_row_scale = rq.quantize_rows(a)
    packed_qw, packed_scale = mat.weights()
    assert_equal(qw, packed_qw, "qw")
    assert_equal(col_scale, packed_scale, "col_scale")
    assert_equal(ref_row_scale, row_scale, "row_scale")
    ref_acc = rq.int8_matmul(qa, qw)
    assert_equal(ref_acc, acc, "acc")
    assert_equal(rq.int8_epilogue(ref_acc, ref_row_scale, col_scale, bias), c, "c")
    np.testing.assert_array_equal(a, a_before)
    np.testing.assert_array_equal(b, b_before)
    # without a bias: p alone
    c0, acc0, _ = _core.Int8PackedMatrix(b, kernel=kernel).matmul(a)
    assert_equal(ref_acc, acc0, "acc (no bias)")
    assert_equal(rq.int8_epilogue(ref_acc, ref_row_scale, col_scale), c0, "c (no bias)")


def extreme_operands(rng, m, k, n):
    """int8 [m,k] and [k,n] operands at the extremes: all +127, all -127, alternating signs,
    zeros, and random mixes of {-127, 0, 127}, one pattern per row / column."""
    patterns = [
        lambda size: np.full(size, 127, np.int8),
        lambda size: np.full(size, -127, np.int8),
        lambda size: np.where(np.arange(size) % 2, 127, -127).astype(np.int8),
        lambda size: np.zeros(size, np.int8),
        lambda size: rng.choice(np.array([-127, 0, 127], np.int8), size),
        lambda size: rng.integers(-127, 128, size).astype(np.int8),
    ]
    qa = np.stack([patterns[i % len(patterns)](k) for i in range(m)])
    qw = np.stack([patterns[(j * 5 + 1) % len(patterns)](k) for j in range(n)], axis=1)
    return np.ascontiguousarray(qa), np.ascontiguousarray(qw)


@pytest.mark.parametrize("kernel", kernel_param())
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 31, 258, 4099])
def test_extreme_operands_give_the_exact_int32(kernel, k):
    rng = np.random.default_rng(k)
    m, n = 7, 18
    qa, qw = extreme_operands(rng, m, k, n)
    row_scale = rng.uniform(1e-3, 1.0, m).astype(np.float32)
    col_scale = rng.uniform(1e-3, 1.0, n).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    mat = _core.Int8PackedMatrix.from_int8(qw, col_scale, bias, kernel=kernel)
    c, acc = mat.matmul_int8(qa, row_scale)
    ref_acc = rq.int8_matmul(qa, qw)
    assert_equal(ref_acc, acc, "acc")
    assert_equal(rq.int8_epilogue(ref_acc, row_scale, col_scale, bias), c, "c")
    # the instruction models agree (no saturation in the sign-moving form)
    model, stats = rq.int8_dot_avx2_model(qa, qw)
    assert not stats["saturated"]
    assert_equal(ref_acc, model, "avx2 model")


@pytest.mark.parametrize("kernel", kernel_param())
def test_deepest_segment_reaches_the_int32_bound_exactly(kernel):
    k = rq.INT8_K_MAX
    qa = np.stack([np.full(k, 127, np.int8), np.full(k, -127, np.int8),
                   np.where(np.arange(k) % 3 == 0, 0, 127).astype(np.int8)])
    qw = np.stack([np.full(k, 127, np.int8), np.full(k, -127, np.int8)] * 9, axis=1)
    qw = np.ascontiguousarray(qw)
    ones = np.ones(18, np.float32)
    mat = _core.Int8PackedMatrix.from_int8(qw, ones, kernel=kernel)
    c, acc = mat.matmul_int8(qa, np.ones(3, np.float32))
    ref_acc = rq.int8_matmul(qa, qw)
    assert ref_acc[0, 0] == k * 127 * 127 == 2147479576
    assert ref_acc[0, 1] == -k * 127 * 127
    assert_equal(ref_acc, acc, "acc")
    assert_equal(rq.int8_epilogue(ref_acc, np.ones(3, np.float32), ones), c, "c")


@pytest.mark.parametrize("kernel", kernel_param())
def test_zero_and_tiny_rows_quantize_to_zero(kernel):
    b = np.random.default_rng(0).standard_normal((9, 5)).astype(np.float32)
    b[:, 2] = 0.0                                           # a zero column: scale 1, q 0
    b[:, 3] = 1e-35                                         # below 2**-100: a zero vector too
    a = np.array([[0.0] * 9, [1e-31] * 9, [-0.0] * 9, list(range(9))], np.float32)
    mat = _core.Int8PackedMatrix(b, kernel=kernel)
    c, acc, row_scale = mat.matmul(a)
    qw, col_scale = rq.quantize_weights_int8(b)
    qa, ref_row_scale = rq.quantize_rows(a)
    assert_equal(ref_row_scale, row_scale, "row_scale")
    assert_equal(col_scale, mat.weights()[1], "col_scale")
    ref_acc = rq.int8_matmul(qa, qw)
    assert_equal(ref_acc, acc, "acc")
    assert_equal(rq.int8_epilogue(ref_acc, ref_row_scale, col_scale), c, "c")
    assert np.all(acc[:3] == 0) and np.all(acc[:, 2:4] == 0)


def test_empty_batch_and_zero_depth():
    mat = _core.Int8PackedMatrix(np.zeros((0, 3), np.float32), np.array([1, 2, 3], np.float32))
    c, acc, _ = mat.matmul(np.zeros((2, 0), np.float32))
    np.testing.assert_array_equal(acc, np.zeros((2, 3), np.int32))
    np.testing.assert_array_equal(c, np.tile(np.array([1, 2, 3], np.float32), (2, 1)))
    c, acc, scale = _core.Int8PackedMatrix(np.ones((4, 3))).matmul(np.zeros((0, 4)))
    assert c.shape == (0, 3) and acc.shape == (0, 3) and scale.shape == (0,)


def test_bad_input_raises_naming_the_argument():
    b = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"b: expected finite values, got 3 non-finite"):
        _core.Int8PackedMatrix(np.where(np.eye(4, 3) > 0, np.nan, 1.0))
    with pytest.raises(ValueError, match=r"b: expected rank 2"):
        _core.Int8PackedMatrix(np.ones(4))
    with pytest.raises(ValueError, match=r"N >= 1"):
        _core.Int8PackedMatrix(np.ones((4, 0)))
    with pytest.raises(ValueError, match=r"K <= 133144.*got K = 133145"):
        _core.Int8PackedMatrix.from_int8(np.zeros((133145, 1), np.int8), np.ones(1))
    with pytest.raises(ValueError, match=r"bias: expected shape \(3,\), got \(4,\)"):
        _core.Int8PackedMatrix(b, np.ones(4))
    with pytest.raises(ValueError, match=r"kernel: expected None or one of"):
        _core.Int8PackedMatrix(b, kernel="i8-gemm-9x9-nope")
    with pytest.raises(TypeError, match=r"qw: expected dtype int8, got int16"):
        _core.Int8PackedMatrix.from_int8(np.zeros((4, 3), np.int16), np.ones(3))
    with pytest.raises(ValueError, match=r"qw: expected values in \[-127, 127\], got -128"):
        _core.Int8PackedMatrix.from_int8(np.full((4, 3), -128, np.int8), np.ones(3))
    with pytest.raises(ValueError, match=r"col_scale: expected shape \(3,\), got \(2,\)"):
        _core.Int8PackedMatrix.from_int8(np.zeros((4, 3), np.int8), np.ones(2))
    mat = _core.Int8PackedMatrix(b)
    with pytest.raises(ValueError, match=r"a: expected shape \(M, 4\), got \(2, 5\)"):
        mat.matmul(np.ones((2, 5)))
    with pytest.raises(ValueError, match=r"a: expected finite values"):
        mat.matmul(np.full((2, 4), np.inf))
    with pytest.raises(TypeError, match=r"a: expected a real array, got dtype complex128"):
        mat.matmul(np.ones((2, 4), complex))
    with pytest.raises(ValueError, match=r"qa: expected values in \[-127, 127\], got -128"):
        mat.matmul_int8(np.full((2, 4), -128, np.int8), np.ones(2))
    with pytest.raises(ValueError, match=r"row_scale: expected shape \(2,\), got \(3,\)"):
        mat.matmul_int8(np.zeros((2, 4), np.int8), np.ones(3))


def test_non_contiguous_and_read_only_inputs():
    rng = np.random.default_rng(5)
    b = rng.standard_normal((20, 34)).astype(np.float32)
    a = rng.standard_normal((6, 40)).astype(np.float32)[:, ::2]          # strided view
    a.flags.writeable = False
    mat = _core.Int8PackedMatrix(b[:, ::1])
    c, acc, row_scale = mat.matmul(a)
    qw, col_scale = rq.quantize_weights_int8(b)
    qa, ref_row_scale = rq.quantize_rows(a)
    assert_equal(rq.int8_matmul(qa, qw), acc, "acc")
    assert_equal(rq.int8_epilogue(rq.int8_matmul(qa, qw), ref_row_scale, col_scale), c, "c")
