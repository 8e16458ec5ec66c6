#!/usr/bin/env bash
# The CUDA backend's check on a GPU machine, in one short run (under 8 minutes): the CUDA tests
# (every CUDA op against its CPU op, the allocator, NCCL on one rank, HF golden parity and the
# 5-step fixture curves of the model on the GPU), the kernel benchmark
# (cuBLASLt GEMM rates, attention forward + backward) and `bench train` for the debugmodel and
# 2B flavors in bf16, with tokens/s and MFU against the GPU's bf16 dense peak.
#
# The GPU machine has the CUDA toolkit and PyTorch's CUDA libraries but none of our Debian
# libraries, so the binaries come from scripts/build_gpu_bundle.sh (run on a development
# machine; its archive travels with the repository). The loader is pointed at the bundle's
# libraries and at the CUDA libraries found here: the toolkit's, else PyTorch's wheels
# (site-packages/nvidia/*/lib), and the driver's.
#
# Usage: scripts/gpu_check.sh OUT_DIR [BUNDLE]   (BUNDLE defaults to gpu-bundle/qwen3vl-gpu.tar.xz)
# Writes OUT_DIR/gpu_check.log (everything), OUT_DIR/figures.txt (the measured lines),
# OUT_DIR/tests_SUITE.xml per test suite. Exit status: 0 when the CUDA tests pass, 3 without a CUDA device.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: scripts/gpu_check.sh OUT_DIR [BUNDLE]}
BUNDLE=${2:-gpu-bundle/qwen3vl-gpu.tar.xz}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
exec > >(tee "$OUT/gpu_check.log") 2>&1
start=$SECONDS
step() { echo "gpu_check: == $* (t = $((SECONDS - start)) s)"; }
# The whole run stays under 8 minutes (450 s of steps, the rest for unpacking and the report):
# each step gets its own cap, cut to what is left of the budget.
BUDGET=${GPU_CHECK_BUDGET_S:-450}
limit() { # limit CAP: seconds the next step may take
  local left=$((BUDGET - (SECONDS - start)))
  ((left < 10)) && left=10
  echo $(($1 < left ? $1 : left))
}

[[ -f $BUNDLE ]] || { echo "gpu_check: no bundle at $BUNDLE (run scripts/build_gpu_bundle.sh)"; exit 2; }
work=$(mktemp -d)
tar -C "$work" -xJf "$BUNDLE" || exit 2
B=$work/qwen3vl-gpu
echo "gpu_check: bundle of commit $(cat "$B/COMMIT")"

# The CUDA libraries: every folder holding one the binaries need, toolkit first.
need=(libcublasLt.so.13 libnccl.so.2)
dirs=()
add_dir() { [[ -d $1 ]] && [[ ! " ${dirs[*]} " == *" $1 "* ]] && dirs+=("$1"); }
for lib in "${need[@]}"; do
  found=""
  for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib; do
    [[ -e $d/$lib ]] && { found=$d; break; }
  done
  if [[ -z $found ]]; then
    for sp in $(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null); do
      f=$(find "$sp/nvidia" -name "$lib" 2>/dev/null | head -1)
      [[ -n $f ]] && { found=$(dirname "$f"); break; }
    done
  fi
  if [[ -n $found ]]; then add_dir "$found"; echo "gpu_check: $lib from $found"
  else echo "gpu_check: $lib not found (toolkit or PyTorch wheels)"; fi
done
for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu; do
  [[ -e $d/libcuda.so.1 ]] && add_dir "$d"
done
LD_LIBRARY_PATH="$B/lib:$(IFS=:; echo "${dirs[*]}")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LD_LIBRARY_PATH OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | head -5
ldd "$B/bin/qwen3vl" | grep -E "not found|cublas|nccl|cuda" 

# The CUDA tests: every op against the CPU's, the runtime, NCCL on one rank, and the model on
# the GPU (tests/test_cuda_model.cpp: HF golden parity in fp32, the 5-step fixture curves in fp32
# and bf16 against the CPU's), which read the fixtures of this checkout. One run per suite, so a
# crash in one (a first run on a GPU may fault) does not hide the others' results; a suite that
# crashed or hung is run again test by test with CUDA_LAUNCH_BLOCKING=1, which names the kernel
# and the test that failed.
step "CUDA tests"
export QWEN3VL_SOURCE_DIR=$(pwd)
tests_rc=0
for suite in CudaRuntime CudaKernels CudaNccl CudaModel; do
  timeout "$(limit 120)" "$B/bin/qwen3vl_tests" --gtest_filter="$suite.*" \
    --gtest_output="xml:$OUT/tests_$suite.xml"
  rc=$?
  echo "gpu_check: $suite exit $rc"
  ((rc != 0)) && tests_rc=1
  if ((rc > 1)); then # a crash or a timeout, not a failed expectation
    for t in $("$B/bin/qwen3vl_tests" --gtest_list_tests --gtest_filter="$suite.*" | sed -n 's/^  //p'); do
      CUDA_LAUNCH_BLOCKING=1 timeout "$(limit 30)" "$B/bin/qwen3vl_tests" --gtest_filter="$suite.$t" \
        >"$OUT/alone_$suite.$t.txt" 2>&1
      echo "gpu_check: alone $suite.$t exit $? (log alone_$suite.$t.txt)"
    done
  fi
done
echo "gpu_check: CUDA tests exit $tests_rc"

{
  echo "# gpu_check figures, bundle $(cat "$B/COMMIT"), $(date -u +%FT%TZ)"
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null
} >"$OUT/figures.txt"

step "bench kernels"
timeout "$(limit 60)" "$B/bin/qwen3vl" bench kernels --device cuda | tee -a "$OUT/figures.txt"

# Training steps: debugmodel at seq 2048, and 2B at seq 4096, batch 1 (2B in bf16 with fp32
# masters and AdamW needs ~18 bytes per parameter, ~40 GB, plus activations).
# 2B gets what is left of the budget: its seeded init alone draws ~2.1e9 normals on one host
# thread (42 M/s measured on a development machine: ~50 s) before the GPU's 3 steps.
for spec in "debugmodel 2048 1 60" "2B 4096 1 400"; do
  read -r flavor seq batch cap <<<"$spec"
  step "bench train $flavor seq $seq batch $batch bf16"
  timeout "$(limit "$cap")" "$B/bin/qwen3vl" bench train --device cuda --flavor "$flavor" --seq-len "$seq" \
    --batch "$batch" --images 1 --image-size 448x448 --steps 3 --mixed-precision bfloat16 \
    >"$OUT/bench_$flavor.txt" 2>&1
  echo "gpu_check: bench train $flavor exit $?"
  cat "$OUT/bench_$flavor.txt"
  grep -E "tokens/s|MFU|error" "$OUT/bench_$flavor.txt" | sed "s/^/$flavor: /" >>"$OUT/figures.txt"
done

step "done"
echo "gpu_check: figures in $OUT/figures.txt"
cat "$OUT/figures.txt"
rm -rf "$work"
if grep -q "skipped: no CUDA device" "$OUT/gpu_check.log"; then
  echo "gpu_check: no CUDA device on this machine: nothing was checked on a GPU"
  exit 3
fi
exit $tests_rc
