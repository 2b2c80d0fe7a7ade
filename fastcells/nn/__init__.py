"""fastcells.nn — stands in for ``tf.nn``: ``from fastcells import nn`` and TF 1.x code such as
``nn.rnn_cell.LSTMCell(128)`` or ``activation=nn.relu`` runs unchanged.

    nn.rnn_cell      the cell classes (BasicRNNCell, BasicLSTMCell, LSTMCell, GRUCell,
                     MultiRNNCell, LSTMStateTuple, RNNCell)
    nn.tanh, nn.relu, nn.sigmoid   NumPy activations that the cells run fused in C
"""
from fastcells.activations import relu, sigmoid, tanh
from fastcells.nn import rnn_cell

__all__ = ["rnn_cell", "tanh", "relu", "sigmoid"]
