// The data-parallel layout of a job: how many replicas and how many shards per replica
// (torchtitan's data_parallel_replicate_degree x data_parallel_shard_degree = ranks).
#pragma once
#include <cstdint>

namespace qv::dist {

struct ParallelDims {
  int64_t replicate = 1, shard = 1;
  // Expert-parallel degree ([parallelism] expert_parallel_degree; divides shard): the sharded
  // strategy splits every expert unit by expert over groups of this many consecutive ranks.
  int64_t expert = 1;
  bool sharded() const { return shard > 1; }
};

// From the job's parallelism.data_parallel_replicate_degree and data_parallel_shard_degree:
// resolves -1 ("the rest of the ranks") and checks that the product equals world.
ParallelDims resolve_parallel_dims(int64_t replicate_degree, int64_t shard_degree, int64_t world);

// Floats each parameter unit must be aligned to: whole pages per shard when sharded, so a rank
// can return the pages of other ranks' shards to the OS.
int64_t unit_alignment(const ParallelDims& dims);

}  // namespace qv::dist
