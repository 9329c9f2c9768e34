#!/usr/bin/env bash
# tools/demo.sh: installs what is missing, builds, and starts ringpostd on config/demo.toml
# (unprivileged ports, domain example.test, user demo@example.test / demo).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh
bash tools/build.sh release
if [[ ! -x build/tools/ringpostd ]]; then
  echo "demo: ringpostd is not built yet (the engine is still being written); nothing to start."
  exit 1
fi
mkdir -p .demo
exec build/tools/ringpostd --config config/demo.toml
