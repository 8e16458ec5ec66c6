// Streaming reader of tar archives, entry by entry: one entry's data in memory at a time, never
// the whole file. Reads POSIX ustar with pax extended headers (what Python's tarfile, and so
// webdataset, writes), GNU tar (long names, base-256 sizes) and old v7 archives.
//
// Why our own parser rather than libarchive: a shard reader must tell a truncated shard from a
// clean one and say where the damage is. libarchive reports a tar cut at an entry boundary as a
// clean end, some truncations without any message, and a first damaged header only as an
// "unrecognized format" at open; it also gives no byte position to resume from. Here every
// damage is classified (truncated / corrupt header / read error) with a byte offset, and an
// entry's header offset is a resume point that seek() returns to directly.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>

namespace qv::data {

struct TarEntry {
  std::string name;           // path inside the archive (pax "path" / GNU long name applied)
  char type = '0';            // ustar type flag ('0' regular file, '5' directory, ...)
  int64_t size = 0;           // data bytes
  int64_t header_offset = 0;  // offset of the entry's first header block (extended headers too)
  int64_t data_offset = 0;
  int64_t index = 0;  // 0-based entry number (extended headers are not entries)
  bool is_regular() const { return type == '0' || type == '\0' || type == '7'; }
};

enum class TarStatus { kOk, kEnd, kDamaged };
enum class TarDamage { kNone, kTruncated, kCorruptHeader, kReadError };

class TarReader {
 public:
  // Throws qv::Error when the file cannot be opened or is not a regular file; damage inside the
  // file is reported by next()/read_data() instead.
  explicit TarReader(const std::string& path);
  ~TarReader();
  TarReader(const TarReader&) = delete;
  TarReader& operator=(const TarReader&) = delete;

  // Reads the next entry's header (skipping the previous entry's unread data). kEnd at the
  // end-of-archive marker (or for an empty file); a file that ends without the marker is
  // reported as truncated, since it is then impossible to know whether entries are missing.
  TarStatus next(TarEntry& entry);

  // The current entry's data; kDamaged when the file ends inside it.
  TarStatus read_data(std::string& out);

  // Continues from an entry's header_offset (a resume point) as if `entries_before` entries had
  // been read.
  void seek(int64_t header_offset, int64_t entries_before);

  TarDamage damage() const { return damage_; }
  const std::string& error() const { return error_; }  // what and where, for messages
  const std::string& path() const { return path_; }
  int64_t file_size() const { return file_size_; }
  int64_t next_header_offset() const { return next_header_; }
  int64_t entries() const { return entries_; }  // entries read so far (counting seek's)

 private:
  TarStatus fail(TarDamage kind, std::string message);
  bool read_exact(int64_t offset, char* out, int64_t n, int64_t& got);
  TarStatus read_block(int64_t offset, char* block, const char* what);
  TarStatus read_extension(int64_t offset, int64_t size, std::string& out, const char* what);

  std::string path_;
  std::FILE* file_ = nullptr;
  int64_t file_size_ = 0;
  int64_t next_header_ = 0;  // where the next header starts
  int64_t position_ = 0;     // the stream's current offset
  int64_t entries_ = 0;
  TarEntry current_;
  bool data_pending_ = false;
  TarDamage damage_ = TarDamage::kNone;
  std::string error_;
};

}  // namespace qv::data
