// The test harness of the guarded device (kernels/guarded/guard.h): GuardCensus registers the
// guarded allocator and a SIGSEGV handler for its lifetime. A fault at an address inside a
// guarded block is host code touching "device" memory outside an op: in census mode the handler
// records it (the address, read or write, the call stack), makes that block accessible until
// the next op ends and lets the code continue, so one run lists every host-access site; in
// strict mode it prints the first one's stack to stderr and aborts. Faults elsewhere go to the
// handler that was there before (a real crash stays a crash).
//
// Counts: one fault per guarded block per stretch of host code between two ops (the handler
// opens the whole block), so a loop writing a buffer counts once, not per element. The census
// also records each host pointer an op on the guarded device was given (guard.h's
// check_pointers): the site is the op's caller, `via` names the op.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/allocator.h"
#include "core/device.h"

namespace qv::testing {

inline constexpr Device kGuardedDevice{DeviceKind::kGuarded, 0};

enum class GuardMode { kCensus, kStrict };

// One site of host access: the innermost function of this project (qv::, outside src/kernels)
// on the stack, with the innermost other frame it went through (a std::vector member, memcpy),
// or for a host pointer the op that was given it ("op add_rows").
struct GuardSite {
  std::string function;
  std::string via;
  int64_t reads = 0, writes = 0, host_pointers = 0;
  int64_t faults() const { return reads + writes; }
  int64_t total() const { return reads + writes + host_pointers; }
};

class GuardCensus {
 public:
  explicit GuardCensus(GuardMode mode = GuardMode::kCensus);
  ~GuardCensus();
  GuardCensus(const GuardCensus&) = delete;
  GuardCensus& operator=(const GuardCensus&) = delete;

  // Forgets what was recorded so far.
  void clear();
  int64_t faults() const;
  int64_t host_pointers() const;
  // Faults and host pointers recorded so far, grouped by site, largest total first.
  std::vector<GuardSite> sites() const;
  // sites() as a table: "reads writes host-ptrs  function  [via]" per line, after the totals.
  std::string report(const std::string& title) const;

 private:
  Allocator* previous_;
};

}  // namespace qv::testing
