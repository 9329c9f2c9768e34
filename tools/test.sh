#!/usr/bin/env bash
# tools/test.sh: installs what is missing, builds ringpost twice (g++ release, clang
# ASan+UBSan) and runs every test in both: unit, golden, simulated faults, fuzz, crash and
# integration tests against the real daemon. This is the README's test command and what
# .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh
bash tools/build.sh release
bash tools/build.sh asan
status=0
echo "== tests: release build (g++) =="
ctest --test-dir build --output-on-failure -j 2 --timeout 600 || status=1
echo "== tests: ASan+UBSan build (clang) =="
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j 2 --timeout 900 -L sanitize || status=1
exit $status
