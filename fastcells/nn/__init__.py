"""fastcells.nn — stands in for ``tf.nn``: ``from fastcells import nn`` and TF 1.x code such as
``nn.rnn_cell.LSTMCell(128)``, ``activation=nn.relu`` or ``nn.dynamic_rnn(cell, x, dtype=...)``
runs unchanged.

    nn.rnn_cell      the cell classes (BasicRNNCell, BasicLSTMCell, LSTMCell, GRUCell,
                     MultiRNNCell, LSTMStateTuple, RNNCell)
    nn.dynamic_rnn, nn.static_rnn, nn.bidirectional_dynamic_rnn
                     the sequence runners of tf.nn: a whole sequence (every layer, both
                     directions) in one native call
    nn.tanh, nn.relu, nn.sigmoid   NumPy activations that the cells run fused in C
    nn.activation(name, alpha, beta)   the ONNX activations with parameters (hard_sigmoid,
                     leaky_relu, thresholded_relu, scaled_tanh, affine, elu, softsign), fused
"""
from fastcells.activations import activation, relu, sigmoid, tanh
from fastcells.nn import rnn_cell
from fastcells.rnn import bidirectional_dynamic_rnn, dynamic_rnn, static_rnn

__all__ = ["rnn_cell", "dynamic_rnn", "static_rnn", "bidirectional_dynamic_rnn", "tanh", "relu",
           "sigmoid", "activation"]
