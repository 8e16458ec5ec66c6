#include "data/sources/line_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace qv::data {

LineReader::LineReader(const std::string& path, int64_t max_line_bytes)
    : path_(path), max_line_(max_line_bytes), buf_(1 << 16) {
  QV_CHECK(max_line_bytes > 0, "line length bound must be positive");
  // O_NONBLOCK so that a FIFO cannot block the open; only regular files are read.
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) fail("cannot open ", path, ": ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("cannot read ", path, ": not a regular file");
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  file_ = ::fdopen(fd, "rb");
  if (!file_) {
    ::close(fd);
    fail("cannot open ", path, ": ", std::strerror(errno));
  }
}

LineReader::~LineReader() {
  if (file_) std::fclose(file_);
}

bool LineReader::fill() {
  len_ = std::fread(buf_.data(), 1, buf_.size(), file_);
  pos_ = 0;
  QV_CHECK(!std::ferror(file_), "read error in ", path_, " at byte ", offset_, ": ",
           std::strerror(errno));
  return len_ > 0;
}

LineReader::Result LineReader::next(std::string& line) {
  line.clear();
  bool too_long = false, any = false;
  while (true) {
    if (pos_ == len_ && !fill()) break;  // end of file
    any = true;
    const char* start = buf_.data() + pos_;
    const auto* nl = static_cast<const char*>(std::memchr(start, '\n', len_ - pos_));
    const size_t n = nl ? static_cast<size_t>(nl - start) : len_ - pos_;
    if (!too_long && static_cast<int64_t>(line.size() + n) > max_line_) {
      too_long = true;
      line.clear();
      line.shrink_to_fit();
    }
    if (!too_long) line.append(start, n);
    pos_ += n + (nl ? 1 : 0);
    offset_ += static_cast<int64_t>(n + (nl ? 1 : 0));
    if (nl) break;
  }
  if (!any) return Result::kEnd;
  ++line_number_;
  if (too_long) return Result::kTooLong;
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return Result::kLine;
}

void LineReader::seek(int64_t offset, int64_t lines_before) {
  QV_CHECK(offset >= 0 && lines_before >= 0, "bad resume position in ", path_);
  struct stat st {};
  QV_CHECK(::fstat(::fileno(file_), &st) == 0 && offset <= st.st_size, "cannot resume ", path_,
           " at byte ", offset, ": the file has ", st.st_size, " bytes");
  QV_CHECK(::fseeko(file_, static_cast<off_t>(offset), SEEK_SET) == 0, "cannot seek in ", path_);
  pos_ = len_ = 0;
  offset_ = offset;
  line_number_ = lines_before;
}

}  // namespace qv::data
