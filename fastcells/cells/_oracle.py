"""The one adapter from a cell to its oracle: ``oracle_step(cell)`` computes what `cell`
computes, with fastcells.reference, from the cell's own weights and options. The tests, the
benchmarks and ``python -m fastcells`` check the cells against it."""
import numpy as np

from fastcells import reference
from fastcells._nest import LSTMStateTuple
from fastcells.cells._fused import SingleStateCell
from fastcells.cells._kinds import LSTMBase
from fastcells.cells._multi import MultiRNNCell


def oracle_step(cell, dtype=np.float64):
    """``step(x, state) -> (output, new_state)``, one step of `cell` by fastcells.reference in
    `dtype` (the weights and inputs are cast to it), the state in the cell's structure
    (LSTMStateTuple, one concatenated array with state_is_tuple=False, a tuple per layer of a
    MultiRNNCell): a step function for reference.dynamic_rnn. `cell` must be built."""
    if isinstance(cell, MultiRNNCell):
        steps = [oracle_step(c, dtype) for c in cell.cells]
        if cell.state_is_tuple:
            return reference.multi_cell(steps)
        offsets = np.cumsum([0] + [int(c.state_size) for c in cell.cells])

        def multi_step(x, state):
            new = []
            for step, a, b in zip(steps, offsets[:-1], offsets[1:]):
                x, s = step(x, state[:, a:b])
                new.append(s)
            return x, np.concatenate(new, axis=1)
        return multi_step
    if not isinstance(cell, (SingleStateCell, LSTMBase)):
        raise TypeError(f"cell: expected a fastcells cell or MultiRNNCell, got "
                        f"{type(cell).__name__}")
    w = {k: np.asarray(v, dtype) for k, v in cell.get_weights().items()}
    as_dt = lambda a: np.asarray(a, dtype)                         # noqa: E731
    options = {"activation": cell._act, "preact_clip": cell._preact_clip}
    if cell._gate_activation is not None:
        options["gate_activation"] = cell._gate_act
    if isinstance(cell, SingleStateCell):
        spec = cell._SPEC
        args = [w[n] for n in spec.names]                # the oracles' positional order

        def single_step(x, h):
            h = spec.oracle(as_dt(x), as_dt(h), *args, **options)
            return h, h
        return single_step
    if cell._output_activation is not None:
        options["output_activation"] = cell._out_act
    proj = w.get("projection/kernel")
    options.update(forget_bias=cell.forget_bias, input_forget=cell._input_forget,
                   w_i_diag=w.get("w_i_diag"), w_f_diag=w.get("w_f_diag"),
                   w_o_diag=w.get("w_o_diag"), cell_clip=getattr(cell, "cell_clip", None),
                   proj_kernel=proj,
                   proj_clip=getattr(cell, "proj_clip", None) if proj is not None else None)
    U = cell.num_units

    def lstm_step(x, state):
        if cell.state_is_tuple:
            c, h = state
        else:
            c, h = state[:, :U], state[:, U:]
        c, h = reference.lstm_cell(as_dt(x), as_dt(c), as_dt(h), w["kernel"], w["bias"],
                                   **options)
        return h, (LSTMStateTuple(c, h) if cell.state_is_tuple
                   else np.concatenate([c, h], axis=1))
    return lstm_step
