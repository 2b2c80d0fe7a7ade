# The int8 GEMM (csrc/kernels/i8-gemm.h; the arithmetic of fastcells/reference_quant.py):
# Int8PackedMatrix and its kernels. Included by _core.pyx.

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
