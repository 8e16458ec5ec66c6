// What the user sees each log step: a console line, metrics.jsonl and TensorBoard scalars.
#pragma once
#include <atomic>
#include <fstream>
#include <memory>
#include <thread>

#include "model/qwen3vl.h"
#include "train/job_config.h"
#include "train/tensorboard.h"

namespace qv::train {

struct StepRecord;

class MetricsLogger {
 public:
  // Only the writer rank creates files and prints. peak_gflops_rank: this rank's GEMM peak for
  // the precision in use; peak_gflops_total: the sum over all `ranks` (MFU's denominator).
  MetricsLogger(const JobConfig& config, const model::Qwen3VLModel& model, bool writer,
                double peak_gflops_rank, double peak_gflops_total, int ranks);
  void log(const StepRecord& rec, int64_t total_steps, int64_t skipped_samples);
  // A validation run after `step`: loss over `tokens` kept tokens in `batches` batches (all
  // ranks).
  void log_validation(int64_t step, double loss, int64_t tokens, int64_t batches, double seconds);

 private:
  const JobConfig& config_;
  const model::Qwen3VLModel& model_;
  bool writer_;
  std::ofstream jsonl_;
  std::unique_ptr<TensorBoardWriter> tb_;
  double peak_gflops_ = 0;
  double elapsed_ = 0;
  int64_t steps_seen_ = 0;
};

// Resident memory now and at peak, in MiB (from /proc/self/status).
double rss_mib();
double peak_rss_mib();

// The largest resident set size seen while it runs, sampled every 5 ms on a thread of its own:
// the peak of one phase (a checkpoint save), which the process-lifetime peak cannot show.
class RssWatch {
 public:
  RssWatch();
  ~RssWatch();
  double stop();  // MiB; stops sampling

 private:
  std::atomic<bool> stop_{false};
  std::atomic<double> peak_{0};
  std::thread thread_;
};

}  // namespace qv::train
