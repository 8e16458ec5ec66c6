// The training job's configuration: a TOML file with torchtitan's section names, plus
// command-line overrides (--section.key value). torchtitan keys this system does not implement
// are accepted when their value is the default or means nothing here (see torchtitan_keys.h),
// and listed in `accepted_torchtitan_keys`; other unknown keys and bad values are errors that
// name the key and list the valid choices.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/activation_checkpoint.h"
#include "model/lora_config.h"
#include "train/adamw.h"
#include "train/lr_schedule.h"

namespace qv::train {

struct JobConfig {
  // [job]
  std::string dump_folder = "./outputs";
  std::string description;
  bool print_config = false;  // log every key's value at start
  // [model]
  std::string model_name = "qwen3_vl";
  std::string flavor = "debugmodel";
  std::string hf_config;       // a model folder or config.json; overrides flavor when set
  std::string tokenizer_path;  // tokenizer.json, or a folder holding one
  // torchtitan's HF assets folder: the tokenizer when tokenizer_path is unset, and the initial
  // weights (with their config.json) when checkpoint.initial_load_in_hf is set without a path.
  std::string hf_assets_path;
  std::string init = "hf";          // initialisation from scratch: hf | torchtitan (model/params.h)
  std::vector<std::string> freeze;  // "visual", "merger", "deepstack", "language_model", "lm_head"
  double router_aux_loss_coef = 0;  // MoE load-balancing loss weight (0 = off, HF's default)
  // [optimizer]
  std::string optimizer = "AdamW";
  AdamWConfig adamw;
  // [lr_scheduler]
  LrScheduleConfig lr_scheduler;
  int64_t lr_total_steps = 0;  // steps the schedule spans; 0: training.steps
  // [training]
  int64_t local_batch_size = 1;
  int64_t global_batch_size = -1;  // -1 = local_batch_size x data-parallel degree (no accumulation)
  int64_t seq_len = 2048;
  double max_norm = 1.0;
  int64_t steps = 10;
  // cc12m | obelics | chat | fixed, or cc12m-test: torchtitan's name for its bundled cc12m
  // shard, here data/cc12m-train-0000.tar (relative to the working directory, as torchtitan's
  // tests/assets/cc12m_test) when dataset_path is unset; it then reads as cc12m.
  std::string dataset = "cc12m";
  std::string dataset_path;
  int64_t seed = 42;
  std::string on_nonfinite = "stop";  // stop | skip
  // Matrix products in bfloat16 (fp32 master weights, gradients and optimizer state; bf16 copies
  // of weights and GEMM inputs, fp32 accumulation; norms, softmax, RoPE and loss in fp32), or
  // everything in float32.
  std::string mixed_precision_param = "float32";  // float32 | bfloat16
  // cpu | cuda | cuda:N. "cuda" under mpirun: the node-local rank's GPU (docs/CUDA.md).
  std::string device = "cpu";
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
  std::string initial_load_path;    // HF folder (or a checkpoint step folder) of initial weights
  bool initial_load_in_hf = false;  // torchtitan's marker; with no path: hf_assets_path
  int64_t load_step = -1;           // resume from this step's checkpoint; -1: the newest
  bool enable_first_step_checkpoint = false;  // also save after step 1
  bool load_only = false;                     // resume if possible, never save
  bool last_save_model_only = false;
  std::string export_dtype = "float32";  // float32 | bfloat16 | float16
  // disabled: every rank writes its share at the step boundary, training waits. async (and
  // torchtitan's async_with_pinned_mem, the same here): each rank copies its share to host
  // memory (4 bytes per written parameter, 12 with the optimizer state) and writes it on a
  // background thread while training continues; the checkpoint is published at a later step
  // boundary once every rank has written (docs/CHECKPOINTS.md).
  std::string async_mode = "disabled";
  // When the number of ranks differs from the checkpoint's: restart_epoch starts the epoch the
  // furthest saving rank was in from its beginning over the new ranks; next_epoch starts the
  // epoch after it.
  std::string data_reshard = "restart_epoch";
  std::string export_folder = "hf_export";
  // [activation_checkpoint]
  std::string ac_mode = "none";  // none | selective | full
  // selective mode: a layer interval ("2": every second layer) or "op"
  // (model/activation_checkpoint.h)
  std::string ac_selective_option = "2";
  // [metrics]
  int64_t log_freq = 1;
  bool enable_tensorboard = false;
  std::string save_tb_folder = "tb";
  bool enable_jsonl = true;
  // [parallelism]
  int64_t dp_replicate = 1, dp_shard = -1;
  // Experts of each sparse layer split over this many ranks of a shard group (MoE models only;
  // dist/expert_parallel.h).
  int64_t expert_parallel = 1;
  // Replicated mode: all-reduce gradient buckets while backward still runs.
  bool overlap_grad_reduce = true;
  // [comm]
  double comm_timeout_seconds = 300;  // a collective slower than this aborts the job
  // [lora] (not a torchtitan section; docs/LORA.md): rank > 0 trains adapters on the decoder's
  // target projections with every base weight frozen. lora.seed is training.seed.
  model::LoraConfig lora;
  bool lora_merge_on_export = false;                 // the HF export holds W + scaling * B A
  std::string lora_adapter_folder = "lora_adapter";  // under dump_folder, written at the end

  // [validation] (torchtitan's keys and defaults): forward-only loss on held-out data after step
  // 1, every validation_freq steps and after the last step, over validation_steps batches per
  // rank (-1: one pass over the data), logged as validation/loss.
  bool validation_enable = false;
  std::string validation_dataset;  // cc12m | obelics | chat | fixed; empty: training.dataset
  std::string validation_dataset_path;
  int64_t validation_local_batch_size = 8;
  int64_t validation_seq_len = 2048;
  int64_t validation_freq = 10;
  int64_t validation_steps = -1;
  int64_t validation_num_workers = 2;  // [validation.dataloader] num_workers

  // torchtitan keys found that have no effect here (see torchtitan_keys.h), for one warning.
  std::vector<std::string> accepted_torchtitan_keys;

  // Reads a TOML file, then applies overrides such as {"training.steps", "20"}. A bare boolean
  // override has the value "true"; "--section.no_key" (or no-key) sets a boolean key to false.
  static JobConfig load(const std::string& path,
                        const std::vector<std::pair<std::string, std::string>>& overrides = {});
  static JobConfig parse(const std::string& toml_text, const std::string& origin,
                         const std::vector<std::pair<std::string, std::string>>& overrides = {});
  // Every "section.key" this system implements (torchtitan-only keys not included).
  static std::vector<std::string> known_keys();
  // True when `key` is implemented here or is a torchtitan key accepted in some form.
  static bool is_known_key(const std::string& key);
  // Every implemented key with its value in this config, as TOML ("[section]" / "key = value").
  std::string to_toml() const;
};

// The closed sets of a JobConfig (kept there as the TOML spells them, so `to_toml` and overrides
// stay textual) as enums: parsed once, by the Trainer at construction and by the data sources,
// instead of string comparisons where they are used. Errors name the key and the choices.
enum class DatasetKind { kCc12m, kObelics, kChat, kFixed };  // cc12m-test reads as cc12m
enum class NonFinitePolicy { kStop, kSkip };

DatasetKind parse_dataset_kind(const std::string& name, const char* key = "training.dataset");

struct JobChoices {
  DatasetKind dataset = DatasetKind::kCc12m;              // training.dataset
  NonFinitePolicy on_nonfinite = NonFinitePolicy::kStop;  // training.on_nonfinite
  DType matmul_dtype = DType::kF32;    // training.mixed_precision_param: kF32 or kBF16
  DType export_dtype = DType::kF32;    // checkpoint.export_dtype: kF32, kBF16 or kF16
  bool truncate_long_samples = true;   // data.overlong_samples: truncate (true) or skip
  model::Checkpointing checkpointing;  // [activation_checkpoint] mode and selective_ac_option

  static JobChoices parse(const JobConfig& config);
};

}  // namespace qv::train
