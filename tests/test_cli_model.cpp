// The forward and info subcommands, end to end through the binary.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "cli_test_utils.h"
#include "io/safetensors.h"

namespace qv {
namespace {

const std::string kFixture = std::string(QWEN3VL_SOURCE_DIR) + "/tests/fixtures/hf-tiny-image";

TEST(CliForward, WritesEveryExpectedTensorUnderHfNames) {
  const auto out = std::filesystem::temp_directory_path() / "qwen3vl_cli_forward.safetensors";
  const auto r = testing::run_qwen3vl("forward --model " + kFixture + " --inputs " + kFixture +
                                      "/inputs.safetensors --out " + out.string() + " --backward");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto got = io::load_safetensors(out.string());
  const auto want = io::load_safetensors(kFixture + "/expected.safetensors");
  for (const auto& [name, t] : want) {
    auto it = got.find(name);
    ASSERT_NE(it, got.end()) << "missing " << name;
    ASSERT_EQ(it->second.shape(), t.shape()) << name;
    if (t.dtype() != DType::kF32) continue;
    const double atol = name.rfind("grad.", 0) == 0 ? 3e-6 : 2e-5;
    for (int64_t i = 0; i < t.numel(); ++i)
      ASSERT_NEAR(it->second.data<float>()[i], t.data<float>()[i],
                  atol + 2e-5 * std::fabs(t.data<float>()[i]))
          << name << "[" << i << "]";
  }
}

TEST(CliForward, BadInputsGiveAClearErrorAndExitCode) {
  const auto r = testing::run_qwen3vl("forward --model " + kFixture + " --inputs /nonexistent.st");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("/nonexistent.st"), std::string::npos) << r.output;
}

TEST(CliInfo, PrintsParameterCountsForFlavorsAndModels) {
  auto r = testing::run_qwen3vl("info --flavor 8B");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("parameters: vision"), std::string::npos) << r.output;
  r = testing::run_qwen3vl("info --model " + kFixture);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = testing::run_qwen3vl("info --flavor nope");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("unknown flavor"), std::string::npos);
}

}  // namespace
}  // namespace qv
