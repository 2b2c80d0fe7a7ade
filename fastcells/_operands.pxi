# The operand checks: a NumPy array -> the pointer and strides C reads or writes through, after
# checking what C relies on (dtype, shape as the array struct holds it, last axis contiguous,
# non-negative strides, alignment, writability, native byte order). Each check has a quick form
# (*_ready: no Python object built, False leaves the array to the full form) and a full form
# that converts a byte-swapped read-only operand or raises the message naming it.
# Included by _core.pyx.

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
