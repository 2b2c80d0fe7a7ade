"""The limits of the machine a benchmark runs on, measured by the same run, and the floor of a
row: the least time that row could take on this machine.

    machine_line()                 CPU model, SIMD features, threads, dispatched ISA
    cache_sizes()                  per-core L2 and L3 bytes (sysfs, else sysconf, else defaults)
    measure_limits(threads, quick) Limits: fp32 / int8 / bf16 multiply-add peak per core,
                                   OpenBLAS and fastcells GEMM GFLOP/s, L2 / L3 / DRAM read
                                   bandwidth per core
    row_floor(...)                 Floor of one row from its work and those limits

Multiply-add peaks and bandwidths are per core (one thread, the C probes of csrc/probes/: the
peak of a loop that does nothing else), GEMMs at the run's thread count. Each limit is the best
of a few short repeats: a limit is a peak, so the best repeat is the one least disturbed.

The floor of a row (seconds, ``row_floor``):
    compute-bound rows (batch > BANDWIDTH_BOUND_MAX_BATCH): FLOPs / (threads x the peak of the
        row's precision: fp32, int8, or the faster of bf16's vdpbf16ps and fp32; Limits.peak);
        OpenBLAS's GEMM rate gives a second reference, FLOPs / GEMM GFLOP/s ("gemm floor");
    bandwidth-bound rows (batch 1..BANDWIDTH_BOUND_MAX_BATCH: the weights stream every step):
        steps x (each thread's share of the weight bytes read every step) / the read bandwidth
        of the cache level that share fits in (per-core L2, else the core's share of L3, else
        DRAM), plus each thread's share of the bytes read once per call (the hoisted input
        projection's weights) at their level's bandwidth;
    both plus the measured cost of an empty call (the same call at I=H=B=T=1).
"% of floor" = floor / measured: 100 would be a row at the machine's limit.
"""
import contextlib
import dataclasses
import functools
import os
import timeit

import numpy as np

import fastcells
from fastcells import _core

BANDWIDTH_BOUND_MAX_BATCH = 4
# Without sysfs or sysconf: a common client core (1 MiB L2, 2 MiB of L3 per core)
DEFAULT_L2_BYTES, DEFAULT_L3_BYTES = 1 << 20, 2 << 20
DRAM_PROBE_MAX_BYTES = 256 << 20
# The widest fp32 multiply-add of each dispatch path (the ISA the kernels use), and its read
# (aarch64's neon path: the baseline probes, which -march=armv8-a compiles to NEON)
FMA_PATH = {"scalar": "f32-baseline", "avx2": "f32-avx2", "avx512": "f32-avx512",
            "neon": "f32-baseline"}
READ_PATH = {"scalar": "read-baseline", "avx2": "read-avx2", "avx512": "read-avx512",
             "neon": "read-baseline"}
# int8 paths of each dispatch path's vector width, best last: AVX2 vpmaddubsw+vpmaddwd+vpaddd;
# VNNI vpdpbusd where the CPU has it (ymm AVX-VNNI; zmm AVX512-VNNI for avx512); AMX-INT8
# tdpbssd for avx512 where the CPU has it (what the int8 UPGRADE kernel runs on 16 rows and
# more); the scalar and neon paths have no int8 probe
INT8_PATHS = {"scalar": (), "neon": (), "avx2": ("i8-avx2", "i8-avxvnni"),
              "avx512": ("i8-avx2", "i8-avxvnni", "i8-avx512vnni", "i8-amx")}
# bf16 multiply-add of each dispatch path: vdpbf16ps zmm on avx512 where the CPU has
# AVX512_BF16 (what the bf16 UPGRADE kernel runs); elsewhere the bf16 kernels widen to fp32 and
# do one fp32 FMA per product, so their peak is the fp32 probe's (Limits.peak: the faster)
BF16_PATHS = {"avx512": ("bf16-avx512bf16",)}


def cpu_model():
    """The CPU's "model name" from /proc/cpuinfo, else platform.processor(), else "unknown"."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or "unknown"


def isa_in_use():
    """The dispatched ISA: what new cells use (FASTCELLS_ISA, else the best available)."""
    return _core.default_isa()


def machine_line(threads=None):
    """One line: CPU model, the SIMD features fastcells detected, threads, dispatched ISA."""
    threads = fastcells.get_num_threads() if threads is None else threads
    feats = " ".join(k for k, v in _core.cpu_features().items() if v) or "none"
    return (f"machine: {cpu_model()}; simd: {feats}; {threads} thread(s) of "
            f"{os.cpu_count()} cpu(s); isa {isa_in_use()}")


def _sysfs_caches(cpu_dir="/sys/devices/system/cpu/cpu0/cache"):
    """{level: (bytes, cpus sharing it)} of the data/unified caches of cpu0, or {}."""
    found = {}
    try:
        entries = sorted(e for e in os.listdir(cpu_dir) if e.startswith("index"))
    except OSError:
        return found
    for entry in entries:
        def read(name):
            with open(os.path.join(cpu_dir, entry, name)) as f:
                return f.read().strip()
        try:
            if read("type") not in ("Data", "Unified"):
                continue
            level, size = int(read("level")), read("size")
            scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(size[-1:], 1)
            nbytes = int(size.rstrip("KMG")) * scale
            sharing = 0
            for part in read("shared_cpu_list").split(","):
                lo, _, hi = part.partition("-")
                sharing += int(hi or lo) - int(lo) + 1
        except (OSError, ValueError):
            continue
        found[level] = (nbytes, max(1, sharing))
    return found


def cache_sizes():
    """(per-core L2 bytes, per-core share of L3 bytes, where they came from): sysfs (a cache
    shared by n cpus counts 1/n of it per core), else sysconf, else the defaults."""
    caches = _sysfs_caches()
    if 2 in caches and 3 in caches:
        (l2, n2), (l3, n3) = caches[2], caches[3]
        return l2 // n2, l3 // n3, "sysfs"
    names = ("SC_LEVEL2_CACHE_SIZE", "SC_LEVEL3_CACHE_SIZE")
    try:
        l2, l3 = (os.sysconf(n) for n in names)
        if l2 > 0 and l3 > 0:
            return l2, l3 // max(1, os.cpu_count() or 1), "sysconf"
    except (ValueError, OSError):
        pass
    return DEFAULT_L2_BYTES, DEFAULT_L3_BYTES, "defaults"


@dataclasses.dataclass(frozen=True)
class Limits:
    """What this machine can do, measured (GFLOP/s, GOP/s, GB/s = 1e9 bytes/s; bytes)."""
    isa: str
    threads: int
    fp32_path: str
    fp32_peak_gflops: float          # per core
    int8_path: str                   # "" when no int8 probe runs here
    int8_peak_gops: float            # per core, 2 ops per u8 x s8 product; 0 without a path
    gemm_size: int
    blas_gemm_gflops: float          # numpy (OpenBLAS) float32 matmul, `threads` threads
    packed_gemm_gflops: float        # fastcells _core.PackedMatrix matmul, `threads` threads
    l2_bytes: int                    # per core
    l3_bytes: int                    # per core share
    cache_source: str
    l2_gbps: float                   # per core
    l3_gbps: float
    dram_gbps: float
    dram_note: str = ""
    bf16_path: str = ""              # "" when no bf16 probe runs here: bf16 at the fp32 peak
    bf16_peak_gflops: float = 0.0    # per core, 2 FLOPs per bf16 product; 0 without a path

    def peak(self, precision):
        """GFLOP/s (int8: GOP/s) per core of the multiply-add of `precision` ("fp32",
        "bf16", "int8"). bf16: the faster of vdpbf16ps (bf16_path) and the fp32 FMA its
        widening form runs on (the same bits either way), so the floor is the least time."""
        if precision == "fp32":
            return self.fp32_peak_gflops
        if precision == "bf16":
            return max(self.bf16_peak_gflops, self.fp32_peak_gflops)
        if precision == "int8":
            if not self.int8_path:
                raise ValueError(f"precision: no int8 probe runs for isa {self.isa} here, so "
                                 f"an int8 row has no compute floor")
            return self.int8_peak_gops
        raise ValueError(f"precision: expected 'fp32', 'bf16' or 'int8', got {precision!r}")

    def level(self, nbytes):
        """(name, GB/s) of the cache level `nbytes` of one thread fit in: L2, L3 or DRAM."""
        if nbytes <= self.l2_bytes:
            return "L2", self.l2_gbps
        if nbytes <= self.l3_bytes:
            return "L3", self.l3_gbps
        return "DRAM", self.dram_gbps

    def lines(self):
        """The limits as printed above a table."""
        mib = lambda n: f"{n / (1 << 20):.3g} MiB"                    # noqa: E731
        int8 = (f"int8 {self.int8_peak_gops:.0f} GOP/s ({self.int8_path})" if self.int8_path
                else f"int8: no int8 probe for isa {self.isa} here")
        bf16 = (f"bf16 {self.bf16_peak_gflops:.0f} GFLOP/s ({self.bf16_path})" if self.bf16_path
                else "bf16 at the fp32 peak (widened to fp32 FMAs)")
        return [
            f"limits (this run, this machine): fp32 multiply-add peak {self.fp32_peak_gflops:.1f}"
            f" GFLOP/s per core ({self.fp32_path}), {int8}, {bf16} per core",
            f"  fp32 GEMM {self.gemm_size}^3 at {self.threads} thread(s): OpenBLAS (numpy) "
            f"{self.blas_gemm_gflops:.1f} GFLOP/s, fastcells PackedMatrix "
            f"{self.packed_gemm_gflops:.1f} GFLOP/s",
            f"  read bandwidth per core: L2 ({mib(self.l2_bytes)}) {self.l2_gbps:.1f} GB/s, "
            f"L3 (share {mib(self.l3_bytes)}) {self.l3_gbps:.1f} GB/s, DRAM "
            f"{self.dram_gbps:.1f} GB/s{self.dram_note}; caches from {self.cache_source}",
        ]


def _best_seconds(fn, repeat):
    best = float("inf")
    for _ in range(repeat):
        t0 = timeit.default_timer()
        fn()
        best = min(best, timeit.default_timer() - t0)
    return best


def madd_peak(path, seconds=0.005, repeat=5):
    """GFLOP/s (int8: GOP/s) of one core on the multiply-add probe `path`: best of `repeat`
    runs of about `seconds` each."""
    iters = 1 << 14
    while True:                                    # calibrate to ~seconds
        t = _best_seconds(lambda: _core._probe_madd(path, iters), 1)
        if t >= seconds / 4 or iters >= 1 << 30:
            break
        iters *= 4
    iters = max(1, int(iters * seconds / max(t, 1e-9)))
    ops = _core._probe_madd(path, iters)
    return ops / _best_seconds(lambda: _core._probe_madd(path, iters), repeat) / 1e9


def aligned_floats(nbytes):
    """A float32 array of about `nbytes` (a multiple of 128 elements, >= 128), 64-byte aligned,
    filled with ones (every page touched)."""
    n = max(128, nbytes // 4 // 128 * 128)
    raw = np.ones(n + 16, np.float32)
    offset = (-raw.ctypes.data % 64) // 4
    return raw[offset:offset + n]


def read_bandwidth(path, nbytes, seconds=0.005, repeat=5):
    """GB/s of one core reading a buffer of `nbytes` again and again with the loads of `path`
    (the first pass, untimed, brings it into cache)."""
    buf = aligned_floats(nbytes)
    _core._probe_read(path, buf, 1)
    t = _best_seconds(lambda: _core._probe_read(path, buf, 1), 1)
    passes = max(1, int(seconds / max(t, 1e-9)))
    best = _best_seconds(lambda: _core._probe_read(path, buf, passes), repeat)
    return buf.nbytes * passes / best / 1e9


def gemm_gflops(n, threads, quick=False):
    """(OpenBLAS, fastcells PackedMatrix) GFLOP/s of a float32 n x n x n matmul at `threads`
    threads (OpenBLAS's count through threadpoolctl when installed, else its own default)."""
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (n, n)).astype(np.float32)
    b = rng.uniform(-1, 1, (n, n)).astype(np.float32)
    out = np.empty((n, n), np.float32)
    packed = _core.PackedMatrix(b)
    repeat = 2 if quick else 3
    try:
        from threadpoolctl import threadpool_limits
        limit = threadpool_limits(threads, user_api="blas")
    except ImportError:
        limit = contextlib.nullcontext()
    with limit:
        np.matmul(a, b, out=out)
        blas = _best_seconds(lambda: np.matmul(a, b, out=out), repeat)
    saved = fastcells.get_num_threads()
    fastcells.set_num_threads(threads)
    try:
        packed.matmul(a, out)
        own = _best_seconds(lambda: packed.matmul(a, out), repeat)
    finally:
        fastcells.set_num_threads(saved)
    return 2 * n ** 3 / blas / 1e9, 2 * n ** 3 / own / 1e9


def print_limits(out, threads, quick, about):
    """Measures this machine's limits (measure_limits) and prints the machine line, the lines
    `about` (what the table runs), then the limits; returns the Limits."""
    limits = measure_limits(threads, quick)
    print(machine_line(threads), file=out)
    for line in list(about) + list(limits.lines()):
        print(line, file=out)
    return limits


@functools.lru_cache(maxsize=4)
def measure_limits(threads=None, quick=False):
    """Limits of this machine at `threads` (default: fastcells' count), measured once per
    (threads, quick) and process. quick: a 512^3 GEMM (else 2048^3) and shorter probes."""
    threads = fastcells.get_num_threads() if threads is None else threads
    isa = isa_in_use()
    seconds = 0.002 if quick else 0.01
    fp32_path = FMA_PATH.get(isa, "f32-baseline")
    fp32 = madd_peak(fp32_path, seconds)
    int8_runs = [p for p in INT8_PATHS.get(isa, ()) if _core._probe_supported(p)]
    int8_path = int8_runs[-1] if int8_runs else ""
    int8 = madd_peak(int8_path, seconds) if int8_path else 0.0
    bf16_runs = [p for p in BF16_PATHS.get(isa, ()) if _core._probe_supported(p)]
    bf16_path = bf16_runs[-1] if bf16_runs else ""
    bf16 = madd_peak(bf16_path, seconds) if bf16_path else 0.0
    gemm_n = 512 if quick else 2048
    blas, own = gemm_gflops(gemm_n, threads, quick)
    l2, l3, source = cache_sizes()
    read = READ_PATH.get(isa, "read-baseline")
    l2_bw = read_bandwidth(read, l2 // 2, seconds)
    l3_bw = read_bandwidth(read, min(l3 // 2, max(4 * l2, l3 // 4)), seconds)
    dram_bytes = 4 * l3
    note = ""
    if dram_bytes > DRAM_PROBE_MAX_BYTES or quick:
        dram_bytes = DRAM_PROBE_MAX_BYTES // (8 if quick else 1)
        if dram_bytes < 2 * l3:
            note = (f" (est.: a {dram_bytes >> 20} MiB buffer, less than 2 x L3, may be partly "
                    f"cache-resident)")
    dram_bw = read_bandwidth(read, dram_bytes, seconds, repeat=2)
    return Limits(isa, threads, fp32_path, fp32, int8_path, int8, gemm_n, blas, own, l2, l3,
                  source, l2_bw, l3_bw, dram_bw, note, bf16_path, bf16)


@dataclasses.dataclass(frozen=True)
class Floor:
    """The least time of a row on this machine (seconds), which limit sets it ("fma",
    "bw L2", "bw L3", "bw DRAM"), and the OpenBLAS-GEMM reference time of its FLOPs."""
    seconds: float
    bound: str
    gemm_seconds: float

    def percent(self, measured):
        """floor / measured, in %: 100 = the row runs at the machine's limit."""
        return 100.0 * self.seconds / measured


def row_floor(limits, B, flops, stream_bytes, steps, once_bytes, empty_call, threads=None,
              precision="fp32"):
    """The Floor of a row (module docstring): batch B, `flops` in all, `stream_bytes` of
    weights read every one of `steps` steps, `once_bytes` read once per call (both in the
    row's precision), `empty_call` seconds, at `threads` (default limits.threads); a
    compute-bound row at the multiply-add peak of `precision` (Limits.peak)."""
    threads = limits.threads if threads is None else threads
    gemm = flops / (limits.blas_gemm_gflops * 1e9)
    if B <= BANDWIDTH_BOUND_MAX_BATCH:
        share = stream_bytes / threads
        level, gbps = limits.level(share)
        once_share = once_bytes / threads
        seconds = steps * share / (gbps * 1e9)
        if once_share:
            seconds += once_share / (limits.level(once_share)[1] * 1e9)
        bound = f"bw {level}"
    else:
        seconds = flops / (threads * limits.peak(precision) * 1e9)
        bound = "fma"
    return Floor(seconds + empty_call, bound, gemm + empty_call)
