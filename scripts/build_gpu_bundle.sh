#!/usr/bin/env bash
# Builds the CUDA binaries on a development machine (the CUDA toolkit is needed, a GPU is not)
# and packs them with the non-CUDA shared libraries they load (oneDNN, OpenBLAS, Open MPI, image
# and archive libraries, libstdc++ ...) into one archive, for a GPU machine that has the CUDA
# libraries (toolkit or PyTorch's wheels) but none of our Debian packages. scripts/gpu_check.sh
# unpacks and runs it there. No CUDA library goes into the archive (cuBLASLt, NCCL, the driver
# are the GPU machine's), nor glibc's own libraries (the GPU machine's glibc is as new or newer).
#
# Then it checks the bundle here: every library the binaries load resolves to the bundle, glibc
# or a CUDA library; the binary starts from the bundle and reports "no CUDA device" cleanly.
#
# Usage: scripts/build_gpu_bundle.sh [OUT_DIR]   (default gpu-bundle/; writes qwen3vl-gpu.tar.xz)
# QWEN3VL_GPU_BUILD=DIR reuses a build folder (default build-gpu; build/ is a CUDA build too where
# the toolkit was found).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu-bundle}
BUILD=${QWEN3VL_GPU_BUILD:-build-gpu}

cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DQWEN3VL_CUDA=ON >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target qwen3vl qwen3vl_tests

# Libraries that stay behind: CUDA's (the GPU machine has its own, matched to its driver) and
# glibc's.
SKIP='^(libcuda|libcublas|libcublasLt|libcudart|libnccl|libcudnn|libnvJitLink|libnvrtc|libc|libm|libdl|libpthread|librt|libresolv|libutil|ld-linux-x86-64|linux-vdso)\.so'

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
B=$stage/qwen3vl-gpu
mkdir -p "$B/bin" "$B/lib"
cp "$BUILD/qwen3vl" "$BUILD/qwen3vl_tests" "$B/bin/"
strip "$B/bin/qwen3vl" "$B/bin/qwen3vl_tests"
ldd "$B/bin/qwen3vl" "$B/bin/qwen3vl_tests" | awk '/=> \// {print $1, $3}' | sort -u |
  while read -r name path; do
    if [[ $name =~ $SKIP ]]; then continue; fi
    cp -L "$path" "$B/lib/$name"
  done
strip --strip-unneeded "$B"/lib/*.so* 2>/dev/null || true
git rev-parse HEAD >"$B/COMMIT" 2>/dev/null || echo unknown >"$B/COMMIT"
(cd "$B" && ls -l lib bin) >"$B/MANIFEST"

mkdir -p "$OUT"
tar -C "$stage" -cf - qwen3vl-gpu | xz -T2 -6 >"$OUT/qwen3vl-gpu.tar.xz"
echo "build_gpu_bundle: $OUT/qwen3vl-gpu.tar.xz: $(du -m "$OUT/qwen3vl-gpu.tar.xz" | cut -f1) MiB" \
  "($(du -sm "$B/lib" | cut -f1) MiB of libraries unpacked, $(ls "$B/lib" | wc -l) files)"

# Self-check on this machine: with the bundle first on the loader's path, every library resolves
# to the bundle, glibc or CUDA (ldd lists them), and the binary reports the missing GPU cleanly.
check=$(mktemp -d)
trap 'rm -rf "$stage" "$check"' EXIT
tar -C "$check" -xJf "$OUT/qwen3vl-gpu.tar.xz"
C=$check/qwen3vl-gpu
export LD_LIBRARY_PATH="$C/lib:${QWEN3VL_CUDA_LIBS:-/usr/local/cuda/lib64}"
bad=0
while read -r name arrow path rest; do
  [[ $arrow == "=>" ]] || continue
  if [[ $path == "not" ]]; then echo "build_gpu_bundle: $name not found"; bad=1; continue; fi
  if [[ $path == "$C/lib/"* || $name =~ $SKIP ]]; then continue; fi
  echo "build_gpu_bundle: $name comes from $path, outside the bundle"
  bad=1
done < <(ldd "$C/bin/qwen3vl" "$C/bin/qwen3vl_tests")
ldd "$C/bin/qwen3vl" | sed "s|$C|<bundle>|"
[[ $bad == 0 ]] || { echo "build_gpu_bundle: FAILED: libraries outside the bundle"; exit 1; }
set +e
msg=$("$C/bin/qwen3vl" bench kernels --device cuda 2>&1)
rc=$?
set -e
echo "bundle's qwen3vl bench kernels --device cuda: exit $rc: $msg"
if [[ $rc == 0 ]]; then
  echo "build_gpu_bundle: a GPU is present here: the bundle ran the kernel benchmark"
elif [[ $msg != *"no CUDA device"* ]]; then
  echo "build_gpu_bundle: FAILED: the bundle did not report a missing device cleanly"
  exit 1
fi
"$C/bin/qwen3vl_tests" --gtest_filter='CudaRuntime.NoDeviceIsReportedCleanly' --gtest_brief=1
echo "build_gpu_bundle: ok"
