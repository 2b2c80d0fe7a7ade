# The machine-limit probes of the benchmarks (csrc/probes/probes.h; fastcells.benchmarks._limits
# times them). Path names are the order of fc_probe_path. Included by _core.pyx.

PROBE_PATHS = ("f32-baseline", "f32-avx2", "f32-avx512", "i8-avx2", "i8-avxvnni",
               "i8-avx512vnni", "read-baseline", "read-avx2", "read-avx512", "bf16-avx512bf16",
               "i8-amx")
assert len(PROBE_PATHS) == FC_PROBE_PATH_COUNT


def _probe_path(str path):
    if path not in PROBE_PATHS:
        raise ValueError(f"path: expected one of {PROBE_PATHS}, got {path!r}")
    return PROBE_PATHS.index(path)


def _probe_supported(str path):
    """True when the probe `path` is built in and runs on this CPU."""
    return bool(fc_probe_supported(_probe_path(path)))


def _probe_madd(str path, long iters):
    """Runs `iters` rounds of 12 (int8: 10; AMX: 6 tiles) independent multiply-add chains on the instructions
    of `path` (GIL released); returns the arithmetic operations done (2 per product: a bf16
    lane does 2 products). Raises RuntimeError when
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
