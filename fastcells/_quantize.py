"""fastcells.quantize: copies of cells, stacks and converted models with int8 or bf16 weights."""
import copy
from typing import Any

from fastcells.cells._fused import FusedCell
from fastcells.cells._multi import MultiRNNCell

PRECISIONS = ("int8", "bf16")


def _leaf_cells(obj, argname):
    """The cells of obj whose weights are packed: a cell, a MultiRNNCell (at any depth), or a
    model of fastcells.convert (its ``.cells``)."""
    if isinstance(obj, FusedCell):
        return [obj]
    if isinstance(obj, MultiRNNCell):
        return [leaf for cell in obj._cells for leaf in _leaf_cells(cell, argname)]
    cells = getattr(obj, "cells", None)
    if isinstance(cells, (list, tuple)) and cells:
        return [leaf for cell in cells for leaf in _leaf_cells(cell, argname)]
    raise TypeError(f"{argname}: expected a fastcells cell, a MultiRNNCell or a model of "
                    f"fastcells.convert, got {type(obj).__name__}")


def quantize(obj: Any, precision: str) -> Any:
    """A copy of ``obj`` whose cells keep their weights packed in ``precision``.

    The copy has obj's whole API (``__call__``, ``step_``, ``fastcells.nn.dynamic_rnn``,
    bidirectional runs, stacks, ``sequence_length``, pickling); obj itself is not changed.
    Its float32 weights stay the source of truth: ``get_weights()`` returns them, and
    ``set_weights`` quantizes the new ones. With "int8", every product of the cells runs on int8
    weights (one scale per output column of its x part and of its h part) and int8 activations
    (x per row, per time step in a sequence; h with the fixed scale 1/127 where the cell bounds
    it by 1, else per row) with exact int32 sums; bias, gates and states stay float32. The
    scheme and its error are fastcells.reference_quant's: on Glorot-initialised weights about
    1e-2 relative L2 error of h after 1000 steps against float32. Inputs that are NaN or inf
    give NaN outputs; an initial h outside [-1, 1] for a cell that bounds h by 1 is a
    ValueError. With "bf16", the weights are rounded to bfloat16 (nearest even) and so are
    the activations of every product (x, h, the GRU's r*h, the LSTM's projected m), the
    products summed in float32 (AVX512_BF16's vdpbf16ps where the CPU has it, the same
    bits elsewhere); bias, gates and states stay float32: about 3e-3 relative L2 error of h
    after 1000 steps, half the weight bytes of float32.

    Parameters
    ----------
    obj : cell, MultiRNNCell or converted model
        A float32 BasicRNNCell, BasicLSTMCell, LSTMCell, GRUCell or CudnnCompatibleGRUCell, a
        MultiRNNCell of them, or a model returned by fastcells.convert (from_torch,
        from_keras, from_onnx, from_tf_checkpoint).
    precision : str
        "int8" or "bf16".

    Returns
    -------
    object
        A deep copy of obj, of the same type, computing with ``precision`` weights.

    Raises TypeError for another kind of obj, ValueError for an unknown precision, a float64
    cell, or a cell whose activations are Python callables (only the C kernels quantize).

    Examples
    --------
    >>> import numpy as np, fastcells
    >>> cell = fastcells.LSTMCell(16, seed=0)
    >>> q = fastcells.quantize(cell, "int8")
    >>> q.precision, cell.precision
    ('int8', None)
    >>> x = np.ones((2, 5, 8), np.float32)
    >>> out, state = fastcells.nn.dynamic_rnn(q, x, dtype=np.float32)
    >>> out.shape
    (2, 5, 16)
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
    for cell in _leaf_cells(obj, "obj"):
        if cell.dtype != "float32":
            raise ValueError(f"obj: precision {precision!r} computes in float32, got the "
                             f"{cell.dtype} cell {cell.name!r}")
        if not cell._fusable:
            raise ValueError(f"obj: the cell {cell.name!r} has an activation computed in "
                             f"Python (a callable), which precision {precision!r} cannot run")
    new = copy.deepcopy(obj)
    for cell in _leaf_cells(new, "obj"):
        cell._set_precision(precision)
    return new
