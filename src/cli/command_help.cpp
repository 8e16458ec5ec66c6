#include "cli/command_help.h"

#include <map>

#include "train/job_config.h"
#include "train/torchtitan_keys.h"

namespace qv::cli {

namespace {

std::map<std::string, CommandDoc> build() {
  std::map<std::string, CommandDoc> d;
  d["train"] = {"train --config FILE [--section.key value ...]",
                {},
                {{"",
                  {{"config", "FILE", "",
                    "the job's TOML file (torchtitan's --job.config_file "
                    "is the same)"}}}}};
  d["forward"] = {
      "forward --model DIR --inputs IN.safetensors [--out OUT.safetensors] [--backward]",
      {},
      {{"",
        {{"model", "DIR", "", "Hugging Face Qwen3-VL folder (config.json + safetensors)"},
         {"inputs", "FILE", "", "model inputs (input_ids, labels, pixel_values, ...)"},
         {"out", "FILE", "", "where to write logits, loss, features (and gradients)"},
         {"backward", "", "off", "also run backward and write grad.<name> per parameter"},
         {"no-record", "", "off", "do not keep per-layer states"}}}}};
  d["export"] = {
      "export --model DIR --out DIR [--adapter DIR --merge] [--dtype float32|bfloat16|float16]",
      {},
      {{"",
        {{"model", "DIR", "", "Hugging Face Qwen3-VL folder (the base model)"},
         {"adapter", "DIR", "", "PEFT LoRA adapter folder (adapter_config.json + safetensors)"},
         {"merge", "", "off", "merge the adapter into the weights (W + scaling * B A)"},
         {"out", "DIR", "", "the folder to write (replaced if it exists)"},
         {"dtype", "NAME", "float32", "weights' dtype: float32, bfloat16 or float16"}}}}};
  d["checkpoint"] = {
      "checkpoint inspect DIR | checkpoint export DIR --out HF_DIR [--dtype "
      "float32|bfloat16|float16]",
      {"inspect", "export"},
      {{"inspect", {}},
       {"export",
        {{"out", "HF_DIR", "", "the Hugging Face folder to write (replaced if it exists)"},
         {"dtype", "NAME", "float32", "weights' dtype: float32, bfloat16 or float16"}}}}};
  d["generate"] = {
      "generate --model DIR [--prompt TEXT] [--image A.jpg,B.png] [--system TEXT] [sampling "
      "flags]; without --prompt a chat on stdin: one line per user turn, /image PATH attaches an "
      "image to the next turn, /exit ends",
      {},
      {{"",
        {{"model", "DIR", "", "Hugging Face Qwen3-VL folder (an export of `train` works)"},
         {"adapter", "DIR", "", "a PEFT LoRA adapter folder applied on top (unmerged)"},
         {"tokenizer", "FILE", "DIR/tokenizer.json", "tokenizer.json"},
         {"prompt", "TEXT", "", "the user's message (without it: a chat on stdin)"},
         {"image", "A,B", "", "comma-separated image files, placed before the (first) text"},
         {"system", "TEXT", "", "a system turn before the chat's first user turn"},
         {"max-new-tokens", "N", "generation_config.json, else 64",
          "stop after N new tokens (per turn)"},
         {"min-new-tokens", "N", "0",
          "do not stop at an end token before N new tokens (a barely trained model may end "
          "its answer at once, printing nothing)"},
         {"temperature", "T", "generation_config.json, else 0",
          "0 is greedy (also when the file says do_sample = false)"},
         {"top-k", "K", "generation_config.json, else 0", "0 is no limit"},
         {"top-p", "P", "generation_config.json, else 1.0", "nucleus sampling mass"},
         {"repetition-penalty", "R", "generation_config.json, else 1.0",
          "divide positive logits and multiply negative ones of ids already in the context by R"},
         {"seed", "S", "0", "sampling seed"},
         {"dtype", "float32|bfloat16", "bfloat16 for a bf16 checkpoint, else float32",
          "bfloat16: matrix products read bf16 weight copies"},
         {"raw", "", "off", "no chat markers around the prompt (base models)"}}}}};
  d["info"] = {"info --flavor NAME | --model DIR [--seq-len N] [--image-patches N]",
               {},
               {{"",
                 {{"flavor", "NAME", "", "debugmodel, 2B, 4B, 8B, 32B, 72B (or --model)"},
                  {"model", "DIR", "", "a folder with config.json (or --flavor)"},
                  {"seq-len", "N", "2048", "tokens per sample for the FLOP count"},
                  {"image-patches", "N", "784", "vision patches per sample"}}}}};
  d["preprocess"] = {
      "preprocess --image PATH --out FILE [--min-pixels N] [--max-pixels N] [--config FILE]",
      {},
      {{"",
        {{"image", "PATH", "", "JPEG, PNG or WebP file"},
         {"out", "FILE", "", "pixel_values + image_grid_thw safetensors"},
         {"config", "FILE", "", "a preprocessor_config.json (default: Qwen3-VL's released one)"},
         {"min-pixels", "N", "65536", "smallest resized area"},
         {"max-pixels", "N", "16777216", "largest resized area"},
         {"max-decode-pixels", "N", "100000000", "refuse images whose header claims more"}}}}};
  d["tokenize"] = {
      "tokenize --tokenizer PATH [--jsonl | --decode | --chat --jsonl] [--no-special] "
      "[--skip-special]",
      {},
      {{"",
        {{"tokenizer", "PATH", "", "tokenizer.json"},
         {"jsonl", "", "off", "each stdin line is a JSON string; one id array per line"},
         {"decode", "", "off", "each stdin line is a JSON id array; one string per line"},
         {"chat", "", "off",
          "with --jsonl: each stdin line is a conversation; writes input_ids and labels "
          "(docs/CHAT.md)"},
         {"no-special", "", "off", "encode <|im_start|> and the like as plain text"},
         {"skip-special", "", "off", "leave special tokens out when decoding"},
         {"help", "", "", "this text"}}}}};
  d["data"] = {"data inspect|bench --config FILE [--batches N] [--workers 1,2]",
               {"inspect", "bench"},
               {{"inspect",
                 {{"config", "FILE", "", "a training job's TOML file"},
                  {"batches", "N", "2", "batches to show"}}},
                {"bench",
                 {{"config", "FILE", "", "a training job's TOML file"},
                  {"batches", "N", "40", "batches to time per setting"},
                  {"workers", "LIST", "1,2", "loader thread counts to time"}}}}};
  const std::vector<FlagDoc> bench_flags = {
      {"flavor", "NAME", "debugmodel", "model flavor (or --model)"},
      {"model", "DIR", "", "a folder with config.json"},
      {"seq-len", "N", "2048", "tokens per row"},
      {"batch", "N", "1", "rows"},
      {"images", "N", "4", "images per row"},
      {"image-size", "WxH", "448x448", "image size in pixels"},
      {"steps", "N", "3", "timed steps"},
      {"ac", "MODE", "none", "activation checkpointing: none | selective | full"},
      {"classifier-chunk", "ROWS", "256", "rows of logits held at once"},
      {"mixed-precision", "TYPE", "float32",
       "float32 | bfloat16 (bf16 GEMM inputs, float accumulation and masters)"}};
  d["bench"] = {"bench train|forward [flags]",
                {"train", "forward"},
                {{"train", bench_flags}, {"forward", bench_flags}}};
  return d;
}

std::string flag_lines(const std::vector<FlagDoc>& flags) {
  std::string out;
  for (const FlagDoc& f : flags) {
    std::string left = "  --" + f.name + (f.value.empty() ? "" : " " + f.value);
    if (left.size() < 26) left.resize(26, ' ');
    out += left + " " + f.help;
    if (!f.fallback.empty()) out += " (default: " + f.fallback + ")";
    out += "\n";
  }
  return out;
}

std::string train_keys() {
  std::string out =
      "\nConfig keys (TOML [section] key = value, or --section.key value; a bare --section.key "
      "sets a boolean to true, --section.no_key to false). Defaults:\n\n";
  out += train::JobConfig().to_toml();
  out +=
      "\ntorchtitan keys accepted without effect here (other values are refused, saying "
      "why):\n";
  for (const auto& k : train::torchtitan_only_keys()) {
    std::string accepted;
    for (const auto& a : k.accepted) accepted += (accepted.empty() ? "'" : " | '") + a + "'";
    out +=
        "  " + k.key + (accepted.empty() ? " (any value)" : " = " + accepted) + ": " + k.why + "\n";
  }
  return out;
}

}  // namespace

const CommandDoc* command_doc(const std::string& command) {
  static const std::map<std::string, CommandDoc> docs = build();
  auto it = docs.find(command);
  return it == docs.end() ? nullptr : &it->second;
}

std::string command_help(const std::string& command) {
  const CommandDoc* d = command_doc(command);
  if (!d) return "usage: qwen3vl " + command + " (no flag list)\n";
  std::string out = "usage: qwen3vl " + d->usage + "\n";
  for (const auto& [sub, flags] : d->flags) {
    out += sub.empty() ? "\nflags:\n" : "\nqwen3vl " + command + " " + sub + ":\n";
    out += flag_lines(flags);
  }
  if (command == "train") out += train_keys();
  return out;
}

}  // namespace qv::cli
