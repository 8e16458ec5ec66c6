// Writing files so that a reader sees either the old content or the complete new one, never a
// half-written file: write to a temporary name in the same folder, fsync, rename, fsync the folder.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace qv::io {

// A file written under a temporary name next to `path` (temp_sibling) and renamed over `path`
// by commit(). Every write, fsync, close and rename is checked, and an error names the file and
// the reason (e.g. "No space left on device"). Destroyed without commit() (an error on the way),
// it removes the temporary file. Keeps the CRC-32C of what was written, so callers need not read
// the file back.
class AtomicFile {
 public:
  explicit AtomicFile(const std::string& path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* p, size_t n);
  void commit();  // fsync, close, rename, fsync the folder
  uint32_t crc32c() const { return crc_; }
  uint64_t bytes() const { return bytes_; }

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
  uint32_t crc_ = 0;
  uint64_t bytes_ = 0;
};

// An AtomicFile holding `contents`.
void write_file_atomic(const std::string& path, const std::string& contents);

// Makes the finished folder `tmp` appear as `target` in one rename (after fsyncing it), so a
// reader sees the old folder, the new one or none, never a half-written one. An existing
// `target` is first renamed aside (".tmp-old-NAME-PID") and deleted afterwards.
void publish_dir(const std::string& tmp, const std::string& target);

// A sibling of `path` named ".tmp-<what>-<filename>-<pid>": hidden from checkpoint listings and
// recognisable as an unfinished write.
std::string temp_sibling(const std::string& path, const std::string& what);

// fsync a directory so a rename inside it is durable.
void fsync_dir(const std::string& dir);

std::string read_file(const std::string& path);

}  // namespace qv::io
