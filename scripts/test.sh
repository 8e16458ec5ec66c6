#!/usr/bin/env bash
# The whole test suite, as CI runs it: (1) release build + CTest (with the CUDA kernels' tests on
# the CPU emulator), (2) the same tests under ASan +
# UBSan (scripts/test_sanitize.sh), (3) every fuzz target for a short bounded time
# (scripts/fuzz.sh). Arguments go to the release CTest run.
# Quick local runs: QWEN3VL_TEST_FAST=1 runs stage 1 only; QWEN3VL_TEST_SANITIZE=0 or
# QWEN3VL_TEST_FUZZ=0 skip one stage; QWEN3VL_FUZZ_SECONDS sets the time per fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."

stage() {
  local name=$1 start=$SECONDS
  shift
  echo "test.sh: == $name"
  "$@"
  echo "test.sh: == $name passed in $((SECONDS - start)) s"
}

release() {
  # With the CUDA kernels' tests on the CPU emulator (Emulated.*: cmake/cuda_emu_kernel_tests.cmake).
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DQWEN3VL_EMU_KERNEL_TESTS=ON >/dev/null
  cmake --build build -j"$(nproc)"
  ctest --test-dir build --output-on-failure -j2 "$@"
}

stage "release build + tests" release "$@"
if [ "${QWEN3VL_TEST_FAST:-0}" = 1 ]; then exit 0; fi
if [ "${QWEN3VL_TEST_SANITIZE:-1}" != 0 ]; then
  stage "ASan + UBSan build + tests" bash scripts/test_sanitize.sh
fi
if [ "${QWEN3VL_TEST_FUZZ:-1}" != 0 ]; then
  stage "fuzz targets" bash scripts/fuzz.sh "${QWEN3VL_FUZZ_SECONDS:-20}"
fi
