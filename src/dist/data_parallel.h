// How gradients and parameters are shared between data-parallel ranks. The trainer drives one
// of two strategies through this interface; the model calls it around every parameter unit
// (model::UnitHooks):
//  - replicated: every rank holds everything; gradients are all-reduced, bucket by bucket while
//    backward still runs when overlap is on;
//  - sharded (FSDP / ZeRO-3), optionally replicated across groups of ranks (hybrid): each rank
//    keeps 1/shard of every unit's parameters, gradients and optimizer state; a unit's
//    parameters are all-gathered right before use and freed after, its gradient is
//    reduce-scattered as soon as the unit's backward is done, then all-reduced across replicas.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "dist/flat_range.h"
#include "dist/parallel_dims.h"
#include "model/params.h"
#include "model/unit_hooks.h"

namespace qv::dist {

// Bytes this rank received through parameter all-gathers since it was made (what every rank of
// a shard group receives alike): all of them, and those of gather_rows alone.
struct GatherBytes {
  int64_t all = 0, rows = 0;
};

class DataParallel : public model::UnitHooks {
 public:
  // Flat-buffer elements whose reduced gradient this rank holds and whose parameters (and
  // optimizer state) it updates; ascending.
  virtual const std::vector<FlatRange>& owned() const = 0;
  // Before a step's first micro-batch: zero the gradients.
  virtual void begin_step() = 0;
  // Before each micro-batch; last = the step's last one.
  virtual void begin_micro_batch(bool last) = 0;
  // After the last backward: every owned gradient element holds the sum over all ranks.
  virtual void finish_grads() = 0;
  // Sum / max over the ranks that split the parameters between them (no-op when replicated).
  virtual void sum_over_shards(double* v, int64_t n) = 0;
  virtual void max_over_shards(double* v, int64_t n) = 0;
  // Every parameter present on this rank (to save or export), and back to the own shards.
  virtual void gather_all() = 0;
  virtual void release_all() = 0;
  virtual std::string describe() const = 0;
  // Zero when replicated (nothing is gathered).
  virtual GatherBytes gathered_bytes() const { return {}; }
};

// Replicated (dims.shard == 1) or sharded; `world` must outlive the result.
std::unique_ptr<DataParallel> make_data_parallel(model::ParamStore& store, Communicator& world,
                                                 const ParallelDims& dims,
                                                 bool overlap_grad_reduce);

std::unique_ptr<DataParallel> make_replicated(model::ParamStore& store, Communicator& world,
                                              bool overlap_grad_reduce);
std::unique_ptr<DataParallel> make_sharded(model::ParamStore& store, Communicator& world,
                                           const ParallelDims& dims);

}  // namespace qv::dist
