// [validation]: the forward-only loss on held-out data, through the binary on the bundled cc12m
// shard with a small model of the real vocabulary. Proves: the logged value equals the mean token
// loss computed by hand from the model's logits over the same batches; it is the same with 1 and
// 2 loader workers, with another batch size, and under mpirun -np 2 (one pass over the data);
// validation leaves training (losses, resume) exactly as it is without it.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "loader_test_utils.h"
#include "model/hf_weights.h"
#include "model/params.h"
#include "model/qwen3vl.h"
#include "model_test_utils.h"
#include "train/job_config.h"
#include "train/trainer.h"
#include "train/validation.h"
#include "train_test_utils.h"

namespace qv {
namespace {

using Overrides = std::vector<std::pair<std::string, std::string>>;
const std::string kRoot = QWEN3VL_SOURCE_DIR;

// The debug flavor cut down to 2 small layers (real vocabulary, so cc12m captions tokenize).
std::string small_model_dir() {
  static const std::string dir = [] {
    const std::string d = testing::fresh_dir("validation", "model");
    const model::ModelConfig c = testing::small_real_vocab_config();
    std::filesystem::create_directories(d);
    std::ofstream(d + "/config.json") << c.to_json_text();
    return d;
  }();
  return dir;
}

Overrides job(const std::string& dump, int steps, Overrides extra = {}) {
  const std::string shard = kRoot + "/data/cc12m-train-{0000..0000}.tar";
  Overrides o = {{"job.dump_folder", dump},
                 {"model.hf_config", small_model_dir()},
                 {"model.tokenizer_path", testing::kTokenizer},
                 {"training.dataset_path", shard},
                 {"training.steps", std::to_string(steps)},
                 {"training.seq_len", "256"},
                 {"checkpoint.enable", "false"},
                 {"metrics.enable_tensorboard", "true"},
                 {"validation.enable", "true"},
                 {"validation.dataset_path", shard},
                 {"validation.seq_len", "256"},
                 {"validation.local_batch_size", "2"},
                 {"validation.freq", "2"}};
  for (auto& kv : extra) o.push_back(kv);
  return o;
}

std::string command(const Overrides& o) {
  std::string cmd =
      std::string(QWEN3VL_BINARY) + " train --config " + kRoot + "/configs/debug_model.toml";
  for (const auto& [k, v] : o) cmd += " --" + k + " '" + v + "'";
  return cmd;
}

struct Logged {
  std::vector<int64_t> steps;
  std::vector<double> loss;
  std::vector<int64_t> tokens;
  std::vector<double> train_loss;
};

Logged run(const Overrides& o, const std::string& prefix = "") {
  const auto r = testing::run_shell(prefix + command(o) + " 2>&1");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  Logged l;
  std::string dump;
  for (const auto& [k, v] : o)
    if (k == "job.dump_folder") dump = v;
  for (const auto& j : testing::read_metrics(dump)) {
    if (j.contains("validation/loss")) {
      l.steps.push_back(j["step"].get<int64_t>());
      l.loss.push_back(j["validation/loss"].get<double>());
      l.tokens.push_back(j["validation/tokens"].get<int64_t>());
    } else {
      l.train_loss.push_back(j["loss"].get<double>());
    }
  }
  return l;
}

TEST(Validation, LossEqualsTheMeanTokenLossFromTheModelsLogits) {
  const std::string dump = testing::fresh_dir("validation", "hand");
  // lr 0: the weights stay at their seeded init, which the test rebuilds in-process.
  const Overrides o = job(dump, 3, {{"optimizer.lr", "0"}, {"validation.steps", "3"}});
  const Logged l = run(o);
  // torchtitan's schedule (step 1 and every freq) plus the last step.
  EXPECT_EQ(l.steps, (std::vector<int64_t>{1, 2, 3}));
  ASSERT_EQ(l.loss.size(), 3u);
  EXPECT_EQ(l.loss[0], l.loss[1]);
  EXPECT_EQ(l.loss[0], l.loss[2]);

  const train::JobConfig c = train::JobConfig::load(kRoot + "/configs/debug_model.toml", o);
  auto m = train::build_model(c);
  auto source = train::make_validation_source(c, m->config(), 0, 1);
  const int64_t V = m->config().text.vocab_size;
  double sum = 0;
  int64_t kept = 0, batches = 0;
  model::ForwardOptions opt;
  opt.want_logits = true;
  for (; batches < 3; ++batches) {
    auto batch = source->next();
    ASSERT_TRUE(batch.has_value());
    const auto r = m->forward(*batch, opt);
    const auto targets = model::shifted_targets(*batch);
    for (size_t i = 0; i < targets.size(); ++i) {
      if (targets[i] == -100) continue;
      const float* row = r.logits.data<float>() + static_cast<int64_t>(i) * V;
      double mx = row[0], z = 0;
      for (int64_t v = 0; v < V; ++v) mx = std::max(mx, static_cast<double>(row[v]));
      for (int64_t v = 0; v < V; ++v) z += std::exp(row[v] - mx);
      sum += mx + std::log(z) - row[targets[i]];
      ++kept;
    }
  }
  ASSERT_GT(kept, 0);
  EXPECT_EQ(l.tokens[0], kept);
  // The model's loss and the hand value both start from the same float32 logits; measured
  // difference 7e-11 relative (11.934946850583 vs 11.934946849784), bound 1e-8.
  EXPECT_NEAR(l.loss[0], sum / kept, 1e-8 * (sum / kept));
  // TensorBoard got the tag.
  bool found = false;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dump + "/tb")) {
    std::ifstream in(e.path(), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), {});
    found = found || bytes.find("validation/loss") != std::string::npos;
  }
  EXPECT_TRUE(found);
}

TEST(Validation, OnePassIsTheSameForWorkerCountsBatchSizesAndRanks) {
  auto one_pass = [](const std::string& name, Overrides extra, const std::string& prefix = "") {
    extra.push_back({"optimizer.lr", "0"});
    return run(job(testing::fresh_dir("validation", name), 1, extra), prefix);
  };
  const Logged w1 = one_pass("w1", {{"validation.dataloader.num_workers", "1"}});
  const Logged w2 = one_pass("w2", {{"validation.dataloader.num_workers", "2"}});
  ASSERT_EQ(w1.loss.size(), 1u);
  ASSERT_EQ(w2.loss.size(), 1u);
  EXPECT_EQ(w1.loss[0], w2.loss[0]);  // the same batches, the same arithmetic
  EXPECT_EQ(w1.tokens, w2.tokens);
  // Another batch size packs the same rows into other batches (the last one smaller).
  const Logged b3 = one_pass("b3", {{"validation.local_batch_size", "3"}});
  ASSERT_EQ(b3.loss.size(), 1u);
  EXPECT_EQ(b3.tokens, w1.tokens);
  EXPECT_NEAR(b3.loss[0], w1.loss[0], 1e-6 * w1.loss[0]);  // measured: equal
  // Two ranks: each reads every second sample and packs its own rows; the token losses are
  // summed over both. Matrix products of other shapes round differently: 1e-6 relative
  // (measured: 3e-12 relative).
  const Logged r2 = one_pass("ranks2", {}, testing::mpirun(2));
  ASSERT_EQ(r2.loss.size(), 1u);
  EXPECT_EQ(r2.tokens, w1.tokens);
  EXPECT_NEAR(r2.loss[0], w1.loss[0], 1e-6 * w1.loss[0]);
}

TEST(Validation, LeavesTrainingAndResumeAsTheyAre) {
  const Overrides ckpt = {{"checkpoint.enable", "true"},
                          {"checkpoint.interval", "2"},
                          {"validation.freq", "1"},
                          {"validation.steps", "2"}};
  auto with = [&](Overrides extra) {
    Overrides o = ckpt;
    for (auto& kv : extra) o.push_back(kv);
    return o;
  };
  const std::string a = testing::fresh_dir("validation", "straight");
  const Logged straight = run(job(a, 4, with({})));
  const Logged off =
      run(job(testing::fresh_dir("validation", "off"), 4, with({{"validation.enable", "false"}})));
  ASSERT_EQ(straight.train_loss.size(), 4u);
  EXPECT_EQ(straight.train_loss, off.train_loss);  // validation never touches the training data
  EXPECT_EQ(straight.steps, (std::vector<int64_t>{1, 2, 3, 4}));
  // Stopped after step 2, resumed to step 4: the same training and validation losses.
  const std::string b = testing::fresh_dir("validation", "resumed");
  run(job(b, 2, with({})));
  const Logged resumed = run(job(b, 4, with({})));
  ASSERT_EQ(resumed.train_loss.size(), 4u);
  EXPECT_EQ(resumed.train_loss, straight.train_loss);
  EXPECT_EQ(resumed.steps, (std::vector<int64_t>{1, 2, 3, 4}));
  EXPECT_EQ(resumed.loss, straight.loss);
}

}  // namespace
}  // namespace qv
