# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The bridge: validated NumPy arrays -> pointers -> one C call per cell step, GIL released.

Python (fastcells/cells/) validates arguments and produces the user-facing messages; this
module re-checks what C relies on (dtype, shape, last axis contiguous, alignment, writability,
native byte order) so that no call can reach C with memory it must not touch or bytes it would
misread. Shapes and strides are read from the array struct (PyArray_DIMS/STRIDES), never from a
`.shape` a subclass may override. A byte-swapped operand that C only reads is converted to a
native copy; one that C writes is rejected.
"""
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_SET_ITEM
from libc.stdint cimport int64_t
from libc.stdlib cimport calloc, free
cimport numpy as cnp
import numpy as np

from fastcells._capi cimport *

cnp.import_array()

# One extension module, its source by concern (every name is fastcells._core.<name>):
#   _registry.pxi    kernel registry, ISAs, CPU features, threads, C status -> exception
#   _operands.pxi    arrays -> pointers: the operand checks
#   this file        cells and sequences: PackedCell, PackedMatrix, run_sequences
#   _int8_gemm.pxi   Int8PackedMatrix (int8 weights, exact int32 products)
#   _probes.pxi      the benchmarks' machine-limit probes
#   _test_hooks.pxi  test-only tuning, counters and checked sizes
# The C API they call is declared once, in _capi.pxd.

_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)

include "_registry.pxi"
include "_operands.pxi"

# name -> (kernel id, default alpha, default beta); alpha/beta as ONNX defines them
ACTIVATIONS = {
    "tanh": (FC_ACT_TANH, 0.0, 0.0),
    "relu": (FC_ACT_RELU, 0.0, 0.0),
    "sigmoid": (FC_ACT_SIGMOID, 0.0, 0.0),
    "linear": (FC_ACT_LINEAR, 0.0, 0.0),
    "hard_sigmoid": (FC_ACT_HARD_SIGMOID, 0.2, 0.5),
    "leaky_relu": (FC_ACT_LEAKY_RELU, 0.01, 0.0),
    "thresholded_relu": (FC_ACT_THRESHOLDED_RELU, 1.0, 0.0),
    "scaled_tanh": (FC_ACT_SCALED_TANH, 1.0, 1.0),
    "affine": (FC_ACT_AFFINE, 1.0, 0.0),
    "elu": (FC_ACT_ELU, 1.0, 0.0),
    "softsign": (FC_ACT_SOFTSIGN, 0.0, 0.0),
}


cdef fc_act _act(object spec, str argname) except *:
    """A name, or (name, alpha, beta) with None for a default, -> the C descriptor."""
    name, alpha, beta = (spec, None, None) if isinstance(spec, str) else tuple(spec)
    if name not in ACTIVATIONS:
        raise ValueError(f"{argname}: expected one of {tuple(ACTIVATIONS)}, got {name!r}")
    cdef fc_act act
    kind, default_alpha, default_beta = ACTIVATIONS[name]
    act.kind = kind
    act.alpha = default_alpha if alpha is None else float(alpha)
    act.beta = default_beta if beta is None else float(beta)
    return act


_KINDS = {"rnn": FC_CELL_RNN, "lstm": FC_CELL_LSTM, "gru": FC_CELL_GRU, "gru_ra": FC_CELL_GRU_RA}
_GRU_RA_NAMES = ("gates/kernel", "gates/bias", "candidate/input_projection/kernel",
                 "candidate/input_projection/bias", "candidate/hidden_projection/kernel",
                 "candidate/hidden_projection/bias")


cdef extern from "Python.h":
    object PyType_GenericAlloc(type subtype, Py_ssize_t nitems)


cdef tuple _pair(type tuple_type, object first, object second):
    """tuple_type((first, second)) for a tuple subclass without __new__ logic of its own (a
    namedtuple such as LSTMStateTuple): allocated as tuple.__new__ does, without its call."""
    cdef tuple pair = <tuple>PyType_GenericAlloc(tuple_type, 2)
    Py_INCREF(first)
    PyTuple_SET_ITEM(pair, 0, first)
    Py_INCREF(second)
    PyTuple_SET_ITEM(pair, 1, second)
    return pair


cdef class PackedCell:
    """The packed copy of one cell's weights, for one instruction set (C memory).

    PackedCell(kind, dtype, input_size, num_units, weights, activation="tanh",
               forget_bias=1.0, cell_clip=None, proj_clip=None, isa=None,
               gate_activation="sigmoid", output_activation=None, preact_clip=None,
               input_forget=False, precision=None)
    precision: None (weights packed in dtype), "int8" or "bf16" (float32 only: the schemes of
    fastcells.reference_quant; int8: inputs and states must be finite, and an initial h of a
    cell that bounds h by 1 must lie in [-1, 1]: checked by the Python layer).
    Activations: a name of ACTIVATIONS or (name, alpha, beta), None = ONNX's default parameter.
    output_activation (lstm, on c'): None = activation. preact_clip: clip every activation's
    input except the lstm output's (ONNX `clip`). input_forget (lstm): f = 1 - i.
    isa: None (the default path), an ISA of ISA_NAMES, or a registered kernel's name
    (registered_kernels(), e.g. "f32-cells-6x64-ref"); `isa` then reads that name.
    kind: "rnn" | "lstm" | "gru" | "gru_ra"; weights: dict TF name -> array (copied, see fastcells.h):
      rnn  kernel [I+U,U], bias [U]
      lstm kernel [I+P,4U] (i,j,f,o), bias [4U], optional w_f_diag/w_i_diag/w_o_diag [U] and
           projection/kernel [U,P]
      gru  gates/kernel [I+U,2U] (r,u), gates/bias [2U], candidate/kernel [I+U,U], candidate/bias [U]
      gru_ra (reset after; TF's CudnnCompatibleGRUCell names) gates/kernel [I+U,2U], gates/bias
           [2U], candidate/input_projection/kernel [I,U] and /bias [U],
           candidate/hidden_projection/kernel [U,U] and /bias [U]
    """
    cdef fc_cell *cell
    cdef readonly str kind
    cdef readonly object dtype
    cdef readonly Py_ssize_t input_size, num_units, output_size
    cdef readonly str isa
    cdef readonly object precision
    cdef int typenum
    cdef bint lstm

    def __init__(self, str kind, dtype, Py_ssize_t input_size, Py_ssize_t num_units,
                 dict weights, activation="tanh", forget_bias=1.0, cell_clip=None,
                 proj_clip=None, isa=None, gate_activation="sigmoid", output_activation=None,
                 preact_clip=None, input_forget=False, precision=None):
        if kind not in _KINDS:
            raise ValueError(f"kind: expected one of {tuple(_KINDS)}, got {kind!r}")
        dtype = np.dtype(dtype)
        if dtype != _F32 and dtype != _F64:
            raise TypeError(f"dtype: expected float32 or float64, got {dtype}")
        cdef fc_precision precision_id = _precision_id(precision, dtype)
        if input_size < 0:
            raise ValueError(f"input_size: expected >= 0, got {input_size}")
        if num_units < 1:
            raise ValueError(f"num_units: expected >= 1, got {num_units}")
        cdef fc_act act = _act(activation, "activation")
        cdef fc_act gate_act = _act(gate_activation, "gate_activation")
        cdef fc_act out_act = act if output_activation is None else _act(output_activation,
                                                                            "output_activation")
        cdef fc_isa isa_id = _isa_id(isa, dtype, precision)
        U, I = num_units, input_size
        P = U
        peepholes = kind == "lstm" and "w_i_diag" in weights
        projection = kind == "lstm" and "projection/kernel" in weights
        if projection:
            proj_shape = np.shape(weights["projection/kernel"])
            if len(proj_shape) != 2:
                raise ValueError(f"weights['projection/kernel']: expected shape ({U}, num_proj), "
                                 f"got {proj_shape}")
            P = proj_shape[1]
        G = {"rnn": 1, "lstm": 4, "gru": 2, "gru_ra": 4}[kind]
        expected = {"kernel": (I + P, G * U), "bias": (G * U,)}
        if kind == "gru_ra":
            expected = dict(zip(_GRU_RA_NAMES, [(I + U, 2 * U), (2 * U,), (I, U), (U,), (U, U),
                                                (U,)]))
        if kind == "gru":
            expected = {"gates/kernel": (I + U, 2 * U), "gates/bias": (2 * U,),
                        "candidate/kernel": (I + U, U), "candidate/bias": (U,)}
        if peepholes:
            expected.update({"w_f_diag": (U,), "w_i_diag": (U,), "w_o_diag": (U,)})
        if projection:
            expected["projection/kernel"] = (U, P)
        if set(weights) != set(expected):
            raise ValueError(f"weights: expected the names {sorted(expected)}, "
                             f"got {sorted(weights)}")
        arrays = {}
        for name, shape in expected.items():
            a = np.ascontiguousarray(weights[name], dtype=dtype)
            if a.shape != shape:
                raise ValueError(f"weights[{name!r}]: expected shape {shape}, got {a.shape}")
            arrays[name] = a
        if kind == "gru_ra":
            # x part [I, 3U] = [Wr Wu Wi] with [br bu bi]; h part [U, 3U] = [Wr Wu Wh] with
            # [0 0 bh] (fastcells.h)
            gk, gb, ik, ib, hk, hb = (arrays[n] for n in _GRU_RA_NAMES)
            arrays = {"kernel": np.ascontiguousarray(np.concatenate([gk[:I], ik], axis=1)),
                      "bias": np.concatenate([gb, ib]),
                      "candidate/kernel": np.ascontiguousarray(np.concatenate([gk[I:], hk], axis=1)),
                      "candidate/bias": np.concatenate([np.zeros(2 * U, dtype), hb])}

        cdef fc_cell_desc desc
        desc.kind = _KINDS[kind]
        desc.dtype = FC_F64 if dtype == _F64 else FC_F32
        desc.input_size = I
        desc.num_units = U
        desc.rec_size = P
        desc.activation = act
        desc.gate_activation = gate_act
        desc.output_activation = out_act
        desc.has_preact_clip = preact_clip is not None
        desc.preact_clip = preact_clip if preact_clip is not None else 0.0
        desc.input_forget = bool(input_forget)
        desc.forget_bias = forget_bias
        desc.has_cell_clip = cell_clip is not None
        desc.cell_clip = cell_clip if cell_clip is not None else 0.0
        desc.has_proj_clip = proj_clip is not None
        desc.proj_clip = proj_clip if proj_clip is not None else 0.0
        desc.has_peepholes = peepholes
        desc.has_projection = projection
        desc.precision = precision_id

        cdef fc_cell_weights w
        main = "gates/" if kind == "gru" else ""
        w.kernel = cnp.PyArray_DATA(arrays[main + "kernel"])
        w.bias = cnp.PyArray_DATA(arrays[main + "bias"])
        gru = kind == "gru" or kind == "gru_ra"
        w.cand_kernel = cnp.PyArray_DATA(arrays["candidate/kernel"]) if gru else NULL
        w.cand_bias = cnp.PyArray_DATA(arrays["candidate/bias"]) if gru else NULL
        w.w_i_diag = cnp.PyArray_DATA(arrays["w_i_diag"]) if peepholes else NULL
        w.w_f_diag = cnp.PyArray_DATA(arrays["w_f_diag"]) if peepholes else NULL
        w.w_o_diag = cnp.PyArray_DATA(arrays["w_o_diag"]) if peepholes else NULL
        w.proj_kernel = cnp.PyArray_DATA(arrays["projection/kernel"]) if projection else NULL

        cdef fc_status st
        cdef fc_cell *created = NULL
        with nogil:
            st = fc_cell_create(&desc, &w, isa_id, &created)
        _check(st, "fc_cell_create (packing the weights)")
        if self.cell != NULL:
            fc_cell_destroy(self.cell)
        self.cell = created
        self.kind, self.dtype, self.precision = kind, dtype, precision
        self.input_size, self.num_units, self.output_size = I, U, P
        self.isa = fc_isa_name(isa_id).decode()
        self.typenum = cnp.NPY_FLOAT64 if dtype == _F64 else cnp.NPY_FLOAT32
        self.lstm = kind == "lstm"

    def __dealloc__(self):
        if self.cell != NULL:
            fc_cell_destroy(self.cell)
            self.cell = NULL

    def step(self, x, state_in, state_out):
        """One time step: x [B,I]; state_in/state_out (h,) or, for lstm, (c, h); c [B,U],
        h [B,P]. state_out arrays may be state_in's (in place). Returns None."""
        if len(state_out) != (2 if self.lstm else 1):
            raise ValueError(f"state: expected {2 if self.lstm else 1} arrays out, "
                             f"got {len(state_out)}")
        if self.lstm:
            self._step(x, state_in, state_out[0], state_out[1])
        else:
            self._step(x, state_in, None, state_out[0])

    def call(self, x, state_in):
        """As step, into new C-contiguous arrays, which it returns: (c', h') or (h',)."""
        cdef Py_ssize_t n_state = 2 if self.lstm else 1
        if len(state_in) != n_state:
            raise ValueError(f"state: expected {n_state} arrays, got {len(state_in)}")
        h = self._new_rows(x, self.output_size)
        if not self.lstm:
            self._step_arrays(x, None, state_in[0], None, h)
            return (h,)
        c = self._new_rows(x, self.num_units)
        self._step_arrays(x, state_in[0], state_in[1], c, h)
        return (c, h)

    def tf_call(self, x, state, type state_type=None):
        """TF's cell(x, state) on the common forms, into new arrays. rnn/gru: state h [B,U],
        returns (h', h'). lstm: state exactly of type state_type (LSTMStateTuple(c, h)), returns
        (h', state_type(c', h')). Any other form: TypeError (the cell's checked path serves it)."""
        if not self.lstm:
            h = self._new_rows(x, self.output_size)
            self._step_arrays(x, None, state, None, h)
            return (h, h)
        if state_type is None or type(state) is not state_type or len(<tuple>state) != 2:
            raise TypeError(f"state: expected a {state_type}, got {type(state).__name__}")
        h = self._new_rows(x, self.output_size)
        c = self._new_rows(x, self.num_units)
        self._step_arrays(x, (<tuple>state)[0], (<tuple>state)[1], c, h)
        return (h, _pair(state_type, c, h))

    def tf_step_(self, x, state, type state_type=None):
        """TF's cell.step_(x, state) on the common forms, in place: rnn/gru: state h [B,U] is
        overwritten and returned; lstm: state exactly of type state_type (LSTMStateTuple(c, h)),
        c and h overwritten, h returned. Any other form: TypeError."""
        if not self.lstm:
            self._step_arrays(x, None, state, None, state)
            return state
        if state_type is None or type(state) is not state_type or len(<tuple>state) != 2:
            raise TypeError(f"state: expected a {state_type}, got {type(state).__name__}")
        c, h = (<tuple>state)[0], (<tuple>state)[1]
        self._step_arrays(x, c, h, c, h)
        return h

    cdef object _new_rows(self, x, Py_ssize_t cols):
        """A new C-contiguous [B, cols] array of the cell's dtype, B = x's rows."""
        if not cnp.PyArray_Check(x) or cnp.PyArray_NDIM(<cnp.ndarray>x) != 2:
            _matrix(x, -1, self.input_size, self.typenum, False, "x", NULL, NULL)
        cdef cnp.npy_intp dims[2]
        dims[0] = cnp.PyArray_DIM(<cnp.ndarray>x, 0)
        dims[1] = cols
        return cnp.PyArray_EMPTY(2, dims, self.typenum, 0)

    cdef int _step(self, x, state_in, c_out, h_out) except -1:
        cdef Py_ssize_t n_state = 2 if self.lstm else 1
        if len(state_in) != n_state:
            raise ValueError(f"state: expected {n_state} arrays, got {len(state_in)}")
        if self.lstm:
            return self._step_arrays(x, state_in[0], state_in[1], c_out, h_out)
        return self._step_arrays(x, None, state_in[0], None, h_out)

    cdef int _step_arrays(self, x, c_in, h_in, c_out, h_out) except -1:
        """One step, every operand checked (c_in, c_out: lstm only, else None)."""
        if self.cell == NULL:
            raise ValueError("PackedCell: not initialised")
        cdef char *px = NULL
        cdef char *pc_in = NULL
        cdef char *ph_in = NULL
        cdef char *pc_out = NULL
        cdef char *ph_out = NULL
        cdef size_t ldx = 0, ldc_in = 0, ldh_in = 0, ldc_out = 0, ldh_out = 0
        # the arrays C reads or writes (native-order copies of swapped inputs), kept alive
        x = _matrix(x, -1, self.input_size, self.typenum, False, "x", &px, &ldx)
        cdef Py_ssize_t B = cnp.PyArray_DIM(<cnp.ndarray>x, 0)
        h_in = _matrix(h_in, B, self.output_size, self.typenum, False, "h", &ph_in, &ldh_in)
        h_out = _matrix(h_out, B, self.output_size, self.typenum, True, "h_out", &ph_out,
                        &ldh_out)
        if self.lstm:
            c_in = _matrix(c_in, B, self.num_units, self.typenum, False, "c", &pc_in, &ldc_in)
            c_out = _matrix(c_out, B, self.num_units, self.typenum, True, "c_out", &pc_out,
                            &ldc_out)
        cdef fc_status st
        with nogil:
            st = fc_cell_step(self.cell, <size_t>B, px, ldx, pc_in, ldc_in, ph_in, ldh_in,
                              pc_out, ldc_out, ph_out, ldh_out)
        _check(st, "fc_cell_step")
        return 0


cdef class PackedMatrix:
    """B [K,N] (and an optional bias [N]) packed once for repeated products A @ B (+ bias).

    PackedMatrix(b, bias=None, isa=None); dtype is b's (float32 or float64); isa as PackedCell's.
    """
    cdef fc_matrix *mat
    cdef readonly Py_ssize_t k, n
    cdef readonly object dtype
    cdef readonly str isa
    cdef int typenum

    def __init__(self, b, bias=None, isa=None):
        b = np.asarray(b)
        if b.dtype.kind == "f" and not b.dtype.isnative:      # values, not bytes: b is copied
            b = b.astype(b.dtype.newbyteorder("="))
        if b.dtype != _F32 and b.dtype != _F64:
            raise TypeError(f"b: expected float32 or float64, got {b.dtype}")
        if b.ndim != 2 or b.shape[1] < 1:
            raise ValueError(f"b: expected shape (K, N) with N >= 1, got {b.shape}")
        b = np.ascontiguousarray(b)
        cdef fc_isa isa_id = _isa_id(isa, b.dtype)
        cdef const void *pbias = NULL
        if bias is not None:
            bias = np.ascontiguousarray(bias, dtype=b.dtype)
            if bias.shape != (b.shape[1],):
                raise ValueError(f"bias: expected shape ({b.shape[1]},), got {bias.shape}")
            pbias = cnp.PyArray_DATA(bias)
        cdef fc_dtype dt = FC_F64 if b.dtype == _F64 else FC_F32
        cdef fc_matrix *created = NULL
        cdef fc_status st = fc_matrix_create(dt, b.shape[0], b.shape[1], cnp.PyArray_DATA(b), pbias,
                                             isa_id, &created)
        _check(st, "fc_matrix_create (packing b)")
        if self.mat != NULL:
            fc_matrix_destroy(self.mat)
        self.mat = created
        self.k, self.n = b.shape
        self.dtype = b.dtype
        self.isa = fc_isa_name(isa_id).decode()
        self.typenum = cnp.NPY_FLOAT64 if b.dtype == _F64 else cnp.NPY_FLOAT32

    def __dealloc__(self):
        if self.mat != NULL:
            fc_matrix_destroy(self.mat)
            self.mat = NULL

    def matmul(self, a, out=None):
        """a [M,K] of b's dtype -> a @ b (+ bias) as [M,N], into `out` if given."""
        if self.mat == NULL:
            raise ValueError("PackedMatrix: not initialised")
        cdef char *pa = NULL
        cdef char *pc = NULL
        cdef size_t lda = 0, ldc = 0
        a_native = _matrix(a, -1, self.k, self.typenum, False, "a", &pa, &lda)
        cdef Py_ssize_t m = cnp.PyArray_DIM(<cnp.ndarray>a_native, 0)
        if out is None:
            out = np.empty((m, self.n), self.dtype)
        _matrix(out, m, self.n, self.typenum, True, "out", &pc, &ldc)
        cdef fc_status st
        with nogil:
            st = fc_matmul(self.mat, <size_t>m, pa, lda, pc, ldc)
        _check(st, "fc_matmul")
        return out


cdef extern from "Python.h":
    ctypedef struct PyObject
    bint PyDict_CheckExact(object o)
    PyObject *PyDict_GetItem(object d, object key)      # borrowed; NULL if missing


cdef object _layer_get(object spec, str key):
    """spec.get(key): a plain dict is read directly (no method call), anything else by .get."""
    cdef PyObject *item
    if PyDict_CheckExact(spec):
        item = PyDict_GetItem(spec, key)
        return <object>item if item != NULL else None
    return spec.get(key)


cdef object _layer_item(object spec, str key):
    """spec[key] (KeyError if missing), a plain dict read directly."""
    cdef PyObject *item
    if PyDict_CheckExact(spec):
        item = PyDict_GetItem(spec, key)
        if item == NULL:
            raise KeyError(key)
        return <object>item
    return spec[key]


cdef str _where(Py_ssize_t s, Py_ssize_t k):
    """The name of layer k of stack s in messages."""
    return f"stacks[{s}][{k}]"


cdef object _layer_sequence(object a, Py_ssize_t T, Py_ssize_t B, Py_ssize_t cols,
                            bint time_major, int typenum, bint writable, Py_ssize_t s,
                            Py_ssize_t k, str key, char **ptr, size_t *st, size_t *sb):
    """Operand `key` of layer k of stack s, checked as _seq_array does but through _seq_ready
    first (its name for messages built only when needed). Returns the array C uses, which the
    caller keeps alive across the call."""
    if _seq_ready(a, T, B, cols, time_major, typenum, writable, ptr, st, sb):
        return a
    return _seq_array(a, T, B, cols, time_major, typenum, writable, _where(s, k) + "." + key,
                      ptr, st, sb)


cdef object _layer_matrix(object a, Py_ssize_t rows, Py_ssize_t cols, int typenum,
                          bint writable, Py_ssize_t s, Py_ssize_t k, str key, char **ptr,
                          size_t *ld):
    """Operand `key` of layer k of stack s, checked as _matrix does but through _matrix_ready
    first. Returns the array C uses, which the caller keeps alive across the call."""
    if _matrix_ready(a, rows, cols, typenum, writable, ptr, ld):
        return a
    return _matrix(a, rows, cols, typenum, writable, _where(s, k) + "." + key, ptr, ld)


def run_sequences(Py_ssize_t T, Py_ssize_t B, list stacks, bint time_major=False):
    """Runs 1 or 2 independent stacks of layers over whole sequences in one native call.

    stacks: [[layer, ...]] or [[fw layers], [bw layers]]; a layer is a dict with keys
      cell (PackedCell), x ([B,T,I] or [T,B,I]), out ([B,T,P] or [T,B,P], written),
      lengths (int64 [B] in 0..T, or None), h0, c0 ([B,P], [B,U] or None: zeros),
      h_final, c_final ([B,P], [B,U] or None, written), reverse (bool).
    Layer k of a stack reads what layer k-1 wrote (pass its `out` as `x`). Outputs must not
    overlap inputs. Two stacks run on two cores when threads allow.

    Each operand is first checked in place (_seq_ready, _matrix_ready, _lengths_ready: no
    Python objects built); one that is not ready as it is goes through _seq_array / _matrix /
    the lengths conversion, which convert it or raise the message naming it.
    """
    if not 1 <= len(stacks) <= 2:
        raise ValueError(f"stacks: expected 1 or 2 stacks, got {len(stacks)}")
    if T < 0 or B < 0:
        raise ValueError(f"T, B: expected sizes >= 0, got T={T}, B={B}")
    cdef size_t nlayers[2]
    cdef fc_seq_layer *layers[2]
    layers[0] = layers[1] = NULL
    cdef Py_ssize_t s, k, n, j
    cdef fc_seq_layer *layer
    cdef PackedCell cell
    cdef char *p = NULL
    cdef size_t ld = 0
    cdef cnp.ndarray lengths
    cdef fc_status st
    cdef size_t nstacks
    cdef Py_ssize_t rows_cols
    cdef bint written
    keep = []                          # arrays referenced by pointers until the call returns
    try:
        for s in range(len(stacks)):
            n = len(stacks[s])
            nlayers[s] = n
            layers[s] = <fc_seq_layer *>calloc(n if n else 1, sizeof(fc_seq_layer))
            if layers[s] == NULL:
                raise MemoryError()
            for k in range(n):
                spec = stacks[s][k]
                layer = &layers[s][k]
                cell_obj = _layer_get(spec, "cell")
                if not isinstance(cell_obj, PackedCell):
                    raise TypeError(f"{_where(s, k)}.cell: expected a PackedCell, got "
                                    f"{type(cell_obj).__name__}")
                cell = <PackedCell>cell_obj
                if cell.cell == NULL:
                    raise ValueError(f"{_where(s, k)}.cell: the PackedCell is not initialised")
                layer.cell = cell.cell
                x = _layer_item(spec, "x")
                keep.append(_layer_sequence(x, T, B, cell.input_size, time_major, cell.typenum,
                                            False, s, k, "x", <char **>&layer.io.x,
                                            &layer.io.x_stride_t, &layer.io.x_stride_b))
                out = _layer_item(spec, "out")
                keep.append(_layer_sequence(out, T, B, cell.output_size, time_major,
                                            cell.typenum, True, s, k, "out",
                                            <char **>&layer.io.out, &layer.io.out_stride_t,
                                            &layer.io.out_stride_b))
                if _may_overlap(<cnp.ndarray>x, <cnp.ndarray>out):
                    raise ValueError(f"{_where(s, k)}: out must not overlap x")
                lengths_obj = _layer_get(spec, "lengths")
                if lengths_obj is not None:
                    if not _lengths_ready(lengths_obj, T, B):
                        lengths_obj = np.ascontiguousarray(lengths_obj, dtype=np.int64)
                        if lengths_obj.shape != (B,):
                            raise ValueError(f"{_where(s, k)}.lengths: expected shape ({B},), "
                                             f"got {lengths_obj.shape}")
                        if B and (lengths_obj.min() < 0 or lengths_obj.max() > T):
                            raise ValueError(f"{_where(s, k)}.lengths: expected values in "
                                             f"[0, {T}], got min {lengths_obj.min()}, max "
                                             f"{lengths_obj.max()}")
                    keep.append(lengths_obj)
                    lengths = lengths_obj
                    layer.io.lengths = <const int64_t *>cnp.PyArray_DATA(lengths)
                for j in range(4):             # h0, c0, h_final, c_final
                    key = ("h0", "c0", "h_final", "c_final")[j]
                    a = _layer_get(spec, key)
                    if a is None:
                        continue
                    if j % 2 and not cell.lstm:
                        raise ValueError(f"{_where(s, k)}.{key}: only an LSTM has a cell state")
                    rows_cols = cell.num_units if j % 2 else cell.output_size
                    written = j >= 2
                    keep.append(_layer_matrix(a, B, rows_cols, cell.typenum, written, s, k, key,
                                              &p, &ld))
                    if j == 0:
                        layer.io.h0, layer.io.ldh0 = p, ld
                    elif j == 1:
                        layer.io.c0, layer.io.ldc0 = p, ld
                    elif j == 2:
                        layer.io.h_final, layer.io.ldhf = p, ld
                    else:
                        layer.io.c_final, layer.io.ldcf = p, ld
                layer.io.reverse = bool(_layer_get(spec, "reverse"))
        st = FC_OK
        nstacks = len(stacks)
        with nogil:
            st = fc_run_sequences(<size_t>T, <size_t>B, nstacks, layers, nlayers)
        _check(st, "fc_run_sequences")
    finally:
        free(layers[0])
        free(layers[1])


include "_int8_gemm.pxi"
include "_probes.pxi"
include "_test_hooks.pxi"
