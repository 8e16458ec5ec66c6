// The first stage of the loader: this rank's raw samples of one epoch (WebDataset groups or
// OBELICS documents), passed through a seeded shuffle buffer. Its state is small and seekable:
// the reader's byte position, the positions of the buffered samples and the RNG, so a resumed
// loader re-reads only the buffered samples instead of the whole epoch.
#pragma once
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "data/pipeline/loader_config.h"
#include "data/pipeline/sample.h"
#include "data/skip_stats.h"
#include "data/sources/chat_jsonl.h"
#include "data/sources/obelics.h"
#include "data/sources/webdataset.h"

namespace qv::data {

// One unprocessed sample: a WebDataset group (cc12m), an interleaved document (OBELICS) or a
// conversation (chat).
struct RawItem {
  RawSample wds;
  Document doc;
  Conversation chat;
  bool is_doc = false, is_chat = false;
  SourcePos pos;
  std::string origin() const {
    return is_chat ? chat.origin() : is_doc ? doc.origin() : wds.origin();
  }
};

nlohmann::json to_json(const SourcePos& p);
SourcePos source_pos_from_json(const nlohmann::json& j);  // throws qv::Error on a bad position

class RawStream {
 public:
  // Skips met while reading are counted in `skips`.
  RawStream(const LoaderConfig& c, int64_t epoch, SkipStats& skips);
  ~RawStream();

  // Next raw sample of this rank in shuffled order; false at the end of the epoch.
  bool next(RawItem& out);

  // Where the stream stands; restore() on a stream of the same config and epoch continues
  // exactly there, re-reading only the shuffle buffer's samples.
  nlohmann::json state() const;
  void restore(const nlohmann::json& state);

  // The raw sample at `pos`, read by a second reader (skips it meets are not counted again).
  // Throws qv::Error when another sample (or none) is found there.
  RawItem read_at(const SourcePos& pos);

 private:
  bool read_next(RawItem& item);  // from the main reader, with its position
  const LoaderConfig& c_;
  std::vector<std::string> files_;
  std::mt19937_64 rng_;
  std::unique_ptr<WebDatasetReader> reader_;
  std::unique_ptr<ObelicsReader> docs_;
  std::unique_ptr<ChatReader> chats_;
  SkipStats reread_skips_{/*log_limit=*/0};  // throwaway counts of read_at()
  std::unique_ptr<WebDatasetReader> reread_reader_;
  std::unique_ptr<ObelicsReader> reread_docs_;
  std::unique_ptr<ChatReader> reread_chats_;
  std::vector<RawItem> buffer_;
  int64_t index_ = 0, stride_ = 1, offset_ = 0;
  bool exhausted_ = false;
};

}  // namespace qv::data
