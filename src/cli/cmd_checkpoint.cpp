// qwen3vl checkpoint inspect DIR: a training checkpoint's step, layout, tensors, files and sizes,
// with every file's CRC-32C checked (exit 1 when one fails). qwen3vl checkpoint export DIR --out
// HF_DIR [--dtype bfloat16]: the model of a sharded checkpoint as a Hugging Face folder,
// assembled from the pieces while it is written.
#include <cstdio>
#include <string>

#include "cli/command.h"
#include "core/log.h"
#include "train/checkpoint_tools.h"

namespace qv::cli {
namespace {

const char* kUsage =
    "usage: qwen3vl checkpoint inspect DIR\n"
    "       qwen3vl checkpoint export DIR --out HF_DIR [--dtype float32|bfloat16|float16]";

DType parse_dtype(const std::string& name) {
  if (name == "float32") return DType::kF32;
  if (name == "bfloat16") return DType::kBF16;
  if (name == "float16") return DType::kF16;
  usage_fail("--dtype '", name, "' is not one of: float32, bfloat16, float16");
}

int run_checkpoint(const Args& args) {
  if (args.empty() || (args[0] != "inspect" && args[0] != "export")) usage_fail(kUsage);
  // The checkpoint folder comes first; flags follow it.
  const bool has_dir = args.size() > 1 && args[1].rfind("--", 0) != 0;
  Flags f(Args(args.begin() + (has_dir ? 2 : 1), args.end()));
  if (args[0] == "inspect")
    f.allow_only({});
  else
    f.allow_only({"out", "dtype"});
  if (!has_dir) usage_fail("missing the checkpoint folder\n", kUsage);
  const std::string dir = args[1];
  if (args[0] == "inspect") {
    const train::CheckpointReport r = train::inspect_checkpoint(dir);
    std::fputs(r.describe().c_str(), stdout);
    return r.ok() ? 0 : 1;
  }
  const std::string out = f.require("out");
  train::export_checkpoint(dir, out, parse_dtype(f.get("dtype", "float32")));
  log::info("exported " + dir + " to " + out);
  return 0;
}

const Registration kRegistration({"checkpoint",
                                  "inspect a training checkpoint or export its model "
                                  "(checkpoint inspect|export DIR [--out HF_DIR])",
                                  run_checkpoint});

}  // namespace
}  // namespace qv::cli
