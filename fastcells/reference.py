"""The NumPy oracle: slow, obvious versions of every fastcells cell and sequence runner.

Same math as TensorFlow 1.x ``tf.nn.rnn_cell``: one matmul on
the concatenation ``[x, h]``, then the bias, then the gates. Everything is computed in the dtype of
the inputs (float64 in gives float64 math, float32 in gives float32 out). Depends on NumPy only and
never runs on the fast path; every compiled variant is tested against it.

Notation: B batch, T time, I input depth, U num_units, P num_proj (or U without a projection).
"""
import numpy as np

from fastcells._nest import flatten, pack_as

__all__ = [
    "sigmoid", "tanh", "relu", "linear", "ACTIVATIONS", "PARAMETRIC", "activation",
    "get_activation",
    "rnn_cell", "lstm_cell", "gru_cell", "gru_cell_reset_after",
    "dynamic_rnn", "reverse_sequence", "bidirectional_dynamic_rnn", "static_rnn", "multi_cell",
]


# ---------------------------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------------------------

def sigmoid(x):
    """Logistic sigmoid 1/(1+exp(-x)), elementwise, in the dtype of ``x``.

    Stable form: with ``e = exp(-|x|)`` (in (0, 1], so it never overflows),
    ``sigmoid(x) = 1/(1+e)`` for x >= 0 and ``e/(1+e)`` for x < 0. No overflow at any x; the
    underflow of exp to (sub)normal or 0 for x << 0 is the right answer and is not reported, so
    sigmoid(+-1000) = 1, 0 exactly even under ``np.errstate(all="raise")``; NaN gives NaN.
    Accuracy (float64, 6e6 points in [-40, 40] against long double): mean 0.44 ulp, max 1.5 ulp
    for x >= 0 and 2.5 ulp for x < 0 (the rounding of 1+e and NumPy's exp, <= 0.7 ulp, add up;
    ``0.5*(1+tanh(x/2))`` would cancel catastrophically for x << 0).
    """
    x = np.asarray(x)
    with np.errstate(under="ignore"):
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def tanh(x):
    """Hyperbolic tangent, elementwise (``np.tanh``)."""
    return np.tanh(x)


def relu(x):
    """max(x, 0), elementwise; NaN gives NaN."""
    return np.maximum(x, 0)


def linear(x):
    """Identity: returns ``x`` unchanged."""
    return np.asarray(x)


ACTIVATIONS = {"tanh": tanh, "relu": relu, "sigmoid": sigmoid, "linear": linear}

# The ONNX activations with parameters (ONNX operator definitions; defaults as ONNX/tf-keras):
# name -> (function of (x, alpha, beta), default alpha, default beta)
PARAMETRIC = {
    "hard_sigmoid": (lambda x, a, b: np.clip(a * x + b, 0, 1), 0.2, 0.5),
    "leaky_relu": (lambda x, a, b: np.where(x < 0, a * x, x), 0.01, 0.0),
    "thresholded_relu": (lambda x, a, b: np.where(x > a, x, 0), 1.0, 0.0),
    "scaled_tanh": (lambda x, a, b: a * np.tanh(b * x), 1.0, 1.0),
    "affine": (lambda x, a, b: a * x + b, 1.0, 0.0),
    "elu": (lambda x, a, b: np.where(x < 0, a * np.expm1(np.minimum(x, 0)), x), 1.0, 0.0),
    "softsign": (lambda x, a, b: x / (1 + np.abs(x)), 0.0, 0.0),
}


def activation(name, alpha=None, beta=None):
    """The elementwise function for an activation name: one of ACTIVATIONS, or one of
    PARAMETRIC with its alpha/beta (None: the default)."""
    if name in ACTIVATIONS and alpha is None and beta is None:
        return ACTIVATIONS[name]
    if name not in PARAMETRIC:
        raise ValueError("activation: expected one of %s; got %r"
                         % (sorted(ACTIVATIONS) + sorted(PARAMETRIC), name))
    fn, default_alpha, default_beta = PARAMETRIC[name]
    a = default_alpha if alpha is None else alpha
    b = default_beta if beta is None else beta
    return lambda x: fn(np.asarray(x), a, b)


def get_activation(a, default=None):
    """None -> `default` (tanh if not given, the cells' default); a name -> that function;
    (name, alpha, beta) -> the parametric function; a callable -> itself."""
    if a is None:
        return tanh if default is None else default
    if isinstance(a, str):
        return activation(a)
    if isinstance(a, tuple):
        return activation(*a)
    if callable(a):
        return a
    raise TypeError("activation: expected None, a name or a callable; got %r" % (a,))


def _clipped(act, preact_clip):
    """act(clip(z, -preact_clip, preact_clip)) (ONNX `clip`), or act itself."""
    if preact_clip is None:
        return act
    return lambda z: act(np.clip(z, -preact_clip, preact_clip))


# ---------------------------------------------------------------------------------------------
# Cells
# ---------------------------------------------------------------------------------------------

def _check_shape(name, array, expected):
    if array.shape != tuple(expected):
        raise ValueError("%s: expected shape %s, got %s" % (name, tuple(expected), array.shape))


def _check_batch(x, h, hname):
    if x.ndim != 2 or h.ndim != 2 or x.shape[0] != h.shape[0]:
        raise ValueError("x and %s: expected [B,I] and [B,*] with the same B; got %s and %s"
                         % (hname, x.shape, h.shape))


def rnn_cell(x, h, kernel, bias, activation=None, preact_clip=None):
    """TF BasicRNNCell step: ``h' = act([x, h] @ kernel + bias)``.

    x: [B,I]; h: [B,U] previous state; kernel: [I+U,U]; bias: [U]. Returns h': [B,U].
    preact_clip (ONNX `clip`): clip the activation's input to [-preact_clip, preact_clip].
    """
    x, h, kernel, bias = map(np.asarray, (x, h, kernel, bias))
    _check_batch(x, h, "h")
    U = h.shape[1]
    _check_shape("kernel", kernel, (x.shape[1] + U, U))
    _check_shape("bias", bias, (U,))
    act = _clipped(get_activation(activation), preact_clip)
    return act(np.concatenate([x, h], axis=1) @ kernel + bias)


def lstm_cell(x, c, h, kernel, bias, forget_bias=1.0, activation=None,
              w_i_diag=None, w_f_diag=None, w_o_diag=None,
              cell_clip=None, proj_kernel=None, proj_clip=None, gate_activation=None,
              output_activation=None, preact_clip=None, input_forget=False):
    """TF LSTMCell step (BasicLSTMCell is the call with no options). Returns ``(c', m')``.

    x: [B,I]; c: [B,U] previous cell state; h: [B,P] previous output m (P = num_proj, or U);
    kernel: [I+P,4U] column blocks i,j,f,o; bias: [4U]; forget_bias: constant added to f;
    w_i_diag, w_f_diag, w_o_diag: [U] peepholes (all three or none);
    cell_clip: clip c' to [-cell_clip, cell_clip]; proj_kernel: [U,P] (no bias);
    proj_clip: clip the projected m' to [-proj_clip, proj_clip] (ignored without proj_kernel, as TF).
    Beyond TF (ONNX/Keras cells): gate_activation replaces sig (default sigmoid);
    output_activation replaces act on c' (default: activation); preact_clip clips the input of
    every gate and of act(j) (ONNX `clip`; not c' before output_activation); input_forget:
    the forget gate is 1 - (the input gate).
    Returns c': [B,U] and m': [B,P].

        z = [x, h] @ kernel + bias;  i, j, f, o = split(z, 4)
        c' = sig(f + fb [+ w_f*c]) * c + sig(i [+ w_i*c]) * act(j);  c' = clip(c', cell_clip)
        m' = sig(o [+ w_o*c']) * act(c');  m' = clip(m' @ proj_kernel, proj_clip)
    """
    x, c, h, kernel, bias = map(np.asarray, (x, c, h, kernel, bias))
    _check_batch(x, h, "h")
    _check_batch(x, c, "c")
    U, P = c.shape[1], h.shape[1]
    _check_shape("kernel", kernel, (x.shape[1] + P, 4 * U))
    _check_shape("bias", bias, (4 * U,))
    diags = (w_i_diag, w_f_diag, w_o_diag)
    peepholes = all(d is not None for d in diags)
    if not peepholes and any(d is not None for d in diags):
        raise ValueError("w_i_diag, w_f_diag, w_o_diag: expected all three or none")
    act = get_activation(activation)
    out_act = get_activation(output_activation, default=act)
    sig = _clipped(get_activation(gate_activation, default=sigmoid), preact_clip)
    act_j = _clipped(act, preact_clip)

    z = np.concatenate([x, h], axis=1) @ kernel + bias
    i, j, f, o = np.split(z, 4, axis=1)
    f = f + forget_bias
    if peepholes:
        w_i, w_f, w_o = map(np.asarray, diags)
        for name, w in zip(("w_i_diag", "w_f_diag", "w_o_diag"), (w_i, w_f, w_o)):
            _check_shape(name, w, (U,))
        i = i + w_i * c
        f = f + w_f * c
    gate_i = sig(i)
    gate_f = 1 - gate_i if input_forget else sig(f)
    c_new = gate_f * c + gate_i * act_j(j)
    if cell_clip is not None:
        c_new = np.clip(c_new, -cell_clip, cell_clip)
    if peepholes:
        o = o + w_o * c_new
    m = sig(o) * out_act(c_new)
    if proj_kernel is not None:
        proj_kernel = np.asarray(proj_kernel)
        _check_shape("proj_kernel", proj_kernel, (U, P))
        m = m @ proj_kernel
        if proj_clip is not None:
            m = np.clip(m, -proj_clip, proj_clip)
    elif P != U:
        raise ValueError("h: expected [B,%d] (no proj_kernel), got %s" % (U, h.shape))
    return c_new, m


def _gru_arrays(x, h, gates_kernel, gates_bias, **candidate):
    """What both GRUs check: x [B,I] and h [B,U] (same B), gates_kernel [I+U,2U], gates_bias
    [2U], and each candidate weight given as name=(array, shape(I, U)). Returns x, h, the gate
    weights and the candidate weights (in the order given), as arrays."""
    x, h = np.asarray(x), np.asarray(h)
    _check_batch(x, h, "h")
    I, U = x.shape[1], h.shape[1]
    wanted = {"gates_kernel": (gates_kernel, (I + U, 2 * U)), "gates_bias": (gates_bias, (2 * U,))}
    wanted.update({name: (a, shape(I, U)) for name, (a, shape) in candidate.items()})
    arrays = []
    for name, (a, shape) in wanted.items():
        a = np.asarray(a)
        _check_shape(name, a, shape)
        arrays.append(a)
    return (x, h, *arrays)


def _gru_gates(x, h, gates_kernel, gates_bias, gate_activation, preact_clip):
    """Both GRUs' r, u = split(sig([x, h] @ gates_kernel + gates_bias), 2)."""
    sig = _clipped(get_activation(gate_activation, default=sigmoid), preact_clip)
    return np.split(sig(np.concatenate([x, h], axis=1) @ gates_kernel + gates_bias), 2, axis=1)


def gru_cell(x, h, gates_kernel, gates_bias, candidate_kernel, candidate_bias, activation=None,
             gate_activation=None, preact_clip=None):
    """TF GRUCell step (reset BEFORE the recurrent matmul). Returns h'.

    x: [B,I]; h: [B,U]; gates_kernel: [I+U,2U] blocks r,u; gates_bias: [2U];
    candidate_kernel: [I+U,U]; candidate_bias: [U]. Returns h': [B,U].

        r, u = split(sig([x, h] @ gates_kernel + gates_bias), 2)
        c = act([x, r*h] @ candidate_kernel + candidate_bias);  h' = u*h + (1-u)*c
    gate_activation replaces sig (default sigmoid); preact_clip clips every activation's input.
    """
    x, h, gates_kernel, gates_bias, candidate_kernel, candidate_bias = _gru_arrays(
        x, h, gates_kernel, gates_bias,
        candidate_kernel=(candidate_kernel, lambda I, U: (I + U, U)),
        candidate_bias=(candidate_bias, lambda I, U: (U,)))
    act = _clipped(get_activation(activation), preact_clip)
    r, u = _gru_gates(x, h, gates_kernel, gates_bias, gate_activation, preact_clip)
    cand = act(np.concatenate([x, r * h], axis=1) @ candidate_kernel + candidate_bias)
    return u * h + (1 - u) * cand


def gru_cell_reset_after(x, h, gates_kernel, gates_bias, input_kernel, input_bias,
                         hidden_kernel, hidden_bias, activation=None, gate_activation=None,
                         preact_clip=None):
    """Reset-AFTER GRU step (TF CudnnCompatibleGRUCell, PyTorch, Keras reset_after=True,
    ONNX linear_before_reset=1). Returns h'.

    x: [B,I]; h: [B,U]; gates_kernel: [I+U,2U] blocks r,u; gates_bias: [2U];
    input_kernel: [I,U]; input_bias: [U]; hidden_kernel: [U,U]; hidden_bias: [U].
    Returns h': [B,U].

        r, u = split(sig([x, h] @ gates_kernel + gates_bias), 2)
        c = act(x @ input_kernel + input_bias + r * (h @ hidden_kernel + hidden_bias))
        h' = u*h + (1-u)*c
    gate_activation replaces sig (default sigmoid); preact_clip clips every activation's input.
    """
    x, h, gates_kernel, gates_bias, input_kernel, input_bias, hidden_kernel, hidden_bias = \
        _gru_arrays(x, h, gates_kernel, gates_bias,
                    input_kernel=(input_kernel, lambda I, U: (I, U)),
                    input_bias=(input_bias, lambda I, U: (U,)),
                    hidden_kernel=(hidden_kernel, lambda I, U: (U, U)),
                    hidden_bias=(hidden_bias, lambda I, U: (U,)))
    act = _clipped(get_activation(activation), preact_clip)
    r, u = _gru_gates(x, h, gates_kernel, gates_bias, gate_activation, preact_clip)
    cand = act(x @ input_kernel + input_bias + r * (h @ hidden_kernel + hidden_bias))
    return u * h + (1 - u) * cand


# ---------------------------------------------------------------------------------------------
# Sequence runners
# ---------------------------------------------------------------------------------------------

def _lengths(sequence_length, B, T):
    """sequence_length: None or [B] integers in [0, T] -> int64 array [B] (None -> all T)."""
    if sequence_length is None:
        return np.full(B, T, dtype=np.int64)
    lengths = np.asarray(sequence_length)
    if lengths.shape != (B,):
        raise ValueError("sequence_length: expected shape (%d,), got %s" % (B, lengths.shape))
    if lengths.dtype.kind not in "iu":
        if lengths.dtype.kind != "f" or not np.all(lengths == np.round(lengths)):
            raise ValueError("sequence_length: expected integers, got %r" % (lengths,))
    lengths = lengths.astype(np.int64)
    if np.any(lengths < 0) or np.any(lengths > T):
        raise ValueError("sequence_length: expected values in [0, %d], got %s" % (T, lengths))
    return lengths


def _run(step, xs, initial_state, lengths):
    """The time loop shared by dynamic_rnn and static_rnn (TF's _rnn_step semantics).

    xs: list of T arrays [B,I]; initial_state: nested [B,...] arrays; lengths: [B] ints.
    The cell runs on every row at every step; for t >= lengths[b] the output row b is replaced by
    zeros and the state row b keeps its previous value. Returns (list of T outputs, final state).
    """
    B = xs[0].shape[0]
    for leaf in map(np.asarray, flatten(initial_state)):
        if leaf.ndim < 1 or leaf.shape[0] != B:
            raise ValueError("initial_state: expected every array to be [B=%d, ...], got %s"
                             % (B, leaf.shape))
    state, outputs = initial_state, []
    for t, x_t in enumerate(xs):
        out, new_state = step(x_t, state)
        out = np.asarray(out)
        valid = t < lengths                                   # [B] bool

        def keep(new, old):
            return np.where(valid.reshape((B,) + (1,) * (new.ndim - 1)), new, old)

        outputs.append(keep(out, np.zeros_like(out)))
        state = pack_as(new_state, [keep(np.asarray(n), np.asarray(o)) for n, o in
                                    zip(flatten(new_state), flatten(state))])
    return outputs, state


def dynamic_rnn(step, inputs, initial_state, sequence_length=None, time_major=False):
    """TF dynamic_rnn over any step function. Returns ``(outputs, final_state)``.

    step: ``step(x_t, state) -> (output_t, new_state)``, x_t: [B,I], output_t: [B,O];
    inputs: [B,T,I] ([T,B,I] if time_major), T >= 1; initial_state: a [B,...] array or a nested
    tuple / namedtuple of them (the structure and namedtuple types are kept);
    sequence_length: None or [B] ints in [0, T]. Returns outputs: [B,T,O] ([T,B,O] if time_major)
    and the final state. For t >= sequence_length[b], output row b is zero and state row b is
    carried unchanged, so a length of 0 gives zero outputs and the initial state.
    """
    inputs = np.asarray(inputs)
    if inputs.ndim != 3:
        raise ValueError("inputs: expected rank 3 (%s), got shape %s"
                         % ("[T,B,I]" if time_major else "[B,T,I]", inputs.shape))
    xs = inputs if time_major else inputs.swapaxes(0, 1)        # [T,B,I]
    T, B = xs.shape[:2]
    if T == 0:
        raise ValueError("inputs: expected at least one time step (T >= 1), got shape %s"
                         % (inputs.shape,))
    outputs, state = _run(step, list(xs), initial_state, _lengths(sequence_length, B, T))
    outputs = np.stack(outputs, axis=0 if time_major else 1)
    return outputs, state


def reverse_sequence(inputs, sequence_length, time_major=False):
    """tf.reverse_sequence: reverse each row within its own valid prefix.

    inputs: [B,T,...] ([T,B,...] if time_major); sequence_length: None (reverse all T steps) or
    [B] ints in [0, T]. Row b gets steps ``len[b]-1, ..., 0`` then its tail ``len[b]..T-1``
    unchanged. Returns a new array of the same shape.
    """
    inputs = np.asarray(inputs)
    if inputs.ndim < 2:
        raise ValueError("inputs: expected rank >= 2, got shape %s" % (inputs.shape,))
    xs = inputs if time_major else inputs.swapaxes(0, 1)        # [T,B,...]
    T, B = xs.shape[:2]
    lengths = _lengths(sequence_length, B, T)
    out = xs.copy()
    for b in range(B):
        n = lengths[b]
        out[:n, b] = xs[:n, b][::-1]
    return out if time_major else out.swapaxes(0, 1).copy()


def bidirectional_dynamic_rnn(step_fw, step_bw, inputs, initial_state_fw, initial_state_bw,
                              sequence_length=None, time_major=False):
    """TF bidirectional_dynamic_rnn. Returns ``((out_fw, out_bw), (state_fw, state_bw))``.

    inputs: [B,T,I] ([T,B,I] if time_major); sequence_length: None or [B]. The forward pass is
    dynamic_rnn(step_fw). The backward pass runs dynamic_rnn(step_bw) on
    reverse_sequence(inputs, sequence_length) and reverses its outputs back, so out_bw[:, t]
    lines up with input t and state_bw is the state after consuming x[:, 0].
    Outputs are [B,T,O_fw] and [B,T,O_bw] (time-major if asked), not concatenated.
    """
    out_fw, state_fw = dynamic_rnn(step_fw, inputs, initial_state_fw, sequence_length, time_major)
    rev = reverse_sequence(inputs, sequence_length, time_major)
    out_rev, state_bw = dynamic_rnn(step_bw, rev, initial_state_bw, sequence_length, time_major)
    out_bw = reverse_sequence(out_rev, sequence_length, time_major)
    return (out_fw, out_bw), (state_fw, state_bw)


def static_rnn(step, inputs_list, initial_state, sequence_length=None):
    """TF static_rnn. Returns ``(outputs_list, final_state)``.

    inputs_list: non-empty list of T arrays [B,I]; initial_state and sequence_length as in
    dynamic_rnn. Returns a list of T outputs [B,O] (zero past each row's length) and the state.
    """
    xs = [np.asarray(x) for x in inputs_list]
    if not xs:
        raise ValueError("inputs: expected a non-empty list of [B,I] arrays, got an empty list")
    if any(x.ndim != 2 or x.shape != xs[0].shape for x in xs):
        raise ValueError("inputs: expected T arrays of the same shape [B,I], got shapes %s"
                         % [x.shape for x in xs])
    return _run(step, xs, initial_state, _lengths(sequence_length, xs[0].shape[0], len(xs)))


def multi_cell(steps):
    """TF MultiRNNCell over step functions: returns ``step(x, states) -> (output, new_states)``.

    steps: non-empty list of ``step(x, state) -> (output, new_state)``; states: a tuple with one
    state per step function. Each output feeds the next step function; the result is the last
    output and the tuple of new states.
    """
    steps = list(steps)
    if not steps:
        raise ValueError("steps: expected a non-empty list of step functions")

    def step(x, states):
        if not isinstance(states, (tuple, list)) or len(states) != len(steps):
            raise ValueError("states: expected a tuple of %d states, got %r"
                             % (len(steps), type(states)))
        new_states = []
        for f, s in zip(steps, states):
            x, s = f(x, s)
            new_states.append(s)
        return x, tuple(new_states)

    return step
