#include "data/pipeline/raw_stream.h"

#include <algorithm>
#include <sstream>

#include "core/error.h"
#include "data/sources/shard_list.h"
#include "io/checksum.h"

namespace qv::data {

nlohmann::json to_json(const SourcePos& p) {
  return {p.file_index, p.offset, p.member_index, p.sample_index, p.check};
}

SourcePos source_pos_from_json(const nlohmann::json& j) {
  QV_CHECK(j.is_array() && j.size() == 5, "bad sample position in loader state: ", j.dump());
  SourcePos p;
  try {
    p.file_index = j[0].get<int64_t>();
    p.offset = j[1].get<int64_t>();
    p.member_index = j[2].get<int64_t>();
    p.sample_index = j[3].get<int64_t>();
    p.check = j[4].get<uint32_t>();
  } catch (const nlohmann::json::exception& e) {
    fail("bad sample position in loader state: ", j.dump(), ": ", e.what());
  }
  return p;
}

namespace {

uint32_t origin_check(const std::string& origin) {
  return io::crc32c(origin.data(), origin.size());
}

SourcePos to_pos(const ReaderState& s) {
  return {s.shard_index, s.offset, s.member_index, s.sample_index, 0};
}
SourcePos to_pos(const ObelicsState& s) {
  return {s.file_index, s.offset, 0, s.line, 0};
}

const std::string& file_at(const std::vector<std::string>& files, int64_t i) {
  static const std::string none;
  return i >= 0 && i < static_cast<int64_t>(files.size()) ? files[i] : none;
}

// The reader states a position stands for (the readers check the file name on restore).
ReaderState reader_state(const SourcePos& p, const std::vector<std::string>& files) {
  ReaderState s;
  s.shard_index = p.file_index;
  s.shard = file_at(files, p.file_index);
  s.offset = p.offset;
  s.member_index = p.member_index;
  s.sample_index = p.sample_index;
  return s;
}
ObelicsState obelics_state(const SourcePos& p, const std::vector<std::string>& files) {
  ObelicsState s;
  s.file_index = p.file_index;
  s.file = file_at(files, p.file_index);
  s.offset = p.offset;
  s.line = p.sample_index;
  return s;
}

}  // namespace

RawStream::RawStream(const LoaderConfig& c, int64_t epoch, SkipStats& skips)
    : c_(c), rng_(c.seed * 1000003ull + static_cast<uint64_t>(epoch) * 7919ull + c.rank) {
  RankShare share = share_for_rank(expand_shards(c.path), c.rank, c.world_size);
  stride_ = share.sample_stride;
  offset_ = share.sample_offset;
  files_ = share.shards;
  if (c.dataset == "chat")
    chats_ = std::make_unique<ChatReader>(std::move(share.shards), c.obelics, &skips);
  else if (c.dataset == "obelics")
    docs_ = std::make_unique<ObelicsReader>(std::move(share.shards), c.obelics, &skips);
  else
    reader_ = std::make_unique<WebDatasetReader>(std::move(share.shards), c.webdataset, &skips);
}

RawStream::~RawStream() = default;

bool RawStream::read_next(RawItem& s) {
  if (chats_) {
    s.is_chat = true;
    s.pos = to_pos(chats_->state());
    if (!chats_->next(s.chat)) return false;
    s.pos.check = origin_check(s.origin());
    return true;
  }
  s.is_doc = docs_ != nullptr;
  s.pos = s.is_doc ? to_pos(docs_->state()) : to_pos(reader_->state());
  if (!(s.is_doc ? docs_->next(s.doc) : reader_->next(s.wds))) return false;
  s.pos.check = origin_check(s.origin());
  return true;
}

bool RawStream::next(RawItem& out) {
  while (static_cast<int64_t>(buffer_.size()) < std::max<int64_t>(1, c_.shuffle_buffer) &&
         !exhausted_) {
    RawItem s;
    if (!read_next(s)) {
      exhausted_ = true;
      break;
    }
    if (index_++ % stride_ != offset_) continue;
    buffer_.push_back(std::move(s));
  }
  if (buffer_.empty()) return false;
  size_t pick = 0;
  if (c_.shuffle_buffer > 0)
    pick = std::uniform_int_distribution<size_t>(0, buffer_.size() - 1)(rng_);
  out = std::move(buffer_[pick]);
  buffer_[pick] = std::move(buffer_.back());
  buffer_.pop_back();
  return true;
}

nlohmann::json RawStream::state() const {
  std::ostringstream rng;
  rng << rng_;
  nlohmann::json buffered = nlohmann::json::array();
  for (const RawItem& item : buffer_) buffered.push_back(to_json(item.pos));
  const nlohmann::json reader = chats_  ? chats_->state().to_json()
                                : docs_ ? docs_->state().to_json()
                                        : reader_->state().to_json();
  return {{"reader", reader},
          {"buffer", buffered},
          {"rng", rng.str()},
          {"index", index_},
          {"exhausted", exhausted_}};
}

void RawStream::restore(const nlohmann::json& s) {
  try {
    if (chats_)
      chats_->restore(ObelicsState::from_json(s.at("reader")));
    else if (docs_)
      docs_->restore(ObelicsState::from_json(s.at("reader")));
    else
      reader_->restore(ReaderState::from_json(s.at("reader")));
    std::istringstream rng(s.at("rng").get<std::string>());
    rng >> rng_;
    QV_CHECK(!rng.fail(), "bad RNG state in loader state");
    index_ = s.at("index").get<int64_t>();
    exhausted_ = s.at("exhausted").get<bool>();
    buffer_.clear();
    for (const auto& p : s.at("buffer")) buffer_.push_back(read_at(source_pos_from_json(p)));
  } catch (const nlohmann::json::exception& e) {
    fail("bad loader stream state: ", e.what());
  }
}

RawItem RawStream::read_at(const SourcePos& pos) {
  RawItem item;
  item.is_doc = docs_ != nullptr;
  item.pos = pos;
  bool ok = false;
  item.is_chat = chats_ != nullptr;
  if (item.is_chat) {
    if (!reread_chats_)
      reread_chats_ = std::make_unique<ChatReader>(files_, c_.obelics, &reread_skips_);
    reread_chats_->restore(obelics_state(pos, files_));
    ok = reread_chats_->next(item.chat);
  } else if (item.is_doc) {
    if (!reread_docs_)
      reread_docs_ = std::make_unique<ObelicsReader>(files_, c_.obelics, &reread_skips_);
    reread_docs_->restore(obelics_state(pos, files_));
    ok = reread_docs_->next(item.doc);
  } else {
    if (!reread_reader_)
      reread_reader_ = std::make_unique<WebDatasetReader>(files_, c_.webdataset, &reread_skips_);
    reread_reader_->restore(reader_state(pos, files_));
    ok = reread_reader_->next(item.wds);
  }
  QV_CHECK(ok && origin_check(item.origin()) == pos.check, "loader state names a sample at ",
           to_json(pos).dump(), " in ", file_at(files_, pos.file_index), " but ",
           ok ? "another sample, " + item.origin() + ", is there" : "none is there",
           " (did the data change since the checkpoint?)");
  return item;
}

}  // namespace qv::data
