#!/usr/bin/env bash
# Static checks on the tree: clang-format (dry run), the banned-function grep, cppcheck, no
# function over 100 lines nor file over 1,200, no file cycle inside the listed modules, and
# clang-tidy (.clang-tidy) on every src/ file, two processes at a time. Usage: scripts/lint.sh
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
files=$(git ls-files 'src/*.c' 'src/*.h' 'include/*.h' 'tests/*.c' 'tests/*.h')
echo "== clang-format"
clang-format --dry-run --Werror $files || status=1
echo "== banned functions"
if grep -nE '\b(strcpy|strcat|sprintf|gets|strtok|rand)\s*\(' $(git ls-files 'src/*.c' 'src/*.h'); then
  status=1
fi
if command -v cppcheck >/dev/null; then
  echo "== cppcheck"
  cppcheck --quiet --error-exitcode=1 --enable=warning,portability --inline-suppr \
    --suppress=missingIncludeSystem --suppress=unknownMacro -I include $(git ls-files 'src/*.c') || status=1
fi
echo "== long functions and files (over 100 / 1,200 lines)"
./scripts/long_functions.sh --fail || status=1
echo "== file cycles inside a module"
# Files of these modules depend one way (src/proxy's state machine files call each other by
# design; src/core's log and err, src/conf's two parsers are the known remaining pairs).
./scripts/include_cycles.sh admin pki tls lifecycle certdb acme pkiboot certstats jwt store fleet \
  http stream daemon ctl || status=1
echo "== clang-tidy"
if command -v clang-tidy >/dev/null; then
  cmake -S . -B build-tidy -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >/dev/null || status=1
  tidy_files=$(git ls-files 'src/*.c')
  # clang-tidy's "N warnings generated." counts the diagnostics it filtered out: noise.
  tidy_run() {
    local out rc=0
    out=$(clang-tidy -p build-tidy --quiet "$@" 2>&1) || rc=$?
    grep -v '^[0-9]* warnings\? generated\.$' <<<"$out" || true
    return $rc
  }
  export -f tidy_run
  # shellcheck disable=SC2086 # one file name per word
  printf '%s\n' $tidy_files | xargs -r -P2 -n4 bash -c 'tidy_run "$@"' _ || status=1
else
  echo "clang-tidy not installed (scripts/deps.sh installs it)"
  status=1
fi
exit $status
