#include "train/checkpoint_shards.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <set>

#include "core/allocator.h"
#include "core/error.h"
#include "io/atomic_file.h"
#include "io/checksum.h"
#include "io/safetensors.h"
#include "kernels/device.h"
#include "kernels/host_staging.h"

namespace qv::train {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// A piece: elements [begin, end) of tensor `entry` (flattened), at `data` in memory.
struct Piece {
  size_t entry;
  int64_t begin, end;
  const float* values;
  const float* exp_avg;
  const float* exp_avg_sq;
};

// The pieces of a share: every entry's elements inside every range, in range order.
std::vector<Piece> pieces_of(const std::vector<model::ParamEntry>& entries,
                             const ShareView& share) {
  std::vector<Piece> out;
  for (size_t r = 0; r < share.ranges.size(); ++r) {
    const FlatRange& w = share.ranges[r];
    for (size_t i = 0; i < entries.size(); ++i) {
      const int64_t e0 = entries[i].ref.offset, e1 = e0 + entries[i].ref.numel;
      const int64_t lo = std::max(w.begin, e0), hi = std::min(w.end, e1);
      if (lo >= hi) continue;
      const int64_t at = lo - w.begin;
      out.push_back({i, lo - e0, hi - e0, share.values[r] + at,
                     share.has_optimizer() ? share.exp_avg[r] + at : nullptr,
                     share.has_optimizer() ? share.exp_avg_sq[r] + at : nullptr});
    }
  }
  return out;
}

// Writes one safetensors file of pieces (in the memory of `device`); names[k] and data[k] per
// piece. The header's metadata holds {name: [begin, end, crc32c]} for every piece.
uint32_t write_piece_file(const std::string& path, const std::vector<model::ParamEntry>& entries,
                          const std::vector<Piece>& pieces, const std::string& prefix,
                          const float* Piece::*field, Device device) {
  std::vector<io::TensorSource> sources;
  json meta = json::object();
  for (const Piece& p : pieces) {
    const std::string name = prefix + entries[p.entry].name;
    const int64_t n = p.end - p.begin;
    const float* data = p.*field;
    sources.push_back({name, DType::kF32, {n}, data, DType::kF32});
    meta[name] = {p.begin, p.end, crc32c_from(data, n, device)};
  }
  return write_safetensors_from(path, std::move(sources),
                                {{"format", "pt"}, {kPiecesKey, meta.dump()}}, device);
}

}  // namespace

uint32_t crc32c_from(const float* p, int64_t n, Device device) {
  uint32_t crc = 0;
  kernels::for_each_staged(p, device, static_cast<size_t>(n), [&](const float* host, size_t m) {
    crc = io::crc32c(host, m * sizeof(float), crc);
  });
  return crc;
}

uint32_t write_safetensors_from(const std::string& path, std::vector<io::TensorSource> tensors,
                                const std::map<std::string, std::string>& metadata, Device device) {
  if (device.is_cpu()) return io::write_safetensors(path, std::move(tensors), metadata);
  std::vector<io::SafetensorsWriter::Tensor> decl;
  std::map<std::string, const float*> data;
  for (const io::TensorSource& t : tensors) {
    QV_CHECK(t.source_dtype == DType::kF32, path, ": tensor '", t.name,
             "' is not F32 in memory (only F32 is staged from a device)");
    decl.push_back({t.name, t.dtype, t.shape, t.source_dtype});
    data[t.name] = static_cast<const float*>(t.data);
  }
  io::SafetensorsWriter file(path, std::move(decl), metadata);
  for (const io::SafetensorsWriter::Tensor& t : file.order())
    kernels::for_each_staged(
        data.at(t.name), device, static_cast<size_t>(numel(t.shape)),
        [&](const float* host, size_t m) { file.append(host, static_cast<int64_t>(m)); });
  return file.commit();
}

int64_t ShareView::elements() const {
  int64_t n = 0;
  for (const FlatRange& r : ranges) n += r.size();
  return n;
}

std::vector<FlatRange> ranges_to_write(const std::vector<FlatRange>& owned, int64_t replicas,
                                       int64_t replica) {
  QV_CHECK(replicas >= 1 && replica >= 0 && replica < replicas, "ranges_to_write: replica ",
           replica, " of ", replicas);
  std::vector<FlatRange> out;
  for (const FlatRange& r : owned) {
    const int64_t lo = r.begin + r.size() * replica / replicas;
    const int64_t hi = r.begin + r.size() * (replica + 1) / replicas;
    if (lo < hi) out.push_back({lo, hi});
  }
  return out;
}

ShareView view_share(const model::ParamStore& store, const std::vector<FlatRange>& write,
                     const std::vector<FlatRange>& owned, const float* exp_avg,
                     const float* exp_avg_sq, Device moments_device) {
  ShareView v;
  v.ranges = write;
  v.values_device = store.device();
  v.moments_device = moments_device;
  for (const FlatRange& w : write) {
    v.values.push_back(store.values().data() + w.begin);
    if (!exp_avg) continue;
    int64_t base = 0;
    bool found = false;
    for (const FlatRange& o : owned) {
      if (w.begin >= o.begin && w.end <= o.end) {
        v.exp_avg.push_back(exp_avg + base + (w.begin - o.begin));
        v.exp_avg_sq.push_back(exp_avg_sq + base + (w.begin - o.begin));
        found = true;
        break;
      }
      base += o.size();
    }
    QV_CHECK(found, "view_share: range [", w.begin, ", ", w.end, ") is not inside an owned range");
  }
  return v;
}

ShareView snapshot_share(const ShareView& share, std::vector<float>& storage) {
  const int kinds = share.has_optimizer() ? 3 : 1;
  const size_t n = static_cast<size_t>(share.elements()) * kinds;
  if (storage.size() < n) storage.resize(n);
  ShareView view;
  view.ranges = share.ranges;
  std::vector<float*> at;  // where each range's copies start
  float* next = storage.data();
  for (size_t r = 0; r < share.ranges.size(); ++r) {
    const int64_t m = share.ranges[r].size();
    std::vector<const float*>* dst[3] = {&view.values, &view.exp_avg, &view.exp_avg_sq};
    for (int k = 0; k < kinds; ++k) {
      dst[k]->push_back(next);
      at.push_back(next);
      next += m;
    }
  }
  // The copies in blocks over threads: this is the time training waits.
  constexpr int64_t kBlock = 1 << 20;
  struct Block {
    const float* src;
    float* dst;
    int64_t n;
    Device device;  // of src
  };
  std::vector<Block> blocks;
  size_t k = 0;
  for (size_t r = 0; r < share.ranges.size(); ++r) {
    const int64_t m = share.ranges[r].size();
    const float* src[3] = {share.values[r], kinds == 3 ? share.exp_avg[r] : nullptr,
                           kinds == 3 ? share.exp_avg_sq[r] : nullptr};
    for (int kind = 0; kind < kinds; ++kind, ++k)
      for (int64_t i = 0; i < m; i += kBlock)
        blocks.push_back({src[kind] + i, at[k] + i, std::min(kBlock, m - i),
                          kind == 0 ? share.values_device : share.moments_device});
  }
  if (share.values_device.is_cpu() && share.moments_device.is_cpu()) {
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t b = 0; b < blocks.size(); ++b)
      std::memcpy(blocks[b].dst, blocks[b].src, static_cast<size_t>(blocks[b].n) * sizeof(float));
  } else {  // device-to-host copies, in order on the device's stream
    for (const Block& b : blocks)
      kernels::copy_bytes(b.dst, kCpuDevice, b.src, b.device,
                          static_cast<size_t>(b.n) * sizeof(float));
  }
  return view;
}

RankFiles write_rank_files(const std::string& dir, int rank,
                           const std::vector<model::ParamEntry>& entries, const ShareView& share,
                           const json& data_state) {
  RankFiles out;
  try {
    const std::vector<Piece> pieces = pieces_of(entries, share);
    const std::string model = rank_file("model", rank, "safetensors");
    out.crc[model] = write_piece_file((fs::path(dir) / model).string(), entries, pieces, "",
                                      &Piece::values, share.values_device);
    if (share.has_optimizer()) {
      // Both moments in one file: exp_avg.NAME and exp_avg_sq.NAME.
      std::vector<io::TensorSource> sources;
      json meta = json::object();
      for (const Piece& p : pieces)
        for (const auto& [prefix, data] :
             {std::pair{"exp_avg.", p.exp_avg}, std::pair{"exp_avg_sq.", p.exp_avg_sq}}) {
          const std::string name = prefix + entries[p.entry].name;
          const int64_t n = p.end - p.begin;
          sources.push_back({name, DType::kF32, {n}, data, DType::kF32});
          meta[name] = {p.begin, p.end, crc32c_from(data, n, share.moments_device)};
        }
      const std::string optim = rank_file("optim", rank, "safetensors");
      out.crc[optim] = write_safetensors_from((fs::path(dir) / optim).string(), std::move(sources),
                                              {{"format", "pt"}, {kPiecesKey, meta.dump()}},
                                              share.moments_device);
    }
    const std::string data = rank_file("data", rank, "json");
    const std::string text = data_state.dump() + "\n";
    io::write_file_atomic((fs::path(dir) / data).string(), text);
    out.crc[data] = io::crc32c(text.data(), text.size());
  } catch (const std::exception& e) {
    out.error = e.what();
  }
  return out;
}

json build_index(const model::ParamStore& store,
                 const std::vector<std::vector<FlatRange>>& written_by_rank, int64_t replicate,
                 int64_t shard, bool has_optimizer, const std::vector<int64_t>& optimizer_steps,
                 const std::map<std::string, uint32_t>& file_crcs) {
  json tensors = json::object();
  for (const model::ParamEntry& e : store.entries())
    tensors[e.name] = {{"dtype", "F32"}, {"shape", e.shape}, {"pieces", json::array()}};
  for (size_t r = 0; r < written_by_rank.size(); ++r) {
    ShareView v;
    v.ranges = written_by_rank[r];
    v.values.assign(v.ranges.size(), nullptr);
    for (const Piece& p : pieces_of(store.entries(), v))
      tensors[store.entries()[p.entry].name]["pieces"].push_back(
          {{"file", rank_file("model", static_cast<int64_t>(r), "safetensors")},
           {"begin", p.begin},
           {"end", p.end}});
  }
  // Every element of every tensor is written by exactly one rank.
  for (const model::ParamEntry& e : store.entries()) {
    int64_t at = 0;
    auto& pieces = tensors[e.name]["pieces"];
    std::sort(pieces.begin(), pieces.end(), [](const json& a, const json& b) {
      return a["begin"].get<int64_t>() < b["begin"].get<int64_t>();
    });
    for (const json& p : pieces) {
      QV_CHECK(p["begin"].get<int64_t>() == at, "checkpoint index: tensor ", e.name,
               " has a gap or an overlap at element ", at);
      at = p["end"].get<int64_t>();
    }
    QV_CHECK(at == e.ref.numel, "checkpoint index: tensor ", e.name, " is covered up to ", at,
             " of ", e.ref.numel, " elements");
  }
  json steps = json::object();
  if (has_optimizer)
    for (size_t i = 0; i < store.entries().size(); ++i)
      steps[store.entries()[i].name] = optimizer_steps.at(i);
  json files = json::object();
  for (const auto& [name, crc] : file_crcs) files[name] = crc;
  return {{"format", "qwen3vl-checkpoint-v2-index"},
          {"world", static_cast<int64_t>(written_by_rank.size())},
          {"replicate", replicate},
          {"shard", shard},
          {"has_optimizer", has_optimizer},
          {"optimizer_steps", steps},
          {"files", files},
          {"tensors", tensors}};
}

namespace {

// Copies, for tensor elements [t0, t0 + n) living at flat [base, base + n), the piece values
// (host memory: the mapped file) that fall in `ranges` to their place in the memory of
// `device`: dst(flat index) gives the destination of a flat element.
template <typename Dst>
void copy_overlap(const float* piece, int64_t flat_lo, int64_t flat_hi,
                  const std::vector<FlatRange>& ranges, int64_t piece_flat_begin, Device device,
                  Dst dst) {
  for (const FlatRange& r : ranges) {
    const int64_t lo = std::max(r.begin, flat_lo), hi = std::min(r.end, flat_hi);
    if (lo < hi)
      kernels::copy_bytes(dst(lo), device, piece + (lo - piece_flat_begin), kCpuDevice,
                          static_cast<size_t>(hi - lo) * sizeof(float));
  }
}

bool overlaps(const std::vector<FlatRange>& ranges, int64_t lo, int64_t hi) {
  for (const FlatRange& r : ranges)
    if (std::max(r.begin, lo) < std::min(r.end, hi)) return true;
  return false;
}

}  // namespace

void load_sharded(const std::string& path, const json& index, model::ParamStore& store,
                  const ShardedLoad& load) {
  PieceReader files(path);
  const json& tensors = index.at("tensors");
  std::vector<int64_t> owned_base;
  int64_t n = 0;
  for (const FlatRange& r : load.owned) {
    owned_base.push_back(n);
    n += r.size();
  }
  auto packed = [&](float* base) {
    return [&, base](int64_t flat) {
      for (size_t k = 0; k < load.owned.size(); ++k)
        if (flat >= load.owned[k].begin && flat < load.owned[k].end)
          return base + owned_base[k] + (flat - load.owned[k].begin);
      fail("load_sharded: element ", flat, " outside the owned ranges");
    };
  };
  const bool optim = load.exp_avg != nullptr;
  if (optim) {
    QV_CHECK(index.value("has_optimizer", false), path,
             ": has no optimizer state (saved model-only); cannot resume training from it");
    Allocator& moments = allocator_for(load.moments_device);
    moments.zero(load.exp_avg, static_cast<size_t>(n) * sizeof(float));
    moments.zero(load.exp_avg_sq, static_cast<size_t>(n) * sizeof(float));
  }
  for (const model::ParamEntry& e : store.entries()) {
    QV_CHECK(tensors.contains(e.name), path, ": index.json has no tensor '", e.name, "'");
    const json& t = tensors[e.name];
    QV_CHECK(t.at("shape").get<Shape>() == e.shape, path, ": tensor '", e.name, "' has shape ",
             shape_str(t.at("shape").get<Shape>()), " but the model expects ", shape_str(e.shape));
    int64_t covered = 0;
    for (const json& p : t.at("pieces")) {
      const std::string file = p.at("file").get<std::string>();
      const int64_t b = p.at("begin").get<int64_t>(), en = p.at("end").get<int64_t>();
      QV_CHECK(b == covered && en > b && en <= e.ref.numel, path, ": tensor '", e.name,
               "' has bad pieces in index.json");
      covered = en;
      const int64_t lo = e.ref.offset + b, hi = e.ref.offset + en;
      if (overlaps(load.param_ranges, lo, hi)) {
        const float* v = files.piece(file, e.name, b, en);
        copy_overlap(v, lo, hi, load.param_ranges, lo, store.device(),
                     [&](int64_t flat) { return store.values().data() + flat; });
      }
      if (optim && overlaps(load.owned, lo, hi)) {
        const std::string ofile = optimizer_file_of(file);
        copy_overlap(files.piece(ofile, "exp_avg." + e.name, b, en), lo, hi, load.owned, lo,
                     load.moments_device, packed(load.exp_avg));
        copy_overlap(files.piece(ofile, "exp_avg_sq." + e.name, b, en), lo, hi, load.owned, lo,
                     load.moments_device, packed(load.exp_avg_sq));
      }
    }
    QV_CHECK(covered == e.ref.numel, path, ": tensor '", e.name, "' is covered only up to element ",
             covered, " of ", e.ref.numel);
  }
  if (optim && load.steps) {
    const json& steps = index.at("optimizer_steps");
    load.steps->assign(store.entries().size(), 0);
    for (size_t i = 0; i < store.entries().size(); ++i)
      (*load.steps)[i] = steps.at(store.entries()[i].name).get<int64_t>();
  }
}

}  // namespace qv::train
