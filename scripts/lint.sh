#!/usr/bin/env bash
# Static checks on the tree: clang-format (dry run), the banned-function grep, cppcheck, and
# clang-tidy over compile_commands.json when asked (--tidy; slower).
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
if [ "${1:-}" = "--tidy" ]; then
  echo "== clang-tidy"
  cmake -S . -B build-tidy -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >/dev/null
  clang-tidy -p build-tidy --quiet $(git ls-files 'src/*.c') || status=1
fi
exit $status
