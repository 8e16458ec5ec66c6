#include "train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <limits>
#include <thread>

#include "core/buffer_pool.h"
#include "core/device.h"
#include "core/error.h"
#include "core/log.h"
#include "io/atomic_file.h"
#include "kernels/gemm.h"
#include "kernels/optim.h"
#include "model/hf_weights.h"
#include "train/checkpoint.h"
#include "train/data_source.h"
#include "train/fault_injection.h"
#include "train/hf_export.h"
#include "train/metrics.h"
#include "train/streamed_export.h"
#include "train/validation.h"

namespace qv::train {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::atomic<bool>& stop_requested() {
  static std::atomic<bool> flag{false};
  return flag;
}

struct Trainer::Metrics {
  std::unique_ptr<MetricsLogger> logger;
};

// An asynchronous save in flight: the snapshot the background thread writes, and what
// finish_sharded_save needs afterwards.
struct Trainer::PendingSave {
  ShareView snapshot;  // in Trainer::snapshot_storage_
  nlohmann::json data_state;
  std::string tmp_dir, final_dir;
  SaveInfo info;
  RankFiles files;
  std::atomic<bool> done{false};
  std::thread writer;
  Clock::time_point started;
  double copy_seconds = 0;
};

model::ModelConfig model_config(const JobConfig& c) {
  if (c.hf_config.empty()) return model::ModelConfig::flavor(c.flavor);
  const fs::path p(c.hf_config);
  return model::ModelConfig::from_json_file((fs::is_directory(p) ? p / "config.json" : p).string());
}

std::unique_ptr<model::Qwen3VLModel> build_model(const JobConfig& c, int64_t unit_align) {
  const model::ModelConfig mc = model_config(c);
  auto m = std::make_unique<model::Qwen3VLModel>(mc, unit_align);
  if (!c.initial_load_path.empty()) {
    // A training checkpoint's step folder (its weights only), or a Hugging Face folder.
    if (fs::exists(fs::path(c.initial_load_path) / "state.json"))
      load_checkpoint(c.initial_load_path, m->store(),
                      static_cast<const OptimizerTarget*>(nullptr));
    else
      model::load_hf_weights(c.initial_load_path, m->store());
    log::info("loaded weights from " + c.initial_load_path);
  } else {
    model::init_params(mc, m->store(), static_cast<uint64_t>(c.seed),
                       model::parse_init_scheme(c.init));
  }
  return m;
}

Trainer::Trainer(JobConfig config, std::unique_ptr<model::Qwen3VLModel> model,
                 std::unique_ptr<BatchSource> data, std::unique_ptr<dist::Communicator> comm)
    : config_(std::move(config)),
      choices_(JobChoices::parse(config_)),
      model_(std::move(model)),
      data_(std::move(data)),
      comm_(std::move(comm)),
      schedule_(config_.lr_scheduler,
                config_.lr_total_steps > 0 ? config_.lr_total_steps : config_.steps) {
  // Everything the trainer makes (a relaid-out store, the optimizer's moments, sharding
  // scratch) lives on the model's device.
  const DeviceScope on_device(model_->device());
  const int64_t world = comm_->size();
  dims_ = dist::resolve_parallel_dims(config_.dp_replicate, config_.dp_shard, world);
  const int64_t experts = model_->config().text.is_moe() ? model_->config().text.num_experts : 0;
  dist::check_expert_parallel(config_.expert_parallel, dims_, experts);
  dims_.expert = config_.expert_parallel;  // expert units split by expert (sharded strategy)
  if (config_.expert_parallel > 1)
    ep_ = std::make_unique<dist::ExpertParallelGroup>(*comm_, config_.expert_parallel);
  const int64_t per_step = config_.local_batch_size * world;
  const int64_t global = config_.global_batch_size > 0 ? config_.global_batch_size : per_step;
  QV_CHECK(global % per_step == 0, "training.global_batch_size (", global,
           ") must be a multiple of local_batch_size x data-parallel ranks (", per_step, ")");
  accumulation_ = global / per_step;
  if (config_.lora.enabled() && !model_->lora_config().enabled()) {
    model_->enable_lora(config_.lora);
    log::info(cat("LoRA: rank ", config_.lora.rank, ", alpha ", config_.lora.alpha, ", dropout ",
                  config_.lora.dropout, " on ", model_->lora_params().layers.size(),
                  " decoder layers; base weights frozen"));
  }
  const int64_t align = dist::unit_alignment(dims_);
  if (model_->store().unit_align() % align != 0) model_->relayout(align);
  std::vector<ParamSpan> spans;
  for (const auto& e : model_->store().entries()) {
    spans.push_back({e.ref.offset, e.ref.numel});
    vision_span_.push_back(e.is_vision);
  }
  // Every rank starts from rank 0's weights (a seeded init is identical anyway; this also
  // covers weights loaded from different files).
  comm_->broadcast(model_->store().values().data(), model_->store().total(), 0);
  if (choices_.matmul_dtype == DType::kBF16) model_->enable_bf16_matmuls();
  apply_freeze();
  dp_ = dist::make_data_parallel(model_->store(), *comm_, dims_, config_.overlap_grad_reduce);
  optimizer_ = std::make_unique<AdamW>(config_.adamw, spans, dp_->owned());
  if (model_->store().has_bf16_copies())  // spans are the store's entries, in order
    optimizer_->write_bf16_copies(model_->store().values_bf16().data(),
                                  model_->store().bf16_entries());
  dp_->release_all();
  model_->set_unit_hooks(dp_.get());
  log::info("data parallel: " + dp_->describe());
  if (ep_) log::info("expert parallel: " + ep_->describe(experts));
  log::info("GEMM: " + kernels::gemm_description());
  log::info(cat("matrix products in ", config_.mixed_precision_param,
                choices_.matmul_dtype == DType::kBF16 && !kernels::gemm_bf16_native()
                    ? " (this CPU has no bf16 GEMM path: bf16 inputs are widened to float)"
                    : ""));
  metrics_ = std::make_unique<Metrics>();
}

Trainer::~Trainer() {
  if (model_) model_->set_unit_hooks(nullptr);
  // An unfinished background save (the job is failing): its temporary folder is left for the
  // next save to remove.
  if (pending_save_ && pending_save_->writer.joinable()) pending_save_->writer.join();
}

void Trainer::apply_freeze() {
  auto& s = model_->store();
  static const std::map<std::string, std::vector<std::string>> kPrefixes = {
      {"visual", {"model.visual."}},
      {"merger", {"model.visual.merger."}},
      {"deepstack", {"model.visual.deepstack_merger_list."}},
      {"language_model", {"model.language_model."}},
      {"embeddings", {"model.language_model.embed_tokens."}},
      {"lm_head", {"lm_head."}},
  };
  for (const auto& f : config_.freeze)
    for (const auto& prefix : kPrefixes.at(f)) s.set_frozen_prefix(prefix, true);
  frozen_span_.clear();
  for (size_t i = 0; i < s.entries().size(); ++i) frozen_span_.push_back(s.frozen(i));
}

namespace {

// Router statistics of one step's micro-batches, combined over ranks (MoE models only).
struct RouterTotals {
  std::vector<double> sums;  // [aux_loss weighted by token share, slots per expert ...]
  explicit RouterTotals(const model::TextConfig& t) {
    if (t.is_moe()) sums.assign(1 + t.num_experts, 0.0);  // the same size on every rank
  }
  void add(const model::ForwardResult& r, double kept) {
    if (sums.empty() || r.tokens_per_expert.size() + 1 != sums.size()) return;
    if (kept > 0) sums[0] += r.aux_loss * static_cast<double>(r.kept_tokens) / kept;
    for (size_t e = 0; e < r.tokens_per_expert.size(); ++e)
      sums[1 + e] += static_cast<double>(r.tokens_per_expert[e]);
  }
  void finish(dist::Communicator& comm, StepRecord& rec) {
    if (sums.empty()) return;
    comm.all_reduce_sum(sums.data(), sums.size());
    rec.aux_loss = sums[0];
    double total = 0, most = 0, least = std::numeric_limits<double>::infinity();
    for (size_t e = 1; e < sums.size(); ++e) {
      total += sums[e];
      most = std::max(most, sums[e]);
      least = std::min(least, sums[e]);
    }
    rec.expert_max_share = total > 0 ? most / total : 0;
    rec.expert_min_share = total > 0 ? least / total : 0;
  }
};

}  // namespace

// One step's micro-batches. A batch fetched ahead (during the previous step) also keeps the
// loader's state and skip count from before it was fetched: what a checkpoint saved while it
// waits records, so that a resume fetches it again.
struct Trainer::StepBatch {
  std::vector<model::ModelInputs> micro;
  int64_t step = 0;  // 1-based: its inputs are in device_inputs_[step % 2]
  nlohmann::json state_before;
  int64_t skipped_before = 0;
  double fetch_seconds = 0;
  // A prefetch that failed (the loader threw): raised by the step that takes the batch, so the
  // step that was computing meanwhile still finishes, logs and saves.
  std::exception_ptr error;
};

// What the step's forwards and backwards add up on the host.
struct Trainer::StepSums {
  double loss_sum = 0, used_vision = 0;
  RouterTotals router;
  explicit StepSums(const model::TextConfig& t) : router(t) {}
};

StepRecord Trainer::train_step() {
  // Forward, backward and the optimizer run on the model's device; their activations come
  // from that device's arena.
  const DeviceScope on_device(model_->device());
  StepRecord rec;
  rec.step = step_ + 1;
  maybe_inject_fault(rec.step, comm_->rank());
  const auto t0 = Clock::now();
  // Every micro-batch first: the loss is a mean over the kept tokens of the whole global batch,
  // so each token's gradient weight 1/total is known before any backward.
  const StepBatch batch = take_batch();
  const double kept = count_tokens(batch.micro, rec);
  model::LossTerms loss_terms;  // the classifier's row losses, on the device until read_loss
  StepSums sums = forward_backward(batch, kept, loss_terms, rec);
  prefetch_next_batch();  // step N+1's inputs fetched and uploaded while the device computes
  read_loss(loss_terms, sums, kept, rec);
  clip_and_update(sums, rec);
  ++step_;
  rec.data_seconds = batch.fetch_seconds + (next_batch_ ? next_batch_->fetch_seconds : 0.0);
  rec.step_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return rec;
}

Trainer::StepBatch Trainer::fetch_batch(int64_t step) {
  const auto t0 = Clock::now();
  StepBatch b;
  b.step = step;
  for (int64_t a = 0; a < accumulation_; ++a) b.micro.push_back(data_->next());
  std::vector<model::DeviceInputs>& inputs = device_inputs_[step % 2];
  inputs.resize(b.micro.size());
  for (size_t i = 0; i < b.micro.size(); ++i) inputs[i].upload(b.micro[i]);
  b.fetch_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return b;
}

Trainer::StepBatch Trainer::take_batch() {
  if (!next_batch_) return fetch_batch(step_ + 1);
  QV_CHECK(next_batch_->step == step_ + 1, "trainer: the prefetched batch is for step ",
           next_batch_->step, ", not ", step_ + 1);
  StepBatch b = std::move(*next_batch_);
  next_batch_.reset();
  if (b.error) std::rethrow_exception(b.error);
  b.fetch_seconds = 0;  // counted in the step that fetched it
  return b;
}

void Trainer::prefetch_next_batch() {
  if (step_ + 2 > config_.steps) return;  // this is the last step
  nlohmann::json state = data_->state();
  const int64_t skipped = data_->skipped();
  try {
    next_batch_ = std::make_unique<StepBatch>(fetch_batch(step_ + 2));
  } catch (...) {
    next_batch_ = std::make_unique<StepBatch>();
    next_batch_->step = step_ + 2;
    next_batch_->error = std::current_exception();
  }
  next_batch_->state_before = std::move(state);
  next_batch_->skipped_before = skipped;
}

nlohmann::json Trainer::data_state() const {
  return next_batch_ ? next_batch_->state_before : data_->state();
}

int64_t Trainer::data_skipped() const {
  return next_batch_ ? next_batch_->skipped_before : data_->skipped();
}

double Trainer::count_tokens(const std::vector<model::ModelInputs>& micro, StepRecord& rec) {
  double kept_local = 0;
  double shape_counts[2] = {0, 0};  // tokens, vision patches
  for (const model::ModelInputs& mb : micro) {
    shape_counts[0] += static_cast<double>(mb.tokens());
    for (const auto* grids : {&mb.image_grids, &mb.video_grids})
      for (const auto& g : *grids) shape_counts[1] += static_cast<double>(g.patches());
    for (int64_t t : model::shifted_targets(mb))
      if (t != -100) kept_local += 1;
  }
  double totals[2] = {kept_local, 0};
  comm_->all_reduce_sum(totals, 1);
  comm_->all_reduce_sum(shape_counts, 2);
  rec.processed_tokens = static_cast<int64_t>(shape_counts[0]);
  rec.vision_patches = static_cast<int64_t>(shape_counts[1]);
  rec.tokens = static_cast<int64_t>(totals[0]);
  return totals[0];
}

Trainer::StepSums Trainer::forward_backward(const StepBatch& batch, double kept,
                                            model::LossTerms& loss_terms, StepRecord& rec) {
  const std::vector<model::ModelInputs>& micro = batch.micro;
  const std::vector<int64_t> passes = vision_passes(micro);
  dp_->begin_step();
  const dist::GatherBytes gathered_before = dp_->gathered_bytes();
  StepSums sums(model_->config().text);
  model::ForwardOptions opt;
  opt.backward = true;
  opt.loss_grad_scale = kept > 0 ? 1.0 / kept : 0.0;
  opt.checkpointing = choices_.checkpointing;
  opt.router_aux_loss_coef = config_.router_aux_loss_coef;
  opt.loss_terms = &loss_terms;
  // The sparse layers exchange slot rows with the group during this step's forwards and
  // backwards only (validation and generation compute every expert locally).
  const model::ExpertParallelScope expert_parallel(ep_.get());
  for (size_t i = 0; i < micro.size(); ++i) {
    dp_->begin_micro_batch(i + 1 == micro.size());
    opt.vision_passes = passes[i];
    opt.lora_dropout_key = step_ * accumulation_ + static_cast<int64_t>(i);
    opt.uploaded = &device_inputs_[batch.step % 2][i];
    const model::ForwardResult r = model_->forward(micro[i], opt);
    sums.router.add(r, kept);
    if (model_->used_vision()) sums.used_vision = 1;
    model_->backward();
  }
  dp_->finish_grads();
  const dist::GatherBytes gathered_after = dp_->gathered_bytes();
  rec.gathered_bytes = gathered_after.all - gathered_before.all;
  rec.gathered_row_bytes = gathered_after.rows - gathered_before.rows;
  return sums;
}

void Trainer::read_loss(const model::LossTerms& loss_terms, StepSums& sums, double kept,
                        StepRecord& rec) {
  sums.loss_sum = loss_terms.sum();
  double reduce[2] = {sums.loss_sum, sums.used_vision};
  comm_->all_reduce_sum(reduce, 2);
  sums.used_vision = reduce[1];
  rec.loss = kept > 0 ? reduce[0] / kept : std::nan("");
  sums.router.finish(*comm_, rec);
}

void Trainer::clip_and_update(const StepSums& sums, StepRecord& rec) {
  auto& store = model_->store();
  // Parameters that took no part (the vision tower on a text-only step; frozen ones) get no
  // update, no decay and do not count in the gradient norm, as with torch's grad = None.
  std::vector<uint8_t> active(vision_span_.size());
  for (size_t i = 0; i < active.size(); ++i)
    active[i] = !frozen_span_[i] && (!vision_span_[i] || sums.used_vision > 0);
  double sq = local_grad_sq(active);
  dp_->sum_over_shards(&sq, 1);
  rec.grad_norm = std::sqrt(sq);
  rec.lr = config_.adamw.lr * schedule_.factor(step_);
  if (!std::isfinite(rec.loss) || !std::isfinite(rec.grad_norm)) {
    QV_CHECK(
        choices_.on_nonfinite == NonFinitePolicy::kSkip, "step ", rec.step, ": non-finite ",
        std::isfinite(rec.loss) ? "gradient norm" : "loss", " (loss ", rec.loss, ", grad norm ",
        rec.grad_norm,
        "); stopping without saving (set training.on_nonfinite = \"skip\" to skip such steps)");
    log::warn(cat("step ", rec.step, ": non-finite loss or gradient, step skipped"));
    rec.skipped = true;
    return;
  }
  // Gradient clipping as torch's clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that
  // is below 1, inside the optimizer's pass.
  float clip = 1.0f;
  if (config_.max_norm > 0)
    clip = std::min(
        1.0f, static_cast<float>(config_.max_norm) / (static_cast<float>(rec.grad_norm) + 1e-6f));
  optimizer_->step(store.values().data(), store.grads().data(), active, rec.lr, clip);
}

double Trainer::local_grad_sq(const std::vector<uint8_t>& active) const {
  // The owned, active pieces of the flat buffer (kernels::squared_norm sums them in fixed blocks,
  // so the result does not depend on the thread count).
  const auto& entries = model_->store().entries();
  std::vector<kernels::FlatPiece> pieces;
  for (size_t i = 0; i < entries.size(); ++i) {
    if (!active[i]) continue;
    for (const FlatRange& r : dp_->owned()) {
      const int64_t lo = std::max(entries[i].ref.offset, r.begin);
      const int64_t hi = std::min(entries[i].ref.offset + entries[i].ref.numel, r.end);
      if (lo < hi) pieces.push_back({lo, hi});
    }
  }
  return kernels::squared_norm(model_->store().grads().data(), pieces);
}

std::vector<int64_t> Trainer::vision_passes(const std::vector<model::ModelInputs>& micro) {
  std::vector<int64_t> out(micro.size(), 0);
  if (!dims_.sharded()) return out;  // only sharded mode has collectives inside the tower
  std::vector<double> n;
  for (const auto& mb : micro)
    n.push_back(static_cast<double>(mb.pixel_values.defined() + mb.pixel_values_videos.defined()));
  dp_->max_over_shards(n.data(), static_cast<int64_t>(n.size()));
  for (size_t i = 0; i < n.size(); ++i) out[i] = static_cast<int64_t>(n[i]);
  return out;
}

namespace {

// Bytes in a checkpoint folder's files.
int64_t folder_bytes(const std::string& path) {
  int64_t bytes = 0;
  for (const auto& e : fs::directory_iterator(path))
    if (e.is_regular_file()) bytes += static_cast<int64_t>(e.file_size());
  return bytes;
}

void log_saved(const std::string& path, double seconds, const std::string& how) {
  const double mib = static_cast<double>(folder_bytes(path)) / 1048576.0;
  char stats[160];
  std::snprintf(stats, sizeof(stats), " (%.0f MiB in %.2f s, %.0f MiB/s%s)", mib, seconds,
                mib / std::max(seconds, 1e-9), how.c_str());
  log::info("saved checkpoint " + path + stats);
}

}  // namespace

void Trainer::save(bool final_save) {
  if (!config_.checkpoint_enable || config_.load_only) return;
  complete_pending_save(/*wait=*/true);  // one save in flight at a time
  const auto t0 = Clock::now();
  const std::string folder = (fs::path(config_.dump_folder) / config_.checkpoint_folder).string();
  const bool model_only = final_save && config_.last_save_model_only;
  auto& store = model_->store();
  // Ranks holding the same ranges (replicas) write disjoint parts of them.
  const std::vector<FlatRange> write =
      ranges_to_write(dp_->owned(), dims_.replicate, comm_->rank() / dims_.shard);
  const ShareView share = view_share(
      store, write, dp_->owned(), model_only ? nullptr : optimizer_->exp_avg().data(),
      model_only ? nullptr : optimizer_->exp_avg_sq().data(), optimizer_->exp_avg().device());
  SaveInfo info;
  info.step = step_;
  info.extra = {{"seed", config_.seed}};
  info.replicate = dims_.replicate;
  info.shard = dims_.shard;
  if (!model_only) info.optimizer_steps = optimizer_->steps();
  info.model_config_json = model_->config().to_json_text();
  info.keep_latest_k = config_.keep_latest_k;
  const std::string final_dir = checkpoint_dir(folder, step_);
  const std::string tmp = begin_sharded_save(*comm_, final_dir);
  if (config_.async_mode != "disabled") {
    auto p = std::make_unique<PendingSave>();
    const auto t_copy = Clock::now();
    p->snapshot = snapshot_share(share, snapshot_storage_);
    p->copy_seconds = std::chrono::duration<double>(Clock::now() - t_copy).count();
    p->data_state = data_state();
    p->tmp_dir = tmp;
    p->final_dir = final_dir;
    p->info = std::move(info);
    p->started = t0;
    PendingSave* raw = p.get();
    const int rank = comm_->rank();
    p->writer = std::thread([raw, rank, &store] {
      raw->files =
          write_rank_files(raw->tmp_dir, rank, store.entries(), raw->snapshot, raw->data_state);
      raw->done = true;
    });
    pending_save_ = std::move(p);
    return;
  }
  const double rss_before = rss_mib();
  RssWatch watch;
  const RankFiles files =
      write_rank_files(tmp, comm_->rank(), store.entries(), share, data_state());
  const double write_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  const std::string path = finish_sharded_save(*comm_, tmp, final_dir, files, write, store, info);
  const double rss_peak = watch.stop();
  if (comm_->rank() == 0)
    log_saved(
        path, std::chrono::duration<double>(Clock::now() - t0).count(),
        cat(", ", comm_->size(), " ranks writing; rank 0 wrote ",
            std::lround(share.elements() * (share.has_optimizer() ? 12.0 : 4.0) / 1048576.0),
            " MiB in ", std::lround(write_seconds * 1000), " ms, RSS ", std::lround(rss_before),
            " MiB before, peak ", std::lround(rss_peak), " MiB during the save"));
}

void Trainer::complete_pending_save(bool wait) {
  if (!pending_save_) return;
  if (!wait) {
    // Published only once every rank's writer is done: ask all ranks (one small collective per
    // step boundary while a save is in flight).
    double busy = pending_save_->done.load() ? 0.0 : 1.0;
    comm_->all_reduce_max(&busy, 1);
    if (busy > 0) return;
  }
  pending_save_->writer.join();
  const std::unique_ptr<PendingSave> p = std::move(pending_save_);
  const std::string path = finish_sharded_save(*comm_, p->tmp_dir, p->final_dir, p->files,
                                               p->snapshot.ranges, model_->store(), p->info);
  if (comm_->rank() == 0)
    log_saved(
        path, std::chrono::duration<double>(Clock::now() - p->started).count(),
        cat(", asynchronous: training paused ", std::lround(p->copy_seconds * 1000), " ms to copy ",
            std::lround(p->snapshot.elements() * (p->snapshot.has_optimizer() ? 12.0 : 4.0) /
                        1048576.0),
            " MiB per rank"));
}

data::ImageProcessorConfig trained_image_config(const JobConfig& c, const model::ModelConfig& m) {
  // The loader's own settings where it ran; a fixed (pre-processed) dataset gets the [data]
  // values with the model's patch geometry.
  if (c.dataset != "fixed") return loader_config(c, m, 0, 1).sample.image;
  data::ImageProcessorConfig img;
  img.patch_size = static_cast<int>(m.vision.patch_size);
  img.temporal_patch_size = static_cast<int>(m.vision.temporal_patch_size);
  img.merge_size = static_cast<int>(m.vision.spatial_merge_size);
  img.min_pixels = c.min_pixels;
  img.max_pixels = c.max_pixels;
  return img;
}

void Trainer::export_hf() {
  const std::string dir = (fs::path(config_.dump_folder) / config_.export_folder).string();
  auto extra_texts = [this] {
    const bool has_tokenizer =
        !config_.tokenizer_path.empty() && fs::exists(config_.tokenizer_path);
    return hf_export_files(model_->config(), trained_image_config(config_, model_->config()),
                           has_tokenizer ? io::read_file(config_.tokenizer_path) : "",
                           config_.tokenizer_path);
  };
  const DType dtype = choices_.export_dtype;
  StreamedExport options;
  options.dir = dir;
  options.dtype = dtype;
  options.extra_texts = extra_texts;
  std::unique_ptr<model::LoraMergedValues> merged;
  if (model_->lora_config().enabled()) {
    // Only the adapters are gathered (a few MiB): rank 0 writes them as PEFT's folder, and every
    // rank merges them into the base ranges it sends, so the base weights stay sharded.
    for (int unit : model_->lora_params().layer_units) dp_->gather(unit);
    if (config_.lora_merge_on_export)
      merged = std::make_unique<model::LoraMergedValues>(model_->config(), model_->lora_config(),
                                                         model_->store());
    run_on_rank0([&] {
      const std::string adapter =
          (fs::path(config_.dump_folder) / config_.lora_adapter_folder).string();
      model::save_lora_adapter(adapter, model_->lora_config(), model_->store(),
                               config_.initial_load_path);
      log::info("saved LoRA adapter (PEFT format) to " + adapter);
    });  // releases the adapters again
    if (!merged) {
      if (comm_->rank() == 0)
        log::info("no Hugging Face export: set lora.merge_on_export = true for a merged one");
      return;
    }
    options.values = [&](int64_t begin, int64_t n, float* out) { merged->read(begin, n, out); };
    options.skip = [](const model::ParamEntry& e) { return model::is_lora_param(e.name); };
  }
  // Streamed to rank 0 window by window from the ranks that write each range in checkpoints:
  // no rank holds more than its share and the windows (train/streamed_export.h).
  const auto t0 = Clock::now();
  const double rss_before = rss_mib();
  RssWatch watch;
  const StreamedExportStats stats = export_hf_streamed(
      *comm_, model_->store(),
      ranges_to_write(dp_->owned(), dims_.replicate, comm_->rank() / dims_.shard), model_->config(),
      options);
  const double rss_peak = watch.stop();
  if (comm_->rank() == 0)
    log::info(cat("exported Hugging Face checkpoint", merged ? " (LoRA merged)" : "", " to ", dir,
                  " (", std::lround(static_cast<double>(stats.bytes_written) / 1048576.0),
                  " MiB streamed from ", comm_->size(), " ranks in ", stats.windows, " windows, ",
                  std::lround(std::chrono::duration<double>(Clock::now() - t0).count() * 1000),
                  " ms; rank 0 RSS ", std::lround(rss_before), " MiB before, peak ",
                  std::lround(rss_peak), " MiB during the export)"));
}

void Trainer::run_on_rank0(const std::function<void()>& write) {
  std::string error;
  if (comm_->rank() == 0) {
    try {
      write();
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  dp_->release_all();
  // Every rank learns whether rank 0's write worked (this also stands for a barrier), so a full
  // disk ends the whole job with its message instead of leaving the other ranks at a collective.
  double failed = error.empty() ? 0.0 : 1.0;
  comm_->all_reduce_max(&failed, 1);
  if (failed > 0)
    fail(comm_->rank() == 0 ? error : "writing a checkpoint failed on rank 0 (see its error)");
}

void Trainer::resume_if_possible() {
  if (!config_.checkpoint_enable) return;
  const std::string folder = (fs::path(config_.dump_folder) / config_.checkpoint_folder).string();
  auto latest = config_.load_step >= 0
                    ? std::optional<std::string>(checkpoint_at_step(folder, config_.load_step))
                    : latest_checkpoint(folder);
  if (!latest) return;
  // Any layout loads any checkpoint: each rank reads the pieces that overlap what it owns.
  OptimizerTarget target{optimizer_->exp_avg(), optimizer_->exp_avg_sq(), dp_->owned(),
                         &optimizer_->steps(), optimizer_->exp_avg().device()};
  const std::vector<FlatRange> owned = dp_->owned();
  // A rank that cannot read its pieces (a missing or corrupt file) ends every rank at once,
  // instead of leaving the others at the next collective until the timeout.
  TrainState st;
  std::string error;
  try {
    st = load_checkpoint(*latest, model_->store(), &target, &owned);
  } catch (const std::exception& e) {
    error = e.what();
  }
  const int world = comm_->size();
  double failed[2] = {error.empty() ? 0.0 : 1.0,
                      error.empty() ? 0.0 : static_cast<double>(world - comm_->rank())};
  comm_->all_reduce_max(failed, 2);
  if (failed[0] > 0)
    fail(!error.empty() ? error
                        : cat("loading ", *latest, " failed on rank ",
                              world - static_cast<int>(failed[1]), " (see its error)"));
  model_->store().sync_bf16();
  dp_->release_all();
  step_ = st.step;
  next_batch_.reset();  // fetched from the state the checkpoint replaces
  const auto saved_world = static_cast<int64_t>(st.data_states.size());
  if (st.data_states.empty()) {
    data_->restore(st.data_state);  // v1: rank 0's state (other ranks replay their stream)
  } else if (saved_world == comm_->size()) {
    data_->restore(st.data_states[comm_->rank()]);
  } else {
    if (comm_->rank() == 0)
      log::warn(cat("checkpoint saved by ", saved_world, " ranks, resuming on ", comm_->size(),
                    ": data order follows checkpoint.data_reshard = ", config_.data_reshard));
    data_->restore_resharded(st.data_states, config_.data_reshard == "next_epoch");
  }
  log::info(cat("resumed from ", *latest, " at step ", step_));
}

std::vector<StepRecord> Trainer::run() {
  resume_if_possible();
  // MFU compares the job's FLOP rate with the sum of every rank's GEMM peak for the precision in
  // use (each rank measures its own, at the same time as the others, as it will train).
  const DType dtype = choices_.matmul_dtype;
  const double peak_rank = kernels::measure_peak_gflops(dtype);
  double peak_total = peak_rank;
  comm_->all_reduce_sum(&peak_total, 1);
  metrics_->logger = std::make_unique<MetricsLogger>(config_, *model_, comm_->rank() == 0,
                                                     peak_rank, peak_total, comm_->size());
  std::vector<StepRecord> history;
  while (step_ < config_.steps) {
    StepRecord rec = train_step();
    // Blocks no request needed during this step go back to the system (shapes changed).
    BufferPool::of(model_->device()).end_step();
    history.push_back(rec);
    metrics_->logger->log(rec, config_.steps, data_skipped());
    if (validation_due(config_, step_)) validate();
    const bool stop = stop_requested().load();
    if (step_ % config_.checkpoint_interval == 0 || step_ == config_.steps || stop ||
        (step_ == 1 && config_.enable_first_step_checkpoint))
      save(step_ == config_.steps);
    complete_pending_save(/*wait=*/stop);
    if (stop) {
      log::info(cat("stop requested: checkpoint saved at step ", step_, "; exiting"));
      break;
    }
  }
  complete_pending_save(/*wait=*/true);
  if (step_ == config_.steps && config_.checkpoint_enable && !config_.load_only) export_hf();
  report_memory();
  return history;
}

void Trainer::validate() {
  const auto t0 = Clock::now();
  // Every parameter on every rank, and no unit hooks: each rank then runs as many forwards as
  // its share of the data needs, without collectives inside the model.
  dp_->gather_all();
  model_->set_unit_hooks(nullptr);
  const auto source = make_validation_source(
      config_, model_->config(), static_cast<int>(comm_->rank()), static_cast<int>(comm_->size()));
  ValidationSums local;
  {
    const DeviceScope on_device(model_->device());
    local = validation_sums(*model_, *source, config_.validation_steps);
  }
  model_->set_unit_hooks(dp_.get());
  dp_->release_all();
  BufferPool::of(model_->device()).end_step();
  double sums[3] = {local.loss_sum, static_cast<double>(local.kept_tokens),
                    static_cast<double>(local.batches)};
  comm_->all_reduce_sum(sums, 3);
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  metrics_->logger->log_validation(step_, sums[1] > 0 ? sums[0] / sums[1] : std::nan(""),
                                   static_cast<int64_t>(sums[1]), static_cast<int64_t>(sums[2]),
                                   seconds);
}

void Trainer::report_memory() {
  int64_t owned = 0;
  for (const FlatRange& r : dp_->owned()) owned += r.size();
  // Parameters, gradients and the two AdamW moments of the elements this rank owns.
  double mib[3] = {4.0 * owned * sizeof(float) / (1 << 20), rss_mib(), peak_rss_mib()};
  comm_->all_reduce_max(mib, 3);
  log::info(cat("memory per rank (max over ranks): training state ", std::lround(mib[0]),
                " MiB, RSS ", std::lround(mib[1]), " MiB, peak RSS ", std::lround(mib[2]), " MiB"));
}

}  // namespace qv::train
