// The training job's streamed Hugging Face export (train/streamed_export.h) with ranks as
// threads: for every layout (replicated, ZeRO-3, hybrid; 1, 2 and 4 ranks), F32 and BF16, one
// file and several, windows smaller than a tensor and larger than the model, every file of the
// export equals, byte for byte, what model::save_hf_checkpoint writes for the whole model (the
// export the job made before, after gathering everything onto rank 0). Each rank's store holds
// only its own ranges (the rest poisoned), so nothing outside them can reach the files. A
// failure on rank 0 ends every rank with an error and leaves no folder; ranges that overlap or
// leave a gap are refused on every rank. A LoRA model's merged export (each rank merging the
// adapters into its own ranges) equals the export of merged_store() the same way.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "checkpoint_test_utils.h"
#include "dist/parallel_dims.h"
#include "io/atomic_file.h"
#include "model/hf_weights.h"
#include "model/lora.h"
#include "train/checkpoint_shards.h"
#include "train/streamed_export.h"
#include "train/trainer.h"
#include "train_test_utils.h"

namespace qv {
namespace {

namespace fs = std::filesystem;
using testing::Layout;
using train::FlatRange;

std::unique_ptr<model::Qwen3VLModel> tiny_model(const std::string& dump) {
  auto config = train::JobConfig::load(testing::fixed_batch_config("hf-tiny-text", dump, 1, 1));
  return train::build_model(config, dist::unit_alignment({1, 4}));  // good for 1, 2, 4 shards
}

// Distinct values, with the ones a conversion or a summing transport would change: -0, NaN,
// infinities, subnormals, values that round differently to bf16.
void fill_values(model::ParamStore& store) {
  float* v = store.values().data();
  for (int64_t i = 0; i < store.total(); ++i)
    v[i] = std::sin(0.001f * static_cast<float>(i)) + 1e-7f * static_cast<float>(i % 97);
  const float special[] = {-0.0f,
                           std::numeric_limits<float>::quiet_NaN(),
                           std::numeric_limits<float>::infinity(),
                           -std::numeric_limits<float>::infinity(),
                           std::numeric_limits<float>::denorm_min(),
                           1.00390625f,  // halfway between two bf16 values
                           65504.0f * 2};
  int64_t k = 0;
  for (const auto& e : store.entries()) {
    v[e.ref.offset + (k % e.ref.numel)] = special[k % 7];
    ++k;
  }
}

// Every file of `a` equals the same-named file of `b`, and `b` has no other files.
void expect_same_files(const std::string& a, const std::string& b) {
  size_t n = 0;
  for (const auto& f : fs::directory_iterator(a)) {
    ++n;
    const std::string name = f.path().filename().string();
    ASSERT_TRUE(fs::exists(fs::path(b) / name)) << name;
    EXPECT_TRUE(io::read_file(f.path().string()) == io::read_file((fs::path(b) / name).string()))
        << name << " differs";
  }
  EXPECT_EQ(n, static_cast<size_t>(std::distance(fs::directory_iterator(b), {})));
}

const std::vector<std::pair<std::string, std::string>> kExtra = {
    {"generation_config.json", "{\"max_new_tokens\": 7}\n"}, {"chat_template.jinja", "{{x}}"}};

// Runs the streamed export on `l`'s ranks (threads), rank r's store holding only what it sends
// (train::ranges_to_write of what it owns); returns each rank's error ("" when none).
// With LoRA (`model` has adapters): each rank also holds every adapter (as the job gathers
// them) and sends the merged values (model::LoraMergedValues), leaving the adapters out.
std::vector<std::string> export_as(const std::string& dump, const model::Qwen3VLModel& model,
                                   const Layout& l, train::StreamedExport options,
                                   const std::vector<std::vector<FlatRange>>* ranges = nullptr) {
  options.extra_texts = [] { return kExtra; };
  const model::ParamStore& whole = model.store();
  const bool lora = model.lora_config().enabled();
  // Rank r's own model: its ranges hold the values, every other element is poisoned.
  std::vector<std::unique_ptr<model::Qwen3VLModel>> copies;
  std::vector<std::vector<FlatRange>> mine;
  for (int r = 0; r < l.world(); ++r) {
    copies.push_back(tiny_model(dump + "/rank" + std::to_string(r)));
    if (lora) copies[r]->enable_lora(model.lora_config());
    mine.push_back(ranges ? (*ranges)[r]
                          : train::ranges_to_write(testing::owned_ranges(whole, l, r), l.replicate,
                                                   r / l.shard));
    float* v = copies[r]->store().values().data();
    std::fill(v, v + whole.total(), -777.0f);
    for (const FlatRange& x : mine[r])
      std::copy(whole.values().data() + x.begin, whole.values().data() + x.end, v + x.begin);
    for (const auto& e : whole.entries())
      if (model::is_lora_param(e.name))
        std::copy(whole.value(e.ref), whole.value(e.ref) + e.ref.numel, v + e.ref.offset);
  }
  return testing::run_ranks_errors(
      static_cast<int>(l.world()), [&](testing::ThreadCommunicator& comm) {
        const int r = comm.rank();
        train::StreamedExport own = options;
        std::unique_ptr<model::LoraMergedValues> merged;
        if (lora) {
          merged = std::make_unique<model::LoraMergedValues>(model.config(), model.lora_config(),
                                                             copies[r]->store());
          own.values = [&](int64_t b, int64_t n, float* out) { merged->read(b, n, out); };
          own.skip = [](const model::ParamEntry& e) { return model::is_lora_param(e.name); };
        }
        train::export_hf_streamed(comm, copies[r]->store(), mine[r], model.config(), own);
      });
}

struct Case {
  Layout layout;
  DType dtype;
  int64_t max_shard_bytes, window;
};

TEST(StreamedExport, EveryLayoutWritesTheBytesOfTheWholeModelsExport) {
  const std::string dump = testing::fresh_dir("streamexport", "layouts");
  auto model = tiny_model(dump);
  fill_values(model->store());
  int64_t largest = 0;
  for (const auto& e : model->store().entries()) largest = std::max(largest, e.ref.numel);
  const std::vector<Case> cases = {
      {{1, 1}, DType::kF32, 4ll << 30, 1 << 20},  // one rank, one window per several tensors
      {{2, 1}, DType::kF32, 200000, 1000},        // replicated: the replicas split the writing
      {{1, 2}, DType::kBF16, 4ll << 30, largest / 3},
      {{1, 4}, DType::kF32, 200000, 4093},      // ZeRO-3, several files, odd windows
      {{2, 2}, DType::kBF16, 150000, 1 << 30},  // hybrid, one window for everything
      {{4, 1}, DType::kF16, 4ll << 30, 777},
      {{2, 2}, DType::kF32, 4ll << 30, 61}};  // many windows per tensor
  for (const Case& c : cases) {
    SCOPED_TRACE(c.layout.name() + " " + dtype_name(c.dtype) + " shards of " +
                 std::to_string(c.max_shard_bytes) + " window " + std::to_string(c.window));
    const std::string want = dump + "/whole", got = dump + "/streamed";
    model::save_hf_checkpoint(want, model->config(), model->store(), c.dtype, c.max_shard_bytes, {},
                              kExtra);
    train::StreamedExport options;
    options.dir = got;
    options.dtype = c.dtype;
    options.max_shard_bytes = c.max_shard_bytes;
    options.window = c.window;
    const auto errors = export_as(dump, *model, c.layout, options);
    for (const auto& e : errors) {
      ASSERT_EQ(e, "");
    }
    EXPECT_EQ(fs::exists(got + "/model.safetensors.index.json"), c.max_shard_bytes < (4ll << 30));
    expect_same_files(want, got);
  }
}

// A LoRA model's merged export, each rank merging the adapters into the base ranges it holds
// (everything else poisoned): every file equals save_hf_checkpoint's of merged_store() byte for
// byte, for replicated, ZeRO-3 and hybrid layouts, windows that cut tensors and several files.
TEST(StreamedExport, LoraMergedExportOfEveryLayoutEqualsTheMergedStoresExport) {
  const std::string dump = testing::fresh_dir("streamexport", "lora");
  auto model = tiny_model(dump);
  model::LoraConfig lora;
  lora.rank = 4;
  lora.alpha = 8;
  lora.target_modules = {"q_proj", "v_proj", "o_proj", "gate_proj", "down_proj"};
  model->enable_lora(lora);
  fill_values(model->store());
  // Adapters of moderate size (fill_values' NaN and infinities would make whole rows NaN).
  for (const auto& e : model->store().entries())
    if (model::is_lora_param(e.name))
      for (int64_t i = 0; i < e.ref.numel; ++i)
        model->store().value(e.ref)[i] =
            0.05f * std::sin(0.37f * static_cast<float>(i + e.ref.offset));
  const std::vector<Case> cases = {{{1, 1}, DType::kF32, 4ll << 30, 1 << 20},
                                   {{2, 1}, DType::kBF16, 200000, 1000},
                                   {{1, 2}, DType::kF32, 4ll << 30, 333},
                                   {{1, 4}, DType::kBF16, 150000, 4093},
                                   {{2, 2}, DType::kF32, 200000, 61}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.layout.name() + " " + dtype_name(c.dtype) + " window " +
                 std::to_string(c.window));
    const std::string want = dump + "/whole", got = dump + "/streamed";
    model::save_hf_checkpoint(want, model->config(), model->merged_store(), c.dtype,
                              c.max_shard_bytes, {}, kExtra);
    train::StreamedExport options;
    options.dir = got;
    options.dtype = c.dtype;
    options.max_shard_bytes = c.max_shard_bytes;
    options.window = c.window;
    for (const auto& e : export_as(dump, *model, c.layout, options)) {
      ASSERT_EQ(e, "");
    }
    expect_same_files(want, got);
  }
}

TEST(StreamedExport, AFailureOnRankZeroEndsEveryRankAndLeavesNoFolder) {
  const std::string dump = testing::fresh_dir("streamexport", "failure");
  auto model = tiny_model(dump);
  fill_values(model->store());
  // The export's parent is a file: rank 0 cannot make its folder.
  io::write_file_atomic(dump + "/blocked", "x");
  train::StreamedExport options;
  options.dir = dump + "/blocked/hf";
  options.window = 5000;
  const auto errors = export_as(dump, *model, {1, 4}, options);
  EXPECT_NE(errors[0].find("export to " + options.dir + " failed"), std::string::npos) << errors[0];
  for (int r = 1; r < 4; ++r)
    EXPECT_NE(errors[r].find("failed on rank 0 (see its error)"), std::string::npos) << errors[r];
  EXPECT_FALSE(fs::exists(options.dir));
}

TEST(StreamedExport, RangesThatOverlapOrLeaveAGapAreRefusedOnEveryRank) {
  const std::string dump = testing::fresh_dir("streamexport", "ranges");
  auto model = tiny_model(dump);
  const int64_t total = model->store().total();
  train::StreamedExport options;
  options.dir = dump + "/hf";
  const std::vector<std::vector<FlatRange>> overlap = {{{0, total / 2 + 1}}, {{total / 2, total}}};
  for (const auto& e : export_as(dump, *model, {2, 1}, options, &overlap))
    EXPECT_NE(e.find("overlaps another rank's"), std::string::npos) << e;
  const std::vector<std::vector<FlatRange>> gap = {{{0, total / 2 - 1}}, {{total / 2, total}}};
  for (const auto& e : export_as(dump, *model, {2, 1}, options, &gap))
    EXPECT_NE(e.find("belong to no rank's ranges"), std::string::npos) << e;
  EXPECT_FALSE(fs::exists(options.dir));
}

}  // namespace
}  // namespace qv
