#include "train/metrics.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/device_info.h"
#include "train/trainer.h"

namespace qv::train {

namespace {
double proc_status_kib(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key, 0) == 0) return std::stod(line.substr(std::string(key).size()));
  return 0;
}
}  // namespace

double rss_mib() {
  return proc_status_kib("VmRSS:") / 1024.0;
}
double peak_rss_mib() {
  return proc_status_kib("VmHWM:") / 1024.0;
}

RssWatch::RssWatch() : peak_(rss_mib()) {
  thread_ = std::thread([this] {
    while (!stop_.load()) {
      const double now = rss_mib();
      if (now > peak_.load()) peak_ = now;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
}

RssWatch::~RssWatch() {
  stop();
}

double RssWatch::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  const double now = rss_mib();
  if (now > peak_.load()) peak_ = now;
  return peak_.load();
}

MetricsLogger::MetricsLogger(const JobConfig& config, const model::Qwen3VLModel& model, bool writer,
                             double peak_gflops_rank, double peak_gflops_total, int ranks)
    : config_(config), model_(model), writer_(writer), peak_gflops_(peak_gflops_total) {
  if (!writer_) return;
  std::filesystem::create_directories(config.dump_folder);
  if (config.enable_jsonl) jsonl_.open(config.dump_folder + "/metrics.jsonl", std::ios::app);
  if (config.enable_tensorboard)
    tb_ = std::make_unique<TensorBoardWriter>(config.dump_folder + "/" + config.save_tb_folder);
  char per_rank[64] = "";
  if (ranks > 1)
    std::snprintf(per_rank, sizeof(per_rank), " over %d ranks (%.1f on rank 0)", ranks,
                  peak_gflops_rank);
  const bool bf16 = JobChoices::parse(config).matmul_dtype == DType::kBF16;
  std::printf("MFU below: the model FLOP rate over the %s GEMM peak (2048^3): %.1f GFLOP/s%s\n",
              bf16 ? "bf16" : "float32", peak_gflops_total, per_rank);
}

void MetricsLogger::log(const StepRecord& r, int64_t total_steps, int64_t skipped_samples) {
  elapsed_ += r.step_seconds;
  ++steps_seen_;
  if (!writer_ || (r.step % config_.log_freq != 0 && r.step != total_steps)) return;
  // Vision FLOPs assume images of the configured maximum size (an upper bound on attention).
  const auto& mc = model_.config();
  const double flops =
      model::decoder_train_flops_per_token(mc, config_.seq_len) * r.processed_tokens +
      model::classifier_train_flops_per_token(mc) * r.tokens +
      model::vision_train_flops_per_patch(mc, config_.max_patches_per_image * 4) * r.vision_patches;
  const double gflops = flops / r.step_seconds / 1e9;
  const double tokens_per_s = r.processed_tokens / r.step_seconds;
  const double mfu = peak_gflops_ > 0 ? gflops / peak_gflops_ : 0;
  const double eta = elapsed_ / steps_seen_ * (total_steps - r.step);
  const double wait = r.step_seconds > 0 ? r.data_seconds / r.step_seconds : 0;
  // Memory: the host's RSS always; on a GPU also its caching allocator's figures.
  std::string device_mem = kernels::format_device_memory(model_.device());
  if (!device_mem.empty()) device_mem = " | " + device_mem;
  std::printf(
      "step %5lld | loss %8.4f | grad_norm %8.4f | lr %.3e | %7.1f tok/s | %.3f TFLOP/s | MFU "
      "%4.1f%% | mem %.0f MiB%s | data wait %4.1f%% | ETA %.0fs%s\n",
      static_cast<long long>(r.step), r.loss, r.grad_norm, r.lr, tokens_per_s, gflops / 1e3,
      100 * mfu, rss_mib(), device_mem.c_str(), 100 * wait, eta, r.skipped ? " | SKIPPED" : "");
  std::fflush(stdout);
  nlohmann::json j = {{"step", r.step},
                      {"loss", r.loss},
                      {"grad_norm", r.grad_norm},
                      {"lr", r.lr},
                      {"tokens", r.tokens},
                      {"tokens_per_s", tokens_per_s},
                      {"tflops", gflops / 1e3},
                      {"mfu", mfu},
                      {"rss_mib", rss_mib()},
                      {"data_wait", wait},
                      {"step_seconds", r.step_seconds},
                      {"skipped_samples", skipped_samples},
                      {"skipped_step", r.skipped}};
  if (model_.device().is_cuda()) {
    const kernels::DeviceMemory m = kernels::device_memory(model_.device());
    j["device_memory"] = {{"device", to_string(model_.device())},
                          {"allocated", m.allocated},
                          {"reserved", m.reserved},
                          {"peak", m.peak}};
  }
  if (r.gathered_bytes > 0) {
    j["gathered_bytes"] = r.gathered_bytes;
    j["gathered_row_bytes"] = r.gathered_row_bytes;
  }
  if (mc.text.is_moe()) {
    std::printf("       router: aux_loss %.4f | expert share max %.3f min %.3f (balanced %.3f)\n",
                r.aux_loss, r.expert_max_share, r.expert_min_share,
                1.0 / static_cast<double>(mc.text.num_experts));
    j["aux_loss"] = r.aux_loss;
    j["expert_max_share"] = r.expert_max_share;
    j["expert_min_share"] = r.expert_min_share;
  }
  if (jsonl_.is_open()) {
    jsonl_ << j.dump() << "\n";
    jsonl_.flush();
  }
  if (tb_) {
    // torchtitan's tags (torchtitan/components/metrics.py, MetricsProcessor.log), so its
    // comparison scripts read these runs; memory is this process's peak RSS, the host
    // counterpart of torchtitan's peak reserved device memory.
    tb_->scalar("loss_metrics/global_avg_loss", r.loss, r.step);
    tb_->scalar("grad_norm", r.grad_norm, r.step);
    if (mc.text.is_moe()) {
      tb_->scalar("moe/aux_loss", r.aux_loss, r.step);
      tb_->scalar("moe/expert_max_share", r.expert_max_share, r.step);
      tb_->scalar("moe/expert_min_share", r.expert_min_share, r.step);
    }
    tb_->scalar("lr", r.lr, r.step);
    tb_->scalar("throughput(tps)", tokens_per_s, r.step);
    tb_->scalar("tflops", gflops / 1e3, r.step);
    tb_->scalar("mfu(%)", 100 * mfu, r.step);
    tb_->scalar("time_metrics/end_to_end(s)", r.step_seconds, r.step);
    tb_->scalar("time_metrics/data_loading(s)", r.data_seconds, r.step);
    tb_->scalar("time_metrics/data_loading(%)", 100 * wait, r.step);
    tb_->scalar("memory/max_reserved(GiB)", peak_rss_mib() / 1024, r.step);
    tb_->flush();
  }
}

void MetricsLogger::log_validation(int64_t step, double loss, int64_t tokens, int64_t batches,
                                   double seconds) {
  if (!writer_) return;
  std::printf(
      "validation after step %lld | validation/loss %8.4f | %lld tokens in %lld batches | %.2f s\n",
      static_cast<long long>(step), loss, static_cast<long long>(tokens),
      static_cast<long long>(batches), seconds);
  std::fflush(stdout);
  if (jsonl_.is_open()) {
    const nlohmann::json j = {{"step", step},
                              {"validation/loss", loss},
                              {"validation/tokens", tokens},
                              {"validation/batches", batches},
                              {"validation/seconds", seconds}};
    jsonl_ << j.dump() << "\n";
    jsonl_.flush();
  }
  if (tb_) {
    // validation/loss as asked for, and torchtitan's own tag for its comparison scripts.
    tb_->scalar("validation/loss", loss, step);
    tb_->scalar("validation_metrics/loss", loss, step);
    tb_->flush();
  }
}

}  // namespace qv::train
