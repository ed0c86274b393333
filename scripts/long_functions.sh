#!/usr/bin/env bash
# Informational: functions over 100 lines and files over 1,200 lines in src/ (STYLE: aim for
# functions under 60 lines, files under 800). A function is counted from its signature to its
# closing brace, both at column 0 (the project's clang-format layout).
# Usage: scripts/long_functions.sh [--fail] [dir...]   (default dir: src)
#   --fail: exit 1 when anything is listed (for lint); default: always exit 0.
set -uo pipefail
cd "$(dirname "$0")/.."
fail=0
if [ "${1:-}" = "--fail" ]; then
  fail=1
  shift
fi
dirs=("$@")
[ ${#dirs[@]} -gt 0 ] || dirs=(src)
python3 - "$fail" "${dirs[@]}" <<'PY'
import os, re, sys

FUNC_MAX, FILE_MAX = 100, 1200
NAME = re.compile(r'\b(\w+)\s*\(')
fail, dirs = sys.argv[1] == '1', sys.argv[2:]
found = 0

def functions(lines):
    """(name, first line, length) of each function defined at column 0: a signature line
    (with a '(' and no ';'), maybe continued on indented lines, then '{' alone at column 0."""
    start = None
    for i, line in enumerate(lines):
        if line.startswith('{') and start is not None:
            for j in range(i + 1, len(lines)):
                if lines[j].startswith('}'):
                    m = NAME.search(lines[start])
                    yield (m.group(1) if m else '?', start + 1, j - start + 1)
                    break
            start = None
        elif re.match(r'[A-Za-z_]', line) and '(' in line and not line.rstrip().endswith(';'):
            start = i
        elif not line.startswith((' ', '\t')) or line.rstrip().endswith(';'):
            start = None

for d in dirs:
    for root, _, names in sorted(os.walk(d)):
        for n in sorted(names):
            if not n.endswith(('.c', '.h')):
                continue
            p = os.path.join(root, n)
            lines = open(p, encoding='utf-8', errors='replace').read().split('\n')
            if len(lines) - 1 > FILE_MAX:
                print('%s: file of %d lines (> %d)' % (p, len(lines) - 1, FILE_MAX))
                found += 1
            for name, first, length in functions(lines):
                if length > FUNC_MAX:
                    print('%s:%d: %s: %d lines (> %d)' % (p, first, name, length, FUNC_MAX))
                    found += 1
print('long_functions: %d found' % found, file=sys.stderr)
sys.exit(1 if fail and found else 0)
PY
