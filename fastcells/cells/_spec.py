"""One table per cell kind, the one place for its facts: the weights (TF variable names inside
the cell's scope, in TF's creation order, their shapes and default initializers), the gate
blocks of the kernel (TF's letters), the kind of the C kernel, and the NumPy oracle in
fastcells.reference. The cells, the converters, the benchmarks and the tests read these.

Shapes are functions of (I, U, P): input depth, num_units, width of h (num_proj or U).
Gate letters: LSTM i input, j candidate, f forget, o output; GRU r reset, u update (the GRU
candidate has weights of its own).
"""
from typing import Callable, NamedTuple

from fastcells import reference
from fastcells.cells._initializers import glorot_uniform, ones, zeros


class Weight(NamedTuple):
    name: str              # TF's variable name inside the cell's scope
    shape: Callable        # (I, U, P) -> shape tuple
    role: str              # "kernel" or "bias": which initializer argument of the cell sets it
    default: Callable      # TF's initializer when the cell is given none
    when: str = None       # None: always; "peepholes" / "proj": only with that LSTMCell option


class CellSpec(NamedTuple):
    c_kind: str            # fastcells._core.PackedCell's kind
    gates: str             # the kernel's gate blocks, in TF's letters ("" for the plain RNN)
    weights: tuple         # Weight, in TF's creation order
    oracle: Callable       # the fastcells.reference function of one step

    @property
    def names(self):
        """The weight names of the cell with every option, in creation order."""
        return tuple(w.name for w in self.weights)

    def __reduce__(self):
        # a table is a module constant (its shapes are lambdas): it pickles by its C kind
        return (_spec_for_kind, (self.c_kind,))


def _spec_for_kind(c_kind):
    """The table of a C kind (what a pickled CellSpec loads as)."""
    return SPECS[c_kind]


RNN = CellSpec("rnn", "", (
    Weight("kernel", lambda I, U, P: (I + U, U), "kernel", glorot_uniform),
    Weight("bias", lambda I, U, P: (U,), "bias", zeros),
), reference.rnn_cell)

LSTM = CellSpec("lstm", "ijfo", (
    Weight("kernel", lambda I, U, P: (I + P, 4 * U), "kernel", glorot_uniform),
    Weight("bias", lambda I, U, P: (4 * U,), "bias", zeros),
    Weight("w_f_diag", lambda I, U, P: (U,), "kernel", glorot_uniform, "peepholes"),
    Weight("w_i_diag", lambda I, U, P: (U,), "kernel", glorot_uniform, "peepholes"),
    Weight("w_o_diag", lambda I, U, P: (U,), "kernel", glorot_uniform, "peepholes"),
    Weight("projection/kernel", lambda I, U, P: (U, P), "kernel", glorot_uniform, "proj"),
), reference.lstm_cell)

# both GRUs: the r and u gates
_GRU_GATES = (
    Weight("gates/kernel", lambda I, U, P: (I + U, 2 * U), "kernel", glorot_uniform),
    Weight("gates/bias", lambda I, U, P: (2 * U,), "bias", ones),
)

# TF's GRUCell: the reset gate scales h before the candidate's product
GRU = CellSpec("gru", "ru", _GRU_GATES + (
    Weight("candidate/kernel", lambda I, U, P: (I + U, U), "kernel", glorot_uniform),
    Weight("candidate/bias", lambda I, U, P: (U,), "bias", zeros),
), reference.gru_cell)

# the reset-after GRU (CudnnCompatibleGRUCell's names): the reset gate scales h @ Wh + bh
GRU_RESET_AFTER = CellSpec("gru_ra", "ru", _GRU_GATES + (
    Weight("candidate/input_projection/kernel", lambda I, U, P: (I, U), "kernel", glorot_uniform),
    Weight("candidate/input_projection/bias", lambda I, U, P: (U,), "bias", zeros),
    Weight("candidate/hidden_projection/kernel", lambda I, U, P: (U, U), "kernel",
           glorot_uniform),
    Weight("candidate/hidden_projection/bias", lambda I, U, P: (U,), "bias", zeros),
), reference.gru_cell_reset_after)

#: C kind -> its table
SPECS = {spec.c_kind: spec for spec in (RNN, LSTM, GRU, GRU_RESET_AFTER)}

# the variable sub-scopes inside a cell (so that "gru_cell/gates/kernel" is not read as "kernel")
SUBSCOPES = frozenset(part for spec in SPECS.values() for w in spec.weights
                      for part in w.name.split("/")[:-1])
