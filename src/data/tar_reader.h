// Streaming reader of tar archives (libarchive): member by member, never the whole file in
// memory. A truncated or corrupt archive yields the complete members before the damage, then
// reports it (error()) instead of crashing.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

struct archive;  // libarchive's handle

namespace qv::data {

struct TarMember {
  std::string name;
  std::string data;
};

class TarReader {
 public:
  // max_member_bytes: larger members are skipped (reported through skipped_large()).
  explicit TarReader(const std::string& path, int64_t max_member_bytes = 256ll << 20);
  ~TarReader();
  TarReader(const TarReader&) = delete;
  TarReader& operator=(const TarReader&) = delete;

  // Next regular file; false at the end or on damage (then error() is non-empty).
  bool next(TarMember& member);
  const std::string& error() const { return error_; }
  int64_t skipped_large() const { return skipped_large_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  ::archive* a_ = nullptr;
  int64_t max_member_ = 0;
  int64_t skipped_large_ = 0;
  std::string error_;
};

}  // namespace qv::data
