// Fine-tuning on chat data end to end: a small chat set built from the bundled cc12m shard (a
// question about each image, its caption as the answer) trains the debug model through the
// binary with dataset = "chat", the training loss falls and so does the loss on held-out
// conversations ([validation] on the chat reader). Also `qwen3vl tokenize --chat`.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "chat_test_utils.h"
#include "train_test_utils.h"

namespace qv {
namespace {

TEST(ChatTrain, DebugModelLossFallsOnAChatSetFromCc12m) {
  const std::string dir = testing::fresh_dir("chat", "train");
  // Every 4th conversation is held out for validation, run after steps 1, 12 and 24.
  const auto r = testing::train_debug_model_on_chat_set(
      dir,
      "--training.steps 24 --checkpoint.enable false --validation.enable true "
      "--validation.dataset chat --validation.dataset_path " +
          dir +
          "/chat_val.jsonl --validation.local_batch_size 2 --validation.seq_len 512 "
          "--validation.freq 12 --validation.steps -1",
      4);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // The bundled tokenizer folder carries Qwen3's text template: the run says so.
  EXPECT_NE(r.output.find("not Qwen3-VL Instruct's"), std::string::npos) << r.output;
  const auto m = testing::read_metrics(dir + "/run");
  std::vector<double> train, validation;
  for (const auto& row : m) {
    if (row.contains("validation/loss")) validation.push_back(row["validation/loss"].get<double>());
    if (row.contains("loss")) train.push_back(row["loss"].get<double>());
  }
  ASSERT_EQ(train.size(), 24u);
  double first = 0, last = 0;
  for (int i = 0; i < 4; ++i) {
    first += train[i] / 4;
    last += train[train.size() - 1 - i] / 4;
  }
  // Measured: 11.84 -> 8.53 (means of the first / last 4 of 24 steps); the untrained debug
  // model starts near ln(vocab) = 11.9. The 1.0 margin is a third of the measured drop.
  EXPECT_LT(last, first - 1.0) << "first 4 steps " << first << ", last 4 " << last;
  // Validation after steps 1, 12 and 24 on the 8 held-out conversations. Measured: 11.95,
  // 10.79, 10.18; the 0.5 margin is a quarter of the measured drop.
  ASSERT_EQ(validation.size(), 3u) << r.output;
  EXPECT_NE(r.output.find("validation/loss"), std::string::npos);
  EXPECT_LT(validation.back(), validation.front() - 0.5)
      << validation.front() << " -> " << validation.back();
}

TEST(ChatTokenizeCommand, WritesIdsAndAssistantOnlyLabelsPerConversation) {
  const std::string dir = testing::fresh_dir("chat", "tokenize");
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/in.jsonl")
      << R"({"messages": [{"role": "user", "content": [{"type": "image", "image": "x.png"}, {"type": "text", "text": "Hi"}]}, {"role": "assistant", "content": "Yo"}]})"
      << "\n";
  const std::string root = QWEN3VL_SOURCE_DIR;
  const auto r = testing::run_shell(
      std::string(QWEN3VL_BINARY) + " tokenize --tokenizer " + root +
      "/third_party/npm/tokenizer-qwen3/package/models/tokenizer.json --chat --jsonl < " + dir +
      "/in.jsonl");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // The last line is the JSON (a warning about the tokenizer folder's template comes first).
  const std::string out = r.output.substr(0, r.output.find_last_not_of('\n') + 1);
  const auto j = nlohmann::json::parse(out.substr(out.find_last_of('\n') + 1));
  // <|im_start|> user \n <|vision_start|> <|image_pad|> <|vision_end|> Hi <|im_end|> \n
  // <|im_start|> assistant \n Yo <|im_end|> \n
  // The ids `tokenize --jsonl` gives for the rendered text (that encoder is proven equal to HF's
  // in tests/test_tokenizer.cpp): <|im_start|> user \n <|vision_start|> <|image_pad|>
  // <|vision_end|> Hi <|im_end|> \n <|im_start|> assistant \n Yo <|im_end|> \n
  const std::vector<int> ids = {151644, 872,    198,   151652, 151655, 151653, 13048, 151645,
                                198,    151644, 77091, 198,    64725,  151645, 198};
  const int x = -100;
  const std::vector<int> labels = {x, x, x, x, x, x, x, x, x, x, x, x, 64725, 151645, x};
  EXPECT_EQ(j.at("input_ids").get<std::vector<int>>(), ids);
  EXPECT_EQ(j.at("labels").get<std::vector<int>>(), labels);
  const auto bad = testing::run_shell(
      "echo '{\"messages\": [{\"role\": \"oracle\", \"content\": \"a\"}]}' | " +
      std::string(QWEN3VL_BINARY) + " tokenize --tokenizer " + root +
      "/third_party/npm/tokenizer-qwen3/package/models/tokenizer.json --chat --jsonl");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("stdin line 1"), std::string::npos) << bad.output;
}

}  // namespace
}  // namespace qv
