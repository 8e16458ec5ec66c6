// A small chat set built from the bundled cc12m shard, for fine-tuning tests.
#pragma once
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "data/sources/cc12m.h"
#include "data/sources/webdataset.h"

namespace qv::testing {

// One conversation per cc12m pair: the image and a question, the caption as the answer. The
// images are written next to the JSONL (paths in it are relative). Returns the JSONL path.
inline std::string cc12m_chat_set(const std::string& dir) {
  static const char* kQuestions[] = {"What is in this picture?", "Describe the image.",
                                     "Give a short caption for this photo."};
  std::filesystem::create_directories(dir + "/images");
  data::WebDatasetReader reader({std::string(QWEN3VL_SOURCE_DIR) + "/data/cc12m-train-0000.tar"});
  std::ofstream out(dir + "/chat.jsonl");
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
    out << row.dump() << "\n";
    ++n;
  }
  return dir + "/chat.jsonl";
}

}  // namespace qv::testing
