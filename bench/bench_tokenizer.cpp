// Tokenizer throughput (MB/s of UTF-8 input) on the test corpus (many scripts, code, emoji) and on
// the sample shard's captions (English), with a warm word cache and with no cache (pure BPE).
// Build with -DQWEN3VL_BUILD_BENCH=ON; run build/bench_tokenizer. Needs the tokenizer from
// scripts/fetch_tokenizer.sh (or QWEN3VL_TOKENIZER=path).
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data/tokenizer/tokenizer.h"

namespace {

const std::filesystem::path kRoot = std::filesystem::path(__FILE__).parent_path().parent_path();

std::string tokenizer_path() {
  if (const char* p = std::getenv("QWEN3VL_TOKENIZER")) return p;
  return (kRoot / "third_party/npm/tokenizer-qwen3/package/models/tokenizer.json").string();
}

// Corpus lines; the last 32 are the shard's captions (see tests/tools/make_tokenizer_corpus.mjs).
std::vector<std::string> corpus(bool captions_only) {
  std::ifstream in(kRoot / "tests/data/tokenizer_corpus.jsonl");
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(nlohmann::json::parse(line).get<std::string>());
  if (captions_only && lines.size() > 32) lines.erase(lines.begin(), lines.end() - 32);
  return lines;
}

void run(benchmark::State& state, bool captions_only, size_t cache_capacity) {
  const auto tokenizer = qv::data::Tokenizer::load(tokenizer_path(), cache_capacity);
  const auto texts = corpus(captions_only);
  size_t bytes = 0, tokens = 0;
  for (const auto& t : texts) bytes += t.size();
  std::vector<int32_t> ids;
  for (auto _ : state) {
    for (const auto& t : texts) {
      ids.clear();
      tokenizer.encode_into(t, ids);
      tokens += ids.size();
    }
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
}

void BM_EncodeCorpus(benchmark::State& s) {
  run(s, false, qv::data::Tokenizer::kDefaultWordCacheCapacity);
}
void BM_EncodeCorpusNoCache(benchmark::State& s) {
  run(s, false, 0);
}
void BM_EncodeCaptions(benchmark::State& s) {
  run(s, true, qv::data::Tokenizer::kDefaultWordCacheCapacity);
}
void BM_EncodeCaptionsNoCache(benchmark::State& s) {
  run(s, true, 0);
}

void BM_Decode(benchmark::State& state) {
  const auto tokenizer = qv::data::Tokenizer::load(tokenizer_path());
  std::vector<std::vector<int32_t>> encoded;
  size_t bytes = 0;
  for (const auto& t : corpus(false)) {
    encoded.push_back(tokenizer.encode(t));
    bytes += t.size();
  }
  for (auto _ : state)
    for (const auto& ids : encoded) benchmark::DoNotOptimize(tokenizer.decode(ids));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
}

BENCHMARK(BM_EncodeCorpus)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_EncodeCorpusNoCache)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_EncodeCaptions)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_EncodeCaptionsNoCache)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Decode)->Unit(benchmark::kMicrosecond);

}  // namespace
