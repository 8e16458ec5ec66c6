#!/usr/bin/env bash
# Runs the CUDA backend's tests without a GPU: builds the backend's own source against the CPU
# emulator in tests/cuda_emu (-DQWEN3VL_CUDA=EMU, docs/CUDA.md "Running the backend without a
# GPU: the emulator") in build-emu/, then runs the CUDA tests (Cuda*: the emulator's own tests,
# every CUDA op against the CPU op, the runtime, the model's HF golden parity and 5-step curves
# on cuda:0) twice: in the emulator's default schedule and with blocks and threads in reverse
# order (a race between threads shows in one of the two). Not part of CI (scripts/test.sh).
#
# Usage: bash scripts/test_cuda_emu.sh [extra gtest filter, default Cuda*]
# Environment: BUILD_DIR (default build-emu), JOBS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."

build=${BUILD_DIR:-build-emu}
filter=${1:-Cuda*}
launcher=()
if command -v ccache > /dev/null; then
  export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD/..}
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi

start=$(date +%s)
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DQWEN3VL_CUDA=EMU "${launcher[@]}" > /dev/null
cmake --build "$build" -j"${JOBS:-2}" --target qwen3vl_tests qwen3vl
built=$(date +%s)
echo "test_cuda_emu: configure + build $((built - start)) s"

"$build/qwen3vl_tests" --gtest_filter="$filter" --gtest_brief=1
QWEN3VL_CUDA_EMU_SCHEDULE=reverse "$build/qwen3vl_tests" --gtest_filter="$filter" --gtest_brief=1
echo "test_cuda_emu: tests $(($(date +%s) - built)) s (both schedules)"
