"""fastcells: recurrent cells (RNN, LSTM, GRU) with TensorFlow 1.x's tf.nn.rnn_cell API,
computed by hand-written C kernels. See README.md and fastcells.show_config()."""
from fastcells import _core
from fastcells._config import show_config
from fastcells._core import get_num_threads, set_num_threads

_core._init()

__version__ = "0.1.0"
