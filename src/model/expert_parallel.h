// Expert parallelism as the sparse MoE layers see it (model/moe_block.h). The experts of every
// sparse layer are split evenly over the ranks of an expert-parallel (EP) group: rank r computes
// experts [r E / ep, (r + 1) E / ep). Each rank routes its own tokens; the input row of every
// (token, choice) slot travels to the rank owning its expert, the owner runs its experts'
// grouped GEMMs over the rows of the whole group, and the outputs travel back to be combined.
// The model layer cannot name dist::Communicator, so the group is this small interface
// (dist/expert_parallel.h builds it from a communicator) and is installed for the duration of
// a training step on the calling thread (ExpertParallelScope); without one every rank computes
// every expert for its own tokens, as in a single process.
#pragma once
#include <cstdint>

namespace qv::model {

class ExpertExchange {
 public:
  virtual ~ExpertExchange() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // recv[r * n, (r + 1) * n) = rank r's send[rank() * n, (rank() + 1) * n).
  virtual void exchange_counts(const int64_t* send, int64_t* recv, int64_t n) = 0;
  // Rows (floats) by rank: send_counts[r] floats of `in` (rank order) go to rank r,
  // recv_counts[r] floats from rank r land in `out` (rank order).
  virtual void exchange_rows(const float* in, const int64_t* send_counts, float* out,
                             const int64_t* recv_counts) = 0;
};

// The group the sparse layers use now (nullptr: none).
ExpertExchange* expert_exchange();

// Installs a group for its lifetime (nullptr installs none) and restores the previous one.
class ExpertParallelScope {
 public:
  explicit ExpertParallelScope(ExpertExchange* group);
  ~ExpertParallelScope();
  ExpertParallelScope(const ExpertParallelScope&) = delete;
  ExpertParallelScope& operator=(const ExpertParallelScope&) = delete;

 private:
  ExpertExchange* previous_;
};

}  // namespace qv::model
