#!/usr/bin/env bash
# Build torii and start it with the embedded defaults (or the arguments given, e.g. -c FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target torii
exec ./build/torii "$@"
