#!/usr/bin/env bash
# The README's first command: installs what is missing, builds pstrain, and runs the
# default job (Fashion-MNIST). Extra arguments go to `pstrain train`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j "$(nproc)"
echo "setup: built build/pstrain; running the default job"
exec ./build/pstrain train "$@"
