#include "data/tar_reader.h"

#include <archive.h>
#include <archive_entry.h>

#include "core/error.h"

namespace qv::data {

TarReader::TarReader(const std::string& path, int64_t max_member_bytes)
    : path_(path), max_member_(max_member_bytes) {
  a_ = archive_read_new();
  archive_read_support_format_tar(a_);
  archive_read_support_format_gnutar(a_);
  if (archive_read_open_filename(a_, path.c_str(), 1 << 16) != ARCHIVE_OK) {
    const std::string why = archive_error_string(a_) ? archive_error_string(a_) : "unknown error";
    archive_read_free(a_);
    a_ = nullptr;
    fail("cannot open tar shard ", path, ": ", why);
  }
}

TarReader::~TarReader() {
  if (a_) archive_read_free(a_);
}

bool TarReader::next(TarMember& m) {
  if (!a_ || !error_.empty()) return false;
  while (true) {
    archive_entry* e = nullptr;
    const int rc = archive_read_next_header(a_, &e);
    if (rc == ARCHIVE_EOF) return false;
    if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
      error_ = archive_error_string(a_) ? archive_error_string(a_) : "damaged archive";
      return false;
    }
    if (archive_entry_filetype(e) != AE_IFREG) continue;
    const int64_t size = archive_entry_size(e);
    if (size < 0 || size > max_member_) {
      ++skipped_large_;
      archive_read_data_skip(a_);
      continue;
    }
    m.name = archive_entry_pathname(e) ? archive_entry_pathname(e) : "";
    m.data.resize(static_cast<size_t>(size));
    int64_t got = 0;
    while (got < size) {
      const la_ssize_t n = archive_read_data(a_, m.data.data() + got, size - got);
      if (n <= 0) {
        error_ = std::string("member '") + m.name + "' is truncated" +
                 (n < 0 && archive_error_string(a_) ? std::string(": ") + archive_error_string(a_)
                                                     : std::string());
        return false;
      }
      got += n;
    }
    return true;
  }
}

}  // namespace qv::data
