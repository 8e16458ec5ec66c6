#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/buffer_pool.h"
#include "core/error.h"
#include "core/log.h"
#include "model/hf_weights.h"
#include "train/checkpoint.h"
#include "train/metrics.h"

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

std::unique_ptr<model::Qwen3VLModel> build_model(const JobConfig& c) {
  model::ModelConfig mc;
  if (!c.hf_config.empty()) {
    const fs::path p(c.hf_config);
    mc = model::ModelConfig::from_json_file((fs::is_directory(p) ? p / "config.json" : p).string());
  } else {
    mc = model::ModelConfig::flavor(c.flavor);
  }
  auto m = std::make_unique<model::Qwen3VLModel>(mc);
  if (!c.initial_load_path.empty()) {
    model::load_hf_weights(c.initial_load_path, m->store());
    log::info("loaded weights from " + c.initial_load_path);
  } else {
    model::init_params(mc, m->store(), static_cast<uint64_t>(c.seed));
  }
  return m;
}

Trainer::Trainer(JobConfig config, std::unique_ptr<model::Qwen3VLModel> model,
                 std::unique_ptr<BatchSource> data, std::unique_ptr<dist::Communicator> comm)
    : config_(std::move(config)),
      model_(std::move(model)),
      data_(std::move(data)),
      comm_(std::move(comm)),
      schedule_(config_.lr_scheduler, config_.steps) {
  const int64_t world = comm_->size();
  int64_t replicate = config_.dp_replicate, shard = config_.dp_shard;
  QV_CHECK(replicate >= 1 || replicate == -1,
           "parallelism.data_parallel_replicate_degree must be >= 1 or -1");
  if (shard == -1) shard = world / std::max<int64_t>(1, replicate);
  if (replicate == -1) replicate = world / std::max<int64_t>(1, shard);
  QV_CHECK(replicate >= 1 && shard >= 1 && replicate * shard == world,
           "parallelism: data_parallel_replicate_degree (", config_.dp_replicate,
           ") x data_parallel_shard_degree (", config_.dp_shard,
           ") must equal the number of ranks (", world, ")");
  QV_CHECK(replicate == 1 || shard == 1, "parallelism: hybrid replicate x shard (", replicate,
           " x ", shard, ") is not supported yet; use one of the two degrees");
  sharded_ = shard > 1;
  const int64_t per_step = config_.local_batch_size * world;
  const int64_t global = config_.global_batch_size > 0 ? config_.global_batch_size : per_step;
  QV_CHECK(global % per_step == 0, "training.global_batch_size (", global,
           ") must be a multiple of local_batch_size x data-parallel ranks (", per_step, ")");
  accumulation_ = global / per_step;
  std::vector<ParamSpan> spans;
  for (const auto& e : model_->store().entries()) {
    spans.push_back({e.ref.offset, e.ref.numel});
    vision_span_.push_back(e.is_vision);
  }
  model_->store().pad_to_multiple(16 * world);
  const int64_t chunk = model_->store().padded_total() / world;
  shard_begin_ = sharded_ ? chunk * comm_->rank() : 0;
  shard_end_ = sharded_ ? shard_begin_ + chunk : model_->store().padded_total();
  optimizer_ = std::make_unique<AdamW>(config_.adamw, spans, shard_begin_, shard_end_);
  // Every rank starts from rank 0's weights (a seeded init is identical anyway; this also
  // covers weights loaded from different files).
  comm_->broadcast(model_->store().values().data(), model_->store().padded_total(), 0);
  apply_freeze();
  metrics_ = std::make_unique<Metrics>();
}

Trainer::~Trainer() = default;

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

StepRecord Trainer::train_step() {
  auto& store = model_->store();
  StepRecord rec;
  rec.step = step_ + 1;
  const auto t0 = Clock::now();
  // Fetch every micro-batch first: the loss is a mean over the kept tokens of the whole global
  // batch, so each token's gradient weight 1/total is known before any backward.
  std::vector<model::ModelInputs> micro;
  double kept_local = 0;
  double shape_counts[2] = {0, 0};  // tokens, vision patches
  for (int64_t a = 0; a < accumulation_; ++a) {
    micro.push_back(data_->next());
    shape_counts[0] += static_cast<double>(micro.back().tokens());
    for (const auto* grids : {&micro.back().image_grids, &micro.back().video_grids})
      for (const auto& g : *grids) shape_counts[1] += static_cast<double>(g.patches());
    for (int64_t t : model::shifted_targets(micro.back()))
      if (t != -100) kept_local += 1;
  }
  const auto t_data = Clock::now();
  double totals[2] = {kept_local, 0};
  comm_->all_reduce_sum(totals, 1);
  const double kept = totals[0];
  comm_->all_reduce_sum(shape_counts, 2);
  rec.processed_tokens = static_cast<int64_t>(shape_counts[0]);
  rec.vision_patches = static_cast<int64_t>(shape_counts[1]);
  rec.tokens = static_cast<int64_t>(kept);
  store.zero_grads();
  double loss_sum = 0, used_vision = 0;
  model::ForwardOptions opt;
  opt.backward = true;
  opt.loss_grad_scale = kept > 0 ? 1.0 / kept : 0.0;
  opt.activation_checkpoint = config_.ac_mode;
  for (const auto& mb : micro) {
    const model::ForwardResult r = model_->forward(mb, opt);
    loss_sum += r.loss_sum;
    if (model_->used_vision()) used_vision = 1;
    model_->backward();
  }
  double reduce[2] = {loss_sum, used_vision};
  comm_->all_reduce_sum(reduce, 2);
  if (sharded_) {
    // Each rank keeps the summed gradient of its own shard only.
    std::vector<float> mine(shard_end_ - shard_begin_);
    comm_->reduce_scatter_sum(store.grads().data(), mine.data(), shard_end_ - shard_begin_);
    std::copy(mine.begin(), mine.end(), store.grads().begin() + shard_begin_);
  } else {
    comm_->all_reduce_sum(store.grads().data(), store.padded_total());
  }
  rec.loss = kept > 0 ? reduce[0] / kept : std::nan("");
  // Parameters that took no part (the vision tower on a text-only step; frozen ones) get no
  // update, no decay and do not count in the gradient norm, as with torch's grad = None.
  std::vector<uint8_t> active(vision_span_.size());
  for (size_t i = 0; i < active.size(); ++i)
    active[i] = !frozen_span_[i] && (!vision_span_[i] || reduce[1] > 0);
  double sq = local_grad_sq(active);
  if (sharded_) comm_->all_reduce_sum(&sq, 1);
  rec.grad_norm = std::sqrt(sq);
  rec.lr = config_.adamw.lr * schedule_.factor(step_);
  if (!std::isfinite(rec.loss) || !std::isfinite(rec.grad_norm)) {
    QV_CHECK(
        config_.on_nonfinite == "skip", "step ", rec.step, ": non-finite ",
        std::isfinite(rec.loss) ? "gradient norm" : "loss", " (loss ", rec.loss, ", grad norm ",
        rec.grad_norm,
        "); stopping without saving (set training.on_nonfinite = \"skip\" to skip such steps)");
    log::warn(cat("step ", rec.step, ": non-finite loss or gradient, step skipped"));
    rec.skipped = true;
  } else {
    if (config_.max_norm > 0) {
      const float coef = std::min(
          1.0f, static_cast<float>(config_.max_norm) / (static_cast<float>(rec.grad_norm) + 1e-6f));
      if (coef < 1.0f)
        for (int64_t j = shard_begin_; j < shard_end_; ++j) store.grads()[j] *= coef;
    }
    optimizer_->step(store.values().data(), store.grads().data(), active, rec.lr);
    if (sharded_) {
      const int64_t n = shard_end_ - shard_begin_;
      comm_->all_gather(store.values().data() + shard_begin_, store.values().data(), n);
    }
  }
  ++step_;
  rec.data_seconds = std::chrono::duration<double>(t_data - t0).count();
  rec.step_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return rec;
}

double Trainer::local_grad_sq(const std::vector<uint8_t>& active) const {
  const auto& store = model_->store();
  const auto& entries = store.entries();
  const float* g = model_->store().grads().data();
  double sq = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    if (!active[i]) continue;
    const int64_t lo = std::max(entries[i].ref.offset, shard_begin_);
    const int64_t hi = std::min(entries[i].ref.offset + entries[i].ref.numel, shard_end_);
    for (int64_t j = lo; j < hi; ++j) sq += static_cast<double>(g[j]) * g[j];
  }
  return sq;
}

void Trainer::save(bool final_save) {
  if (!config_.checkpoint_enable) return;
  const std::string folder = (fs::path(config_.dump_folder) / config_.checkpoint_folder).string();
  TrainState st;
  st.step = step_;
  st.data_state = data_->state();
  st.extra = {{"seed", config_.seed}};
  const bool model_only = final_save && config_.last_save_model_only;
  OptimizerState full;
  if (!model_only) {
    const int64_t total = model_->store().padded_total();
    full.exp_avg.assign(total, 0.0f);
    full.exp_avg_sq.assign(total, 0.0f);
    if (sharded_) {
      const int64_t n = shard_end_ - shard_begin_;
      comm_->all_gather(optimizer_->exp_avg().data(), full.exp_avg.data(), n);
      comm_->all_gather(optimizer_->exp_avg_sq().data(), full.exp_avg_sq.data(), n);
    } else {
      full.exp_avg = optimizer_->exp_avg();
      full.exp_avg_sq = optimizer_->exp_avg_sq();
    }
    full.steps = optimizer_->steps();
  }
  if (comm_->rank() == 0) {
    const std::string path = save_checkpoint(folder, model_->store(), model_only ? nullptr : &full,
                                             st, config_.keep_latest_k);
    log::info("saved checkpoint " + path);
  }
  comm_->barrier();
}

void Trainer::resume_if_possible() {
  if (!config_.checkpoint_enable) return;
  const std::string folder = (fs::path(config_.dump_folder) / config_.checkpoint_folder).string();
  auto latest = latest_checkpoint(folder);
  if (!latest) return;
  OptimizerState full;
  const TrainState st = load_checkpoint(*latest, model_->store(), &full);
  // Checkpoints hold unsharded state, so any number of ranks can take this rank's slice.
  const int64_t n = shard_end_ - shard_begin_;
  const int64_t have = static_cast<int64_t>(full.exp_avg.size());
  for (int64_t j = 0; j < n; ++j) {
    const int64_t src = shard_begin_ + j;
    optimizer_->exp_avg()[j] = src < have ? full.exp_avg[src] : 0.0f;
    optimizer_->exp_avg_sq()[j] = src < have ? full.exp_avg_sq[src] : 0.0f;
  }
  optimizer_->steps() = full.steps;
  step_ = st.step;
  data_->restore(st.data_state);
  log::info(cat("resumed from ", *latest, " at step ", step_));
}

std::vector<StepRecord> Trainer::run() {
  resume_if_possible();
  metrics_->logger = std::make_unique<MetricsLogger>(config_, *model_, comm_->rank() == 0);
  std::vector<StepRecord> history;
  while (step_ < config_.steps) {
    StepRecord rec = train_step();
    // Blocks no request needed during this step go back to the system (shapes changed).
    BufferPool::instance().end_step();
    history.push_back(rec);
    metrics_->logger->log(rec, config_.steps, data_->skipped());
    const bool stop = stop_requested().load();
    if (step_ % config_.checkpoint_interval == 0 || step_ == config_.steps || stop)
      save(step_ == config_.steps);
    if (stop) {
      log::info(cat("stop requested: checkpoint saved at step ", step_, "; exiting"));
      break;
    }
  }
  if (step_ == config_.steps && config_.checkpoint_enable && comm_->rank() == 0) {
    const std::string dir = (fs::path(config_.dump_folder) / config_.export_folder).string();
    model::save_hf_checkpoint(dir, model_->config(), model_->store(),
                              config_.export_dtype == "bfloat16" ? DType::kBF16 : DType::kF32);
    if (!config_.tokenizer_path.empty() && fs::exists(config_.tokenizer_path))
      fs::copy_file(config_.tokenizer_path, fs::path(dir) / "tokenizer.json",
                    fs::copy_options::overwrite_existing);
    log::info("exported Hugging Face checkpoint to " + dir);
  }
  return history;
}

}  // namespace qv::train
