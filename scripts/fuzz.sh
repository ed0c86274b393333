#!/usr/bin/env bash
# Fuzz every target in tests/fuzz with libFuzzer (clang, ASan+UBSan) for SECONDS each
# (default 60), starting from the committed corpora. New inputs go to build-fuzz/corpus/<t>
# (not to the tree); a crash, leak, timeout or out-of-memory is saved under
# build-fuzz/artifacts/ and makes the script fail. Prints CPU seconds and runs per target.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]     (targets: the folders of tests/fuzz/corpus)
#        scripts/fuzz.sh --runs N [TARGET...]        N inputs per target from a fixed seed and a
#                                                    fresh work corpus: the same run every time
#                                                    (what scripts/test.sh does), whatever the
#                                                    machine's speed
set -euo pipefail
cd "$(dirname "$0")/.."
limit=(-max_total_time=60)
fresh=0
if [ "${1:-}" = "--runs" ]; then
  limit=(-runs="${2:?--runs needs a count}" -seed=1)
  fresh=1
  shift 2
elif [ $# -gt 0 ]; then
  limit=(-max_total_time="$1")
  shift
fi
./scripts/deps.sh --fuzz
out=build-fuzz
CC=clang cmake -S . -B "$out" -DCMAKE_BUILD_TYPE=Debug -DTORII_FUZZ=ON \
  -DTORII_SANITIZE=address,undefined -DTORII_WERROR=OFF >/dev/null
cmake --build "$out" --target fuzz_all -j"$(nproc)" >/dev/null
if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for d in tests/fuzz/corpus/*/; do
    targets+=("$(basename "$d")")
  done
fi
mkdir -p "$out/artifacts"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
status=0
printf '%-16s %8s %10s  %s\n' target cpu_s runs result
for t in "${targets[@]}"; do
  bin="$out/tests/fuzz/fuzz_$t"
  log="$out/artifacts/$t.log"
  [ $fresh -eq 0 ] || rm -rf "$out/corpus/$t"
  mkdir -p "$out/corpus/$t"
  # libFuzzer runs one process here; user+sys of the child is the CPU the target had.
  TIMEFORMAT='%U %S'
  if { time "$bin" "${limit[@]}" -timeout=30 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 -artifact_prefix="$out/artifacts/$t-" \
        "$out/corpus/$t" "tests/fuzz/corpus/$t" >"$log" 2>&1; } 2>"$log.time"; then
    result=ok
  else
    result="FAILED, see $log"
    status=1
  fi
  cpu=$(awk '{printf "%.0f", $1 + $2}' "$log.time")
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  printf '%-16s %8s %10s  %s\n' "$t" "$cpu" "${runs:-?}" "$result"
done
exit $status
