#!/usr/bin/env bash
# Memory-safety check: builds the extension with AddressSanitizer + UndefinedBehaviorSanitizer
# into a scratch folder and runs the kernel and cell tests against it (every ISA the CPU has).
# Any out-of-bounds access, use-after-free or undefined behaviour aborts the run (non-zero exit).
# Usage: tools/sanitize.sh [pytest args...]     (needs gcc's libasan/libubsan; Linux)
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
export LDFLAGS="-fsanitize=address,undefined"
python setup.py -q build_ext --build-lib "$work/lib" --build-temp "$work/tmp" > "$work/build.log" 2>&1 \
    || { cat "$work/build.log"; exit 1; }
mkdir -p "$work/pkg"
cp -r fastcells tests "$work/pkg/"
rm -f "$work"/pkg/fastcells/*.so
cp "$work"/lib/fastcells/*.so "$work/pkg/fastcells/"
cd "$work/pkg"
preload="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 \
    LD_PRELOAD="$preload" PYTHONPATH="$work/pkg" \
    python -m pytest -q -p no:cacheprovider "${@:-tests}"
