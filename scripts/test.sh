#!/usr/bin/env bash
# Build torii and run every test (unit + integration), first in a normal build, then in an
# ASan+UBSan build, then a short deterministic libFuzzer run of every fuzz target. Prints
# ctest's summary for each build. Usage: scripts/test.sh [--quick] (--quick: the normal build
# only).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
jobs=$(nproc)
status=0
echo "== lint"
./scripts/lint.sh || status=1
run_suite() {
  local dir=$1; shift
  cmake -S . -B "$dir" -DTORII_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j"$jobs"
  (cd "$dir" && ctest --output-on-failure -j"$jobs") || status=1
}
echo "== build: release (-Werror)"
run_suite build-test -DCMAKE_BUILD_TYPE=RelWithDebInfo
if [ "${1:-}" != "--quick" ]; then
  echo "== build: ASan + UBSan"
  run_suite build-asan -DCMAKE_BUILD_TYPE=Debug -DTORII_SANITIZE=address,undefined
  echo "== fuzz smoke run (libFuzzer, fixed seed, 20000 inputs per target)"
  ./scripts/fuzz.sh --runs 20000 || status=1
fi
exit $status
