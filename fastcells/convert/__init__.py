"""Bring your own weights: PyTorch, Keras, ONNX and TF 1.x recurrent models on fastcells cells,
with NumPy alone at run time, giving the same numbers.

    from_torch(module)          torch.nn.LSTM / GRU / RNN and LSTMCell / GRUCell / RNNCell
    from_keras(layer)           Keras SimpleRNN / LSTM / GRU and Bidirectional (tf-keras or
    from_keras(weights=, config=)   Keras 3 layer objects, or plain weight lists + config dicts)
    from_onnx(model, node=None) ONNX LSTM / GRU / RNN nodes (path, bytes or ModelProto)
    load_tf_checkpoint(prefix)  a TF checkpoint (tensor bundle) as {name: array}, NumPy only
    to_torch_state_dict(cell)   the inverse maps: fastcells cells -> PyTorch / Keras weights
    to_keras_weights(cell)

Each from_* returns a callable object that takes NumPy arrays (anything ``np.asarray`` reads,
CPU torch tensors included) and returns exactly what the source framework returns, as NumPy
arrays of the same shapes; ``.cells`` lists the fastcells cells it runs (every run is a fused C
sequence call, never the NumPy reference). No framework is imported by fastcells itself: torch
only inside from_torch (to read the parameters), onnx only inside from_onnx; Keras layer
objects are read by duck typing (``get_config()``, ``get_weights()``).

All the framework facts (gate orders, orientation, bias folding) are tables, one place each:
GATE_ORDER and the TF-layout builders in _common.py, each framework's own in its module
(torch.py, keras.py, onnx.py, tf_checkpoint.py). The file formats a checkpoint is made of
(SSTable, protobuf wire fields, crc32c) are in fastcells._formats, which knows nothing of RNNs.
"""
# the public names, each from the module that defines it
from fastcells._formats.crc32c import crc32c  # noqa: F401
from fastcells.convert._common import GATE_ORDER  # noqa: F401
from fastcells.convert.keras import (KerasBidirectional, KerasRNN, from_keras,  # noqa: F401
                                     to_keras_weights)
from fastcells.convert.onnx import OnnxRNNModel, from_onnx  # noqa: F401
from fastcells.convert.tf_checkpoint import load_tf_checkpoint
from fastcells.convert.torch import (TorchCellModel, TorchRNNModel, from_torch,  # noqa: F401
                                     to_torch_state_dict)

__all__ = ["from_torch", "from_keras", "from_onnx", "load_tf_checkpoint", "to_torch_state_dict",
           "to_keras_weights"]

# the public names live here whatever module defines them (pickles and reprs name
# fastcells.convert.<name>, as before the package was split)
for _public in (KerasBidirectional, KerasRNN, OnnxRNNModel, TorchCellModel, TorchRNNModel,
                from_keras, to_keras_weights, from_onnx, load_tf_checkpoint, from_torch,
                to_torch_state_dict, crc32c):
    _public.__module__ = __name__
del _public
