// The data loader on the real shard: determinism, exact resume, rank sharding; and end-to-end
// training on cc12m with a tiny model: loss falls, and N steps equal N/2 + resume + N/2.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "data/pipeline/loader.h"
#include "loader_test_utils.h"
#include "model/config.h"
#include "model_test_utils.h"
#include "train_test_utils.h"

namespace qv {
namespace {

namespace fs = std::filesystem;
using testing::expect_same;
using testing::kRoot;
using testing::kTokenizer;
using testing::small_config;
using testing::take;

TEST(Loader, DeterministicAcrossWorkerCountsAndEpochs) {
  auto c1 = small_config();
  c1.num_workers = 1;
  auto c3 = small_config();
  c3.num_workers = 3;
  data::DataLoader a(c1), b(c3);
  const auto ba = take(a, 12), bb = take(b, 12);  // 12 x 2 rows spans more than one epoch
  for (int i = 0; i < 12; ++i) expect_same(ba[i], bb[i]);
  EXPECT_GE(a.epoch(), 1);
  for (const auto& batch : ba) {
    EXPECT_EQ(batch.rows, 2);
    EXPECT_EQ(static_cast<int64_t>(batch.ids.size()), 2 * 160);
    int64_t merged = 0;
    for (const auto& g : batch.image_grids) merged += g.patches() / 4;
    int64_t pads = 0;
    for (int64_t id : batch.ids) pads += id == 151655;  // <|image_pad|> in the Qwen vocabulary
    EXPECT_EQ(pads, merged);
  }
}

TEST(Loader, RestoreResumesExactlyMidEpoch) {
  data::DataLoader a(small_config());
  take(a, 5);
  const auto state = a.state();
  const auto rest = take(a, 4);
  data::DataLoader b(small_config());
  b.restore(state);
  const auto resumed = take(b, 4);
  for (int i = 0; i < 4; ++i) expect_same(rest[i], resumed[i]);
}

TEST(Loader, RanksReadDisjointSamples) {
  std::set<std::string> seen[2];
  for (int r = 0; r < 2; ++r) {
    auto c = small_config();
    c.rank = r;
    c.world_size = 2;
    c.infinite = false;
    data::DataLoader l(c);
    try {
      while (true)
        for (const auto& o : l.next().origins) seen[r].insert(o);
    } catch (const Error&) {  // end of the finite epoch
    }
  }
  EXPECT_GT(seen[0].size(), 8u);
  EXPECT_GT(seen[1].size(), 8u);
  for (const auto& o : seen[0]) EXPECT_EQ(seen[1].count(o), 0u) << o;
}

// A tiny model with the real vocabulary and a 14-pixel patch, so cc12m batches fit it.
std::string tiny_model_dir() {
  const fs::path dir = fs::temp_directory_path() / "qwen3vl_tiny_cc12m_model";
  fs::create_directories(dir);
  const model::ModelConfig c = testing::small_real_vocab_config();
  std::ofstream(dir / "config.json") << c.to_json_text();
  return dir.string();
}

std::string cc12m_job(const std::string& dump, int steps) {
  fs::create_directories(dump);
  const std::string path = dump + "/job.toml";
  std::ofstream(path) << "[job]\ndump_folder = \"" << dump << "\"\n[model]\nhf_config = \""
                      << tiny_model_dir() << "\"\ntokenizer_path = \"" << kTokenizer
                      << "\"\n[optimizer]\nlr = 3e-3\n[lr_scheduler]\nwarmup_steps = 2\n"
                      << "[training]\nsteps = " << steps
                      << "\nlocal_batch_size = 2\nseq_len = 160\ndataset = \"cc12m\"\n"
                      << "dataset_path = \"" << kRoot << "/data/cc12m-train-{0000..0000}.tar\"\n"
                      << "[data]\npatch_size = 14\nmax_patches_per_image = 16\nmin_pixels = 3136\n"
                      << "packing_buffer_size = 8\n[checkpoint]\nenable = true\ninterval = "
                      << steps / 2 << "\nkeep_latest_k = 0\n";
  return path;
}

TEST(TrainCc12m, LossFallsAndResumeMidEpochMatchesStraightRun) {
  const std::string a = (fs::temp_directory_path() / "qwen3vl_cc12m_a").string();
  const std::string b = (fs::temp_directory_path() / "qwen3vl_cc12m_b").string();
  fs::remove_all(a);
  fs::remove_all(b);
  const std::string bin = QWEN3VL_BINARY;
  auto r = testing::run_shell(bin + " train --config " + cc12m_job(a, 12));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto ma = testing::read_metrics(a);
  ASSERT_EQ(ma.size(), 12u);
  double first = 0, last = 0;
  for (int i = 0; i < 3; ++i) first += ma[i]["loss"].get<double>() / 3;
  for (int i = 9; i < 12; ++i) last += ma[i]["loss"].get<double>() / 3;
  EXPECT_LT(last, first - 0.5) << "loss did not fall: " << first << " -> " << last;
  // Same job, interrupted after step 6 (its later checkpoint removed) and resumed.
  r = testing::run_shell(bin + " train --config " + cc12m_job(b, 12));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  fs::remove_all(b + "/checkpoint/step-00000012");
  fs::remove_all(b + "/hf_export");
  r = testing::run_shell(bin + " train --config " + b + "/job.toml");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto mb = testing::read_metrics(b);
  ASSERT_EQ(mb.size(), 18u);
  for (int i = 0; i < 6; ++i)
    EXPECT_EQ(mb[12 + i]["loss"].get<double>(), ma[6 + i]["loss"].get<double>())
        << "step " << 7 + i;
  EXPECT_EQ(testing::max_weight_diff(a + "/hf_export", b + "/hf_export"), 0.0);
}

}  // namespace
}  // namespace qv

#include "model/hf_weights.h"
#include "model/qwen3vl.h"

namespace qv {
namespace {

TEST(CliGenerate, GreedyWithAnImageIsDeterministic) {
  const std::string dir = tiny_model_dir();
  {
    model::Qwen3VLModel m(model::ModelConfig::from_json_file(dir + "/config.json"));
    model::init_params(m.config(), m.store(), 11);
    model::save_hf_checkpoint(dir, m.config(), m.store());
  }
  const std::string image =
      kRoot + "/tests/data/images/" +
      fs::directory_iterator(kRoot + "/tests/data/images")->path().filename().string();
  const std::string cmd = std::string(QWEN3VL_BINARY) + " generate --model " + dir +
                          " --tokenizer " + kTokenizer + " --image " + image +
                          " --prompt 'What is shown?' --max-new-tokens 5";
  const auto a = testing::run_shell(cmd), b = testing::run_shell(cmd);
  ASSERT_EQ(a.exit_code, 0) << a.output;
  // The generated text (the timing line on stderr differs from run to run).
  auto text = [](const std::string& s) { return s.substr(0, s.find("\n[generate]")); };
  EXPECT_EQ(text(a.output), text(b.output));
  EXPECT_FALSE(text(a.output).empty());
  const auto bad =
      testing::run_shell(std::string(QWEN3VL_BINARY) + " generate --model " + dir +
                         " --tokenizer " + kTokenizer + " --image /nonexistent.jpg --prompt x");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("/nonexistent.jpg"), std::string::npos) << bad.output;
}

}  // namespace
}  // namespace qv
