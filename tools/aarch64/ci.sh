#!/usr/bin/env bash
# tools/aarch64/ci.sh — build fastcells for aarch64 and run its test suite under emulation, on
# an x86-64 Debian/Ubuntu machine with no ARM hardware (run as root: it apt-installs).
#
#   1. host tools (apt): the aarch64 cross gcc (native x86 binaries that emit aarch64 code), its
#      libc headers, qemu-user;
#   2. an aarch64 CPython 3.11: Debian bookworm arm64 packages, fetched with a private APT
#      configuration (its own state, an empty dpkg status so the whole dependency closure is
#      fetched) and unpacked with dpkg -x into a sysroot; no binfmt_misc is needed: a wrapper
#      script runs it under qemu-aarch64 and passes itself as argv[0], so sys.executable is the
#      wrapper and tests that start a subprocess Python get the emulated one too;
#   3. aarch64 wheels of the build/test dependencies (pip --platform --target) on a .pth path;
#   4. the extension built by the project's own setup.py run by the emulated Python (it sees
#      aarch64, so it builds the ARM64 registry lines; its compiler is the host's cross gcc),
#      in a copy of the checkout, so the checkout's own build is left alone;
#   5. the product loops of the neon kernel objects read from their disassembly
#      (inner_loops.py): multiply-adds per iteration, and no vector register spilled;
#   6. under three emulated CPUs, each first checking the features detected, available_isas()
#      and the neon kernels that run, then `python -m fastcells check` after its tests:
#      `max` (NEON, dotprod, i8mm, bf16) the test suite but the NumPy reference's own tests
#      and the fork tests (see below; the long-double ULP sweeps on the FASTCELLS_SHORT_ULP
#      grid); `neoverse-n1` (dotprod only: the sdot kernels, the widening bf16 one) the int8
#      and bf16 tests; `cortex-a72` (NEON only: the fallback where a kernel needs an
#      extension) the kernel, registry, cell and sequence tests (FASTCELLS_ARM_SUBSET_TESTS).
# Each step prints the seconds since the start. Exits non-zero when any step fails (every
# CPU's tests run first; the failures are listed at the end).
#
# Everything downloaded or built lives in one temporary directory, removed at exit
# (FASTCELLS_ARM_KEEP=1 keeps it). Needs network access to deb.debian.org and PyPI.
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)          # the checkout
work=$(mktemp -d /tmp/fastcells-aarch64.XXXXXX)
[ "${FASTCELLS_ARM_KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
start=$SECONDS
step() { echo "== aarch64 [$((SECONDS - start)) s] $*"; }
failed=()                           # the steps that failed, listed at the end

step "host tools"
export DEBIAN_FRONTEND=noninteractive
# qemu-user 7.2 (bookworm's own) aborts the threads of a child forked from a threaded process
# (tests/test_fork.py): on bookworm take 10.x from bookworm-backports, adding that source if
# the machine lacks it (this one had only bookworm, bookworm-updates, bookworm-security)
qemu_major() { qemu-aarch64 --version 2>/dev/null | sed -n 's/.*version \([0-9]*\).*/\1/p'; }
if ! command -v aarch64-linux-gnu-gcc >/dev/null || [ "$(qemu_major || true)" = "" ] \
        || [ "$(qemu_major)" -lt 10 ]; then
    qemu_from=()
    if grep -qs '^VERSION_CODENAME=bookworm' /etc/os-release; then
        if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
            echo "deb http://deb.debian.org/debian bookworm-backports main" \
                > /etc/apt/sources.list.d/fastcells-bookworm-backports.list
        fi
        qemu_from=(-t bookworm-backports)
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
        >/dev/null
    apt-get install -y -qq --no-install-recommends "${qemu_from[@]}" qemu-user >/dev/null
fi
echo "   $(qemu-aarch64 --version | head -1)"

step "aarch64 CPython sysroot (Debian bookworm arm64)"
apt_dir=$work/apt sysroot=$work/sysroot
mkdir -p "$apt_dir"/state/lists/partial "$apt_dir"/cache/archives/partial \
    "$apt_dir"/etc/sources.list.d "$apt_dir"/etc/preferences.d "$sysroot"
: > "$apt_dir/state/status"
cat > "$apt_dir/etc/sources.list" <<SOURCES
deb [arch=arm64] http://deb.debian.org/debian bookworm main
deb [arch=arm64] http://deb.debian.org/debian bookworm-updates main
deb [arch=arm64] http://deb.debian.org/debian-security bookworm-security main
SOURCES
apt_opts=(-o "Dir::State=$apt_dir/state" -o "Dir::State::status=$apt_dir/state/status"
          -o "Dir::Cache=$apt_dir/cache" -o "Dir::Etc::SourceList=$apt_dir/etc/sources.list"
          -o "Dir::Etc::SourceParts=$apt_dir/etc/sources.list.d"
          -o "Dir::Etc::PreferencesParts=$apt_dir/etc/preferences.d"
          -o "APT::Architecture=arm64" -o "APT::Architectures::=arm64" -o "Debug::NoLocking=1"
          -o "APT::Install-Recommends=0" -o "APT::Sandbox::User=root")
# the archive's signing keys: the host's keyring when it has Debian's, else the keyring package
if ! apt-get "${apt_opts[@]}" -qq update 2>/dev/null; then
    apt-get install -y -qq --no-install-recommends debian-archive-keyring >/dev/null
    apt_opts+=(-o "Dir::Etc::TrustedParts=/usr/share/keyrings")
    apt-get "${apt_opts[@]}" -qq update
fi
apt-get "${apt_opts[@]}" -qq -y --download-only install python3.11 libpython3.11-dev libstdc++6 \
    >/dev/null
for deb in "$apt_dir"/cache/archives/*.deb; do dpkg -x "$deb" "$sysroot"; done
echo "   $(ls "$apt_dir"/cache/archives/*.deb | wc -l) packages"

python=$work/python3                 # the emulated interpreter; QEMU_CPU picks the CPU model
cat > "$python" <<WRAPPER
#!/bin/sh
exec qemu-aarch64 -L "$sysroot" -0 "\$0" "$sysroot/usr/bin/python3.11" "\$@"
WRAPPER
chmod +x "$python"
"$python" -c 'import platform, sys; assert platform.machine() == "aarch64", platform.machine(); print("  ", sys.version.split()[0], platform.machine())'

step "aarch64 wheels"
site=$work/site
host_python=$(command -v python3 || command -v python)
"$host_python" -m pip install -q --disable-pip-version-check --root-user-action=ignore --target "$site" \
    --platform manylinux2014_aarch64 --platform manylinux_2_28_aarch64 --python-version 3.11 \
    --implementation cp --abi cp311 --only-binary=:all: \
    numpy pytest cython "setuptools>=77" wheel
echo "$site" > "$sysroot/usr/lib/python3/dist-packages/fastcells-aarch64-ci.pth"

step "build (setup.py under the emulated Python)"
src=$work/src
mkdir -p "$src"
if git -C "$here" rev-parse --git-dir >/dev/null 2>&1; then
    (cd "$here" && git ls-files -z --cached --others --exclude-standard \
        | xargs -0 cp --parents -t "$src" 2>/dev/null || true)
else
    cp -a "$here"/. "$src"
fi
rm -rf "$src/build" "$src"/fastcells/_core*.so "$src"/fastcells/_core.c
# Cython's C is the same on every machine: generate it with a native Cython of the aarch64
# wheel's version (under emulation the Cython step alone took minutes); setup.py's cythonize
# then finds fastcells/_core.c newer than its sources and compiles it as it is
cython_version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$site/Cython/Shadow.py")
"$host_python" -m pip install -q --disable-pip-version-check --root-user-action=ignore \
    --target "$work/host-cython" --only-binary=:all: "cython==$cython_version"
(cd "$src" && PYTHONPATH=$work/host-cython "$host_python" -c '
import sys
from Cython.Build import cythonize
cythonize(["fastcells/_core.pyx"], language_level=3, include_path=[sys.argv[1]], quiet=True)
' "$site")            # include_path: the aarch64 numpy's .pxd, which `cimport numpy` reads
# Debian's sysconfig names the host's x86 include dirs: point at the sysroot's (after the
# cross compiler's own libc headers)
if ! (cd "$src" && CFLAGS="-I$sysroot/usr/include/python3.11 -idirafter $sysroot/usr/include" \
        QEMU_CPU=max "$python" setup.py -q build_ext --inplace > "$work/build.log" 2>&1); then
    tail -60 "$work/build.log"
    exit 1
fi
grep -q 'Cythonizing' "$work/build.log" && echo "   (setup.py ran Cython again)"
aarch64-linux-gnu-objdump -d "$src"/fastcells/_core*.so | grep -c 'fmla' \
    | sed 's/^/   fmla instructions in the extension: /'

step "NEON kernels' disassembly: multiply-add loops, spills"
# every multiply-add loop of the neon units (the register tiles' products) from the objects
# setup.py compiled; a loop that spills a vector register fails the job
# (the ARM64 lines' units: tag neon, or the extension they add: asimddp, i8mm, bf16)
mapfile -t neon_objects < <(find "$src/build" \( -name '*-neon.o' -o -name '*-asimddp.o' \
    -o -name '*-i8mm.o' -o -name '*-bf16.o' \) | sort)
[ ${#neon_objects[@]} -gt 0 ] || { echo "   no neon kernel objects under $src/build"; exit 1; }
python3 "$here/tools/aarch64/inner_loops.py" aarch64-linux-gnu-objdump "${neon_objects[@]}" \
    > "$work/loops.log" || { cat "$work/loops.log"; failed+=("neon loops spill"); }
grep -vE '^ ' "$work/loops.log" | while read -r unit; do
    grep -A1 -F "$unit" "$work/loops.log" | tail -1 | sed "s|^ *|   $unit: the commonest: |"
done

# The tests the second CPU model runs: every kernel at every tile edge against the reference,
# the registry (which kernels run, the fallback where a feature is missing), the cells and the
# sequence runners, float and quantized
subset_tests=${FASTCELLS_ARM_SUBSET_TESTS:-"tests/test_kernels.py tests/test_kernel_registry.py
    tests/test_cells.py tests/test_rnn.py tests/test_int8_cells.py tests/test_int8_gemm.py
    tests/test_bf16_cells.py tests/test_paths.py"}

run_cpu() {   # $1 = qemu CPU model, $2 = features it must show, $3 = those it must not,
              # $4 = the neon kernels that must run there, $5... = pytest arguments
    local cpu=$1 want=$2 absent=$3 neon=$4
    shift 4
    step "QEMU_CPU=$cpu: detection"
    (cd "$src" && QEMU_CPU=$cpu "$python" - "$want" "$absent" "$neon" <<'PY'
import sys
import fastcells._core as c
want, absent, neon_want = (a.split() for a in sys.argv[1:4])
features = c.cpu_features()
print("   features:", {k: v for k, v in features.items() if v})
print("   available_isas:", c.available_isas(), "best:", c.best_isa())
assert all(features[f] for f in want), (want, features)
assert not any(features[f] for f in absent), (absent, features)
assert not any(features[f] for f in ("sse2", "avx", "avx2", "avx512f")), features
assert c.available_isas() == ["scalar", "neon"], c.available_isas()
assert c.best_isa() == "neon" and c.default_isa() == "neon"
neon = [k["name"] for k in c.registered_kernels() if k["isa"] == "neon" and k["available"]]
assert neon == neon_want, (neon, neon_want)
PY
    ) || failed+=("$cpu: detection")
    step "QEMU_CPU=$cpu: pytest $*"
    # OpenBLAS's SVE kernels print spurious warnings under emulated SVE CPUs: pin its core type
    # FASTCELLS_TEST_SLOWDOWN: emulated Python is ~10x slower; deadlines (test_fork.py, when
    # a caller runs it here) scale
    local log=$work/pytest-$cpu.log
    if (cd "$src" && QEMU_CPU=$cpu OPENBLAS_CORETYPE=NEOVERSEN1 FASTCELLS_SHORT_ULP=1 \
            FASTCELLS_TEST_SLOWDOWN=10 "$python" -m pytest -q -rfEs -p no:cacheprovider "$@" \
            > "$log" 2>&1); then
        tail -1 "$log"
    else
        grep -E '^(FAILED|ERROR) ' "$log" || true
        tail -40 "$log"
        failed+=("$cpu: pytest")
    fi
    grep -cE '^SKIPPED ' "$log" | sed 's/^/   skip reasons listed: /'
    step "QEMU_CPU=$cpu: python -m fastcells check"
    (cd "$src" && QEMU_CPU=$cpu OPENBLAS_CORETYPE=NEOVERSEN1 "$python" -m fastcells check \
        | tail -3) || failed+=("$cpu: fastcells check")
}
# kernels.def's ARM64 block, in its order; an UPGRADE line runs only where its features are
# the suite but two files: test_reference_quant.py checks the NumPy reference alone (the same
# on every machine; 130 s under emulation); test_fork.py forks a process whose other thread
# holds a lock, and under qemu-user such a child can hang inside the emulator itself (seen:
# a child at 0 s of CPU until the deadline); fork safety is the C pool's, tested natively
run_cpu max "asimd asimddp i8mm bf16" "" "f32-cells-5x16-neon f64-cells-5x8-neon \
i8-cells-5x16-neon i8-cells-5x16-asimddp i8-cells-4x16-i8mm bf16-cells-3x16-neon \
bf16-cells-5x16-bf16" tests --ignore=tests/test_reference_quant.py --ignore=tests/test_fork.py
# dotprod without i8mm and bf16 (Neoverse N1, Graviton 2): the int8 tests on its sdot kernels,
# the bf16 tests on the widening kernel
run_cpu neoverse-n1 "asimd asimddp" "i8mm bf16" "f32-cells-5x16-neon f64-cells-5x8-neon \
i8-cells-5x16-neon i8-cells-5x16-asimddp bf16-cells-3x16-neon" \
    tests/test_int8_cells.py tests/test_int8_gemm.py tests/test_bf16_cells.py
# shellcheck disable=SC2086   # the subset is a word list
run_cpu cortex-a72 "asimd" "asimddp i8mm bf16" "f32-cells-5x16-neon f64-cells-5x8-neon \
i8-cells-5x16-neon bf16-cells-3x16-neon" $subset_tests
step "done"
if [ ${#failed[@]} -gt 0 ]; then
    printf 'aarch64 FAILED: %s\n' "${failed[@]}"
    exit 1
fi
