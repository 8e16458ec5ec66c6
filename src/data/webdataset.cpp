#include "data/webdataset.h"

#include <algorithm>

#include "core/log.h"

namespace qv::data {

std::pair<std::string, std::string> split_member_name(const std::string& name) {
  const size_t slash = name.rfind('/');
  const size_t dot = name.find('.', slash == std::string::npos ? 0 : slash + 1);
  if (dot == std::string::npos) return {name, ""};
  std::string ext = name.substr(dot + 1);
  std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
  return {name.substr(0, dot), ext};
}

WebDatasetReader::WebDatasetReader(std::vector<std::string> shards) : shards_(std::move(shards)) {}

bool WebDatasetReader::open_next_shard() {
  while (next_shard_ < shards_.size()) {
    const std::string& path = shards_[next_shard_++];
    try {
      tar_ = std::make_unique<TarReader>(path);
      return true;
    } catch (const std::exception& e) {
      ++damaged_;
      log::warn(std::string("skipping shard: ") + e.what());
    }
  }
  tar_.reset();
  return false;
}

bool WebDatasetReader::next(RawSample& s) {
  s = RawSample{};
  while (true) {
    if (!tar_ && !open_next_shard()) return false;
    TarMember m;
    if (has_pending_) {
      m = std::move(pending_);
      has_pending_ = false;
    } else if (!tar_->next(m)) {
      if (!tar_->error().empty()) {
        ++damaged_;
        log::warn("shard " + tar_->path() + " is damaged (" + tar_->error() +
                  "); samples after the damage are skipped");
      }
      tar_.reset();
      if (!s.key.empty()) return true;  // the last sample of the shard
      continue;
    }
    auto [key, ext] = split_member_name(m.name);
    if (!s.key.empty() && key != s.key) {
      pending_ = std::move(m);
      has_pending_ = true;
      return true;
    }
    s.shard = tar_->path();
    s.key = key;
    s.members[ext] = std::move(m.data);
  }
}

}  // namespace qv::data
