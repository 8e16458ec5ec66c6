#include "train/fault_injection.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "io/write_faults.h"

namespace qv::train {
namespace {

struct Fault {
  std::string kind;  // "" = none
  int64_t step = 0;
  int rank = 0;
};

Fault parse_fault() {
  const char* env = std::getenv("QWEN3VL_FAULT");
  if (!env || !*env) return {};
  if (io::is_write_fault_spec(env)) return {};  // io/write_faults.h's, not this module's
  Fault f;
  char kind[16] = {0};
  long long step = 0;
  int rank = 0;
  QV_CHECK(std::sscanf(env, "%15[a-z]@step:%lld,rank:%d", kind, &step, &rank) == 3 &&
               (std::string(kind) == "exit" || std::string(kind) == "stall"),
           "QWEN3VL_FAULT='", env, "' is not exit|stall@step:N,rank:R or pause|enospc@bytes:K");
  f.kind = kind;
  f.step = step;
  f.rank = rank;
  return f;
}

}  // namespace

void maybe_inject_fault(int64_t step, int rank) {
  static const Fault fault = parse_fault();
  if (fault.kind.empty() || fault.step != step || fault.rank != rank) return;
  std::fprintf(stderr, "qwen3vl: QWEN3VL_FAULT: rank %d %s at step %lld (test fault)\n", rank,
               fault.kind == "exit" ? "exits" : "stalls", static_cast<long long>(step));
  std::fflush(stderr);
  if (fault.kind == "exit") std::_Exit(17);
  for (;;) pause();
}

}  // namespace qv::train
