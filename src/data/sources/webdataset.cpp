#include "data/sources/webdataset.h"

#include <sys/stat.h>

#include <algorithm>

#include "core/error.h"

namespace qv::data {

namespace {

// webdataset's "__key__"-style members carry no sample data.
bool is_meta_member(const std::string& name) {
  return name.find('/') == std::string::npos && name.size() >= 4 && name.rfind("__", 0) == 0 &&
         name.compare(name.size() - 2, 2, "__") == 0;
}

std::string_view damage_reason(TarDamage d) {
  switch (d) {
    case TarDamage::kTruncated:
      return skip::kTruncatedShard;
    case TarDamage::kCorruptHeader:
      return skip::kCorruptTarHeader;
    default:
      return skip::kShardReadError;
  }
}

}  // namespace

std::pair<std::string, std::string> split_member_name(const std::string& name) {
  const size_t slash = name.rfind('/');
  const size_t dot = name.find('.', slash == std::string::npos ? 0 : slash + 1);
  if (dot == std::string::npos) return {name, ""};
  std::string ext = name.substr(dot + 1);
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return {name.substr(0, dot), ext};
}

nlohmann::json ReaderState::to_json() const {
  return {{"shard_index", shard_index},
          {"shard", shard},
          {"offset", offset},
          {"member_index", member_index},
          {"sample_index", sample_index}};
}

ReaderState ReaderState::from_json(const nlohmann::json& j) {
  try {
    ReaderState s;
    s.shard_index = j.at("shard_index").get<int64_t>();
    s.shard = j.at("shard").get<std::string>();
    s.offset = j.at("offset").get<int64_t>();
    s.member_index = j.at("member_index").get<int64_t>();
    s.sample_index = j.at("sample_index").get<int64_t>();
    return s;
  } catch (const nlohmann::json::exception& e) {
    fail("bad WebDataset reader state ", j.dump(), ": ", e.what());
  }
}

WebDatasetReader::WebDatasetReader(std::vector<std::string> shards, ReaderLimits limits,
                                   SkipStats* skips)
    : shards_(std::move(shards)), limits_(std::move(limits)) {
  QV_CHECK(limits_.max_member_bytes >= 0 && limits_.max_members_per_sample > 0,
           "WebDataset reader limits must be positive");
  for (const auto& s : shards_) {
    struct stat st {};
    QV_CHECK(::stat(s.c_str(), &st) == 0, "shard ", s, " does not exist");
    QV_CHECK(S_ISREG(st.st_mode), "shard ", s, " is not a regular file");
  }
  if (!skips) own_skips_ = std::make_unique<SkipStats>();
  skips_ = skips ? skips : own_skips_.get();
}

WebDatasetReader::~WebDatasetReader() = default;

bool WebDatasetReader::open_shard() {
  if (shard_index_ >= shards_.size()) return false;
  tar_ = std::make_unique<TarReader>(shards_[shard_index_]);
  if (next_offset_ > 0 || next_member_ > 0) tar_->seek(next_offset_, next_member_);
  return true;
}

void WebDatasetReader::close_shard() {
  tar_.reset();
  ++shard_index_;
  has_lookahead_ = false;
  samples_in_shard_ = 0;
  next_offset_ = next_member_ = 0;
}

WebDatasetReader::GroupEnd WebDatasetReader::read_group(Group& g) {
  int64_t kept = 0;
  while (true) {
    TarEntry e;
    if (has_lookahead_) {
      e = std::move(lookahead_);
      has_lookahead_ = false;
    } else {
      const TarStatus st = tar_->next(e);
      if (st == TarStatus::kEnd) return GroupEnd::kShardEnd;
      if (st == TarStatus::kDamaged) return GroupEnd::kDamage;
    }
    auto [key, ext] = split_member_name(e.name);
    if (!e.is_regular() || ext.empty() || is_meta_member(e.name)) {
      ++ignored_members_;
      continue;
    }
    if (g.started && key != g.sample.key) {
      lookahead_ = std::move(e);
      has_lookahead_ = true;
      return GroupEnd::kKeyChange;
    }
    g.started = true;
    g.sample.key = std::move(key);
    if (!limits_.extensions.empty() && !limits_.extensions.count(ext)) {
      ++ignored_members_;
      continue;
    }
    if (!g.bad_reason.empty()) continue;  // already a skip: its data is not needed
    if (g.sample.members.count(ext)) {
      g.bad_reason = skip::kDuplicateMember;
      g.bad_detail = cat("second '", e.name, "'");
      continue;
    }
    if (++kept > limits_.max_members_per_sample) {
      g.bad_reason = skip::kTooManyMembers;
      g.bad_detail = cat("more than ", limits_.max_members_per_sample);
      continue;
    }
    if (e.size > limits_.max_member_bytes) {
      g.bad_reason = skip::kMemberTooLarge;
      g.bad_detail = cat("'", e.name, "' has ", e.size, " bytes, limit ", limits_.max_member_bytes);
      continue;
    }
    std::string data;
    if (tar_->read_data(data) != TarStatus::kOk) return GroupEnd::kDamage;
    g.sample.members.emplace(std::move(ext), std::move(data));
  }
}

bool WebDatasetReader::next(RawSample& sample) {
  while (true) {
    if (!tar_ && !open_shard()) return false;
    const std::string& shard = shards_[shard_index_];
    Group g;
    g.sample.shard = shard;
    const GroupEnd end = read_group(g);
    if (end == GroupEnd::kDamage) {
      // The sample in progress may be incomplete: drop it with the rest of the shard.
      skips_->add(damage_reason(tar_->damage()), g.started ? g.sample.origin() : shard,
                  cat(tar_->error(), "; after ", samples_in_shard_, " complete samples"));
      close_shard();
      continue;
    }
    if (!g.started) {  // clean end of the shard
      if (tar_->entries() == 0) skips_->add(skip::kEmptyShard, shard, "no members");
      close_shard();
      continue;
    }
    ++samples_in_shard_;
    if (end == GroupEnd::kKeyChange) {
      next_offset_ = lookahead_.header_offset;
      next_member_ = lookahead_.index;
    } else {
      close_shard();
    }
    if (!g.bad_reason.empty()) {
      skips_->add(g.bad_reason, g.sample.origin(), g.bad_detail);
      continue;
    }
    if (g.sample.members.empty()) {
      skips_->add(skip::kNoUsableMembers, g.sample.origin(), "no member with a kept extension");
      continue;
    }
    sample = std::move(g.sample);
    return true;
  }
}

ReaderState WebDatasetReader::state() const {
  ReaderState s;
  s.shard_index = static_cast<int64_t>(shard_index_);
  if (shard_index_ < shards_.size()) s.shard = shards_[shard_index_];
  s.offset = next_offset_;
  s.member_index = next_member_;
  s.sample_index = samples_in_shard_;
  return s;
}

void WebDatasetReader::restore(const ReaderState& s) {
  const auto n = static_cast<int64_t>(shards_.size());
  QV_CHECK(s.shard_index >= 0 && s.shard_index <= n, "reader state points at shard ", s.shard_index,
           " but the list has ", n, " shards");
  QV_CHECK(s.shard_index == n || shards_[s.shard_index] == s.shard, "reader state names shard '",
           s.shard, "' at index ", s.shard_index, " but the list has '",
           s.shard_index < n ? shards_[s.shard_index] : std::string(), "' there");
  QV_CHECK(s.offset >= 0 && s.member_index >= 0 && s.sample_index >= 0,
           "reader state has negative positions: ", s.to_json().dump());
  tar_.reset();
  has_lookahead_ = false;
  shard_index_ = static_cast<size_t>(s.shard_index);
  next_offset_ = s.offset;
  next_member_ = s.member_index;
  samples_in_shard_ = s.sample_index;
  open_shard();  // now, so that a bad offset is reported by restore()
}

}  // namespace qv::data
