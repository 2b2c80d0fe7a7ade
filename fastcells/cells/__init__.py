"""The cells: TensorFlow 1.x ``tf.nn.rnn_cell`` classes whose arithmetic runs in C.

    BasicRNNCell, BasicLSTMCell, LSTMCell, GRUCell   one fused C call per step (fastcells._core)
    MultiRNNCell                                      stacks cells, as TF's
    LSTMStateTuple                                    namedtuple (c, h), as TF's
    RNNCell                                           base class (subclass it for your own cell)

Same class names, argument names and defaults, gate order, weight shapes and variable names as
TF. Arrays are NumPy; the batch is the first axis.

Decisions that TF leaves to the framework (all documented on the classes):
- ``dtype=None`` means float32; float32 and float64 are supported. The dtype is fixed at
  construction (TF takes it from the first input); a float input of the other precision is a
  TypeError, integer/bool arrays and lists are converted.
- ``seed=`` (keyword) seeds the ``numpy.random.Generator`` the initializers draw from (an int,
  None, a SeedSequence or a Generator, as ``numpy.random.default_rng``).
- An initializer (``LSTMCell(initializer=)``, ``GRUCell(kernel_initializer=, bias_initializer=)``)
  is None (TF's default), a number (a constant), or a callable ``init(shape, dtype, rng)`` that
  returns an array of that shape (shape: tuple of ints, dtype: numpy dtype, rng: the cell's
  Generator).
- Weights are stored in TF layout on the cell (the source of truth); the packed C copy is
  derived from them and rebuilt by ``set_weights``. ``cell.weights`` gives read-only views,
  ``get_weights()`` copies; nothing handed out can change the weights behind the packed copy.
- ``cell(x, state)`` returns new arrays. The output and the new state share memory (TF tensors
  are immutable, so this costs nothing there): for BasicRNNCell/GRUCell the output IS the new
  state array, for the LSTMs it is the state's ``h`` (a view of the state with
  ``state_is_tuple=False``).
- ``cell.step_(x, state)`` writes the new state into ``state``'s arrays and returns the output,
  which is (a view of) the state's h array, overwritten by the next ``step_``.

The modules: _spec.py (one table per cell kind: weight names and shapes, gate blocks, C kind,
oracle), _initializers.py, _base.py (RNNCell), _fused.py (the machinery of the C cells),
_kinds.py (the four cells), _multi.py (MultiRNNCell); argument checks are in
fastcells._validate, nested states (LSTMStateTuple among them) in fastcells._nest.
"""
from fastcells._nest import LSTMStateTuple
from fastcells.cells._base import RNNCell
from fastcells.cells._initializers import glorot_uniform
from fastcells.cells._kinds import (BasicLSTMCell, BasicRNNCell, CudnnCompatibleGRUCell, GRUCell,
                                    LSTMCell)
from fastcells.cells._multi import MultiRNNCell

__all__ = ["LSTMStateTuple", "RNNCell", "BasicRNNCell", "BasicLSTMCell", "LSTMCell", "GRUCell",
           "CudnnCompatibleGRUCell", "MultiRNNCell", "glorot_uniform"]

# the public names live here whatever module defines them (pickles and reprs name
# fastcells.cells.<name>, as before the package was split)
for _public in (RNNCell, BasicRNNCell, BasicLSTMCell, LSTMCell, GRUCell, CudnnCompatibleGRUCell,
                MultiRNNCell, glorot_uniform):
    _public.__module__ = __name__
del _public
