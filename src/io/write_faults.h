// Test-only write faults, so tests can show that a crash or a full disk in the middle of a file
// never leaves a half-written checkpoint behind. Inactive unless the environment variable
// QWEN3VL_FAULT names one of these (train/fault_injection.h reads the same variable for rank
// faults):
//
//   QWEN3VL_FAULT=pause@bytes:K   once K bytes have gone through write_file_atomic in this
//                                 process, create the file QWEN3VL_FAULT_MARKER names (holding
//                                 the process id) and sleep until killed: the test's SIGKILL
//                                 then lands at a known byte.
//   QWEN3VL_FAULT=enospc@bytes:K  after K bytes every write fails with ENOSPC: a full disk where
//                                 the test cannot mount a small tmpfs.
#pragma once
#include <sys/types.h>

#include <cstddef>

namespace qv::io {

// ::write(fd, p, n) with the configured fault applied: it may write fewer bytes (stopping exactly
// at the fault point), pause forever, or return -1 with errno = ENOSPC.
ssize_t write_with_faults(int fd, const void* p, size_t n);

// Whether a QWEN3VL_FAULT value names a write fault (kind@bytes:K), so that the other readers of
// the variable (train/fault_injection.h) can leave it alone.
bool is_write_fault_spec(const char* spec);

}  // namespace qv::io
