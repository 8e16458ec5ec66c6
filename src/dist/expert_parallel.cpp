#include "dist/expert_parallel.h"

#include "core/error.h"

namespace qv::dist {

void check_expert_parallel(int64_t degree, const ParallelDims& dims, int64_t experts) {
  QV_CHECK(degree >= 1, "parallelism.expert_parallel_degree must be >= 1, got ", degree);
  if (degree == 1) return;
  QV_CHECK(experts > 0, "parallelism.expert_parallel_degree = ", degree,
           " needs a mixture-of-experts model (this one is dense)");
  QV_CHECK(experts % degree == 0, "parallelism.expert_parallel_degree (", degree,
           ") must divide the model's num_experts (", experts, ")");
  QV_CHECK(dims.shard % degree == 0, "parallelism.expert_parallel_degree (", degree,
           ") must divide data_parallel_shard_degree (", dims.shard, " of ",
           dims.shard * dims.replicate,
           " ranks): the expert-parallel group lies inside a shard group");
}

ExpertParallelGroup::ExpertParallelGroup(Communicator& world, int64_t degree)
    : group_(world.split(static_cast<int>(world.rank() / degree), world.rank())) {}

std::string ExpertParallelGroup::describe(int64_t experts) const {
  const int64_t local = experts / size();
  return cat("degree ", size(), ", experts [", rank() * local, ", ", (rank() + 1) * local, ") of ",
             experts, " computed on this rank");
}

}  // namespace qv::dist
