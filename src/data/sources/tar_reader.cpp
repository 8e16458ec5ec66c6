#include "data/sources/tar_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace qv::data {

namespace {

constexpr int64_t kBlock = 512;
constexpr int64_t kMaxPaxBytes = 1 << 20;        // extended headers hold names and numbers only
constexpr int64_t kMaxLongNameBytes = 64 << 10;  // GNU long names
constexpr int kMaxExtensionHeaders = 16;         // per entry
constexpr int64_t kMaxEntrySize = int64_t{1} << 60;

int64_t padded(int64_t size) {
  return (size + kBlock - 1) / kBlock * kBlock;
}

// A numeric header field: octal digits (space/NUL padded), or GNU base-256 when the top bit of
// the first byte is set. False when the field holds anything else.
bool parse_number(const char* field, size_t n, int64_t& out) {
  const auto* f = reinterpret_cast<const unsigned char*>(field);
  if (f[0] & 0x80) {
    if (f[0] != 0x80) return false;  // negative or reserved
    uint64_t v = 0;
    for (size_t i = 1; i < n; ++i) {
      if (v >> 55) return false;
      v = (v << 8) | f[i];
    }
    out = static_cast<int64_t>(v);
    return true;
  }
  size_t i = 0;
  while (i < n && f[i] == ' ') ++i;
  uint64_t v = 0;
  for (; i < n && f[i] >= '0' && f[i] <= '7'; ++i) {
    if (v >> 60) return false;
    v = v * 8 + (f[i] - '0');
  }
  for (; i < n; ++i)
    if (f[i] != ' ' && f[i] != '\0') return false;
  out = static_cast<int64_t>(v);
  return true;
}

bool checksum_ok(const char* h) {
  int64_t stored = 0;
  if (!parse_number(h + 148, 8, stored)) return false;
  int64_t unsigned_sum = 0, signed_sum = 0;
  for (int i = 0; i < kBlock; ++i) {
    const bool in_field = i >= 148 && i < 156;
    unsigned_sum += in_field ? ' ' : static_cast<unsigned char>(h[i]);
    signed_sum += in_field ? ' ' : static_cast<signed char>(h[i]);
  }
  return stored == unsigned_sum || stored == signed_sum;  // some old tars summed signed bytes
}

bool all_zero(const char* h) {
  for (int i = 0; i < kBlock; ++i)
    if (h[i] != 0) return false;
  return true;
}

std::string field_string(const char* f, size_t n) {
  return std::string(f, strnlen(f, n));
}

// Applies the "path" and "size" records of a pax extended header ("LEN key=value\n" each).
bool parse_pax(const std::string& data, std::string& path, int64_t& size) {
  size_t pos = 0;
  while (pos < data.size()) {
    if (data[pos] == '\0') break;  // some writers pad with NULs
    size_t space = pos;
    int64_t len = 0;
    while (space < data.size() && data[space] >= '0' && data[space] <= '9' && len < kMaxPaxBytes)
      len = len * 10 + (data[space++] - '0');
    if (space == pos || space >= data.size() || data[space] != ' ' || len <= 0 ||
        pos + static_cast<size_t>(len) > data.size() || data[pos + len - 1] != '\n')
      return false;
    const std::string record = data.substr(space + 1, pos + len - 1 - (space + 1));
    const size_t eq = record.find('=');
    if (eq == std::string::npos) return false;
    const std::string key = record.substr(0, eq), value = record.substr(eq + 1);
    if (key == "path") path = value;
    if (key == "size") {
      if (value.empty() || value.size() > 18 ||
          value.find_first_not_of("0123456789") != std::string::npos)
        return false;
      size = std::stoll(value);
    }
    pos += static_cast<size_t>(len);
  }
  return true;
}

}  // namespace

TarReader::TarReader(const std::string& path) : path_(path) {
  // O_NONBLOCK so that a FIFO given as a shard cannot block the open; only regular files pass.
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) qv::fail("cannot open shard ", path, ": ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    qv::fail("cannot read shard ", path, ": not a regular file");
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  file_ = ::fdopen(fd, "rb");
  if (!file_) {
    ::close(fd);
    qv::fail("cannot open shard ", path, ": ", std::strerror(errno));
  }
  file_size_ = static_cast<int64_t>(st.st_size);
}

TarReader::~TarReader() {
  if (file_) std::fclose(file_);
}

TarStatus TarReader::fail(TarDamage kind, std::string message) {
  damage_ = kind;
  error_ = std::move(message);
  return TarStatus::kDamaged;
}

bool TarReader::read_exact(int64_t offset, char* out, int64_t n, int64_t& got) {
  got = 0;
  if (position_ != offset) {
    if (::fseeko(file_, static_cast<off_t>(offset), SEEK_SET) != 0) return false;
    position_ = offset;
  }
  got = static_cast<int64_t>(std::fread(out, 1, static_cast<size_t>(n), file_));
  position_ += got;
  return got == n;
}

TarStatus TarReader::read_block(int64_t offset, char* block, const char* what) {
  int64_t got = 0;
  if (read_exact(offset, block, kBlock, got)) return TarStatus::kOk;
  if (std::ferror(file_))
    return fail(TarDamage::kReadError,
                cat("read error at byte ", offset, ": ", std::strerror(errno)));
  return fail(TarDamage::kTruncated,
              cat("file ends inside a ", what, " at byte ", offset, " (", got, " of 512 bytes)"));
}

TarStatus TarReader::read_extension(int64_t offset, int64_t size, std::string& out,
                                    const char* what) {
  out.resize(static_cast<size_t>(size));
  int64_t got = 0;
  if (read_exact(offset, out.data(), size, got)) return TarStatus::kOk;
  if (std::ferror(file_))
    return fail(TarDamage::kReadError,
                cat("read error at byte ", offset, ": ", std::strerror(errno)));
  return fail(TarDamage::kTruncated, cat("file ends inside a ", what, " at byte ", offset));
}

TarStatus TarReader::next(TarEntry& entry) {
  if (damage_ != TarDamage::kNone) return TarStatus::kDamaged;
  data_pending_ = false;
  const int64_t first = next_header_;
  int64_t offset = first;
  std::string pax_path, long_name, ext;
  int64_t pax_size = -1;
  char h[kBlock];
  for (int extensions = 0;; ++extensions) {
    if (extensions > kMaxExtensionHeaders)
      return fail(TarDamage::kCorruptHeader,
                  cat("more than ", kMaxExtensionHeaders, " extended headers at byte ", first));
    if (offset > file_size_ && extensions > 0)
      return fail(TarDamage::kTruncated,
                  cat("file ends inside an extended header at byte ", first));
    if (offset > file_size_)
      return fail(TarDamage::kTruncated,
                  cat("file ends inside entry '", current_.name, "' (", current_.size,
                      " bytes at byte ", current_.data_offset, "; the file has ", file_size_, ")"));
    if (offset == file_size_) {
      if (offset == 0) return TarStatus::kEnd;  // an empty file is an empty archive
      if (extensions > 0)
        return fail(TarDamage::kTruncated,
                    cat("file ends after an extended header at byte ", first));
      return fail(TarDamage::kTruncated,
                  cat("file ends at byte ", offset, " without the end-of-archive marker"));
    }
    if (read_block(offset, h, "header") != TarStatus::kOk) return TarStatus::kDamaged;
    if (all_zero(h)) {
      if (extensions > 0)
        return fail(TarDamage::kCorruptHeader,
                    cat("extended header at byte ", first, " is not followed by an entry"));
      return TarStatus::kEnd;  // next_header_ stays here, so later calls end too
    }
    if (!checksum_ok(h))
      return fail(TarDamage::kCorruptHeader, cat("bad header checksum at byte ", offset));
    int64_t size = 0;
    if (!parse_number(h + 124, 12, size) || size > kMaxEntrySize)
      return fail(TarDamage::kCorruptHeader, cat("bad size field at byte ", offset));
    const char type = h[156];
    const int64_t data = offset + kBlock;
    if (type == 'x' || type == 'L') {
      const int64_t limit = type == 'x' ? kMaxPaxBytes : kMaxLongNameBytes;
      if (size > limit)
        return fail(TarDamage::kCorruptHeader, cat("extended header of ", size, " bytes at byte ",
                                                   offset, " (limit ", limit, ")"));
      if (read_extension(data, size, ext, "extended header") != TarStatus::kOk)
        return TarStatus::kDamaged;
      if (type == 'L') {
        long_name = field_string(ext.data(), ext.size());
      } else if (!parse_pax(ext, pax_path, pax_size)) {
        return fail(TarDamage::kCorruptHeader, cat("malformed pax header at byte ", offset));
      }
      offset = data + padded(size);
      continue;
    }
    if (type == 'g' || type == 'K') {  // global pax settings and GNU long link names: unused
      offset = data + padded(size);
      continue;
    }
    entry = TarEntry{};
    if (!pax_path.empty()) {
      entry.name = pax_path;
    } else if (!long_name.empty()) {
      entry.name = long_name;
    } else {
      entry.name = field_string(h, 100);
      const bool posix_ustar = std::memcmp(h + 257, "ustar\0", 6) == 0;
      const std::string prefix = posix_ustar ? field_string(h + 345, 155) : std::string();
      if (!prefix.empty()) entry.name = prefix + "/" + entry.name;
    }
    entry.type = type;
    entry.size = pax_size >= 0 ? pax_size : size;
    entry.header_offset = first;
    entry.data_offset = data;
    entry.index = entries_++;
    current_ = entry;
    next_header_ = data + padded(entry.size);
    data_pending_ = true;
    return TarStatus::kOk;
  }
}

TarStatus TarReader::read_data(std::string& out) {
  QV_CHECK(data_pending_, "TarReader::read_data of ", path_, " without a current entry");
  data_pending_ = false;
  out.resize(static_cast<size_t>(current_.size));
  int64_t got = 0;
  if (read_exact(current_.data_offset, out.data(), current_.size, got)) return TarStatus::kOk;
  out.clear();
  if (std::ferror(file_))
    return fail(TarDamage::kReadError, cat("read error in entry '", current_.name, "' at byte ",
                                           current_.data_offset, ": ", std::strerror(errno)));
  return fail(TarDamage::kTruncated,
              cat("file ends inside entry '", current_.name, "' (", got, " of ", current_.size,
                  " bytes at byte ", current_.data_offset, ")"));
}

void TarReader::seek(int64_t header_offset, int64_t entries_before) {
  QV_CHECK(header_offset >= 0 && header_offset % kBlock == 0 && header_offset <= file_size_ &&
               entries_before >= 0,
           "cannot resume shard ", path_, " at byte ", header_offset, " (file has ", file_size_,
           " bytes): not a header position");
  next_header_ = header_offset;
  entries_ = entries_before;
  data_pending_ = false;
  damage_ = TarDamage::kNone;
  error_.clear();
}

}  // namespace qv::data
