// Reading a text file line by line with a bound on line length (a hostile or broken file with a
// gigabyte-long line costs no more than the bound), tracking line numbers and byte offsets so
// that a reader can resume exactly at a line.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace qv::data {

class LineReader {
 public:
  enum class Result { kLine, kTooLong, kEnd };

  // Throws qv::Error when the file cannot be opened or is not a regular file.
  LineReader(const std::string& path, int64_t max_line_bytes);
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // The next line without its "\n" (or "\r\n"); a last line without a newline counts. kTooLong
  // for a line over the bound (its bytes are skipped, `line` is empty). Throws on a read error.
  Result next(std::string& line);

  int64_t line_number() const { return line_number_; }  // of the line just returned, 1-based
  int64_t offset() const { return offset_; }            // where the next line starts
  const std::string& path() const { return path_; }

  // Continue at a byte offset that an earlier offset() returned, after `lines_before` lines.
  void seek(int64_t offset, int64_t lines_before);

 private:
  bool fill();

  std::string path_;
  int64_t max_line_;
  std::FILE* file_ = nullptr;
  std::vector<char> buf_;
  size_t pos_ = 0, len_ = 0;
  int64_t offset_ = 0;
  int64_t line_number_ = 0;
};

}  // namespace qv::data
