"""fastcells: recurrent cells (RNN, LSTM, GRU) with TensorFlow 1.x's tf.nn.rnn_cell API,
computed by hand-written C kernels. See README.md and fastcells.show_config()."""
from fastcells import _core

_core._init()

from fastcells import nn  # noqa: E402  (after _init: FASTCELLS_ISA is applied first)
from fastcells._config import show_config  # noqa: E402
from fastcells._core import get_num_threads, set_num_threads  # noqa: E402
from fastcells.cells import (  # noqa: E402
    BasicLSTMCell, BasicRNNCell, CudnnCompatibleGRUCell, GRUCell, LSTMCell, LSTMStateTuple,
    MultiRNNCell, RNNCell)

__all__ = ["BasicLSTMCell", "BasicRNNCell", "CudnnCompatibleGRUCell", "GRUCell", "LSTMCell",
           "LSTMStateTuple", "MultiRNNCell", "RNNCell", "nn", "show_config", "get_num_threads",
           "set_num_threads"]

from fastcells._version import __version__  # noqa: E402,F401
from fastcells._threads import threads  # noqa: E402,F401  (env thread default, threadpoolctl)
from fastcells._quantize import quantize  # noqa: E402,F401
__all__ += ["threads", "quantize"]
