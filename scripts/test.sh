#!/usr/bin/env bash
# Build torii and run every test (unit + integration), first in a normal build, then in an
# ASan+UBSan build, then the concurrent tests (ctest label "threads") in a ThreadSanitizer
# build, then a short deterministic libFuzzer run of every fuzz target. Prints ctest's summary
# for each build and the time of each stage. Usage: scripts/test.sh [--quick] (--quick: the
# normal build only).
# Time: the lint (clang-tidy: CPU-bound) runs in the background at the lowest priority during
# the release stage, whose integration tests mostly wait on the daemon, and ctest runs tests side by side: twice
# as many as there are CPUs in the release build, as many as CPUs in the sanitizer builds
# (several times the CPU per test).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
jobs=$(nproc)
test_jobs=$((jobs * 2))
status=0
lint_log=$(mktemp /tmp/torii-lint.XXXXXX)
# At the lowest priority: it takes the CPU the tests leave idle and does not slow them.
nice -n 19 ./scripts/lint.sh >"$lint_log" 2>&1 &
lint_pid=$!
# An early exit (a configure error under set -e) stops the lint too.
trap 'kill "$lint_pid" 2>/dev/null || true; rm -f "$lint_log"' EXIT
# run_suite DIR TARGET CTEST_ARGS CMAKE_ARGS...: configure and build TARGET in DIR, run ctest
# (test_jobs tests at once).
run_suite() {
  local dir=$1 target=$2 ctest_args=$3 start=$SECONDS; shift 3
  cmake -S . -B "$dir" -DTORII_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j"$jobs" --target "$target"
  # shellcheck disable=SC2086 # ctest_args is a list of words
  (cd "$dir" && ctest --output-on-failure -j"$test_jobs" $ctest_args) || status=1
  echo "== $dir: $((SECONDS - start)) s"
}
echo "== build: release (-Werror)"
run_suite build-test all "" -DCMAKE_BUILD_TYPE=RelWithDebInfo
echo "== lint (ran during the release stage)"
lint_status=0
wait "$lint_pid" || lint_status=$?
cat "$lint_log"
rm -f "$lint_log"
if [ "$lint_status" != 0 ]; then
  echo "== lint: FAILED"
  status=1
fi
if [ "${1:-}" != "--quick" ]; then
  test_jobs=$jobs
  echo "== build: ASan + UBSan"
  run_suite build-asan all "" -DCMAKE_BUILD_TYPE=Debug -DTORII_SANITIZE=address,undefined
  echo "== build: ThreadSanitizer (the tests that run threads: ctest -L threads)"
  run_suite build-tsan torii_threads_tests "-L threads" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DTORII_SANITIZE=thread
  echo "== fuzz smoke run (libFuzzer, fixed seed, 20000 inputs per target)"
  ./scripts/fuzz.sh --runs 20000 || status=1
fi
exit $status
