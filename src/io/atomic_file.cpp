#include "io/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "io/checksum.h"
#include "io/write_faults.h"

namespace qv::io {

namespace {
void write_all(int fd, const char* p, size_t n, const std::string& path) {
  while (n > 0) {
    ssize_t w = write_with_faults(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) fail("cannot write ", path, ": ", std::strerror(errno));
    // A 0-byte write for a non-empty request would loop forever; the device is full.
    if (w == 0) fail("cannot write ", path, ": ", std::strerror(ENOSPC));
    p += w;
    n -= static_cast<size_t>(w);
  }
}
}  // namespace

void fsync_dir(const std::string& dir) {
  const std::string d = dir.empty() ? "." : dir;
  const int fd = ::open(d.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) fail("cannot open folder ", d, " to fsync it: ", std::strerror(errno));
  // Some file systems cannot fsync a folder (EINVAL); a rename there is as durable as they allow.
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0 && err != EINVAL) fail("cannot fsync folder ", d, ": ", std::strerror(err));
}

AtomicFile::AtomicFile(const std::string& path) : path_(path), tmp_(temp_sibling(path, "")) {
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd_ < 0) fail("cannot create ", tmp_, ": ", std::strerror(errno));
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_.c_str());
}

void AtomicFile::write(const void* p, size_t n) {
  QV_CHECK(fd_ >= 0 && !committed_, "AtomicFile::write after commit: ", path_);
  write_all(fd_, static_cast<const char*>(p), n, tmp_);
  crc_ = io::crc32c(p, n, crc_);
  bytes_ += n;
}

void AtomicFile::commit() {
  QV_CHECK(fd_ >= 0 && !committed_, "AtomicFile::commit twice: ", path_);
  if (::fsync(fd_) != 0) fail("cannot fsync ", tmp_, ": ", std::strerror(errno));
  // close() can report a delayed write error (NFS, quota): the file is then not complete.
  const int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) fail("cannot close ", tmp_, ": ", std::strerror(errno));
  if (::rename(tmp_.c_str(), path_.c_str()) != 0)
    fail("cannot rename ", tmp_, " to ", path_, ": ", std::strerror(errno));
  committed_ = true;
  fsync_dir(std::filesystem::path(path_).parent_path().string());
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  AtomicFile f(path);
  f.write(contents.data(), contents.size());
  f.commit();
}

std::string temp_sibling(const std::string& path, const std::string& what) {
  const std::filesystem::path p(path);
  return (p.parent_path() / (".tmp-" + what + (what.empty() ? "" : "-") + p.filename().string() +
                             "-" + std::to_string(::getpid())))
      .string();
}

void publish_dir(const std::string& tmp, const std::string& target) {
  namespace fs = std::filesystem;
  fsync_dir(tmp);
  const fs::path parent = fs::path(target).parent_path();
  std::string old;
  if (fs::exists(target)) {
    old = temp_sibling(target, "old");
    fs::rename(target, old);
  }
  fs::rename(tmp, target);
  fsync_dir(parent.string());
  if (!old.empty()) fs::remove_all(old);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  QV_CHECK(in.good(), "cannot open ", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace qv::io
