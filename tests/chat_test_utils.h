// A small chat set built from the bundled cc12m shard, for fine-tuning tests.
#pragma once
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "cli_test_utils.h"
#include "data/sources/cc12m.h"
#include "data/sources/webdataset.h"

namespace qv::testing {

// One conversation per cc12m pair: the image and a question, the caption as the answer. The
// images are written next to the JSONL (paths in it are relative). Returns the JSONL path. With
// held_out_every = k > 0, every k-th conversation goes to dir/chat_val.jsonl instead, a
// validation set disjoint from the training one.
inline std::string cc12m_chat_set(const std::string& dir, int held_out_every = 0) {
  static const char* kQuestions[] = {"What is in this picture?", "Describe the image.",
                                     "Give a short caption for this photo."};
  std::filesystem::create_directories(dir + "/images");
  data::WebDatasetReader reader({std::string(QWEN3VL_SOURCE_DIR) + "/data/cc12m-train-0000.tar"});
  std::ofstream out(dir + "/chat.jsonl"), held_out(dir + "/chat_val.jsonl");
  int n = 0;
  for (data::RawSample raw; reader.next(raw);) {
    const data::Cc12mPair pair = data::cc12m_pair(raw);
    if (!pair.ok()) continue;
    const std::string image = "images/" + std::to_string(n) + ".jpg";
    std::ofstream(dir + "/" + image, std::ios::binary)
        .write(pair.image.data(), static_cast<std::streamsize>(pair.image.size()));
    const nlohmann::json row = {{"messages",
                                 {{{"role", "user"},
                                   {"content",
                                    {{{"type", "image"}, {"image", image}},
                                     {{"type", "text"}, {"text", kQuestions[n % 3]}}}}},
                                  {{"role", "assistant"}, {"content", pair.caption}}}}};
    (held_out_every > 0 && n % held_out_every == held_out_every - 1 ? held_out : out)
        << row.dump() << "\n";
    ++n;
  }
  return dir + "/chat.jsonl";
}

// `qwen3vl train` of the debug model (configs/debug_model.toml, seq 512, the real tokenizer) on
// the chat set above, writing into dir/run; `flags` add to or override the job.
inline CommandResult train_debug_model_on_chat_set(const std::string& dir, const std::string& flags,
                                                   int held_out_every = 0) {
  const std::string jsonl = cc12m_chat_set(dir, held_out_every);
  const std::string root = QWEN3VL_SOURCE_DIR;
  return run_qwen3vl("train --config " + root + "/configs/debug_model.toml --job.dump_folder " +
                     dir + "/run --model.tokenizer_path " + root +
                     "/third_party/npm/tokenizer-qwen3/package/models/tokenizer.json "
                     "--training.dataset chat --training.dataset_path " +
                     jsonl + " --training.seq_len 512 --metrics.enable_tensorboard false " + flags);
}

}  // namespace qv::testing
