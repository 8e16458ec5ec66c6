// qwen3vl export: a Hugging Face model folder written again, optionally with a PEFT LoRA adapter
// merged into its weights (W + scaling * B A), in float32, bfloat16 or float16. The base folder's
// tokenizer, chat template and processor files are copied alongside.
#include <filesystem>

#include "cli/command.h"
#include "core/log.h"
#include "model/hf_weights.h"
#include "model/qwen3vl.h"

namespace qv::cli {
namespace {

namespace fs = std::filesystem;

// The files of a model folder that are not weights or config.json, copied as they are.
std::vector<std::pair<std::string, std::string>> companion_files(const std::string& dir) {
  static const char* kNames[] = {"generation_config.json",
                                 "preprocessor_config.json",
                                 "video_preprocessor_config.json",
                                 "tokenizer.json",
                                 "tokenizer_config.json",
                                 "chat_template.jinja",
                                 "chat_template.json",
                                 "vocab.json",
                                 "merges.txt",
                                 "special_tokens_map.json"};
  std::vector<std::pair<std::string, std::string>> out;
  for (const char* name : kNames)
    if (fs::exists(fs::path(dir) / name)) out.emplace_back(name, (fs::path(dir) / name).string());
  return out;
}

int run_export(const Args& args) {
  Flags f(args, {"merge"});
  f.allow_only({"model", "adapter", "merge", "out", "dtype"});
  const std::string dir = f.require("model"), out = f.require("out");
  if (f.has("adapter") != f.has("merge"))
    usage_fail("--adapter DIR and --merge go together (an adapter is exported merged)");
  const std::string dtype_name = f.get("dtype", "float32");
  const DType dtype = dtype_name == "float32"    ? DType::kF32
                      : dtype_name == "bfloat16" ? DType::kBF16
                      : dtype_name == "float16"  ? DType::kF16
                                                 : (usage_fail("--dtype '", dtype_name,
                                                               "' is not one of: float32, "
                                                                "bfloat16, float16"),
                                                   DType::kF32);
  auto model = model::Qwen3VLModel::from_pretrained(dir);
  if (f.has("adapter")) model->load_lora_adapter(f.get("adapter"));
  model::save_hf_checkpoint(out, model->config(), model->merged_store(), dtype, 4ll << 30,
                            companion_files(dir));
  log::info("exported " + dir + (f.has("adapter") ? " with " + f.get("adapter") + " merged" : "") +
            " to " + out);
  return 0;
}

const Registration kRegistration({"export",
                                  "write a model folder again, a LoRA adapter merged "
                                  "(--model DIR [--adapter DIR --merge] --out DIR)",
                                  run_export});

}  // namespace
}  // namespace qv::cli
