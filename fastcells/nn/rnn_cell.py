"""fastcells.nn.rnn_cell — the names of ``tf.nn.rnn_cell`` (TF 1.x), computed by fastcells."""
from fastcells.cells import (BasicLSTMCell, BasicRNNCell, CudnnCompatibleGRUCell, GRUCell,
                             LSTMCell, LSTMStateTuple, MultiRNNCell, RNNCell)

__all__ = ["RNNCell", "BasicRNNCell", "BasicLSTMCell", "LSTMCell", "GRUCell",
           "CudnnCompatibleGRUCell", "MultiRNNCell", "LSTMStateTuple"]
