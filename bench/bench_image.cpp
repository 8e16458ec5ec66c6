// Image decode + Qwen3-VL preprocessing throughput on one core, over the JPEGs of the sample
// cc12m shard. Run from the repository root (or set QWEN3VL_SHARD to the .tar):
//   build/bench_image --benchmark_counters_tabular=true
// items_per_second = images per second per core.
#include <archive.h>
#include <archive_entry.h>
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "data/image/image_decode.h"
#include "data/image/image_preprocess.h"
#include "data/image/image_resize.h"

namespace {

using qv::data::RgbImage;

// The .jpg members of the shard, read once.
const std::vector<std::vector<uint8_t>>& shard_jpegs() {
  static const std::vector<std::vector<uint8_t>> jpegs = [] {
    const char* env = std::getenv("QWEN3VL_SHARD");
    const std::string path = env ? env : "data/cc12m-train-0000.tar";
    std::vector<std::vector<uint8_t>> out;
    archive* a = archive_read_new();
    archive_read_support_format_tar(a);
    if (archive_read_open_filename(a, path.c_str(), 1 << 16) != ARCHIVE_OK) {
      std::fprintf(stderr, "bench_image: cannot open %s (set QWEN3VL_SHARD)\n", path.c_str());
      std::exit(1);
    }
    archive_entry* e;
    while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
      const std::string name = archive_entry_pathname(e);
      if (name.size() < 4 || name.substr(name.size() - 4) != ".jpg") continue;
      std::vector<uint8_t> bytes(archive_entry_size(e));
      archive_read_data(a, bytes.data(), bytes.size());
      out.push_back(std::move(bytes));
    }
    archive_read_free(a);
    return out;
  }();
  return jpegs;
}

const std::vector<RgbImage>& decoded() {
  static const std::vector<RgbImage> images = [] {
    std::vector<RgbImage> out;
    for (const auto& j : shard_jpegs()) out.push_back(qv::data::decode_image(j.data(), j.size()));
    return out;
  }();
  return images;
}

qv::data::ImageProcessorConfig config_for(int64_t setting) {
  qv::data::ImageProcessorConfig cfg;  // 0: released Qwen3-VL defaults
  if (setting == 1) {                  // 1: the fixtures' "qwen3vl_small" (<= 64 tokens)
    cfg.min_pixels = 4096;
    cfg.max_pixels = 65536;
  }
  return cfg;
}

void set_counters(benchmark::State& state, int64_t images, int64_t pixels) {
  state.SetItemsProcessed(images);
  state.counters["Mpix_in/s"] =
      benchmark::Counter(static_cast<double>(pixels) / 1e6, benchmark::Counter::kIsRate);
}

void BM_ReadHeader(benchmark::State& state) {
  const auto& jpegs = shard_jpegs();
  int64_t n = 0;
  for (auto _ : state)
    for (const auto& j : jpegs) {
      benchmark::DoNotOptimize(qv::data::read_image_info(j.data(), j.size()));
      ++n;
    }
  state.SetItemsProcessed(n);
}

void BM_Decode(benchmark::State& state) {
  const auto& jpegs = shard_jpegs();
  int64_t n = 0, pixels = 0;
  for (auto _ : state)
    for (const auto& j : jpegs) {
      const RgbImage img = qv::data::decode_image(j.data(), j.size());
      pixels += int64_t(img.width) * img.height;
      ++n;
    }
  set_counters(state, n, pixels);
}

void BM_Resize(benchmark::State& state) {
  const auto cfg = config_for(state.range(0));
  int64_t n = 0, pixels = 0;
  for (auto _ : state)
    for (const RgbImage& img : decoded()) {
      const auto s = qv::data::resized_image_size(img.height, img.width, cfg);
      benchmark::DoNotOptimize(qv::data::resize_bicubic(img, int(s.width), int(s.height)));
      pixels += int64_t(img.width) * img.height;
      ++n;
    }
  set_counters(state, n, pixels);
}

void BM_Patchify(benchmark::State& state) {
  const auto cfg = config_for(state.range(0));
  std::vector<RgbImage> resized;
  for (const RgbImage& img : decoded()) {
    const auto s = qv::data::resized_image_size(img.height, img.width, cfg);
    resized.push_back(qv::data::resize_bicubic(img, int(s.width), int(s.height)));
  }
  int64_t n = 0, pixels = 0;
  for (auto _ : state)
    for (const RgbImage& img : resized) {
      benchmark::DoNotOptimize(qv::data::patchify_frames({&img}, cfg, false));
      pixels += int64_t(img.width) * img.height;
      ++n;
    }
  set_counters(state, n, pixels);
}

void BM_DecodeAndPreprocess(benchmark::State& state) {
  const auto cfg = config_for(state.range(0));
  const auto& jpegs = shard_jpegs();
  int64_t n = 0, pixels = 0, tokens = 0;
  for (auto _ : state)
    for (const auto& j : jpegs) {
      const RgbImage img = qv::data::decode_image(j.data(), j.size());
      const auto item = qv::data::preprocess_image(img, cfg);
      benchmark::DoNotOptimize(item.pixels.data());
      pixels += int64_t(img.width) * img.height;
      tokens += qv::data::merged_token_count(item.grid, cfg.merge_size);
      ++n;
    }
  set_counters(state, n, pixels);
  state.counters["tokens/image"] = static_cast<double>(tokens) / std::max<int64_t>(n, 1);
}

BENCHMARK(BM_ReadHeader)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Decode)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Resize)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Patchify)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_DecodeAndPreprocess)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

}  // namespace
