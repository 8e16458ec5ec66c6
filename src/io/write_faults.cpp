#include "io/write_faults.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace qv::io {

namespace {

enum class Kind { kNone, kPause, kEnospc };

struct Plan {
  Kind kind = Kind::kNone;
  size_t after = 0;
};

// Splits "kind@bytes:K"; false for any other form.
bool split_spec(const char* spec, char (&kind)[16], unsigned long long& after) {
  return spec && std::sscanf(spec, "%15[a-z]@bytes:%llu", kind, &after) == 2;
}

Plan parse_plan() {
  Plan p;
  char kind[16] = {0};
  unsigned long long after = 0;
  if (!split_spec(std::getenv("QWEN3VL_FAULT"), kind, after)) return p;
  if (std::strcmp(kind, "pause") == 0)
    p.kind = Kind::kPause;
  else if (std::strcmp(kind, "enospc") == 0)
    p.kind = Kind::kEnospc;
  p.after = after;
  return p;
}

const Plan& plan() {
  static const Plan p = parse_plan();
  return p;
}

std::atomic<size_t> written{0};

[[noreturn]] void pause_forever() {
  if (const char* marker = std::getenv("QWEN3VL_FAULT_MARKER")) {
    // Holds this process's id, so a test can kill exactly this rank of a multi-rank job.
    const int fd = ::open(marker, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      char pid[32];
      const int n = std::snprintf(pid, sizeof(pid), "%d\n", static_cast<int>(::getpid()));
      if (::write(fd, pid, static_cast<size_t>(n)) != n) std::perror("QWEN3VL_FAULT_MARKER");
      ::close(fd);
    }
  }
  std::fprintf(stderr, "qwen3vl: QWEN3VL_FAULT: paused mid-write, waiting to be killed\n");
  for (;;) ::pause();
}

}  // namespace

bool is_write_fault_spec(const char* spec) {
  char kind[16] = {0};
  unsigned long long after = 0;
  return split_spec(spec, kind, after);
}

ssize_t write_with_faults(int fd, const void* p, size_t n) {
  const Plan& f = plan();
  if (f.kind == Kind::kNone) return ::write(fd, p, n);
  const size_t done = written.load();
  const size_t room = done >= f.after ? 0 : f.after - done;
  if (room == 0) {
    if (f.kind == Kind::kPause) pause_forever();
    errno = ENOSPC;
    return -1;
  }
  const ssize_t w = ::write(fd, p, std::min(n, room));
  if (w > 0) written += static_cast<size_t>(w);
  return w;
}

}  // namespace qv::io
