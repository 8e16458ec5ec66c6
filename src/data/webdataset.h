// WebDataset shards: consecutive tar members sharing a key (the path up to the first dot of the
// file name) form one sample, e.g. 000001.jpg + 000001.txt + 000001.json.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "data/tar_reader.h"

namespace qv::data {

struct RawSample {
  std::string shard, key;
  std::map<std::string, std::string> members;  // extension (lower case) -> bytes
  std::string origin() const { return shard + ":" + key; }
};

class WebDatasetReader {
 public:
  explicit WebDatasetReader(std::vector<std::string> shards);
  // Next sample in shard order; false after the last shard. Damaged shards are logged and
  // counted (damaged_shards()) and reading goes on with the next shard.
  bool next(RawSample& sample);
  int64_t damaged_shards() const { return damaged_; }

 private:
  bool open_next_shard();
  std::vector<std::string> shards_;
  size_t next_shard_ = 0;
  std::unique_ptr<TarReader> tar_;
  TarMember pending_;
  bool has_pending_ = false;
  int64_t damaged_ = 0;
};

// The key and extension of a member name ("dir/000001.jpg" -> "dir/000001", "jpg").
std::pair<std::string, std::string> split_member_name(const std::string& name);

}  // namespace qv::data
