#!/usr/bin/env bash
# The scaling table of docs/PERFORMANCE.md: training-step time and memory of the debug model
# against seq_len (one 448x448 image per 512 tokens), against images per sample at seq_len 2048,
# and per activation-checkpointing mode. Usage: bash bench/scaling.sh [build dir] > table.txt
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-build}/qwen3vl"
run() { echo "### $*"; "$bin" bench train --flavor debugmodel --batch 1 --image-size 448x448 --steps 1 "$@"; }
for seq in 512 1024 2048 4096 8192; do run --seq-len "$seq" --images $((seq / 512)); done
for images in 0 1 2 7; do run --seq-len 2048 --images "$images"; done
for ac in selective full; do run --seq-len 2048 --images 4 --ac "$ac"; done
