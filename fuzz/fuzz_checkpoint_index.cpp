// index.json of a sharded checkpoint (train/checkpoint_index.h), checked against real rank
// files: parse_index must end in a qv::Error or accept an index whose every tensor is covered by
// its pieces exactly once, in model rank files it lists with a CRC; reading every piece (and its
// moments) the accepted index names from a fixed two-rank checkpoint must then end in a qv::Error
// (missing file, missing piece, another range, CRC mismatch) or return the stored values.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "fuzz_util.h"
#include "io/checksum.h"
#include "io/safetensors.h"
#include "train/checkpoint_index.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The fixed checkpoint: tensor "a" [3, 4] split over ranks 0 ([0, 8)) and 1 ([8, 12)), tensor
// "b" [5] on rank 0; values a[i] = i, b[i] = 100 + i; moments 1000 + value and 2000 + value.
// fuzz/corpus/checkpoint_index/ holds its index.json.
void write_rank(const std::string& dir, int rank,
                const std::vector<std::tuple<std::string, int64_t, int64_t, float>>& pieces) {
  std::vector<std::vector<float>> store;
  for (const char* kind : {"model", "optim"}) {
    std::vector<qv::io::TensorSource> sources;
    json meta = json::object();
    const std::vector<std::pair<std::string, float>> prefixes =
        std::string(kind) == "model" ? std::vector<std::pair<std::string, float>>{{"", 0.0f}}
                                     : std::vector<std::pair<std::string, float>>{
                                           {"exp_avg.", 1000.0f}, {"exp_avg_sq.", 2000.0f}};
    for (const auto& [prefix, add] : prefixes)
      for (const auto& [name, begin, end, base] : pieces) {
        store.emplace_back();
        for (int64_t i = begin; i < end; ++i) store.back().push_back(base + add + i);
        sources.push_back(
            {prefix + name, qv::DType::kF32, {end - begin}, store.back().data(), qv::DType::kF32});
        meta[prefix + name] = {
            begin, end, qv::io::crc32c(store.back().data(), store.back().size() * sizeof(float))};
      }
    qv::io::write_safetensors(dir + "/" + qv::train::rank_file(kind, rank, "safetensors"),
                              std::move(sources),
                              {{"format", "pt"}, {qv::train::kPiecesKey, meta.dump()}});
  }
}

struct Fixture {
  std::string dir;
  Fixture() {
    char tmpl[] = "/tmp/qwen3vl-fuzz-ckpt-XXXXXX";
    if (!mkdtemp(tmpl)) std::abort();
    dir = tmpl;
    write_rank(dir, 0, {{"a", 0, 8, 0.0f}, {"b", 0, 5, 100.0f}});
    write_rank(dir, 1, {{"a", 8, 12, 0.0f}});
  }
  ~Fixture() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

const Fixture& fixture() {
  static const Fixture f;
  return f;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& dir = fixture().dir;
  json index;
  try {
    index = qv::train::parse_index(std::string(qv::fuzz::as_text(data, size)), "index.json");
  } catch (const qv::Error&) {
    return 0;
  }
  const bool optim = index["has_optimizer"].get<bool>();
  for (const auto& [name, t] : index["tensors"].items()) {
    int64_t numel = 1, covered = 0;
    for (const json& d : t["shape"]) numel *= d.get<int64_t>();
    for (const json& p : t["pieces"]) {
      const int64_t b = p["begin"].get<int64_t>(), e = p["end"].get<int64_t>();
      qv::fuzz::require(b == covered && e > b && e <= numel, "accepted pieces overlap or gap");
      covered = e;
      const std::string file = p["file"].get<std::string>();
      qv::fuzz::require(index["files"].contains(file), "accepted a piece file with no CRC");
      // A fresh reader per piece: every read checks the piece again.
      try {
        qv::train::PieceReader reader(dir);
        const float* v = reader.piece(file, name, b, e);
        const float base = name == "b" ? 100.0f : 0.0f;
        for (int64_t i = 0; i < e - b; ++i)
          qv::fuzz::require(v[i] == base + static_cast<float>(b + i), "piece read wrong values");
        if (optim) reader.piece(qv::train::optimizer_file_of(file), "exp_avg." + name, b, e);
      } catch (const qv::Error&) {
      }
    }
    qv::fuzz::require(covered == numel, "accepted a tensor not covered to its end");
  }
  return 0;
}
