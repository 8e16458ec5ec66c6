// The expert-parallel group of a training job ([parallelism] expert_parallel_degree): ep
// consecutive ranks, so, as in torchtitan, the group lies inside one data-parallel shard group
// (ep must divide data_parallel_shard_degree) and the expert weights of a sparse layer split
// evenly over it (ep must divide num_experts). model/expert_parallel.h says what the group does.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "dist/communicator.h"
#include "dist/parallel_dims.h"
#include "model/expert_parallel.h"

namespace qv::dist {

// Clear errors for a degree that does not fit the job (experts = 0: a dense model).
void check_expert_parallel(int64_t degree, const ParallelDims& dims, int64_t experts);

class ExpertParallelGroup final : public model::ExpertExchange {
 public:
  // Splits `world` (every rank must call it) into groups of `degree` consecutive ranks.
  ExpertParallelGroup(Communicator& world, int64_t degree);
  int rank() const override { return group_->rank(); }
  int size() const override { return group_->size(); }
  void exchange_counts(const int64_t* send, int64_t* recv, int64_t n) override {
    group_->all_to_all(send, recv, n);
  }
  void exchange_rows(const float* in, const int64_t* send_counts, float* out,
                     const int64_t* recv_counts) override {
    group_->all_to_all_v(in, send_counts, out, recv_counts);
  }
  std::string describe(int64_t experts) const;

 private:
  std::unique_ptr<Communicator> group_;
};

}  // namespace qv::dist
