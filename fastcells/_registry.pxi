# The kernel registry, the instruction sets and CPU features, the thread count, and C status
# codes as Python exceptions. Included by _core.pyx (one extension module: one copy of the C
# core's state, its dispatch choice and thread pool, in the process).
#
# Precisions: PRECISIONS (the names, in fc_precision's order), _precision_id (name -> C value,
# with the dtype each computes in) and _isa_id (a kernel's precision must match) are the places
# a new precision of the packed weights is added.

ISA_NAMES = tuple(fc_isa_name(<fc_isa>i).decode() for i in range(FC_ISA_COUNT))


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


PRECISIONS = (None, "int8", "bf16")   # PackedCell(precision=): the packed weights' format,
                                      # in fc_precision's order


cdef fc_precision _precision_id(object precision, object dtype) except *:
    """precision= of PackedCell (None: the weights packed in dtype) -> the C format of the packed
    weights; raises if dtype is not what that format computes in."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
    if precision is not None and dtype != _F32:
        raise TypeError(f"dtype: precision {precision!r} computes in float32, got {dtype}")
    return <fc_precision><int>PRECISIONS.index(precision)


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
