// The classifier's per-row loss terms of a training step, kept in device memory until the host
// needs the loss: the model's chunked classifier writes them with kernels::cross_entropy_terms
// (no read-back, so on a GPU no wait per chunk) and the trainer sums them once, after the step's
// last backward. sum() adds them exactly as the returning path (kernels::cross_entropy and the
// trainer's running sum) does, so the loss is the same bit for bit: per micro-batch, each chunk's
// kept rows in row order in double (kernels::sum_row_losses), the chunks added in order; then
// the micro-batches added in order.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "core/buffer_pool.h"
#include "kernels/device_buffer.h"

namespace qv::model {

class LossTerms {
 public:
  // A micro-batch's classifier rows: their targets (host memory, -100 = ignored) and the chunk
  // size the classifier runs them in. Returns where their terms go: targets.size() doubles on
  // the current device, one buffer per micro-batch (never moved while the step runs).
  double* add_batch(std::span<const int64_t> targets, int64_t chunk);
  // The step's loss sum over kept rows (one device-to-host copy per micro-batch off the CPU;
  // the terms themselves on the CPU).
  double sum() const;
  int64_t batches() const { return static_cast<int64_t>(batches_.size()); }

 private:
  struct Batch {
    DeviceBuffer<double> terms;
    HostVector<int64_t> targets;
    int64_t chunk = 1;
  };
  std::vector<Batch> batches_;
};

}  // namespace qv::model
