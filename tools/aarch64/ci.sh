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
#   5. the test suite (the long-double ULP sweeps on the FASTCELLS_SHORT_ULP grid) and
#      `python -m fastcells check`, under two emulated CPUs: `max` (NEON, dotprod, i8mm, bf16)
#      and `cortex-a72` (NEON only), each checking the features detected and available_isas().
#
# Everything downloaded or built lives in one temporary directory, removed at exit
# (FASTCELLS_ARM_KEEP=1 keeps it). Needs network access to deb.debian.org and PyPI.
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)          # the checkout
work=$(mktemp -d /tmp/fastcells-aarch64.XXXXXX)
[ "${FASTCELLS_ARM_KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
start=$SECONDS
step() { echo "== aarch64 [$((SECONDS - start)) s] $*"; }

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
# Debian's sysconfig names the host's x86 include dirs: point at the sysroot's (after the
# cross compiler's own libc headers)
(cd "$src" && CFLAGS="-I$sysroot/usr/include/python3.11 -idirafter $sysroot/usr/include" \
    QEMU_CPU=max "$python" setup.py -q build_ext --inplace >/dev/null)
aarch64-linux-gnu-objdump -d "$src"/fastcells/_core*.so | grep -c 'fmla' \
    | sed 's/^/   fmla instructions in the extension: /'

run_suite() {        # $1 = qemu CPU model, $2 = the features it must show, $3 = those it must not
    local cpu=$1 want=$2 absent=$3
    step "QEMU_CPU=$cpu: detection"
    (cd "$src" && QEMU_CPU=$cpu "$python" - "$want" "$absent" <<'PY'
import sys
import fastcells._core as c
want, absent = sys.argv[1].split(), sys.argv[2].split()
features = c.cpu_features()
print("   features:", {k: v for k, v in features.items() if v})
print("   available_isas:", c.available_isas(), "best:", c.best_isa())
assert all(features[f] for f in want), (want, features)
assert not any(features[f] for f in absent), (absent, features)
assert not any(features[f] for f in ("sse2", "avx", "avx2", "avx512f")), features
assert c.available_isas() == ["scalar", "neon"], c.available_isas()
assert c.best_isa() == "neon" and c.default_isa() == "neon"
neon = [k["name"] for k in c.registered_kernels() if k["isa"] == "neon" and k["available"]]
assert neon == ["f32-cells-5x16-neon", "f64-cells-5x8-neon"], neon
PY
    )
    step "QEMU_CPU=$cpu: test suite"
    # OpenBLAS's SVE kernels print spurious warnings under emulated SVE CPUs: pin its core type
    # FASTCELLS_TEST_SLOWDOWN: emulated Python is ~10x slower; deadlines (test_fork.py) scale
    (cd "$src" && QEMU_CPU=$cpu OPENBLAS_CORETYPE=NEOVERSEN1 FASTCELLS_SHORT_ULP=1 \
        FASTCELLS_TEST_SLOWDOWN=10 \
        "$python" -m pytest -q -p no:cacheprovider tests | tail -3)
    step "QEMU_CPU=$cpu: python -m fastcells check"
    (cd "$src" && QEMU_CPU=$cpu OPENBLAS_CORETYPE=NEOVERSEN1 "$python" -m fastcells check \
        | tail -3)
}
run_suite max "asimd asimddp i8mm bf16" ""
run_suite cortex-a72 "asimd" "asimddp i8mm bf16"
step "done"
