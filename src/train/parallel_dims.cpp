#include "train/parallel_dims.h"

#include <algorithm>

#include "core/error.h"
#include "core/page_buffer.h"

namespace qv::train {

ParallelDims resolve_parallel_dims(const JobConfig& c, int64_t world) {
  int64_t replicate = c.dp_replicate, shard = c.dp_shard;
  QV_CHECK(replicate >= 1 || replicate == -1,
           "parallelism.data_parallel_replicate_degree must be >= 1 or -1");
  QV_CHECK(shard >= 1 || shard == -1, "parallelism.data_parallel_shard_degree must be >= 1 or -1");
  if (shard == -1) shard = world / std::max<int64_t>(1, replicate);
  if (replicate == -1) replicate = world / std::max<int64_t>(1, shard);
  QV_CHECK(replicate >= 1 && shard >= 1 && replicate * shard == world,
           "parallelism: data_parallel_replicate_degree (", c.dp_replicate,
           ") x data_parallel_shard_degree (", c.dp_shard, ") must equal the number of ranks (",
           world, ")");
  return {replicate, shard};
}

int64_t unit_alignment(const ParallelDims& dims) {
  return dims.sharded() ? dims.shard * PageBuffer::floats_per_page() : 16;
}

}  // namespace qv::train
