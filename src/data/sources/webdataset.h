// WebDataset shards: consecutive tar members sharing a key (the path up to the first dot of the
// file name) form one sample, e.g. 000001.jpg + 000001.txt + 000001.json. As in webdataset,
// extensions are lower-cased, members without an extension, "__meta__"-style members and
// non-files are ignored, and a key change ends a sample.
//
// Robustness: a damaged shard (truncated, corrupt header, read error) yields the samples before
// the damage, then counts one skip naming the shard and where, and reading goes on with the next
// shard. A sample is only handed out once it is known to be complete (the next key or the end
// marker was seen), so the sample being read when damage is found is dropped. Samples with a
// member over the size limit, a repeated extension or too many members are counted skips.
// A shard that cannot be opened (missing, not a file) is a qv::Error. Not thread-safe: one reader
// per thread (several may share one SkipStats).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "data/skip_stats.h"
#include "data/sources/tar_reader.h"

namespace qv::data {

struct RawSample {
  std::string shard, key;
  std::map<std::string, std::string> members;  // extension (lower case) -> bytes
  std::string origin() const { return shard + ":" + key; }
};

struct ReaderLimits {
  int64_t max_member_bytes = 64ll << 20;  // a larger member makes its sample a counted skip
  int64_t max_members_per_sample = 64;
  // Extensions kept; members with others are ignored (not read). Empty keeps every extension.
  std::set<std::string> extensions = {"jpg", "jpeg", "png", "webp", "txt", "json"};
};

// Where a reader stands: enough to continue exactly at the next sample.
struct ReaderState {
  int64_t shard_index = 0;   // index in the shard list of the shard holding the next sample
  std::string shard;         // its path (checked on restore; empty when all shards are done)
  int64_t offset = 0;        // byte offset of the next sample's first tar header in it
  int64_t member_index = 0;  // tar entries before that point
  int64_t sample_index = 0;  // samples (handed out or skipped) before that point
  nlohmann::json to_json() const;
  static ReaderState from_json(const nlohmann::json& j);  // throws qv::Error on a bad state
  bool operator==(const ReaderState&) const = default;
};

class WebDatasetReader {
 public:
  // Throws qv::Error when a shard does not exist or is not a regular file. Skips are counted in
  // `skips` when given (it must outlive the reader), else in the reader's own SkipStats.
  explicit WebDatasetReader(std::vector<std::string> shards, ReaderLimits limits = {},
                            SkipStats* skips = nullptr);
  ~WebDatasetReader();

  // Next complete sample in shard order; false after the last shard.
  bool next(RawSample& sample);

  // state() after n samples, restored into a reader over the same shard list, continues with
  // sample n + 1. restore() seeks straight to the byte offset (no re-reading).
  ReaderState state() const;
  void restore(const ReaderState& state);

  const SkipStats& skips() const { return *skips_; }
  int64_t ignored_members() const { return ignored_members_; }  // unknown extensions etc.
  const std::vector<std::string>& shards() const { return shards_; }

 private:
  struct Group {
    RawSample sample;
    bool started = false;
    std::string_view bad_reason;  // a skip reason once the sample is known to be unusable
    std::string bad_detail;
  };
  enum class GroupEnd { kKeyChange, kShardEnd, kDamage };
  GroupEnd read_group(Group& group);
  bool open_shard();
  void close_shard();

  std::vector<std::string> shards_;
  ReaderLimits limits_;
  std::unique_ptr<SkipStats> own_skips_;
  SkipStats* skips_;
  size_t shard_index_ = 0;  // shard being read, or next to open
  std::unique_ptr<TarReader> tar_;
  TarEntry lookahead_;  // first member of the next sample: header read, data not yet
  bool has_lookahead_ = false;
  int64_t next_offset_ = 0;  // resume point: where the next sample starts in shard_index_
  int64_t next_member_ = 0;
  int64_t samples_in_shard_ = 0;
  int64_t ignored_members_ = 0;
};

// The key and extension of a member name: "dir/000001.seg.png" -> {"dir/000001", "seg.png"}
// (extension lower-cased); no dot in the file name -> {name, ""}.
std::pair<std::string, std::string> split_member_name(const std::string& name);

}  // namespace qv::data
