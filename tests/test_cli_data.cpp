// qwen3vl data inspect / bench through the binary, on the bundled cc12m shard.
#include <gtest/gtest.h>

#include "cli_test_utils.h"
#include "data_test_utils.h"
#include "loader_test_utils.h"

namespace qv {
namespace {

using testing::kRoot;
using testing::kTokenizer;

// The debug model's data settings, with absolute paths and a small image budget.
std::string data_job(const testing::TempDir& dir, const std::string& extra = "") {
  const std::string path = dir.file("job.toml");
  testing::write_bytes(
      path, "[model]\nflavor = \"debugmodel\"\ntokenizer_path = \"" + kTokenizer +
                "\"\n[training]\nlocal_batch_size = 2\nseq_len = 256\ndataset = \"cc12m\"\n" +
                "dataset_path = \"" + kRoot + "/data/cc12m-train-{0000..0000}.tar\"\n" +
                "[data]\npatch_size = 14\nmax_patches_per_image = 16\nmin_pixels = 3136\n" +
                "packing_buffer_size = 8\n" + extra);
  return path;
}

TEST(CliData, InspectShowsBatchesImagesPreviewAndSkips) {
  testing::TempDir dir;
  const auto r = testing::run_qwen3vl(
      "data inspect --config " +
      data_job(dir, "max_tokens_per_sample = 40\noverlong_samples = \"skip\"\n") + " --batches 2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* want :
       {"batch 1: 2 rows", "batch 2: 2 rows", "pad fraction", "image grids (t x h x w patches): 1x",
        "packing efficiency", "per sample: at most 40 tokens (longer ones skipped)",
        "row 0 text: <|vision_start|><|image_pad|>x", "<|vision_end|>",
        "first document: ", "cc12m-train-0000.tar:", "skipped: ", "too many tokens: ", "limit 40"})
    EXPECT_NE(r.output.find(want), std::string::npos) << want << "\n" << r.output;
  EXPECT_EQ(r.output.find("batch 3:"), std::string::npos);
}

TEST(CliData, InspectRejectsUnknownFlagsAndModes) {
  testing::TempDir dir;
  auto r = testing::run_qwen3vl("data inspect --config " + data_job(dir) + " --rows 3");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("unknown flag --rows"), std::string::npos) << r.output;
  r = testing::run_qwen3vl("data peek --config " + data_job(dir));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("usage: qwen3vl data inspect"), std::string::npos) << r.output;
}

TEST(CliData, BenchReportsSamplesAndTokensPerSecond) {
  testing::TempDir dir;
  const auto r =
      testing::run_qwen3vl("data bench --config " + data_job(dir) + " --batches 3 --workers 1,2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("workers 1: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("workers 2: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("samples/s"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("tokens/s"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("resume after 4 batches by seeking: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("resume after 4 batches by replaying: "), std::string::npos) << r.output;
}

}  // namespace
}  // namespace qv
