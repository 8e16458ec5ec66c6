#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ into build-fuzz/ (clang, ASan + UBSan) and runs each one
# for a bounded time over a copy of its seed corpus (fuzz/corpus/<target>, never written to).
# Fails when any target finds a crash, leak, timeout or over-limit allocation; the inputs land in
# build-fuzz/findings/<target>/ and the command that reproduces each one is printed.
#
#   bash scripts/fuzz.sh [seconds-per-target] [target ...]     (default 30 s, every target)
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${1:-30}
shift || true
CXX=${QWEN3VL_FUZZ_CXX:-clang++-14}
BUILD=build-fuzz
cmake -S . -B "$BUILD" -DQWEN3VL_FUZZ=ON -DCMAKE_CXX_COMPILER="$CXX" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo ${QWEN3VL_FUZZ_CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD" -j"$(nproc)"

if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for f in fuzz/fuzz_*.cpp; do
    name=$(basename "$f" .cpp)
    targets+=("${name#fuzz_}")
  done
fi

failed=()
for t in "${targets[@]}"; do
  bin="$BUILD/fuzz/fuzz_$t"
  work="$BUILD/runs/$t"
  findings="$BUILD/findings/$t"
  rm -rf "$work"
  mkdir -p "$work/corpus" "$findings"
  cp fuzz/corpus/"$t"/* "$work/corpus/"
  args=(-max_total_time="$SECS" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
    -artifact_prefix="$findings/")
  case "$t" in
    job_config) args+=(-dict=fuzz/dict/toml.dict) ;;
    safetensors | safetensors_index | checkpoint_index | checkpoint_state | model_config | image_processor_config | tokenizer_json | obelics | chat)
      args+=(-dict=fuzz/dict/json.dict) ;;
  esac
  echo "fuzz: $t for ${SECS}s"
  status=0
  "$bin" "${args[@]}" "$work/corpus" >"$work/log" 2>&1 || status=$?
  grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb" "$work/log" | tr '\n' ' ' || true
  echo
  if [ "$status" != 0 ]; then
    failed+=("$t")
    tail -n 60 "$work/log"
    for a in "$findings"/*; do
      [ -e "$a" ] && echo "fuzz: $t found $a; reproduce with: $bin $a"
    done
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]} (logs in $BUILD/runs/<target>/log)"
  exit 1
fi
echo "fuzz: all ${#targets[@]} targets ran ${SECS}s without a finding"
