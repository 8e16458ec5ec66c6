#include "train/job_config.h"

#include <toml++/toml.h>

#include <filesystem>
#include <functional>
#include <sstream>

#include "core/device.h"
#include "core/error.h"
#include "io/atomic_file.h"
#include "model/activation_checkpoint.h"
#include "train/torchtitan_keys.h"

namespace qv::train {

namespace {

// One accepted key: how to set it from a TOML node and from a command-line string, and how to
// show its value (TOML syntax).
struct Field {
  std::function<void(const toml::node&, const std::string&)> from_toml;
  std::function<void(const std::string&, const std::string&)> from_string;
  std::function<std::string()> show;
  bool is_bool = false;
};

std::string toml_quoted(const std::string& s) {
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '\n') {
      out += "\\n";
      continue;
    }
    if (ch == '"' || ch == '\\') out += '\\';
    out += ch;
  }
  return out + "\"";
}

std::string show_double(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.10g", v);
  std::string s = buf;
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";  // stays a TOML float
  return s;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

Field int_field(int64_t& out) {
  return {[&out](const toml::node& n, const std::string& k) {
            // Type first: toml++'s value<int64_t>() casts a float such as 5e77 with undefined
            // behaviour.
            QV_CHECK(n.is_integer(), k, " must be an integer");
            out = n.as_integer()->get();
          },
          [&out](const std::string& s, const std::string& k) {
            try {
              size_t used = 0;
              out = std::stoll(s, &used);
              QV_CHECK(used == s.size(), "");
            } catch (...) {
              fail(k, " must be an integer, got '", s, "'");
            }
          },
          [&out] { return std::to_string(out); }};
}

Field double_field(double& out) {
  return {[&out](const toml::node& n, const std::string& k) {
            auto v = n.value<double>();
            QV_CHECK(v.has_value() && (n.is_floating_point() || n.is_integer()), k,
                     " must be a number");
            out = *v;
          },
          [&out](const std::string& s, const std::string& k) {
            try {
              size_t used = 0;
              out = std::stod(s, &used);
              QV_CHECK(used == s.size(), "");
            } catch (...) {
              fail(k, " must be a number, got '", s, "'");
            }
          },
          [&out] { return show_double(out); }};
}

Field bool_field(bool& out) {
  return {[&out](const toml::node& n, const std::string& k) {
            QV_CHECK(n.is_boolean(), k, " must be true or false");
            out = *n.value<bool>();
          },
          [&out](const std::string& s, const std::string& k) {
            QV_CHECK(s == "true" || s == "false", k, " must be true or false, got '", s, "'");
            out = s == "true";
          },
          [&out] { return std::string(out ? "true" : "false"); }, true};
}

Field string_field(std::string& out, std::vector<std::string> choices = {}) {
  auto check = [choices](const std::string& v, const std::string& k) {
    if (choices.empty()) return;
    for (const auto& c : choices)
      if (v == c) return;
    fail(k, " = '", v, "' is not one of: ", join(choices));
  };
  return {[&out, check](const toml::node& n, const std::string& k) {
            QV_CHECK(n.is_string(), k, " must be a string");
            out = *n.value<std::string>();
            check(out, k);
          },
          [&out, check](const std::string& s, const std::string& k) {
            out = s;
            check(out, k);
          },
          [&out] { return toml_quoted(out); }};
}

Field string_list_field(std::vector<std::string>& out) {
  return {[&out](const toml::node& n, const std::string& k) {
            QV_CHECK(n.is_array(), k, " must be a list of strings");
            out.clear();
            for (const auto& e : *n.as_array()) {
              QV_CHECK(e.is_string(), k, " must be a list of strings");
              out.push_back(*e.value<std::string>());
            }
          },
          [&out](const std::string& s, const std::string&) {
            out.clear();
            std::stringstream ss(s);
            std::string item;
            while (std::getline(ss, item, ','))
              if (!item.empty()) out.push_back(item);
          },
          [&out] {
            std::string s;
            for (const auto& x : out) s += (s.empty() ? "" : ", ") + toml_quoted(x);
            return "[" + s + "]";
          }};
}

Field betas_field(AdamWConfig& a) {
  return {[&a](const toml::node& n, const std::string& k) {
            const auto* arr = n.as_array();
            QV_CHECK(
                arr && arr->size() == 2 && (*arr)[0].value<double>() && (*arr)[1].value<double>(),
                k, " must be a list of two numbers");
            a.beta1 = *(*arr)[0].value<double>();
            a.beta2 = *(*arr)[1].value<double>();
          },
          [&a](const std::string& s, const std::string& k) {
            QV_CHECK(std::sscanf(s.c_str(), "%lf,%lf", &a.beta1, &a.beta2) == 2, k,
                     " must be two numbers 'b1,b2', got '", s, "'");
          },
          [&a] {
            // Appends, not "[" + rvalue: GCC 12 warns falsely (-Wrestrict) on the latter.
            std::string s = "[";
            s += show_double(a.beta1);
            s += ", ";
            s += show_double(a.beta2);
            return s + "]";
          }};
}

std::map<std::string, Field> schema(JobConfig& c) {
  return {
      {"job.dump_folder", string_field(c.dump_folder)},
      {"job.description", string_field(c.description)},
      {"job.print_config", bool_field(c.print_config)},
      {"model.name", string_field(c.model_name, {"qwen3_vl"})},
      {"model.flavor", string_field(c.flavor)},
      {"model.hf_config", string_field(c.hf_config)},
      {"model.tokenizer_path", string_field(c.tokenizer_path)},
      {"model.hf_assets_path", string_field(c.hf_assets_path)},
      {"model.init", string_field(c.init, {"hf", "torchtitan"})},
      {"model.freeze", string_list_field(c.freeze)},
      {"model.router_aux_loss_coef", double_field(c.router_aux_loss_coef)},
      {"optimizer.name", string_field(c.optimizer, {"AdamW"})},
      {"optimizer.lr", double_field(c.adamw.lr)},
      {"optimizer.betas", betas_field(c.adamw)},
      {"optimizer.beta1", double_field(c.adamw.beta1)},
      {"optimizer.beta2", double_field(c.adamw.beta2)},
      {"optimizer.eps", double_field(c.adamw.eps)},
      {"optimizer.weight_decay", double_field(c.adamw.weight_decay)},
      {"lr_scheduler.name",
       string_field(c.lr_scheduler.name, {"warmup_stable_decay", "hf_linear"})},
      {"lr_scheduler.warmup_steps", int_field(c.lr_scheduler.warmup_steps)},
      {"lr_scheduler.decay_ratio", double_field(c.lr_scheduler.decay_ratio)},
      {"lr_scheduler.decay_type",
       string_field(c.lr_scheduler.decay_type, {"linear", "sqrt", "cosine"})},
      {"lr_scheduler.min_lr_factor", double_field(c.lr_scheduler.min_lr_factor)},
      {"lr_scheduler.total_steps", int_field(c.lr_total_steps)},
      {"training.local_batch_size", int_field(c.local_batch_size)},
      {"training.global_batch_size", int_field(c.global_batch_size)},
      {"training.seq_len", int_field(c.seq_len)},
      {"training.max_norm", double_field(c.max_norm)},
      {"training.steps", int_field(c.steps)},
      {"training.dataset",
       string_field(c.dataset, {"cc12m", "cc12m-test", "obelics", "chat", "fixed"})},
      {"training.dataset_path", string_field(c.dataset_path)},
      {"training.seed", int_field(c.seed)},
      {"debug.seed", int_field(c.seed)},  // torchtitan's name for it
      {"training.on_nonfinite", string_field(c.on_nonfinite, {"stop", "skip"})},
      {"training.device", string_field(c.device)},
      {"training.mixed_precision_param",
       string_field(c.mixed_precision_param, {"float32", "bfloat16"})},
      {"data.patch_size", int_field(c.patch_size)},
      {"data.temporal_patch_size", int_field(c.temporal_patch_size)},
      {"data.spatial_merge_size", int_field(c.spatial_merge_size)},
      {"data.max_patches_per_image", int_field(c.max_patches_per_image)},
      {"data.max_images_per_batch", int_field(c.max_images_per_batch)},
      {"data.packing_buffer_size", int_field(c.packing_buffer_size)},
      {"data.max_tokens_per_sample", int_field(c.max_tokens_per_sample)},
      {"data.overlong_samples", string_field(c.overlong_samples, {"truncate", "skip"})},
      {"data.max_images_per_sample", int_field(c.max_images_per_sample)},
      {"data.min_pixels", int_field(c.min_pixels)},
      {"data.max_pixels", int_field(c.max_pixels)},
      {"data.num_workers", int_field(c.num_workers)},
      {"data.prefetch", int_field(c.prefetch)},
      {"checkpoint.enable", bool_field(c.checkpoint_enable)},
      {"checkpoint.folder", string_field(c.checkpoint_folder)},
      {"checkpoint.interval", int_field(c.checkpoint_interval)},
      {"checkpoint.keep_latest_k", int_field(c.keep_latest_k)},
      {"checkpoint.initial_load_path", string_field(c.initial_load_path)},
      {"checkpoint.initial_load_in_hf", bool_field(c.initial_load_in_hf)},
      {"checkpoint.load_step", int_field(c.load_step)},
      {"checkpoint.enable_first_step_checkpoint", bool_field(c.enable_first_step_checkpoint)},
      {"checkpoint.load_only", bool_field(c.load_only)},
      {"checkpoint.last_save_model_only", bool_field(c.last_save_model_only)},
      {"checkpoint.export_dtype", string_field(c.export_dtype, {"float32", "bfloat16", "float16"})},
      {"checkpoint.async_mode",
       string_field(c.async_mode, {"disabled", "async", "async_with_pinned_mem"})},
      {"checkpoint.data_reshard", string_field(c.data_reshard, {"restart_epoch", "next_epoch"})},
      {"checkpoint.export_folder", string_field(c.export_folder)},
      {"activation_checkpoint.mode", string_field(c.ac_mode, {"none", "selective", "full"})},
      {"activation_checkpoint.selective_ac_option", string_field(c.ac_selective_option)},
      {"metrics.log_freq", int_field(c.log_freq)},
      {"metrics.enable_tensorboard", bool_field(c.enable_tensorboard)},
      {"metrics.save_tb_folder", string_field(c.save_tb_folder)},
      {"metrics.enable_jsonl", bool_field(c.enable_jsonl)},
      {"parallelism.data_parallel_replicate_degree", int_field(c.dp_replicate)},
      {"parallelism.data_parallel_shard_degree", int_field(c.dp_shard)},
      {"parallelism.overlap_grad_reduce", bool_field(c.overlap_grad_reduce)},
      {"parallelism.expert_parallel_degree", int_field(c.expert_parallel)},
      {"comm.train_timeout_seconds", double_field(c.comm_timeout_seconds)},
      {"lora.rank", int_field(c.lora.rank)},
      {"lora.alpha", double_field(c.lora.alpha)},
      {"lora.dropout", double_field(c.lora.dropout)},
      {"lora.target_modules", string_list_field(c.lora.target_modules)},
      {"lora.merge_on_export", bool_field(c.lora_merge_on_export)},
      {"lora.adapter_folder", string_field(c.lora_adapter_folder)},
      {"validation.enable", bool_field(c.validation_enable)},
      {"validation.dataset", string_field(c.validation_dataset)},
      {"validation.dataset_path", string_field(c.validation_dataset_path)},
      {"validation.local_batch_size", int_field(c.validation_local_batch_size)},
      {"validation.seq_len", int_field(c.validation_seq_len)},
      {"validation.freq", int_field(c.validation_freq)},
      {"validation.steps", int_field(c.validation_steps)},
      {"validation.dataloader.num_workers", int_field(c.validation_num_workers)},
  };
}

bool names_a_device(const std::string& text) {
  try {
    parse_device(text);
    return true;
  } catch (const Error&) {
    return false;
  }
}

void validate(const JobConfig& c) {
  QV_CHECK(c.local_batch_size > 0, "training.local_batch_size must be positive");
  QV_CHECK(c.seq_len > 1, "training.seq_len must be at least 2");
  QV_CHECK(c.steps > 0, "training.steps must be positive");
  QV_CHECK(names_a_device(c.device), "training.device must be cpu, cuda or cuda:N, got '", c.device,
           "'");
  QV_CHECK(c.max_tokens_per_sample >= 0, "data.max_tokens_per_sample must be >= 0 (0: seq_len)");
  QV_CHECK(c.max_images_per_sample >= 0,
           "data.max_images_per_sample must be >= 0 (0: max_images_per_batch / local_batch_size)");
  QV_CHECK(c.max_norm >= 0, "training.max_norm must be >= 0 (0 disables clipping)");
  QV_CHECK(c.log_freq > 0, "metrics.log_freq must be positive");
  QV_CHECK(c.checkpoint_interval > 0, "checkpoint.interval must be positive");
  QV_CHECK(c.keep_latest_k >= 0, "checkpoint.keep_latest_k must be >= 0 (0 keeps all)");
  QV_CHECK(c.adamw.lr >= 0, "optimizer.lr must be >= 0");
  QV_CHECK(c.comm_timeout_seconds > 0, "comm.train_timeout_seconds must be positive");
  QV_CHECK(c.expert_parallel >= 1, "parallelism.expert_parallel_degree must be >= 1");
  QV_CHECK(c.lr_total_steps >= 0, "lr_scheduler.total_steps must be >= 0 (0: training.steps)");
  QV_CHECK(c.load_step >= -1, "checkpoint.load_step must be >= -1 (-1: the newest)");
  JobChoices::parse(c);  // an error names a bad choice
  c.lora.validate();
  QV_CHECK(!c.lora.enabled() || c.freeze.empty(),
           "model.freeze and lora.rank > 0 together: LoRA freezes every base weight already");
  if (c.validation_enable) {
    const std::string& d = c.validation_dataset;
    QV_CHECK(d.empty() || d == "cc12m" || d == "obelics" || d == "chat" || d == "fixed",
             "validation.dataset = '", d, "' is not one of: cc12m, obelics, chat, fixed");
    QV_CHECK(!c.validation_dataset_path.empty(), "validation.enable needs validation.dataset_path");
    QV_CHECK(c.validation_local_batch_size > 0, "validation.local_batch_size must be positive");
    QV_CHECK(c.validation_seq_len > 1, "validation.seq_len must be at least 2");
    QV_CHECK(c.validation_freq > 0, "validation.freq must be positive");
    QV_CHECK(c.validation_steps > 0 || c.validation_steps == -1,
             "validation.steps must be positive or -1 (one pass over the data)");
  }
  for (const auto& f : c.freeze) {
    QV_CHECK(f == "visual" || f == "merger" || f == "deepstack" || f == "language_model" ||
                 f == "lm_head" || f == "embeddings",
             "model.freeze entry '", f,
             "' is not one of: visual, merger, deepstack, language_model, lm_head, embeddings");
  }
}

// A TOML value as one string, the form torchtitan_keys.h's accepted values are written in.
std::string canonical_value(const toml::node& n) {
  if (const auto* b = n.as_boolean()) return b->get() ? "true" : "false";
  if (const auto* i = n.as_integer()) return std::to_string(i->get());
  if (const auto* f = n.as_floating_point()) return show_double(f->get());
  if (const auto* str = n.as_string()) return str->get();
  if (const auto* arr = n.as_array()) {
    std::string out;
    for (const auto& e : *arr) out += (out.empty() ? "" : ", ") + canonical_value(e);
    return "[" + out + "]";
  }
  return "{table}";
}

const char* const kSections =
    "job, model, optimizer, lr_scheduler, training, data, checkpoint, activation_checkpoint, "
    "metrics, parallelism, comm, validation, debug, lora, and torchtitan's profiling, compile, "
    "quantize, memory_estimation, fault_tolerance, experimental";

// Sets the fields of one TOML table (`prefix` is "section." or "section.sub."), recursing into
// sub-tables such as [training.dataloader].
void apply_table(const toml::table& table, const std::string& prefix,
                 std::map<std::string, Field>& fields, const std::string& origin, JobConfig& c) {
  for (const auto& [key, value] : table) {
    const std::string full = prefix + std::string(key.str());
    auto it = fields.find(full);
    if (it != fields.end()) {
      try {
        it->second.from_toml(value, full);
      } catch (const Error& e) {
        fail(origin, ": ", e.what());
      }
    } else if (const TorchtitanKey* tk = find_torchtitan_key(full)) {
      check_torchtitan_value(*tk, canonical_value(value), origin);
      c.accepted_torchtitan_keys.push_back(full);
    } else if (value.is_table()) {
      apply_table(*value.as_table(), full + ".", fields, origin, c);
    } else {
      const std::string sec = prefix.substr(0, prefix.find('.') + 1);
      std::vector<std::string> same_section;
      for (const auto& [k, _] : fields)
        if (k.rfind(sec, 0) == 0) same_section.push_back(k);
      fail(origin, ": unknown key '", full, "' (valid keys",
           same_section.empty()
               ? std::string(": none in this section; sections are ") + kSections
               : " in [" + sec.substr(0, sec.size() - 1) + "]: " + join(same_section),
           ")");
    }
  }
}

// "--section.no_key" / "--section.no-key" for a boolean key: the key's name, else "".
std::string negated_bool_key(const std::string& key, const std::map<std::string, Field>& fields) {
  const size_t dot = key.rfind('.');
  if (dot == std::string::npos) return "";
  const std::string name = key.substr(dot + 1);
  if (name.rfind("no_", 0) != 0 && name.rfind("no-", 0) != 0) return "";
  const std::string plain = key.substr(0, dot + 1) + name.substr(3);
  auto it = fields.find(plain);
  return it != fields.end() && it->second.is_bool ? plain : "";
}

// The cc12m shard shipped in the repository (what torchtitan's "cc12m-test" names).
constexpr const char* kBundledCc12mShard = "data/cc12m-train-0000.tar";

// torchtitan's aliases that name files: the tokenizer and initial weights from hf_assets_path.
void resolve_paths(JobConfig& c) {
  namespace fs = std::filesystem;
  if (c.dataset == "cc12m-test") {  // torchtitan's small local dataset: the bundled shard
    if (c.dataset_path.empty()) c.dataset_path = kBundledCc12mShard;
    c.dataset = "cc12m";
  }
  if (c.tokenizer_path.empty() && !c.hf_assets_path.empty())
    c.tokenizer_path = (fs::path(c.hf_assets_path) / "tokenizer.json").string();
  if (!c.tokenizer_path.empty() && fs::is_directory(c.tokenizer_path))
    c.tokenizer_path = (fs::path(c.tokenizer_path) / "tokenizer.json").string();
  if (c.initial_load_in_hf && c.initial_load_path.empty()) {
    QV_CHECK(!c.hf_assets_path.empty(),
             "checkpoint.initial_load_in_hf = true needs checkpoint.initial_load_path or "
             "model.hf_assets_path (the folder to load the weights from)");
    c.initial_load_path = c.hf_assets_path;
  }
  // HF weights come with their config.json: the model is built from it unless hf_config says.
  if (c.initial_load_in_hf && c.hf_config.empty() &&
      fs::exists(fs::path(c.initial_load_path) / "config.json"))
    c.hf_config = c.initial_load_path;
}

}  // namespace

std::vector<std::string> JobConfig::known_keys() {
  JobConfig c;
  std::vector<std::string> keys;
  for (const auto& [k, _] : schema(c)) keys.push_back(k);
  return keys;
}

bool JobConfig::is_known_key(const std::string& key) {
  JobConfig c;
  const auto fields = schema(c);
  return fields.count(key) != 0 || find_torchtitan_key(key) != nullptr ||
         !negated_bool_key(key, fields).empty();
}

std::string JobConfig::to_toml() const {
  JobConfig copy = *this;
  const auto fields = schema(copy);
  std::string out, section;
  for (const auto& [key, field] : fields) {
    const size_t dot = key.find('.');
    if (key.substr(0, dot) != section) {
      section = key.substr(0, dot);
      out += (out.empty() ? "[" : "\n[") + section + "]\n";
    }
    out += key.substr(dot + 1) + " = " + field.show() + "\n";
  }
  return out;
}

JobConfig JobConfig::parse(const std::string& text, const std::string& origin,
                           const std::vector<std::pair<std::string, std::string>>& overrides) {
  JobConfig c;
  auto fields = schema(c);
  toml::table root;
  try {
    root = toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    fail(origin, ": invalid TOML at line ", e.source().begin.line, ": ", e.description());
  }
  for (const auto& [section, node] : root) {
    const std::string sec(section.str());
    QV_CHECK(node.is_table(), origin, ": top-level key '", sec, "' must be a [section]");
    apply_table(*node.as_table(), sec + ".", fields, origin, c);
  }
  for (const auto& [key, value] : overrides) {
    auto it = fields.find(key);
    if (it != fields.end()) {
      it->second.from_string(value, key);
    } else if (const TorchtitanKey* tk = find_torchtitan_key(key)) {
      check_torchtitan_value(*tk, value, "--" + key);
      c.accepted_torchtitan_keys.push_back(key);
    } else if (const std::string plain = negated_bool_key(key, fields); !plain.empty()) {
      QV_CHECK(value == "true", "--", key, " takes no value");
      fields.at(plain).from_string("false", plain);
    } else {
      fail("unknown override --", key, " (valid: --", join(known_keys()),
           "; `qwen3vl train --help` lists them with their defaults)");
    }
  }
  resolve_paths(c);
  c.lora.seed = static_cast<uint64_t>(c.seed);
  validate(c);
  return c;
}

JobConfig JobConfig::load(const std::string& path,
                          const std::vector<std::pair<std::string, std::string>>& overrides) {
  return parse(io::read_file(path), path, overrides);
}

DatasetKind parse_dataset_kind(const std::string& name, const char* key) {
  if (name == "cc12m" || name == "cc12m-test") return DatasetKind::kCc12m;
  if (name == "obelics") return DatasetKind::kObelics;
  if (name == "chat") return DatasetKind::kChat;
  QV_CHECK(name == "fixed", key, " = '", name, "' is not one of: cc12m, obelics, chat, fixed");
  return DatasetKind::kFixed;
}

namespace {
// value's position in choices; an error names the key and lists the choices.
size_t choice(const std::string& value, std::initializer_list<const char*> choices,
              const char* key) {
  size_t i = 0;
  std::string list;
  for (const char* c : choices) {
    if (value == c) return i;
    list += (i++ ? ", " : "") + std::string(c);
  }
  throw Error(cat(key, " = '", value, "' is not one of: ", list));
}
}  // namespace

JobChoices JobChoices::parse(const JobConfig& c) {
  JobChoices j;
  j.dataset = parse_dataset_kind(c.dataset);
  j.on_nonfinite = choice(c.on_nonfinite, {"stop", "skip"}, "training.on_nonfinite") == 0
                       ? NonFinitePolicy::kStop
                       : NonFinitePolicy::kSkip;
  const DType f32_bf16[] = {DType::kF32, DType::kBF16};
  j.matmul_dtype = f32_bf16[choice(c.mixed_precision_param, {"float32", "bfloat16"},
                                   "training.mixed_precision_param")];
  const DType export_dtypes[] = {DType::kF32, DType::kBF16, DType::kF16};
  j.export_dtype = export_dtypes[choice(c.export_dtype, {"float32", "bfloat16", "float16"},
                                        "checkpoint.export_dtype")];
  j.truncate_long_samples =
      choice(c.overlong_samples, {"truncate", "skip"}, "data.overlong_samples") == 0;
  j.checkpointing = model::Checkpointing::parse(c.ac_mode, c.ac_selective_option);
  return j;
}

}  // namespace qv::train
