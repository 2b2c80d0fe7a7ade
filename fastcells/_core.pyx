# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The bridge: validated NumPy arrays -> pointers -> one C call per cell step, GIL released.

Python (fastcells/cells.py) validates arguments and produces the user-facing messages; this
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


# ---- declarations of the hardening additions (checked sizes, test-only tuning), kept apart ----
cdef extern from "fastcells.h" nogil:
    enum: FC_ERR_SIZE           # a size product overflows size_t

cdef extern from "tuning.h" nogil:
    ctypedef struct fc_tuning:
        size_t chunk_steps, retry_steps
        long join_wait_ns
        int steal_spins
        size_t min_flops
        int stall_worker, slow_worker
    ctypedef struct fc_counters:
        size_t short_teams, late_joins, take_overs, chunk_steals, seq_chunks
    void fc_tuning_set(const fc_tuning *tuning)
    void fc_tuning_get(fc_tuning *tuning)
    void fc_counters_get(fc_counters *counters, int reset)

cdef extern from "checked.h" nogil:
    fc_status fc_packed_bytes(size_t k, size_t gates, size_t units, size_t elem, size_t pw,
                              size_t *bytes)


ISA_NAMES = tuple(fc_isa_name(<fc_isa>i).decode() for i in range(FC_ISA_COUNT))
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
_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)


def _init():
    """Detects the CPU and applies FASTCELLS_ISA; raises if the variable names an unusable path."""
    cdef fc_status st = fc_init()
    if st == FC_OK:
        return
    import os
    want = os.environ.get("FASTCELLS_ISA")
    usable = ", ".join(available_isas())
    if st == FC_ERR_ISA:
        raise RuntimeError(f"FASTCELLS_ISA={want!r}: this CPU or build cannot run that "
                           f"instruction set; available here: {usable}")
    raise RuntimeError(f"FASTCELLS_ISA={want!r} names no instruction set; expected 'auto' or "
                       f"one of {', '.join(ISA_NAMES)} (available here: {usable})")


cdef int _check(fc_status st, str call) except -1:
    """Turns a C status into the Python exception (the arguments were validated before)."""
    if st == FC_OK:
        return 0
    if st == FC_ERR_NOMEM:
        raise MemoryError(f"fastcells: {call}: out of memory")
    if st == FC_ERR_ISA:
        raise ValueError(f"fastcells: {call}: instruction set not available")
    if st == FC_ERR_RANGE:
        raise ValueError(f"fastcells: {call}: h: an int8 cell whose h has the fixed scale 1/127 "
                         f"(it bounds h by 1) needs an initial h in [-1, 1], got values outside")
    if st == FC_ERR_SIZE:
        raise ValueError(f"fastcells: {call}: the sizes are too large: a scratch, workspace or "
                         f"packed size (elements x item size) overflows size_t")
    raise ValueError(f"fastcells: {call}: invalid arguments (status {st})")


PRECISIONS = (None, "int8", "bf16")   # PackedCell(precision=), in fc_precision's order


def registered_kernels():
    """Every kernel of the registry (csrc/kernels/kernels.def), in its order, as dicts: name,
    family, isa, dtype, precision (of the packed weights: None = dtype's, "int8", "bf16"), mr, nr
    (the register tile), features (required CPU features), cflags, dispatch (what
    FASTCELLS_ISA=<isa> runs for its family; else a test kernel, reachable by name through
    isa=), upgrade (a dispatch kernel that replaces its family's plain one where the CPU has its
    features), compiled (in this binary), available (compiled and runnable here)."""
    cdef fc_kernel_info info
    kernels = []
    for i in range(fc_kernel_count()):
        fc_kernel_info_at(i, &info)
        kernels.append({
            "name": info.name.decode(), "family": info.family.decode(),
            "isa": ISA_NAMES[<int>info.isa],
            "dtype": "float64" if info.dtype == FC_F64 else "float32",
            "precision": PRECISIONS[<int>info.precision],
            "mr": int(info.mr), "nr": int(info.nr), "features": info.features.decode().split(),
            "cflags": info.cflags.decode(), "dispatch": bool(info.dispatch),
            "upgrade": info.dispatch == 2,
            "compiled": bool(info.compiled), "available": bool(info.available)})
    return kernels


KERNEL_NAMES = tuple(k["name"] for k in registered_kernels())


cdef fc_isa _isa_id(object name, object dtype, object precision=None) except *:
    """isa= of PackedCell, PackedMatrix, kernel_tile: None (the default path), an ISA name, or
    a registered kernel's name (its dtype and precision must be these) -> the C selector."""
    if name is None:
        return fc_default_isa()
    cdef fc_isa isa
    if name in ISA_NAMES:
        isa = <fc_isa><int>ISA_NAMES.index(name)
        if not fc_isa_available(isa):
            raise ValueError(f"isa: {name!r} is not available on this CPU/build; available: "
                             f"{available_isas()}")
        return isa
    if name not in KERNEL_NAMES:
        raise ValueError(f"isa: expected one of {ISA_NAMES} or a registered kernel name "
                         f"{KERNEL_NAMES}, got {name!r}")
    index = KERNEL_NAMES.index(name)
    isa = <fc_isa>(<int>FC_ISA_KERNEL_BASE + <int>index)
    kernel = registered_kernels()[index]
    if not kernel["available"]:
        raise ValueError(f"isa: kernel {name!r} is not available on this CPU/build (needs "
                         f"{kernel['features']}, compiled: {kernel['compiled']})")
    if kernel["dtype"] != np.dtype(dtype).name:
        raise ValueError(f"isa: kernel {name!r} computes {kernel['dtype']}, got dtype "
                         f"{np.dtype(dtype).name}")
    if kernel["precision"] != precision:
        raise ValueError(f"isa: kernel {name!r} reads weights of precision "
                         f"{kernel['precision']!r}, got precision {precision!r}")
    return isa


def set_num_threads(n):
    """Threads one kernel call may use (1..64). Results are identical for any count."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"n: expected an int, got {type(n).__name__}")
    if fc_set_num_threads(<int>n if 0 < n <= 64 else -1) != FC_OK:
        raise ValueError(f"n: expected 1 <= n <= 64, got {n}")


def get_num_threads():
    """Threads one kernel call may use (default: the cores this process may run on)."""
    return fc_get_num_threads()


def compiled_isas():
    """Instruction sets built into this binary."""
    return [n for i, n in enumerate(ISA_NAMES) if fc_isa_compiled(<fc_isa>i)]


def available_isas():
    """Instruction sets built in and runnable on this CPU, narrowest first."""
    return [n for i, n in enumerate(ISA_NAMES) if fc_isa_available(<fc_isa>i)]


def best_isa():
    return fc_isa_name(fc_best_isa()).decode()


def default_isa():
    """What new cells use: FASTCELLS_ISA if set, else the best available."""
    return fc_isa_name(fc_default_isa()).decode()


def cpu_features():
    """name -> present, for every feature of csrc/kernels/features.def, in its order."""
    return {fc_feature_name(<fc_feature>f).decode(): bool(fc_cpu_has(<fc_feature>f))
            for f in range(FC_FEATURE_COUNT)}


def kernel_tile(isa, dtype):
    """(batch rows, columns) of the register tile of the kernels for isa (an ISA or a
    registered kernel name) and dtype."""
    cdef fc_isa i = _isa_id(isa, dtype)
    cdef fc_dtype t = FC_F64 if np.dtype(dtype) == _F64 else FC_F32
    return int(fc_tile_rows(i, t)), int(fc_tile_cols(i, t))


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


cdef tuple _dims(cnp.ndarray arr):
    """The array's shape as its struct holds it (what C will read), whatever `.shape` says."""
    return tuple(cnp.PyArray_DIMS(arr)[i] for i in range(cnp.PyArray_NDIM(arr)))


cdef object _native(cnp.ndarray arr, bint writable, str name):
    """`arr` in the machine's byte order: itself, or for an operand C only reads a native copy
    (aligned, C-contiguous). An operand C writes cannot be converted: ValueError."""
    if cnp.PyArray_ISNOTSWAPPED(arr):
        return arr
    if writable:
        raise ValueError(f"{name}: expected an array in native byte order (dtype "
                         f"{arr.dtype.newbyteorder('=')}), got dtype {arr.dtype!r}: it is "
                         f"written in place, so it cannot be converted")
    return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("="))


cdef int _check_access(cnp.ndarray arr, bint writable, str name) except -1:
    """C reads `arr` through a typed pointer (so it must be aligned to its dtype), and writes
    it when `writable` (so it must be writeable)."""
    if not cnp.PyArray_ISALIGNED(arr):
        raise ValueError(f"{name}: the array is not aligned to its dtype")
    if writable and not cnp.PyArray_ISWRITEABLE(arr):
        raise ValueError(f"{name}: the array is read-only")
    return 0


cdef object _matrix(object a, Py_ssize_t rows, Py_ssize_t cols, int typenum, bint writable,
                    str name, char **ptr, size_t *ld):
    """Checks that `a` is a [rows, cols] array C may read (or write): right dtype, last axis
    contiguous, non-negative row stride, aligned, native byte order. rows < 0 means any number
    of rows. Returns the array C uses, which the caller keeps alive across the call: `a`, or a
    native-order copy of a byte-swapped `a` that C only reads."""
    if not cnp.PyArray_Check(a):
        raise TypeError(f"{name}: expected a numpy.ndarray, got {type(a).__name__}")
    cdef cnp.ndarray arr = <cnp.ndarray>a
    if cnp.PyArray_NDIM(arr) != 2:
        raise ValueError(f"{name}: expected a 2-D array, got shape {_dims(arr)}")
    if cnp.PyArray_TYPE(arr) != typenum:
        raise TypeError(f"{name}: expected dtype {np.dtype(cnp.PyArray_DescrFromType(typenum))}, "
                        f"got {arr.dtype}")
    cdef Py_ssize_t r = cnp.PyArray_DIM(arr, 0), c = cnp.PyArray_DIM(arr, 1)
    if (rows >= 0 and r != rows) or c != cols:
        raise ValueError(f"{name}: expected shape ({rows if rows >= 0 else 'B'}, {cols}), "
                         f"got {_dims(arr)}")
    arr = _native(arr, writable, name)
    cdef Py_ssize_t item = cnp.PyArray_ITEMSIZE(arr)
    cdef Py_ssize_t s0 = cnp.PyArray_STRIDE(arr, 0), s1 = cnp.PyArray_STRIDE(arr, 1)
    if r > 0 and c > 1 and s1 != item:
        raise ValueError(f"{name}: the last axis must be contiguous (stride {item}), "
                         f"got strides {(s0, s1)}")
    if r > 1 and (s0 < 0 or s0 % item != 0):
        raise ValueError(f"{name}: the row stride must be a non-negative multiple of {item}, "
                         f"got strides {(s0, s1)}")
    _check_access(arr, writable, name)
    if ptr != NULL:
        ptr[0] = <char *>cnp.PyArray_DATA(arr)
        ld[0] = <size_t>(s0 // item) if r > 1 else <size_t>c
    return arr


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
        if precision not in PRECISIONS:
            raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
        if precision is not None and dtype != _F32:
            raise TypeError(f"dtype: precision {precision!r} computes in float32, got {dtype}")
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
        desc.precision = <fc_precision><int>PRECISIONS.index(precision)

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


cdef object _seq_array(object a, Py_ssize_t T, Py_ssize_t B, Py_ssize_t cols,
                       bint time_major, int typenum, bint writable, str name, char **ptr,
                       size_t *st, size_t *sb):
    """Checks a [B,T,cols] (or [T,B,cols] when time_major) array whose last axis is contiguous,
    its shape and strides as its struct holds them; sets its data pointer and its time and batch
    strides in elements. Returns the array C uses, kept alive by the caller: `a`, or a native-
    order copy of a byte-swapped `a` that C only reads."""
    if not cnp.PyArray_Check(a):
        raise TypeError(f"{name}: expected a numpy.ndarray, got {type(a).__name__}")
    cdef cnp.ndarray arr = <cnp.ndarray>a
    expected = (T, B, cols) if time_major else (B, T, cols)
    if cnp.PyArray_NDIM(arr) != 3 or _dims(arr) != expected:
        raise ValueError(f"{name}: expected shape {expected}, got {_dims(arr)}")
    if cnp.PyArray_TYPE(arr) != typenum:
        raise TypeError(f"{name}: expected dtype {np.dtype(cnp.PyArray_DescrFromType(typenum))}, "
                        f"got {arr.dtype}")
    arr = _native(arr, writable, name)
    cdef Py_ssize_t item = cnp.PyArray_ITEMSIZE(arr)
    cdef Py_ssize_t s_t = cnp.PyArray_STRIDE(arr, 0 if time_major else 1)
    cdef Py_ssize_t s_b = cnp.PyArray_STRIDE(arr, 1 if time_major else 0)
    cdef bint nonempty = cnp.PyArray_SIZE(arr) > 0
    strides = tuple(cnp.PyArray_STRIDE(arr, i) for i in range(3))
    if nonempty and cols > 1 and cnp.PyArray_STRIDE(arr, 2) != item:
        raise ValueError(f"{name}: the last axis must be contiguous, got strides {strides}")
    if nonempty and (s_t < 0 or s_b < 0 or s_t % item or s_b % item):
        raise ValueError(f"{name}: strides must be non-negative multiples of {item}, "
                         f"got {strides}")
    _check_access(arr, writable, name)
    ptr[0] = <char *>cnp.PyArray_DATA(arr)
    st[0] = <size_t>(s_t // item)
    sb[0] = <size_t>(s_b // item)
    return arr


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


cdef inline bint _usable_as_is(cnp.ndarray arr, bint writable):
    """True if C can take `arr`'s data pointer as it is: native byte order, aligned to its dtype,
    and writeable if C writes it (what _native and _check_access would otherwise convert or
    refuse)."""
    return (cnp.PyArray_ISNOTSWAPPED(arr) and cnp.PyArray_ISALIGNED(arr)
            and (not writable or cnp.PyArray_ISWRITEABLE(arr)))


cdef bint _seq_ready(object a, Py_ssize_t T, Py_ssize_t B, Py_ssize_t cols, bint time_major,
                     int typenum, bint writable, char **ptr, size_t *st, size_t *sb):
    """The common case of _seq_array without building anything: True (data pointer and time and
    batch strides in elements set) if `a` passes _seq_array's checks as it is, in native byte
    order; False leaves `a` to _seq_array (which converts it or raises the message)."""
    if not cnp.PyArray_Check(a):
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>a
    if cnp.PyArray_NDIM(arr) != 3 or cnp.PyArray_TYPE(arr) != typenum:
        return False
    cdef cnp.npy_intp *dims = cnp.PyArray_DIMS(arr)
    if (dims[0] != (T if time_major else B) or dims[1] != (B if time_major else T)
            or dims[2] != cols):
        return False
    if not _usable_as_is(arr, writable):
        return False
    cdef Py_ssize_t item = cnp.PyArray_ITEMSIZE(arr)
    cdef Py_ssize_t s_t = cnp.PyArray_STRIDE(arr, 0 if time_major else 1)
    cdef Py_ssize_t s_b = cnp.PyArray_STRIDE(arr, 1 if time_major else 0)
    if cnp.PyArray_SIZE(arr) > 0:
        if cols > 1 and cnp.PyArray_STRIDE(arr, 2) != item:
            return False
        if s_t < 0 or s_b < 0 or s_t % item or s_b % item:
            return False
    ptr[0] = <char *>cnp.PyArray_DATA(arr)
    st[0] = <size_t>(s_t // item)
    sb[0] = <size_t>(s_b // item)
    return True


cdef bint _matrix_ready(object a, Py_ssize_t rows, Py_ssize_t cols, int typenum,
                        bint writable, char **ptr, size_t *ld):
    """The common case of _matrix (rows >= 0) without building anything: True (pointer and
    leading dimension set) if `a` passes _matrix's checks as it is, in native byte order; False
    leaves `a` to _matrix (which converts it or raises the message)."""
    if not cnp.PyArray_Check(a):
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>a
    if cnp.PyArray_NDIM(arr) != 2 or cnp.PyArray_TYPE(arr) != typenum:
        return False
    cdef Py_ssize_t r = cnp.PyArray_DIM(arr, 0), c = cnp.PyArray_DIM(arr, 1)
    if r != rows or c != cols:
        return False
    if not _usable_as_is(arr, writable):
        return False
    cdef Py_ssize_t item = cnp.PyArray_ITEMSIZE(arr)
    cdef Py_ssize_t s0 = cnp.PyArray_STRIDE(arr, 0), s1 = cnp.PyArray_STRIDE(arr, 1)
    if r > 0 and c > 1 and s1 != item:
        return False
    if r > 1 and (s0 < 0 or s0 % item != 0):
        return False
    ptr[0] = <char *>cnp.PyArray_DATA(arr)
    ld[0] = <size_t>(s0 // item) if r > 1 else <size_t>c
    return True


cdef void _extent(cnp.ndarray arr, size_t *start, size_t *end):
    """The bytes [start, end) that `arr` may touch, as numpy's get_array_memory_extents (what
    np.may_share_memory compares): empty for an array with no elements."""
    cdef Py_ssize_t low = 0, upper = 0, offset
    cdef int j
    cdef size_t data = <size_t>cnp.PyArray_DATA(arr)
    for j in range(cnp.PyArray_NDIM(arr)):
        if cnp.PyArray_DIM(arr, j) == 0:
            start[0] = end[0] = data
            return
        offset = cnp.PyArray_STRIDE(arr, j) * (cnp.PyArray_DIM(arr, j) - 1)
        if offset > 0:
            upper += offset
        else:
            low += offset
    upper += cnp.PyArray_ITEMSIZE(arr)
    start[0] = data + <size_t>low
    end[0] = data + <size_t>upper


cdef bint _may_overlap(cnp.ndarray a, cnp.ndarray b):
    """np.may_share_memory(a, b): do the memory extents of a and b intersect?"""
    cdef size_t a0, a1, b0, b1
    _extent(a, &a0, &a1)
    _extent(b, &b0, &b1)
    return a0 < b1 and b0 < a1 and a0 < a1 and b0 < b1


cdef bint _lengths_ready(object a, Py_ssize_t T, Py_ssize_t B):
    """True if `a` is already what run_sequences makes of `lengths`: a native, aligned,
    C-contiguous int64 ndarray of shape (B,), every value in [0, T]."""
    if type(a) is not np.ndarray:
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>a
    if (cnp.PyArray_NDIM(arr) != 1 or cnp.PyArray_TYPE(arr) != cnp.NPY_INT64
            or cnp.PyArray_DIM(arr, 0) != B or not cnp.PyArray_ISCARRAY_RO(arr)
            or not cnp.PyArray_ISNOTSWAPPED(arr)):
        return False
    cdef const int64_t *v = <const int64_t *>cnp.PyArray_DATA(arr)
    cdef Py_ssize_t b
    for b in range(B):
        if v[b] < 0 or v[b] > T:
            return False
    return True


cdef str _where(Py_ssize_t s, Py_ssize_t k):
    """The name of layer k of stack s in messages."""
    return f"stacks[{s}][{k}]"


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
    cdef const char *key_text
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
                if _seq_ready(x, T, B, cell.input_size, time_major, cell.typenum, False,
                              <char **>&layer.io.x, &layer.io.x_stride_t, &layer.io.x_stride_b):
                    keep.append(x)
                else:
                    keep.append(_seq_array(x, T, B, cell.input_size, time_major,
                                           cell.typenum, False, _where(s, k) + ".x",
                                           <char **>&layer.io.x, &layer.io.x_stride_t,
                                           &layer.io.x_stride_b))
                out = _layer_item(spec, "out")
                if _seq_ready(out, T, B, cell.output_size, time_major, cell.typenum, True,
                              <char **>&layer.io.out, &layer.io.out_stride_t,
                              &layer.io.out_stride_b):
                    keep.append(out)
                else:
                    keep.append(_seq_array(out, T, B, cell.output_size, time_major,
                                           cell.typenum, True, _where(s, k) + ".out",
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
                    if _matrix_ready(a, B, rows_cols, cell.typenum, written, &p, &ld):
                        keep.append(a)
                    else:
                        keep.append(_matrix(a, B, rows_cols, cell.typenum, written,
                                            _where(s, k) + "." + key, &p, &ld))
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


# ---- test-only hooks (tuning.h): force the rare threaded paths and count them -------------

_TUNING_FIELDS = ("chunk_steps", "retry_steps", "join_wait_ns", "steal_spins", "min_flops",
                  "stall_worker", "slow_worker")


def _tuning(**settings):
    """Test-only: sets some of the fields of tuning.h (0 = the built-in behaviour) and returns
    every field's previous value as a dict, which _tuning(**previous) restores. Results never
    depend on these; only which thread computes what, and how sequences are cut into chunks.
    Set them only while no kernel call runs."""
    unknown = set(settings) - set(_TUNING_FIELDS)
    if unknown:
        raise TypeError(f"_tuning: unknown settings {sorted(unknown)}; expected some of "
                        f"{list(_TUNING_FIELDS)}")
    cdef fc_tuning t
    fc_tuning_get(&t)
    previous = {"chunk_steps": t.chunk_steps, "retry_steps": t.retry_steps,
                "join_wait_ns": t.join_wait_ns, "steal_spins": t.steal_spins,
                "min_flops": t.min_flops, "stall_worker": t.stall_worker,
                "slow_worker": t.slow_worker}
    for name, value in settings.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
        if value < 0 and name != "join_wait_ns":
            raise ValueError(f"{name}: expected >= 0, got {value}")
    merged = {**previous, **settings}
    t.chunk_steps = merged["chunk_steps"]
    t.retry_steps = merged["retry_steps"]
    t.join_wait_ns = merged["join_wait_ns"]
    t.steal_spins = merged["steal_spins"]
    t.min_flops = merged["min_flops"]
    t.stall_worker = merged["stall_worker"]
    t.slow_worker = merged["slow_worker"]
    fc_tuning_set(&t)
    return previous


def _counters(bint reset=False):
    """Test-only: counts of the rare threaded paths since the last reset (tuning.h): short_teams,
    late_joins, take_overs, chunk_steals, seq_chunks. reset=True zeroes them (returning the
    counts before)."""
    cdef fc_counters c
    fc_counters_get(&c, reset)
    return {"short_teams": c.short_teams, "late_joins": c.late_joins,
            "take_overs": c.take_overs, "chunk_steals": c.chunk_steals,
            "seq_chunks": c.seq_chunks}


def _packed_bytes(size_t k, size_t gates, size_t units, size_t elem, size_t pw):
    """Test-only: the bytes fc_pack would allocate for a [k, gates*units] kernel (pack.c's
    checked size), or ValueError when a product overflows size_t."""
    cdef size_t nbytes = 0
    _check(fc_packed_bytes(k, gates, units, elem, pw, &nbytes), "fc_packed_bytes")
    return nbytes


# ---------------------------------------------------------------------------------------------
# Machine-limit probes of the benchmarks (csrc/probes/probes.h; fastcells.benchmarks._limits
# times them). Path names are the order of fc_probe_path.
# ---------------------------------------------------------------------------------------------

PROBE_PATHS = ("f32-baseline", "f32-avx2", "f32-avx512", "i8-avx2", "i8-avxvnni",
               "i8-avx512vnni", "read-baseline", "read-avx2", "read-avx512")
assert len(PROBE_PATHS) == FC_PROBE_PATH_COUNT


def _probe_path(str path):
    if path not in PROBE_PATHS:
        raise ValueError(f"path: expected one of {PROBE_PATHS}, got {path!r}")
    return PROBE_PATHS.index(path)


def _probe_supported(str path):
    """True when the probe `path` is built in and runs on this CPU."""
    return bool(fc_probe_supported(_probe_path(path)))


def _probe_madd(str path, long iters):
    """Runs `iters` rounds of 12 (int8: 10) independent multiply-add chains on the instructions
    of `path` (GIL released); returns the arithmetic operations done. Raises RuntimeError when
    this CPU cannot run `path`."""
    cdef int p = _probe_path(path)
    if iters < 1:
        raise ValueError(f"iters: expected >= 1, got {iters}")
    if not fc_probe_supported(p):
        raise RuntimeError(f"path: {path!r} does not run on this CPU (or is not built)")
    cdef double ops
    with nogil:
        ops = fc_probe_madd(p, iters)
    return ops


def _probe_read(str path, const float[::1] buf, long passes):
    """Reads `buf` (float32, 64-byte aligned, a multiple of 128 elements) `passes` times with
    the vector loads of `path` (GIL released); returns the sum of what it read."""
    cdef int p = _probe_path(path)
    cdef size_t n = buf.shape[0]
    if passes < 1:
        raise ValueError(f"passes: expected >= 1, got {passes}")
    if n == 0 or n % 128 != 0 or (<size_t>&buf[0]) % 64 != 0:
        raise ValueError(f"buf: expected a 64-byte aligned float32 array of a multiple of 128 "
                         f"elements, got {n} elements at offset {(<size_t>&buf[0]) % 64} mod 64")
    if not fc_probe_supported(p):
        raise RuntimeError(f"path: {path!r} does not run on this CPU (or is not built)")
    cdef double total
    with nogil:
        total = fc_probe_read(p, &buf[0], n, passes)
    return total


# ---- int8 products (csrc/kernels/i8-gemm.h; the arithmetic of fastcells/reference_quant.py) ----

I8_K_MAX = 133144                    # reference_quant.INT8_K_MAX: deepest exact int32 segment


def int8_gemm_kernels():
    """Every int8 GEMM kernel of the registry (FC_I8GEMM lines of kernels.def), in its order,
    as dicts: name, isa, mr, nr, features, cflags, available (runnable here), default (what a
    new Int8PackedMatrix uses under the current FASTCELLS_ISA)."""
    cdef fc_i8_kernel_info info
    cdef size_t default = fc_i8_default_kernel()
    kernels = []
    for i in range(fc_i8_kernel_count()):
        fc_i8_kernel_info_at(i, &info)
        kernels.append({
            "name": info.name.decode(), "isa": ISA_NAMES[<int>info.isa], "mr": int(info.mr),
            "nr": int(info.nr), "features": info.features.decode().split(),
            "cflags": info.cflags.decode(), "available": bool(info.available),
            "default": i == default})
    return kernels


cdef size_t _i8_kernel_index(object kernel) except? 0:
    if kernel is None:
        return fc_i8_default_kernel()
    kernels = int8_gemm_kernels()
    names = [k["name"] for k in kernels]
    if kernel not in names:
        raise ValueError(f"kernel: expected None or one of {names}, got {kernel!r}")
    index = names.index(kernel)
    if not kernels[index]["available"]:
        raise ValueError(f"kernel: {kernel!r} is not available on this CPU (needs "
                         f"{kernels[index]['features']})")
    return index


def _finite_f32(name, a, ndim):
    a = np.asarray(a)
    if a.dtype.kind not in "fiu":
        raise TypeError(f"{name}: expected a real array, got dtype {a.dtype}")
    a = np.ascontiguousarray(a, dtype=np.float32)       # a copy where needed; a is only read
    if a.ndim != ndim:
        raise ValueError(f"{name}: expected rank {ndim}, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: expected finite values, got "
                         f"{int(np.count_nonzero(~np.isfinite(a)))} non-finite")
    return a


def _int8_operand(name, q, ndim):
    q = np.asarray(q)
    if q.dtype != np.int8:
        raise TypeError(f"{name}: expected dtype int8, got {q.dtype}")
    if q.ndim != ndim:
        raise ValueError(f"{name}: expected rank {ndim}, got shape {q.shape}")
    if q.size and int(q.min()) < -127:
        raise ValueError(f"{name}: expected values in [-127, 127], got -128")
    return np.ascontiguousarray(q)


cdef class Int8PackedMatrix:
    """B [K,N] quantized to int8 per column (reference_quant.quantize_weights_int8) and packed
    once, for products with activations quantized per row:
        C = fp32(qa @ qw) * (row_scale[m] * col_scale[n]) (+ bias[n])
    bit for bit as reference_quant.int8_matmul + int8_epilogue.

    Int8PackedMatrix(b, bias=None, kernel=None): b [K,N] real, finite, K <= 133144, N >= 1;
    bias [N] or None; kernel: None (the default path, see int8_gemm_kernels()) or a kernel name.
    Int8PackedMatrix.from_int8(qw, col_scale, bias=None, kernel=None): already quantized
    weights, qw int8 [K,N] in [-127, 127], col_scale [N].
    """
    cdef fc_i8_matrix *mat
    cdef readonly Py_ssize_t k, n
    cdef readonly str kernel
    cdef readonly bint has_bias

    def __init__(self, b=None, bias=None, kernel=None, *, _quantized=None):
        cdef size_t index = _i8_kernel_index(kernel)
        cdef fc_i8_matrix *created = NULL
        cdef const float *pbias = NULL
        cdef fc_status st
        if _quantized is not None:
            qw, col_scale = _quantized
            qw = _int8_operand("qw", qw, 2)
            k, n = qw.shape
            col_scale = _finite_f32("col_scale", col_scale, 1)
            if col_scale.shape != (n,):
                raise ValueError(f"col_scale: expected shape ({n},), got {col_scale.shape}")
        else:
            b = _finite_f32("b", b, 2)
            k, n = b.shape
        if n < 1:
            raise ValueError(f"b: expected shape (K, N) with N >= 1, got {(k, n)}")
        if k > I8_K_MAX:
            raise ValueError(f"b: expected K <= {I8_K_MAX} (an exact int32 sum of int8 "
                             f"products), got K = {k}")
        if bias is not None:
            bias = _finite_f32("bias", bias, 1)
            if bias.shape != (n,):
                raise ValueError(f"bias: expected shape ({n},), got {bias.shape}")
            pbias = <const float *>cnp.PyArray_DATA(bias)
        if _quantized is not None:
            st = fc_i8_matrix_create_q(k, n, <const int8_t *>cnp.PyArray_DATA(qw),
                                       <const float *>cnp.PyArray_DATA(col_scale), pbias,
                                       index, &created)
        else:
            st = fc_i8_matrix_create(k, n, <const float *>cnp.PyArray_DATA(b), pbias, index,
                                     &created)
        _check(st, "fc_i8_matrix_create (quantizing and packing b)")
        if self.mat != NULL:
            fc_i8_matrix_destroy(self.mat)
        self.mat = created
        self.k, self.n = k, n
        self.has_bias = bias is not None
        self.kernel = int8_gemm_kernels()[index]["name"]

    @classmethod
    def from_int8(cls, qw, col_scale, bias=None, kernel=None):
        return cls(None, bias, kernel, _quantized=(qw, col_scale))

    def __dealloc__(self):
        if self.mat != NULL:
            fc_i8_matrix_destroy(self.mat)
            self.mat = NULL

    cdef _ready(self):
        if self.mat == NULL:
            raise ValueError("Int8PackedMatrix: not initialised")

    def weights(self):
        """(qw int8 [K,N], col_scale float32 [N]): the packed weights, unpacked."""
        self._ready()
        qw = np.empty((self.k, self.n), np.int8)
        scale = np.empty(self.n, np.float32)
        fc_i8_matrix_weights(self.mat, <int8_t *>cnp.PyArray_DATA(qw),
                             <float *>cnp.PyArray_DATA(scale))
        return qw, scale

    def matmul(self, a):
        """a [M,K] real, finite -> (c float32 [M,N], acc int32 [M,N], row_scale float32 [M]):
        a quantized per row (reference_quant.quantize_rows), acc = qa @ qw exactly."""
        self._ready()
        a = _finite_f32("a", a, 2)
        if a.shape[1] != self.k:
            raise ValueError(f"a: expected shape (M, {self.k}), got {a.shape}")
        m = a.shape[0]
        c = np.empty((m, self.n), np.float32)
        acc = np.empty((m, self.n), np.int32)
        scale = np.empty(m, np.float32)
        cdef fc_status st
        cdef const float *pa = <const float *>cnp.PyArray_DATA(a)
        cdef float *pc = <float *>cnp.PyArray_DATA(c)
        cdef int32_t *pacc = <int32_t *>cnp.PyArray_DATA(acc)
        cdef float *pscale = <float *>cnp.PyArray_DATA(scale)
        cdef size_t mm = m, kk = self.k, nn = self.n
        with nogil:
            st = fc_i8_matmul(self.mat, mm, pa, kk, pc, nn, pacc, nn, pscale)
        _check(st, "fc_i8_matmul")
        return c, acc, scale

    def matmul_int8(self, qa, row_scale):
        """qa int8 [M,K] in [-127, 127], row_scale [M] -> (c float32 [M,N], acc int32 [M,N])."""
        self._ready()
        qa = _int8_operand("qa", qa, 2)
        if qa.shape[1] != self.k:
            raise ValueError(f"qa: expected shape (M, {self.k}), got {qa.shape}")
        m = qa.shape[0]
        row_scale = _finite_f32("row_scale", row_scale, 1)
        if row_scale.shape != (m,):
            raise ValueError(f"row_scale: expected shape ({m},), got {row_scale.shape}")
        c = np.empty((m, self.n), np.float32)
        acc = np.empty((m, self.n), np.int32)
        cdef fc_status st
        cdef const int8_t *pqa = <const int8_t *>cnp.PyArray_DATA(qa)
        cdef const float *pscale = <const float *>cnp.PyArray_DATA(row_scale)
        cdef float *pc = <float *>cnp.PyArray_DATA(c)
        cdef int32_t *pacc = <int32_t *>cnp.PyArray_DATA(acc)
        cdef size_t mm = m, kk = self.k, nn = self.n
        with nogil:
            st = fc_i8_matmul_q(self.mat, mm, pqa, kk, pscale, pc, nn, pacc, nn)
        _check(st, "fc_i8_matmul_q")
        return c, acc
