#!/usr/bin/env bash
# Build torii and run every test (unit + integration), first in a normal build, then in an
# ASan+UBSan build. Prints ctest's summary for each. Usage: scripts/test.sh [--quick]
# (--quick: the normal build only).
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
fi
exit $status
