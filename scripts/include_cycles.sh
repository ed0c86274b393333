#!/usr/bin/env bash
# Include cycles between the files of one module (informational; exit 1 when any is found).
# Two kinds, per src/<module>/:
#  - header cycles: a.h includes b.h which (directly or not) includes a.h;
#  - file cycles through internal headers: a.c calls a function defined in b.c, which calls
#    one defined in a.c (directly or through other files of the module), each reaching the
#    other through a module-internal header. A file's functions are the non-static ones
#    defined at column 0 (the project's style); a call is any use of the name.
# Usage: scripts/include_cycles.sh [module...]   (default: every module under src/)
set -uo pipefail
cd "$(dirname "$0")/.."
mods=("$@")
if [ ${#mods[@]} -eq 0 ]; then
  mapfile -t mods < <(find src -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort)
fi
python3 - "${mods[@]}" <<'PY'
import os, re, sys

DEF = re.compile(r'^(?!static\b)[A-Za-z_][\w \*]*?\b(torii_\w+)\((?![^)]*\)\s*;)', re.M)
INC = re.compile(r'^#include "([^"/]+)"', re.M)
WORD = re.compile(r'\b(torii_\w+)\b')

def strip_comments(t):
    return re.sub(r'/\*.*?\*/|//[^\n]*', ' ', t, flags=re.S)

def sccs(nodes, edges):
    """Tarjan's strongly connected components with more than one node (or a self loop)."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]
    def visit(v):
        index[v] = low[v] = n[0]; n[0] += 1
        stack.append(v); on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))
    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out

def module(mod):
    d = os.path.join('src', mod)
    files = sorted(f for f in os.listdir(d) if f.endswith(('.c', '.h')))
    text = {f: strip_comments(open(os.path.join(d, f), encoding='utf-8').read()) for f in files}
    found = []
    hdr_edges = {f: {i for i in INC.findall(text[f]) if i in text} for f in files if f.endswith('.h')}
    for c in sccs(hdr_edges.keys(), hdr_edges):
        found.append('header cycle: ' + ' -> '.join(c))
    owner = {}
    for f in files:
        if f.endswith('.c'):
            for name in DEF.findall(text[f]):
                owner.setdefault(name, f)
    uses = {}
    for f in files:
        if not f.endswith('.c'):
            continue
        for name in set(WORD.findall(text[f])):
            o = owner.get(name)
            if o is not None and o != f:
                uses.setdefault(f, {}).setdefault(o, set()).add(name)
    for c in sccs(uses.keys(), {k: set(v) for k, v in uses.items()}):
        parts = []
        for a in c:
            for b in c:
                if b in uses.get(a, {}):
                    parts.append('%s -> %s (%s)' % (a, b, ', '.join(sorted(uses[a][b])[:3])))
        found.append('file cycle: ' + '; '.join(parts))
    return found

status = 0
for mod in sys.argv[1:]:
    if not os.path.isdir(os.path.join('src', mod)):
        print('include_cycles: no module src/%s' % mod, file=sys.stderr)
        status = 2
        continue
    for line in module(mod):
        print('src/%s: %s' % (mod, line))
        status = max(status, 1)
sys.exit(status)
PY
