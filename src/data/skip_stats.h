// Counting (and logging) what the data path skips, by reason, naming where it happened
// ("shard:key", "file:line" or a shard path). Thread-safe: the loader's workers share one.
#pragma once
#include <cstdint>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace qv::data {

// The reasons the data sources report, in one place so that counts are easy to find and compare.
namespace skip {
// Tar shards (whole or rest of a shard).
inline constexpr std::string_view kTruncatedShard = "truncated shard";
inline constexpr std::string_view kCorruptTarHeader = "corrupt tar header";
inline constexpr std::string_view kShardReadError = "shard read error";
inline constexpr std::string_view kEmptyShard = "empty shard";
// WebDataset samples.
inline constexpr std::string_view kMemberTooLarge = "member too large";
inline constexpr std::string_view kDuplicateMember = "duplicate member";
inline constexpr std::string_view kTooManyMembers = "too many members";
inline constexpr std::string_view kNoUsableMembers = "no usable members";
// Image-caption pairs.
inline constexpr std::string_view kNoImage = "no image";
inline constexpr std::string_view kEmptyImage = "empty image";
inline constexpr std::string_view kNoCaption = "no caption";
inline constexpr std::string_view kEmptyCaption = "empty caption";
inline constexpr std::string_view kInvalidUtf8Caption = "caption is not valid UTF-8";
// OBELICS documents.
inline constexpr std::string_view kLineTooLong = "line too long";
inline constexpr std::string_view kRowTooLarge = "row too large";  // a Parquet row over the limits
inline constexpr std::string_view kMalformedJson = "malformed JSON";
inline constexpr std::string_view kMalformedDocument = "malformed document";
inline constexpr std::string_view kLengthMismatch = "texts/images length mismatch";
inline constexpr std::string_view kNeitherTextNorImage = "position with neither text nor image";
inline constexpr std::string_view kBothTextAndImage = "position with both text and image";
inline constexpr std::string_view kEmptyDocument = "empty document";
inline constexpr std::string_view kMissingImageFile = "missing image file";
inline constexpr std::string_view kUnreadableImageFile = "unreadable image file";
inline constexpr std::string_view kImageTooLarge = "image too large";
inline constexpr std::string_view kImageUrlNotAllowed = "image URL scheme not allowed";
inline constexpr std::string_view kImageFetchFailed = "image fetch failed";
inline constexpr std::string_view kRemoteImagesDisabled = "remote images disabled";
// Per-sample limits (data/pipeline/loader_config.h).
inline constexpr std::string_view kTooManyTokens = "too many tokens";
inline constexpr std::string_view kTooManyImages = "too many images";
inline constexpr std::string_view kTooLongForSeqLen = "too long to fit seq_len with its image";
}  // namespace skip

struct SkipRecord {
  std::string reason, origin, detail;
  std::string message() const;  // "origin: reason (detail)"
};

class SkipStats {
 public:
  // Every skip is counted; the first `log_limit` of each reason are logged as warnings (the rest
  // at debug level, so a bad dataset cannot flood the log) and kept in records().
  explicit SkipStats(int64_t log_limit = 20) : log_limit_(log_limit) {}

  void add(std::string_view reason, std::string_view origin, std::string_view detail = {});

  int64_t total() const;
  int64_t count(std::string_view reason) const;
  std::map<std::string, int64_t> by_reason() const;
  std::vector<SkipRecord> records() const;  // the logged ones, in order
  nlohmann::json to_json() const;           // {"reason": count, ...}
  // Replaces the counts with to_json()'s output (a resumed loader continues the saved counts).
  void reset(const nlohmann::json& counts);
  std::string summary() const;  // "no caption: 3, truncated shard: 1" or "none"

 private:
  mutable std::mutex mu_;
  int64_t log_limit_;
  std::map<std::string, int64_t, std::less<>> counts_;
  std::vector<SkipRecord> records_;
};

}  // namespace qv::data
