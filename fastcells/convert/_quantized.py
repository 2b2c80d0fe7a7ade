"""What the converters of peer-quantized models share: checked dequantization of int8 / uint8
weights with their scales and zero points ((q - zero_point) * scale in float32, the float32
weights that are the loaded model's source of truth), and the `precision=` rule of from_onnx and
from_torch (a quantized source gives fastcells.quantize(model, "int8") unless told otherwise)."""
import numpy as np

# precision= of from_onnx / from_torch: "auto" is "int8" for a quantized source, None (float
# weights) for a float one; None and fastcells.quantize's precisions are what they say for either
PRECISION_AUTO = "auto"
_QUANTIZED_DTYPES = (np.dtype(np.int8), np.dtype(np.uint8))


def check_precision(precision):
    """The precision= argument, checked (ValueError naming it)."""
    from fastcells._quantize import PRECISIONS
    if precision is not None and precision != PRECISION_AUTO and precision not in PRECISIONS:
        raise ValueError(f"precision: expected {PRECISION_AUTO!r}, None or one of "
                         f"{PRECISIONS}, got {precision!r}")
    return precision


def with_precision(model, precision, quantized_source):
    """`model` (float weights) as precision= asks: "auto" -> int8 when the source was
    quantized, else as it is; None -> as it is; "int8" or "bf16" -> fastcells.quantize(model,
    precision)."""
    if precision == PRECISION_AUTO:
        precision = "int8" if quantized_source else None
    if precision is None:
        return model
    from fastcells._quantize import quantize
    return quantize(model, precision)


def dequantize(q, scale, zero_point, channel_axis, what):
    """float32 ``(q - zero_point) * scale`` of the int8 / uint8 array q, the difference exact
    (an integer of at most 9 bits) and the product rounded once in float32.

    scale: float32, finite and positive, with zero_point (q's dtype) of the same shape:
    per tensor, a scalar (shape ()); per channel, a vector along q's `channel_axis`. `what`
    names q in the messages (ValueError for every mismatch)."""
    q, scale, zero_point = np.asarray(q), np.asarray(scale), np.asarray(zero_point)
    if q.dtype not in _QUANTIZED_DTYPES:
        raise ValueError(f"{what}: expected int8 or uint8 weights, got {q.dtype}")
    if scale.dtype != np.float32:
        raise ValueError(f"{what}: expected a float32 scale, got {scale.dtype}")
    if zero_point.dtype != q.dtype:
        raise ValueError(f"{what}: expected a zero point of the weights' dtype {q.dtype}, got "
                         f"{zero_point.dtype}")
    if zero_point.shape != scale.shape:
        raise ValueError(f"{what}: the zero point's shape {zero_point.shape} differs from the "
                         f"scale's {scale.shape}")
    if scale.ndim == 1 and channel_axis is not None:
        if scale.shape[0] != q.shape[channel_axis]:
            raise ValueError(f"{what}: expected {q.shape[channel_axis]} per-channel scales "
                             f"(axis {channel_axis} of {q.shape}), got {scale.shape[0]}")
        view = [1] * q.ndim
        view[channel_axis] = -1
        scale, zero_point = scale.reshape(view), zero_point.reshape(view)
    elif scale.ndim != 0:
        raise ValueError(f"{what}: expected a scalar scale (per tensor) or one per channel, got "
                         f"shape {scale.shape}")
    if not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
        bad = scale[~(np.isfinite(scale) & (scale > 0))].reshape(-1)[0]
        raise ValueError(f"{what}: expected finite positive scales, got {bad}")
    steps = (q.astype(np.int32) - zero_point.astype(np.int32)).astype(np.float32)   # exact
    return steps * scale
