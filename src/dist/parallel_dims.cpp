#include "dist/parallel_dims.h"

#include <algorithm>

#include "core/error.h"
#include "core/page_buffer.h"

namespace qv::dist {

ParallelDims resolve_parallel_dims(int64_t replicate_degree, int64_t shard_degree, int64_t world) {
  int64_t replicate = replicate_degree, shard = shard_degree;
  QV_CHECK(replicate >= 1 || replicate == -1,
           "parallelism.data_parallel_replicate_degree must be >= 1 or -1");
  QV_CHECK(shard >= 1 || shard == -1, "parallelism.data_parallel_shard_degree must be >= 1 or -1");
  if (shard == -1) shard = world / std::max<int64_t>(1, replicate);
  if (replicate == -1) replicate = world / std::max<int64_t>(1, shard);
  QV_CHECK(replicate >= 1 && shard >= 1 && replicate * shard == world,
           "parallelism: data_parallel_replicate_degree (", replicate_degree,
           ") x data_parallel_shard_degree (", shard_degree, ") must equal the number of ranks (",
           world, ")");
  return {replicate, shard};
}

int64_t unit_alignment(const ParallelDims& dims) {
  return dims.sharded() ? dims.shard * PageBuffer::floats_per_page() : 16;
}

}  // namespace qv::dist
