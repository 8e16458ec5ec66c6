// The training job's configuration: a TOML file with torchtitan's section names, plus
// command-line overrides (--section.key value). Unknown keys and bad values are errors that name
// the key and list the valid choices.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "train/adamw.h"
#include "train/lr_schedule.h"

namespace qv::train {

struct JobConfig {
  // [job]
  std::string dump_folder = "./outputs";
  std::string description;
  // [model]
  std::string model_name = "qwen3_vl";
  std::string flavor = "debugmodel";
  std::string hf_config;  // a model folder or config.json; overrides flavor when set
  std::string tokenizer_path;
  std::vector<std::string> freeze;  // "visual", "merger", "deepstack", "language_model", "lm_head"
  double router_aux_loss_coef = 0;  // MoE load-balancing loss weight (0 = off, HF's default)
  // [optimizer]
  std::string optimizer = "AdamW";
  AdamWConfig adamw;
  // [lr_scheduler]
  LrScheduleConfig lr_scheduler;
  // [training]
  int64_t local_batch_size = 1;
  int64_t global_batch_size = -1;  // -1 = local_batch_size x data-parallel degree (no accumulation)
  int64_t seq_len = 2048;
  double max_norm = 1.0;
  int64_t steps = 10;
  std::string dataset = "cc12m";  // cc12m | obelics | chat | fixed
  std::string dataset_path;
  int64_t seed = 42;
  std::string on_nonfinite = "stop";  // stop | skip
  // Matrix products in bfloat16 (fp32 master weights, gradients and optimizer state; bf16 copies
  // of weights and GEMM inputs, fp32 accumulation; norms, softmax, RoPE and loss in fp32), or
  // everything in float32.
  std::string mixed_precision_param = "float32";  // float32 | bfloat16
  // [data]
  int64_t patch_size = 16, temporal_patch_size = 2, spatial_merge_size = 2;
  int64_t max_patches_per_image = 1024;  // merged tokens per image
  int64_t max_images_per_batch = 64;
  int64_t packing_buffer_size = 100;
  // A sample longer than max_tokens_per_sample (0: seq_len) is truncated without cutting an image
  // block or, with overlong_samples = "skip", is a counted skip. A sample with more images than
  // max_images_per_sample (0: max_images_per_batch / local_batch_size, also its upper bound) is a
  // counted skip, found before its images are read.
  int64_t max_tokens_per_sample = 0;
  std::string overlong_samples = "truncate";  // truncate | skip
  int64_t max_images_per_sample = 0;
  int64_t min_pixels = 65536, max_pixels = 16777216;
  int64_t num_workers = 2, prefetch = 8;
  // [checkpoint]
  bool checkpoint_enable = false;
  std::string checkpoint_folder = "checkpoint";
  int64_t checkpoint_interval = 500;
  int64_t keep_latest_k = 2;
  std::string initial_load_path;
  bool last_save_model_only = false;
  std::string export_dtype = "float32";  // float32 | bfloat16
  std::string export_folder = "hf_export";
  // [activation_checkpoint]
  std::string ac_mode = "none";  // none | selective | full
  // [metrics]
  int64_t log_freq = 1;
  bool enable_tensorboard = false;
  std::string save_tb_folder = "tb";
  bool enable_jsonl = true;
  // [parallelism]
  int64_t dp_replicate = 1, dp_shard = -1;
  // Replicated mode: all-reduce gradient buckets while backward still runs.
  bool overlap_grad_reduce = true;
  // [comm]
  double comm_timeout_seconds = 300;  // a collective slower than this aborts the job

  // Reads a TOML file, then applies overrides such as {"training.steps", "20"}.
  static JobConfig load(const std::string& path,
                        const std::vector<std::pair<std::string, std::string>>& overrides = {});
  static JobConfig parse(const std::string& toml_text, const std::string& origin,
                         const std::vector<std::pair<std::string, std::string>>& overrides = {});
  // Every "section.key" the parser accepts.
  static std::vector<std::string> known_keys();
};

}  // namespace qv::train
