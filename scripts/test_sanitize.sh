#!/usr/bin/env bash
# Builds the project with AddressSanitizer + UBSan (gcc, -DQWEN3VL_SANITIZE=ON, undefined
# behaviour not recoverable) into build-asan/ and runs the unit test suite under them: any
# out-of-bounds access, use-after-free, leak or undefined behaviour fails the test that hit it.
# The long end-to-end debug-model runs (TrainCc12m.LossFallsAndResumeMidEpochMatchesStraightRun,
# ChatTrain.DebugModelLossFallsOnAChatSetFromCc12m, Lora.DebugModelFineTuneLowersTheLossAndExports
# Merged: one to three minutes each in release, several times that under ASan) are left out to
# keep CI short: every part they chain (loader, tokenizer, images, chat rendering, model, LoRA,
# trainer, checkpoints) has its own tests here.
# QWEN3VL_SANITIZE_EXCLUDE='' runs everything. Extra arguments go to ctest (e.g. -R Tokenizer).
set -euo pipefail
cd "$(dirname "$0")/.."

# -O1 -g1 (line tables only) compiles in half the time of -O2 -g and still gives file:line stacks.
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" -DQWEN3VL_SANITIZE=ON \
  -DQWEN3VL_CUDA=OFF >/dev/null  # device code is not sanitized; the release stage compiles it
cmake --build build-asan -j"$(nproc)"

# Leaks inside Open MPI's runtime libraries are theirs, not ours (scripts/lsan.supp).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/scripts/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
EXCLUDE=${QWEN3VL_SANITIZE_EXCLUDE-'^TrainCc12m\.LossFallsAndResumeMidEpochMatchesStraightRun$|^ChatTrain\.DebugModelLossFallsOnAChatSetFromCc12m$|^Lora\.DebugModelFineTuneLowersTheLossAndExportsMerged$'}
MPI_TESTS='Mpi|TrainDist|Validation\.OnePass'  # the tests that start mpirun
ctest --test-dir build-asan --output-on-failure -j2 -E "${MPI_TESTS}${EXCLUDE:+|$EXCLUDE}" "$@"
# Open MPI loads its plugins with dlopen and closes them before exit, so their leaks come from an
# unknown module that no suppression can name: the mpirun tests keep every check but leaks.
ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0" ctest --test-dir build-asan --output-on-failure -j2 \
  -R "$MPI_TESTS" "$@"
