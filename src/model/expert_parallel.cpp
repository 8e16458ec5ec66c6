#include "model/expert_parallel.h"

namespace qv::model {
namespace {
// Per thread: the trainer sets it around a step on its thread (tests run ranks as threads).
thread_local ExpertExchange* g_exchange = nullptr;
}  // namespace

ExpertExchange* expert_exchange() {
  return g_exchange;
}

ExpertParallelScope::ExpertParallelScope(ExpertExchange* group) : previous_(g_exchange) {
  g_exchange = group;
}

ExpertParallelScope::~ExpertParallelScope() {
  g_exchange = previous_;
}

}  // namespace qv::model
