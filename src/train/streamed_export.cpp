#include "train/streamed_export.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <memory>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "model/hf_weights.h"

namespace qv::train {

namespace fs = std::filesystem;
using dist::FlatRange;

namespace {

// A run of consecutive flat-buffer elements of one tensor, in the order the files hold them.
struct Segment {
  size_t file = 0;  // index into the export's files
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};

// The parameters the files hold, in the store's order.
using Exported = std::vector<const model::ParamEntry*>;

// Every tensor of every file as one segment, files in order and each file's tensors by name
// (the order SafetensorsWriter takes their values); files' tensors index `entries`.
std::vector<Segment> file_order(const Exported& entries,
                                const std::vector<model::HfWeightsFile>& files) {
  std::vector<Segment> out;
  for (size_t f = 0; f < files.size(); ++f) {
    std::vector<size_t> order = files[f].tensors;
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return entries[a]->name < entries[b]->name; });
    for (size_t i : order)
      out.push_back({f, entries[i]->ref.offset, entries[i]->ref.offset + entries[i]->ref.numel});
  }
  return out;
}

// The segments cut into windows of at most `window` elements (a tensor may span windows).
std::vector<std::vector<Segment>> cut_windows(const std::vector<Segment>& segments,
                                              int64_t window) {
  std::vector<std::vector<Segment>> out(1);
  int64_t filled = 0;
  for (Segment s : segments) {
    while (s.size() > 0) {
      if (filled == window) {
        out.emplace_back();
        filled = 0;
      }
      const int64_t take = std::min(s.size(), window - filled);
      out.back().push_back({s.file, s.begin, s.begin + take});
      s.begin += take;
      filled += take;
    }
  }
  return out;
}

// Every rank's ranges, on every rank (one maximum and one all-to-all of integers).
std::vector<std::vector<FlatRange>> all_ranges(dist::Communicator& comm,
                                               const std::vector<FlatRange>& mine) {
  const int ranks = comm.size();
  double most = static_cast<double>(mine.size());
  comm.all_reduce_max(&most, 1);
  const int64_t width = 1 + 2 * static_cast<int64_t>(most);
  std::vector<int64_t> block(width, 0);
  block[0] = static_cast<int64_t>(mine.size());
  for (size_t i = 0; i < mine.size(); ++i) {
    block[1 + 2 * i] = mine[i].begin;
    block[2 + 2 * i] = mine[i].end;
  }
  std::vector<int64_t> in, out(ranks * width);
  for (int r = 0; r < ranks; ++r) in.insert(in.end(), block.begin(), block.end());
  comm.all_to_all(in.data(), out.data(), width);
  std::vector<std::vector<FlatRange>> ranges(ranks);
  for (int r = 0; r < ranks; ++r) {
    const int64_t* b = out.data() + r * width;
    for (int64_t i = 0; i < b[0]; ++i) ranges[r].push_back({b[1 + 2 * i], b[2 + 2 * i]});
  }
  return ranges;
}

// The ranks' ranges must hold every element of the buffer exactly once (every rank checks the
// same lists, so every rank throws or none does).
void check_cover(const std::vector<std::vector<FlatRange>>& ranges, int64_t total) {
  std::vector<std::pair<FlatRange, size_t>> all;
  for (size_t r = 0; r < ranges.size(); ++r)
    for (const FlatRange& x : ranges[r]) all.push_back({x, r});
  std::sort(all.begin(), all.end(),
            [](const auto& a, const auto& b) { return a.first.begin < b.first.begin; });
  int64_t next = 0;
  for (const auto& [x, r] : all) {
    QV_CHECK(x.begin >= next, "streamed export: rank ", r, "'s range [", x.begin, ", ", x.end,
             ") overlaps another rank's");
    QV_CHECK(x.begin == next, "streamed export: elements [", next, ", ", x.begin,
             ") belong to no rank's ranges");
    next = std::max(next, x.end);
  }
  QV_CHECK(next == total, "streamed export: the ranks' ranges end at ", next, " of ", total,
           " elements");
}

// Calls f(begin, end, offset in the window) for the elements of `ranges` inside the window's
// segments, segment after segment and ascending inside each: the order a rank sends them.
template <typename F>
void for_each_overlap(const std::vector<FlatRange>& ranges, const std::vector<Segment>& window,
                      F f) {
  int64_t offset = 0;
  for (const Segment& s : window) {
    auto it = std::upper_bound(ranges.begin(), ranges.end(), s.begin,
                               [](int64_t v, const FlatRange& r) { return v < r.end; });
    for (; it != ranges.end() && it->begin < s.end; ++it) {
      const int64_t b = std::max(it->begin, s.begin), e = std::min(it->end, s.end);
      if (b < e) f(b, e, offset + (b - s.begin));
    }
    offset += s.size();
  }
}

const char* torch_dtype_name(DType dtype) {
  return dtype == DType::kBF16 ? "bfloat16" : dtype == DType::kF16 ? "float16" : "float32";
}

// Rank 0's side: the temporary folder, one SafetensorsWriter at a time, and the first error
// (after which it only keeps receiving, so the other ranks are not left waiting).
class ExportWriter {
 public:
  ExportWriter(const model::ModelConfig& config, const Exported& entries,
               const std::vector<model::HfWeightsFile>& files, const StreamedExport& options)
      : entries_(entries), files_(files), options_(options) {
    target_ = fs::absolute(options.dir).lexically_normal();
    if (!target_.has_filename()) target_ = target_.parent_path();  // "out/"
    tmp_ = io::temp_sibling(target_.string(), "");
    guard([&] {
      fs::create_directories(target_.parent_path());
      fs::remove_all(tmp_);
      fs::create_directories(tmp_);
      io::write_file_atomic((tmp_ / "config.json").string(),
                            config.to_json_text(torch_dtype_name(options.dtype)));
    });
  }
  ~ExportWriter() {
    std::error_code ec;
    if (!published_) fs::remove_all(tmp_, ec);
  }

  // Values of segment `s` (window order) to the file it belongs to.
  void append(const Segment& s, const float* values) {
    guard([&] {
      if (!writer_ || s.file != file_) open(s.file);
      writer_->append(values, s.size());
    });
  }

  // Commits the last file, writes the index and the extra files, publishes the folder.
  void finish(const std::vector<std::string>& names, const std::vector<int64_t>& bytes) {
    guard([&] {
      if (!writer_) open(0);  // an export of no elements still has its (empty) file
      writer_->commit();
      writer_.reset();
      QV_CHECK(file_ + 1 == files_.size(), "streamed export ended at file ", file_ + 1, " of ",
               files_.size());
      if (files_.size() > 1)
        io::write_file_atomic((tmp_ / "model.safetensors.index.json").string(),
                              model::hf_weights_index_json(files_, names, bytes));
      if (options_.extra_texts)
        for (const auto& [name, text] : options_.extra_texts())
          io::write_file_atomic((tmp_ / name).string(), text);
      io::publish_dir(tmp_.string(), target_.string());
      published_ = true;
    });
  }
  const std::string& error() const { return error_; }

 private:
  template <typename F>
  void guard(F f) {
    if (!error_.empty()) return;
    try {
      f();
    } catch (const std::exception& e) {
      error_ = e.what();
      writer_.reset();  // drops its unfinished file
    }
  }
  void open(size_t file) {
    if (writer_) writer_->commit();
    // Files with no elements at all (empty tensors only) come before `file` without a segment.
    for (size_t f = writer_ ? file_ + 1 : 0; f < file; ++f) make(f)->commit();
    writer_ = make(file);
    file_ = file;
  }
  std::unique_ptr<io::SafetensorsWriter> make(size_t file) {
    std::vector<io::SafetensorsWriter::Tensor> decl;
    for (size_t i : files_[file].tensors) {
      const model::ParamEntry& e = *entries_[i];
      decl.push_back({e.name, options_.dtype, e.shape, DType::kF32});
    }
    return std::make_unique<io::SafetensorsWriter>((tmp_ / files_[file].name).string(),
                                                   std::move(decl));
  }
  const Exported& entries_;
  const std::vector<model::HfWeightsFile>& files_;
  const StreamedExport& options_;
  fs::path target_, tmp_;
  std::unique_ptr<io::SafetensorsWriter> writer_;
  size_t file_ = 0;
  bool published_ = false;
  std::string error_;
};

}  // namespace

StreamedExportStats export_hf_streamed(dist::Communicator& comm, const model::ParamStore& store,
                                       const std::vector<FlatRange>& mine,
                                       const model::ModelConfig& config,
                                       const StreamedExport& options) {
  QV_CHECK(
      options.dtype == DType::kF32 || options.dtype == DType::kBF16 || options.dtype == DType::kF16,
      "export dtype must be F32, BF16 or F16");
  QV_CHECK(options.window > 0, "streamed export: the window must hold at least one element");
  const std::vector<std::vector<FlatRange>> ranges = all_ranges(comm, mine);
  check_cover(ranges, store.total());
  Exported entries;
  std::vector<std::string> names;
  std::vector<int64_t> bytes;
  for (const model::ParamEntry& e : store.entries()) {
    if (options.skip && options.skip(e)) continue;
    entries.push_back(&e);
    names.push_back(e.name);
    bytes.push_back(e.ref.numel * static_cast<int64_t>(dtype_size(options.dtype)));
  }
  const std::vector<model::HfWeightsFile> files =
      model::split_hf_weights(bytes, options.max_shard_bytes);
  const std::vector<std::vector<Segment>> windows =
      cut_windows(file_order(entries, files), options.window);

  const int ranks = comm.size(), rank = comm.rank();
  std::unique_ptr<ExportWriter> writer;
  if (rank == 0) writer = std::make_unique<ExportWriter>(config, entries, files, options);
  std::vector<float> send, received, ordered;
  std::vector<int64_t> send_counts(ranks, 0), recv_counts(ranks, 0);
  auto values = options.values;
  if (!values)
    values = [&store](int64_t begin, int64_t n, float* out) {
      store.read_value({begin, n}, out, n);
    };
  for (const std::vector<Segment>& window : windows) {
    // This rank's values in the window, copied to the host (from a GPU store too).
    send.clear();
    for_each_overlap(mine, window, [&](int64_t b, int64_t e, int64_t) {
      send.resize(send.size() + (e - b));
      values(b, e - b, send.data() + send.size() - (e - b));
    });
    send_counts[0] = static_cast<int64_t>(send.size());
    int64_t total = 0;
    if (rank == 0)
      for (int r = 0; r < ranks; ++r) {
        recv_counts[r] = 0;
        for_each_overlap(ranges[r], window,
                         [&](int64_t b, int64_t e, int64_t) { recv_counts[r] += e - b; });
        total += recv_counts[r];
      }
    received.resize(total);
    comm.all_to_all_v(send.data(), send_counts.data(), received.data(), recv_counts.data());
    if (rank != 0) continue;
    // Rank r's values arrive in its overlap order; put them at their places in the window.
    ordered.resize(total);
    const float* from = received.data();
    for (int r = 0; r < ranks; ++r)
      for_each_overlap(ranges[r], window, [&](int64_t b, int64_t e, int64_t at) {
        std::memcpy(ordered.data() + at, from, (e - b) * sizeof(float));
        from += e - b;
      });
    int64_t at = 0;
    for (const Segment& s : window) {
      writer->append(s, ordered.data() + at);
      at += s.size();
    }
  }
  if (rank == 0) writer->finish(names, bytes);

  // Every rank learns whether rank 0's writing worked.
  const std::string error = rank == 0 ? writer->error() : "";
  writer.reset();  // removes the temporary folder after a failure
  double failed = error.empty() ? 0.0 : 1.0;
  comm.all_reduce_max(&failed, 1);
  if (failed > 0) {
    if (rank == 0)
      fail("export to ", options.dir, " failed (the folder is left as it was): ", error);
    fail("the Hugging Face export to ", options.dir, " failed on rank 0 (see its error)");
  }
  StreamedExportStats stats;
  stats.windows = static_cast<int64_t>(windows.size());
  for (int64_t b : bytes) stats.bytes_written += b;
  return stats;
}

}  // namespace qv::train
