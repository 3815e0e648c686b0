#!/usr/bin/env bash
# The README's first command: installs what is missing, builds pstrain, and runs the
# default job (Fashion-MNIST) as a local multi-process run: a coordinator, 2 parameter
# servers and 2 workers. Extra arguments go to `pstrain local`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j "$(nproc)"
echo "setup: built build/pstrain; running the default job on 2 servers and 2 workers"
exec ./build/pstrain local "$@"
