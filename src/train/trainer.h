// The training loop: micro-batch accumulation, loss = mean over every kept token of the global
// batch, gradient all-reduce, global-norm clipping, AdamW, schedules, metrics, checkpoints.
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <vector>

#include "data/image/image_processor_config.h"
#include "dist/communicator.h"
#include "dist/data_parallel.h"
#include "dist/expert_parallel.h"
#include "model/qwen3vl.h"
#include "train/adamw.h"
#include "train/batch_source.h"
#include "train/job_config.h"
#include "train/lr_schedule.h"

namespace qv::train {

struct StepRecord {
  int64_t step = 0;  // 1-based, as logged
  double loss = 0, grad_norm = 0, lr = 0;
  int64_t tokens = 0;                                // kept (loss) tokens of the global batch
  int64_t processed_tokens = 0, vision_patches = 0;  // whole global batch, for FLOP counts
  double step_seconds = 0, data_seconds = 0;
  bool skipped = false;
  // MoE: HF's load-balancing loss (token-weighted over the global batch) and the largest and
  // smallest share of routed slots any expert received this step (over all sparse layers and
  // ranks; 1 / num_experts each when balanced). No token is ever dropped (no capacity limit).
  double aux_loss = 0, expert_max_share = 0, expert_min_share = 0;
  // Sharded (ZeRO-3) runs: parameter bytes this rank received through all-gathers during the
  // step's forwards and backwards, and of those the embedding rows (gather_rows); 0 otherwise.
  int64_t gathered_bytes = 0, gathered_row_bytes = 0;
};

// Set when SIGTERM / SIGINT arrives (cli/stop_signals.h's watcher thread): the trainer saves a
// checkpoint at the next step boundary and returns.
std::atomic<bool>& stop_requested();

class Trainer {
 public:
  Trainer(JobConfig config, std::unique_ptr<model::Qwen3VLModel> model,
          std::unique_ptr<BatchSource> data, std::unique_ptr<dist::Communicator> comm);
  ~Trainer();
  // Runs until training.steps (or a stop request); returns the steps run in this call.
  std::vector<StepRecord> run();

  model::Qwen3VLModel& model() { return *model_; }
  AdamW& optimizer() { return *optimizer_; }
  int64_t step() const { return step_; }

 private:
  // One optimizer step, as named stages (trainer.cpp): take the step's batch, count its tokens,
  // forwards and backwards, prefetch the next step's batch, read the loss, clip and update.
  StepRecord train_step();
  struct StepBatch;
  struct StepSums;
  // The micro-batches of step `step` (1-based) from the loader, their token ids and pixels
  // uploaded into that step's input buffers (device_inputs_[step % 2]).
  StepBatch fetch_batch(int64_t step);
  // The current step's batch: the one prefetched during the last step, or fetched now.
  StepBatch take_batch();
  // Fetches and uploads the next step's batch (none after the last step) while the device
  // computes this one; keeps the loader's state from before, for checkpoints.
  void prefetch_next_batch();
  // Kept tokens of the global batch (all ranks), and the step's shape counts in rec.
  double count_tokens(const std::vector<model::ModelInputs>& micro, StepRecord& rec);
  // Issues every micro-batch's forward and backward; the losses stay on the device.
  StepSums forward_backward(const StepBatch& batch, double kept, model::LossTerms& loss_terms,
                            StepRecord& rec);
  // The loss read back (the step's one wait for the device's results), reduced over ranks.
  void read_loss(const model::LossTerms& loss_terms, StepSums& sums, double kept, StepRecord& rec);
  // Gradient norm, then clipping and AdamW (or a skipped step on a non-finite value).
  void clip_and_update(const StepSums& sums, StepRecord& rec);
  // The loader's state and skip count as of the last step trained (a prefetched batch not yet
  // trained on is not counted: a resume fetches it again).
  nlohmann::json data_state() const;
  int64_t data_skipped() const;
  // Every rank writes its share of the state (train/checkpoint_shards.h); in async mode the
  // share is copied and written on a background thread, published by complete_pending_save.
  void save(bool final_save);
  // Publishes a background save once every rank has written it (collective: every rank calls
  // it at the same step boundaries); wait = block until then.
  void complete_pending_save(bool wait);
  void export_hf();  // the final model as a Hugging Face folder
  // Runs `write` (a save) on rank 0 only; if it throws, every rank throws, rank 0 with its error.
  void run_on_rank0(const std::function<void()>& write);
  void resume_if_possible();
  void apply_freeze();
  // Logs the training state held per rank and the resident memory (max over ranks).
  void report_memory();
  // The validation loss ([validation]) with the current weights, logged; every rank takes part.
  void validate();
  // Sum of squared gradients over active spans within the owned ranges.
  double local_grad_sq(const std::vector<uint8_t>& active) const;
  // Per micro-batch, the most vision-tower passes any rank of the shard group runs.
  std::vector<int64_t> vision_passes(const std::vector<model::ModelInputs>& micro);

  JobConfig config_;
  JobChoices choices_;  // config_'s closed sets, parsed once

  std::unique_ptr<model::Qwen3VLModel> model_;
  std::unique_ptr<BatchSource> data_;
  std::unique_ptr<dist::Communicator> comm_;
  dist::ParallelDims dims_;
  std::unique_ptr<dist::DataParallel> dp_;
  std::unique_ptr<dist::ExpertParallelGroup> ep_;  // null unless expert_parallel_degree > 1
  std::unique_ptr<AdamW> optimizer_;
  LrSchedule schedule_;
  std::vector<uint8_t> vision_span_, frozen_span_;
  int64_t step_ = 0;
  int64_t accumulation_ = 1;
  struct Metrics;
  std::unique_ptr<Metrics> metrics_;
  struct PendingSave;
  std::unique_ptr<PendingSave> pending_save_;
  // The next step's batch, fetched during the current one (null when none is waiting).
  std::unique_ptr<StepBatch> next_batch_;
  // Input buffers on the model's device, one set per step parity (one per micro-batch): step
  // N+1's are filled while step N computes (model/device_inputs.h).
  std::vector<model::DeviceInputs> device_inputs_[2];
  // The asynchronous save's host copy of this rank's share, kept between saves (its size is
  // the extra memory async mode costs: docs/CHECKPOINTS.md).
  std::vector<float> snapshot_storage_;
};

// The image preprocessing a job trains with (the export's preprocessor_config.json).
data::ImageProcessorConfig trained_image_config(const JobConfig& config,
                                                const model::ModelConfig& model_config);

// The model config a job names: [model] hf_config when set, else the flavor.
model::ModelConfig model_config(const JobConfig& config);

// Builds the model a job config describes: HF config or flavor, then weights from
// checkpoint.initial_load_path or a seeded init. unit_align: see dist::unit_alignment() (the
// trainer re-lays out a model built with another alignment, at the cost of a copy).
std::unique_ptr<model::Qwen3VLModel> build_model(const JobConfig& config, int64_t unit_align = 16);

}  // namespace qv::train
