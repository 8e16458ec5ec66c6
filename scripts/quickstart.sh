#!/usr/bin/env bash
# Sets up a fresh Debian machine and runs the main job: train the debug model on the bundled
# cc12m shard (a few minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
build/qwen3vl train --config configs/debug_model.toml "$@"
