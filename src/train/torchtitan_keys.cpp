#include "train/torchtitan_keys.h"

#include <map>

#include "core/error.h"

namespace qv::train {

namespace {

const std::vector<std::string> kAny;

// Reasons shared by several keys.
const char* const kOnlyTp = "only used with tensor parallelism (degree 1 here)";
const char* const kOnlyPp = "only used with pipeline parallelism (degree 1 here)";
const char* const kOnlyCp = "only used with context parallelism (degree 1 here)";
const char* const kOnlyProfiling = "only used when profiling is on";
const char* const kOnlyConverters = "only used by model.converters (none here)";
const char* const kOnlyFt = "only used with fault_tolerance (off here)";
const char* const kPython = "a Python-side setting with no meaning in a C++ binary";
const char* const kNoExperts = "only used by mixture-of-experts models (Qwen3-VL dense here)";

std::vector<TorchtitanKey> build() {
  return {
      {"job.config_file", kAny, "the file being read; on the command line it is --config"},
      {"job.save_config_file",
       {""},
       "saving the resolved config is not implemented; "
       "job.print_config = true prints it"},
      {"job.custom_config_module", kAny,
       "a Python module extending torchtitan's JobConfig; the qwen3_vl [data] keys it adds are "
       "built in here"},
      {"profiling.enable_profiling",
       {"false"},
       "the PyTorch profiler has no counterpart here (use perf, or `qwen3vl bench`)"},
      {"profiling.save_traces_folder", kAny, kOnlyProfiling},
      {"profiling.profile_freq", kAny, kOnlyProfiling},
      {"profiling.profiler_active", kAny, kOnlyProfiling},
      {"profiling.profiler_warmup", kAny, kOnlyProfiling},
      {"profiling.enable_memory_snapshot",
       {"false"},
       "CUDA memory snapshots do not exist here; the trainer logs RSS and peak RSS"},
      {"profiling.save_memory_snapshot_folder", kAny, kOnlyProfiling},
      {"metrics.disable_color_printing", kAny, "log lines are never coloured"},
      {"metrics.save_for_all_ranks", {"false"}, "only rank 0 writes metrics"},
      {"metrics.enable_wandb",
       {"false"},
       "Weights & Biases logging is not implemented (TensorBoard and metrics.jsonl are)"},
      {"model.converters", {"[]"}, "model converters (float8, mx) are not implemented"},
      {"model.print_after_conversion", kAny, kOnlyConverters},
      {"optimizer.implementation", kAny, "for-loop, foreach and fused are one arithmetic here"},
      {"optimizer.early_step_in_backward",
       {"false"},
       "the optimizer steps after the whole backward (global-norm clipping needs it)"},
      {"training.enable_cpu_offload", kAny, "parameters and optimizer state are in host memory"},
      {"training.dtype",
       {"float32"},
       "pure bfloat16 training (bf16 parameters and optimizer state) is not implemented"},
      {"training.mixed_precision_reduce", {"float32"}, "gradients are reduced in float32"},
      {"training.gc_freq", kAny, kPython},
      {"training.gc_debug", kAny, kPython},
      {"training.dataloader.num_workers", kAny, "the loader's threads are [data] num_workers"},
      {"training.dataloader.persistent_workers", kAny, "loader threads live for the whole run"},
      {"training.dataloader.pin_memory", kAny, "there is no device copy to pin memory for"},
      {"training.dataloader.prefetch_factor", kAny, "[data] prefetch sets the read-ahead"},
      {"parallelism.fsdp_reshard_after_forward",
       {"default", "always"},
       "sharded mode gathers each unit's parameters again for backward (ZeRO-3), which is "
       "'always'; keeping them gathered ('never') is not implemented"},
      {"parallelism.tensor_parallel_degree",
       {"1"},
       "tensor parallelism is not implemented (use data_parallel_shard_degree)"},
      {"parallelism.disable_loss_parallel", kAny, kOnlyTp},
      {"parallelism.enable_async_tensor_parallel", kAny, kOnlyTp},
      {"parallelism.enable_sequence_parallel", kAny, kOnlyTp},
      {"parallelism.pipeline_parallel_degree", {"1"}, "pipeline parallelism is not implemented"},
      {"parallelism.module_fqns_per_model_part", kAny, kOnlyPp},
      {"parallelism.pipeline_parallel_first_stage_less_layers", kAny, kOnlyPp},
      {"parallelism.pipeline_parallel_last_stage_less_layers", kAny, kOnlyPp},
      {"parallelism.pipeline_parallel_layers_per_stage", kAny, kOnlyPp},
      {"parallelism.pipeline_parallel_schedule", kAny, kOnlyPp},
      {"parallelism.pipeline_parallel_schedule_csv", kAny, kOnlyPp},
      {"parallelism.pipeline_parallel_microbatch_size", kAny, kOnlyPp},
      {"parallelism.pipeline_parallel_expert_parallel_overlap", kAny, kOnlyPp},
      {"parallelism.context_parallel_degree", {"1"}, "context parallelism is not implemented"},
      {"parallelism.context_parallel_load_balancer", kAny, kOnlyCp},
      {"parallelism.context_parallel_rotate_method", kAny, kOnlyCp},
      {"parallelism.expert_tensor_parallel_degree", {"1"}, kNoExperts},
      {"parallelism.expert_parallel_comm_backend", kAny, kNoExperts},
      {"checkpoint.enable_ft_dataloader_checkpoints", kAny,
       "checkpoints always hold the data loader's position"},
      {"checkpoint.initial_load_model_only",
       {"true"},
       "initial_load_path loads model weights only; a full training state resumes from "
       "checkpoint.folder"},
      {"checkpoint.initial_load_in_hf_quantized",
       {"false"},
       "quantized Hugging Face checkpoints are not read"},
      {"checkpoint.last_save_in_hf", kAny,
       "checkpoints hold HF-named safetensors and the final model is always exported as a "
       "Hugging Face folder (checkpoint.export_folder)"},
      {"checkpoint.exclude_from_loading",
       {"[]"},
       "resume loads model, optimizer, schedule and data position together"},
      {"checkpoint.create_seed_checkpoint",
       {"false"},
       "seed checkpoints are not needed: initial weights come from training.seed or "
       "checkpoint.initial_load_path"},
      {"activation_checkpoint.per_op_sac_force_recompute_mm_shapes_by_fqns", kAny,
       "per-op mode here recomputes whole layers (no matrix product is singled out)"},
      {"activation_checkpoint.early_stop", kAny, "a torch.utils.checkpoint option"},
      {"activation_checkpoint.memory_budget", kAny, "only used with mode = \"memory_budget\""},
      {"activation_checkpoint.visualize_memory_budget_pareto", kAny,
       "only used with mode = \"memory_budget\""},
      {"activation_checkpoint.preserve_rng_state", kAny,
       "the model has no random operations (no dropout)"},
      {"activation_checkpoint.determinism_check", kAny, "a torch.utils.checkpoint option"},
      {"activation_checkpoint.debug", kAny, "a torch.utils.checkpoint option"},
      {"compile.enable", kAny, "the code is compiled ahead of time already"},
      {"compile.components", kAny, "the code is compiled ahead of time already"},
      {"compile.backend", kAny, "the code is compiled ahead of time already"},
      {"quantize.linear.float8.enable_fsdp_float8_all_gather", kAny, kOnlyConverters},
      {"quantize.linear.float8.precompute_float8_dynamic_scale_for_fsdp", kAny, kOnlyConverters},
      {"quantize.linear.float8.recipe_name", kAny, kOnlyConverters},
      {"quantize.linear.float8.filter_fqns", kAny, kOnlyConverters},
      {"quantize.linear.float8.emulate", kAny, kOnlyConverters},
      {"quantize.linear.mx.mxfp8_dim1_cast_kernel_choice", kAny, kOnlyConverters},
      {"quantize.linear.mx.recipe_name", kAny, kOnlyConverters},
      {"quantize.linear.mx.filter_fqns", kAny, kOnlyConverters},
      {"quantize.grouped_mm.float8.fqns", kAny, kOnlyConverters},
      {"quantize.grouped_mm.mx.recipe_name", kAny, kOnlyConverters},
      {"quantize.grouped_mm.mx.fqns", kAny, kOnlyConverters},
      {"comm.init_timeout_seconds", kAny,
       "one timeout covers start-up and training here (comm.train_timeout_seconds)"},
      {"comm.trace_buf_size", kAny, "the NCCL flight recorder has no counterpart here"},
      {"comm.save_traces_folder", kAny, "the NCCL flight recorder has no counterpart here"},
      {"comm.save_traces_file_prefix", kAny, "the NCCL flight recorder has no counterpart here"},
      {"comm.mode", {"default"}, "fake-backend and local-tensor modes are not implemented"},
      {"memory_estimation.enable",
       {"false"},
       "the FSDP memory estimator is not implemented (the trainer logs its memory use)"},
      {"memory_estimation.disable_fake_mode", kAny, "only used with memory_estimation"},
      {"fault_tolerance.enable",
       {"false"},
       "torchft fault tolerance is not implemented (resume from checkpoints instead)"},
      {"fault_tolerance.process_group", kAny, kOnlyFt},
      {"fault_tolerance.process_group_timeout_ms", kAny, kOnlyFt},
      {"fault_tolerance.replica_id", kAny, kOnlyFt},
      {"fault_tolerance.group_size", kAny, kOnlyFt},
      {"fault_tolerance.min_replica_size", kAny, kOnlyFt},
      {"fault_tolerance.semi_sync_method", kAny, kOnlyFt},
      {"experimental.custom_import", kAny, kPython},
      {"experimental.custom_args_module", kAny, kPython},
      {"validation.dataloader.persistent_workers", kAny, "loader threads live for the whole run"},
      {"validation.dataloader.pin_memory", kAny, "there is no device copy to pin memory for"},
      {"validation.dataloader.prefetch_factor", kAny, "[data] prefetch sets the read-ahead"},
      {"debug.deterministic", kAny, "there is no non-deterministic kernel choice to switch off"},
      {"debug.deterministic_warn_only", kAny,
       "there is no non-deterministic kernel choice to switch off"},
      {"debug.moe_force_load_balance", kAny, kNoExperts},
  };
}

}  // namespace

const std::vector<TorchtitanKey>& torchtitan_only_keys() {
  static const std::vector<TorchtitanKey> keys = build();
  return keys;
}

const TorchtitanKey* find_torchtitan_key(const std::string& key) {
  static const std::map<std::string, const TorchtitanKey*> index = [] {
    std::map<std::string, const TorchtitanKey*> m;
    for (const auto& k : torchtitan_only_keys()) m[k.key] = &k;
    return m;
  }();
  auto it = index.find(key);
  return it == index.end() ? nullptr : it->second;
}

void check_torchtitan_value(const TorchtitanKey& k, const std::string& value,
                            const std::string& origin) {
  if (k.accepted.empty()) return;
  for (const auto& a : k.accepted)
    if (value == a || (a == "[]" && value.empty())) return;  // "--key ''": an empty list
  std::string accepted;
  for (const auto& a : k.accepted) accepted += (accepted.empty() ? "" : " or ") + ("'" + a + "'");
  fail(origin, ": torchtitan key ", k.key, " = '", value, "' cannot be honoured: ", k.why,
       " (accepted here: ", accepted, ")");
}

}  // namespace qv::train
