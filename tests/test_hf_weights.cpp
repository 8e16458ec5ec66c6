// Hugging Face checkpoints: save/load round trips (F32, BF16, sharded) and clear errors.
#include <gtest/gtest.h>

#include <filesystem>

#include "io/safetensors.h"
#include "model/hf_weights.h"
#include "model/qwen3vl.h"
#include "model_test_utils.h"

namespace qv {
namespace {

namespace fs = std::filesystem;

fs::path temp_dir(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("qwen3vl_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

std::unique_ptr<model::Qwen3VLModel> random_model(bool tied = false) {
  auto c = testing::tiny_config();
  c.tie_word_embeddings = tied;
  auto m = std::make_unique<model::Qwen3VLModel>(c);
  model::init_params(c, m->store(), 3);
  return m;
}

TEST(HfWeights, Float32RoundTripIsExact) {
  const auto dir = temp_dir("rt_f32");
  auto m = random_model();
  model::save_hf_checkpoint(dir.string(), m->config(), m->store());
  auto back = model::Qwen3VLModel::from_pretrained(dir.string());
  EXPECT_EQ(back->store().values().to_vector(), m->store().values().to_vector());
}

TEST(HfWeights, ShardedBf16RoundTripRoundsOnce) {
  const auto dir = temp_dir("rt_bf16");
  auto m = random_model(true);
  model::save_hf_checkpoint(dir.string(), m->config(), m->store(), DType::kBF16, 4096);
  ASSERT_TRUE(fs::exists(dir / "model.safetensors.index.json"));
  auto back = model::Qwen3VLModel::from_pretrained(dir.string());
  ASSERT_EQ(back->store().total(), m->store().total());
  for (int64_t i = 0; i < m->store().total(); ++i) {
    const float want = bf16_to_f32(f32_to_bf16(m->store().values()[i]));
    ASSERT_EQ(back->store().values()[i], want) << i;
  }
  EXPECT_TRUE(back->config().tie_word_embeddings);
}

TEST(HfWeights, MissingTensorIsNamed) {
  const auto dir = temp_dir("missing");
  auto m = random_model();
  model::save_hf_checkpoint(dir.string(), m->config(), m->store());
  auto tensors = io::load_safetensors((dir / "model.safetensors").string());
  tensors.erase("model.language_model.norm.weight");
  io::save_safetensors((dir / "model.safetensors").string(), tensors);
  try {
    model::Qwen3VLModel::from_pretrained(dir.string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.language_model.norm.weight"), std::string::npos);
  }
}

TEST(HfWeights, MisShapedAndUnexpectedTensorsAreNamedWithShapes) {
  const auto dir = temp_dir("misshaped");
  auto m = random_model();
  model::save_hf_checkpoint(dir.string(), m->config(), m->store());
  auto tensors = io::load_safetensors((dir / "model.safetensors").string());
  tensors["model.language_model.norm.weight"] = Tensor(DType::kF32, {31});
  io::save_safetensors((dir / "model.safetensors").string(), tensors);
  try {
    model::Qwen3VLModel::from_pretrained(dir.string());
    FAIL();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("[31]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[32]"), std::string::npos) << msg;
  }
  tensors["model.language_model.norm.weight"] = Tensor(DType::kF32, {32});
  tensors["model.extra.weight"] = Tensor(DType::kF32, {2});
  io::save_safetensors((dir / "model.safetensors").string(), tensors);
  try {
    model::Qwen3VLModel::from_pretrained(dir.string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.extra.weight"), std::string::npos);
  }
}

TEST(HfWeights, Float16TensorsLoad) {
  const auto dir = temp_dir("f16");
  auto m = random_model();
  model::save_hf_checkpoint(dir.string(), m->config(), m->store());
  auto tensors = io::load_safetensors((dir / "model.safetensors").string());
  for (auto& [name, t] : tensors) t = t.to(DType::kF16);
  io::save_safetensors((dir / "model.safetensors").string(), tensors);
  auto back = model::Qwen3VLModel::from_pretrained(dir.string());
  for (int64_t i = 0; i < m->store().total(); ++i)
    ASSERT_NEAR(back->store().values()[i], m->store().values()[i],
                1e-3 * std::fabs(m->store().values()[i]) + 1e-7);
}

}  // namespace
}  // namespace qv
