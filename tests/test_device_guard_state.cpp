// The model's state and outputs on the guarded test device (kernels/guarded/guard.h): decoding,
// the recorder and logits tensors, checkpoint save and resume (sharded v2 with the asynchronous
// snapshot and synchronously, the single-process v1 and v2 writers and their loaders), LoRA
// (init, training, adapter and merged exports, merge_lora), the Hugging Face exports, a seeded
// init and the ParamStore's host copies. Each runs on the CPU and then on the guarded device;
// results and written files must be equal bit for bit (the same CPU kernels run, only the
// memory is guarded), and the census must be empty: no host code touched device memory and no
// op was given host memory (issue #18; the dense forward, backward and training steps are in
// tests/test_device_guard.cpp).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "core/buffer_pool.h"
#include "core/device.h"
#include "device_guard_test_utils.h"
#include "guard_census.h"
#include "kernels/guarded/guard.h"
#include "model/hf_weights.h"
#include "model/inputs_io.h"
#include "model/lora.h"
#include "model/params.h"
#include "model/qwen3vl.h"
#include "train/checkpoint.h"
#include "train/trainer.h"
#include "train_test_utils.h"

namespace qv {
namespace {

namespace fs = std::filesystem;
using testing::GuardCensus;
using testing::host_copy;
using testing::kFixtures;
using testing::kGuardedDevice;
using testing::report;

// After a guarded run: the arena's cached blocks returned, no guarded memory left.
void expect_guarded_memory_freed() {
  BufferPool::of(kGuardedDevice).release_cached();
  EXPECT_EQ(kernels::guarded::live_blocks(), 0);
}

// Every regular file under dir: path relative to dir -> contents.
std::map<std::string, std::string> files_under(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    std::ifstream in(e.path(), std::ios::binary);
    std::stringstream bytes;
    bytes << in.rdbuf();
    out[fs::relative(e.path(), dir).string()] = bytes.str();
  }
  return out;
}

// The two folders hold the same files, byte for byte (and at least one).
void expect_same_files(const std::string& want_dir, const std::string& got_dir) {
  SCOPED_TRACE(got_dir);
  const auto want = files_under(want_dir), got = files_under(got_dir);
  EXPECT_FALSE(want.empty()) << want_dir;
  std::vector<std::string> want_names, got_names;
  for (const auto& [name, bytes] : want) want_names.push_back(name);
  for (const auto& [name, bytes] : got) got_names.push_back(name);
  ASSERT_EQ(got_names, want_names);
  for (const auto& [name, bytes] : want) EXPECT_TRUE(got.at(name) == bytes) << name << " differs";
}

bool same_tensor(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// Runs fn on the CPU, then on the guarded device under a census that must stay empty; returns
// both results.
template <class Fn>
auto cpu_and_guarded(const std::string& stage, Fn fn) {
  auto want = fn();
  GuardCensus census;
  decltype(want) got;
  {
    DeviceScope on_guarded(kGuardedDevice);
    got = fn();
  }
  report(census, stage, /*strict=*/true);
  expect_guarded_memory_freed();
  return std::pair{std::move(want), std::move(got)};
}

// ---- decoding, the recorder, logits ----

TEST(DeviceGuardState, PrefillAndThreeDecodeStepsAreClean) {
  const std::string dir = kFixtures + "hf-tiny-text";
  model::ModelInputs in = model::load_inputs(dir + "/inputs.safetensors");
  in.batch = 1;
  in.input_ids.resize(static_cast<size_t>(in.seq));
  in.labels.clear();
  in.attention_mask.clear();
  const auto [want, got] = cpu_and_guarded("hf-tiny-text: prefill + 3 decode steps", [&] {
    auto m = model::Qwen3VLModel::from_pretrained(dir);
    model::KvCache cache;
    model::ForwardOptions opt;
    opt.kv_cache = &cache;
    m->forward(in, opt);
    std::vector<std::vector<float>> logits;
    for (int64_t t = 0; t < 3; ++t)
      logits.push_back(m->decode(in.input_ids[static_cast<size_t>(t)], cache));
    return logits;
  });
  ASSERT_EQ(got.size(), 3u);
  for (size_t t = 0; t < 3; ++t) EXPECT_EQ(got[t], want[t]) << "decode step " << t + 1;
  EXPECT_NE(want[0], want[1]);  // the steps saw different tokens and positions
}

// A forward with the recorder on and the full logits out: every recorded tensor and the logits
// as on the CPU.
void forward_recorded(const std::string& fixture) {
  const std::string dir = kFixtures + fixture;
  const model::ModelInputs in = model::load_inputs(dir + "/inputs.safetensors");
  const auto [want, got] = cpu_and_guarded(fixture + ": forward with recorder and logits", [&] {
    auto m = model::Qwen3VLModel::from_pretrained(dir);
    model::ForwardOptions opt;
    opt.record = true;
    opt.want_logits = true;
    return m->forward(in, opt);
  });
  EXPECT_EQ(got.loss, want.loss);
  ASSERT_TRUE(want.logits.defined());
  EXPECT_TRUE(same_tensor(got.logits, want.logits));
  EXPECT_GT(want.recorded.size(), 5u);
  ASSERT_EQ(got.recorded.size(), want.recorded.size());
  for (const auto& [name, t] : want.recorded) {
    ASSERT_TRUE(got.recorded.count(name)) << name;
    EXPECT_TRUE(same_tensor(got.recorded.at(name), t)) << name;
  }
}

TEST(DeviceGuardState, TextForwardWithRecorderAndLogitsIsClean) {
  forward_recorded("hf-tiny-text");
}

TEST(DeviceGuardState, ImageForwardWithRecorderAndLogitsIsClean) {
  forward_recorded("hf-tiny-image");  // the vision tower's recorded tensors too
}

// ---- training with checkpoints, resume, exports ----

using Extra = std::vector<std::pair<std::string, std::string>>;

std::vector<train::StepRecord> train_run(const std::string& dump, const std::string& fixture,
                                         int steps, const Extra& extra) {
  auto config = train::JobConfig::load(testing::fixed_batch_config(fixture, dump, steps, 1), extra);
  auto m = train::build_model(config);
  train::Trainer trainer(config, std::move(m), train::make_fixed_source(config.dataset_path),
                         dist::make_local_communicator());
  return trainer.run();
}

void expect_same_steps(const std::vector<train::StepRecord>& got,
                       const std::vector<train::StepRecord>& want, size_t count) {
  ASSERT_EQ(got.size(), count);
  ASSERT_EQ(want.size(), count);
  for (size_t i = 0; i < count; ++i) {
    EXPECT_EQ(got[i].step, want[i].step);
    EXPECT_EQ(got[i].loss, want[i].loss) << "step " << want[i].step;
    EXPECT_EQ(got[i].grad_norm, want[i].grad_norm) << "step " << want[i].step;
  }
}

// 2 steps saving a checkpoint after each (asynchronously: the snapshot's device-to-host copies),
// then a second job resuming from step 2 for 2 more steps (the sharded load into the store and
// the optimizer's moments), saving synchronously; each job ends with the HF export. Step
// records, checkpoints and exports equal the CPU's.
TEST(DeviceGuardState, CheckpointSaveResumeAndExportAreClean) {
  const auto job = [](const std::string& name) {
    const std::string dump = testing::fresh_dir("device_guard_state", name);
    const auto first = train_run(dump, "hf-tiny-text", 2, {{"checkpoint.async_mode", "async"}});
    const auto resumed = train_run(dump, "hf-tiny-text", 4, {});
    return std::tuple{dump, first, resumed};
  };
  const auto [want, got] =
      cpu_and_guarded("hf-tiny-text: 2 steps + save, resume + 2 steps",
                      [&, n = 0]() mutable { return job(n++ == 0 ? "ckpt_cpu" : "ckpt_guarded"); });
  const auto& [want_dump, want_first, want_resumed] = want;
  const auto& [got_dump, got_first, got_resumed] = got;
  expect_same_steps(got_first, want_first, 2);
  expect_same_steps(got_resumed, want_resumed, 2);
  EXPECT_EQ(want_resumed[0].step, 3);  // it resumed
  EXPECT_TRUE(fs::exists(want_dump + "/checkpoint/step-00000004/state.json"));
  expect_same_files(want_dump + "/checkpoint", got_dump + "/checkpoint");
  expect_same_files(want_dump + "/hf_export", got_dump + "/hf_export");
}

// LoRA: the adapters initialised on the device, 2 steps with checkpoints, the PEFT adapter and
// the merged HF export (LoraMergedValues) at the end.
TEST(DeviceGuardState, LoraTrainingWithMergedExportIsClean) {
  const Extra extra = {{"lora.rank", "4"}, {"lora.merge_on_export", "true"}};
  const auto [want, got] = cpu_and_guarded(
      "hf-tiny-text: LoRA rank 4, 2 steps, save, merged export", [&, n = 0]() mutable {
        const std::string dump =
            testing::fresh_dir("device_guard_state", n++ == 0 ? "lora_cpu" : "lora_guarded");
        return std::pair{dump, train_run(dump, "hf-tiny-text", 2, extra)};
      });
  expect_same_steps(got.second, want.second, 2);
  expect_same_files(want.first + "/checkpoint", got.first + "/checkpoint");
  expect_same_files(want.first + "/lora_adapter", got.first + "/lora_adapter");
  expect_same_files(want.first + "/hf_export", got.first + "/hf_export");
}

// merge_lora through merged_store() and the whole-store HF export (`qwen3vl checkpoint export`'s
// path), on adapters with a non-zero B written through write_value; the adapter saved and loaded
// back (load_lora_adapter).
TEST(DeviceGuardState, LoraMergeAndAdapterRoundTripAreClean) {
  const std::string dir = kFixtures + "hf-tiny-text";
  const auto [want, got] =
      cpu_and_guarded("hf-tiny-text: merge_lora, HF export, adapter io", [&, n = 0]() mutable {
        const std::string out =
            testing::fresh_dir("device_guard_state", n++ == 0 ? "merge_cpu" : "merge_guarded");
        auto m = model::Qwen3VLModel::from_pretrained(dir);
        model::LoraConfig lora;
        lora.rank = 2;
        lora.seed = 5;
        m->enable_lora(lora);
        for (const model::ParamEntry& e : m->store().entries()) {
          if (!model::is_lora_param(e.name) || e.name.find("lora_B") == std::string::npos) continue;
          std::vector<float> b(static_cast<size_t>(e.ref.numel));
          for (size_t i = 0; i < b.size(); ++i) b[i] = 0.01f * static_cast<float>(i % 7) - 0.02f;
          m->store().write_value(e.ref, b.data(), e.ref.numel);
        }
        const model::ParamStore merged = m->merged_store();
        model::save_hf_checkpoint(out + "/export", m->config(), merged, DType::kBF16, 4ll << 30, {},
                                  {});
        model::save_lora_adapter(out + "/adapter", m->lora_config(), m->store(), dir);
        auto reloaded = model::Qwen3VLModel::from_pretrained(dir);
        reloaded->load_lora_adapter(out + "/adapter");
        return std::tuple{out, host_copy(merged.values(), merged.device()),
                          host_copy(m->store().values(), m->device()),
                          host_copy(reloaded->store().values(), reloaded->device())};
      });
  const auto& [want_dir, want_merged, want_values, want_reloaded] = want;
  const auto& [got_dir, got_merged, got_values, got_reloaded] = got;
  EXPECT_EQ(got_merged, want_merged);
  EXPECT_EQ(got_values, want_values);
  EXPECT_EQ(want_reloaded, want_values);  // the adapter round trip
  EXPECT_EQ(got_reloaded, want_reloaded);
  expect_same_files(want_dir, got_dir);
}

// ---- the parameter store: seeded init, host copies, single-process checkpoints ----

const model::ModelConfig& image_config() {
  static const model::ModelConfig c =
      model::ModelConfig::from_json_file(kFixtures + "hf-tiny-image/config.json");
  return c;
}

// A store of the image fixture's layout (text and vision parameters) on the current device,
// initialised from `seed` with `scheme`.
std::unique_ptr<model::ParamStore> seeded_store(uint64_t seed, model::InitScheme scheme) {
  auto s = std::make_unique<model::ParamStore>();
  model::layout_params(image_config(), *s);
  s->allocate();
  model::init_params(image_config(), *s, seed, scheme);
  return s;
}

TEST(DeviceGuardState, SeededInitIsClean) {
  for (const model::InitScheme scheme : {model::InitScheme::kTorchtitan, model::InitScheme::kHf}) {
    const auto [want, got] = cpu_and_guarded("hf-tiny-image layout: seeded init", [&] {
      const auto s = seeded_store(11, scheme);
      return host_copy(s->values(), s->device());
    });
    EXPECT_EQ(got, want);
    EXPECT_NE(want, std::vector<float>(want.size(), 0.0f));
  }
}

// read_value / write_value, copy_from (device to device), sync_bf16 (bf16 copies from values
// staged through the host).
TEST(DeviceGuardState, ParamStoreHostCopiesAreClean) {
  const auto [want, got] =
      cpu_and_guarded("ParamStore: read/write_value, copy_from, sync_bf16", [] {
        const auto s = seeded_store(3, model::InitScheme::kTorchtitan);
        const model::ParamEntry& e = s->entries()[1];
        std::vector<float> v(static_cast<size_t>(e.ref.numel));
        s->read_value(e.ref, v.data(), e.ref.numel);
        for (float& x : v) x = 2 * x + 1;
        s->write_value(e.ref, v.data(), e.ref.numel);
        model::ParamStore copy(64);
        model::layout_params(image_config(), copy);
        copy.allocate();
        copy.copy_from(*s);
        copy.enable_bf16_copies([](const model::ParamEntry& p) { return p.is_matrix; });
        copy.set_frozen_prefix("model.visual.", true);
        copy.sync_bf16(0, copy.total() / 2);
        return std::pair{host_copy(copy.values(), copy.device()),
                         host_copy(copy.values_bf16(), copy.device())};
      });
  EXPECT_EQ(got.first, want.first);
  ASSERT_EQ(got.second.size(), want.second.size());
  EXPECT_EQ(std::memcmp(got.second.data(), want.second.data(), want.second.size() * 2), 0);
}

// The single-process writers (v2 save_checkpoint, v1 save_checkpoint_v1) from a store on the
// device with the optimizer state in host vectors, and both loaders back into a store on the
// device: files and loaded values as on the CPU.
TEST(DeviceGuardState, SingleProcessCheckpointsAreClean) {
  const auto [want, got] =
      cpu_and_guarded("ParamStore: save_checkpoint v2 / v1, load", [n = 0]() mutable {
        const std::string dir =
            testing::fresh_dir("device_guard_state", n++ == 0 ? "single_cpu" : "single_guarded");
        const auto s = seeded_store(9, model::InitScheme::kHf);
        train::OptimizerState opt;
        opt.exp_avg.assign(static_cast<size_t>(s->total()), 0.5f);
        opt.exp_avg_sq.assign(static_cast<size_t>(s->total()), 0.25f);
        opt.steps.assign(s->entries().size(), 2);
        train::TrainState st;
        st.step = 2;
        const std::string v2 = train::save_checkpoint(dir + "/v2", *s, &opt, st, 0);
        const std::string v1 = train::save_checkpoint_v1(dir + "/v1", *s, &opt, st, 0);
        std::vector<std::vector<float>> loaded;
        for (const std::string& path : {v2, v1}) {
          model::ParamStore back;
          model::layout_params(image_config(), back);
          back.allocate();
          train::OptimizerState opt_back;
          train::load_checkpoint(path, back, &opt_back);
          EXPECT_EQ(opt_back.exp_avg, opt.exp_avg);
          EXPECT_EQ(opt_back.steps, opt.steps);
          loaded.push_back(host_copy(back.values(), back.device()));
        }
        return std::pair{dir, loaded};
      });
  expect_same_files(want.first, got.first);
  ASSERT_EQ(got.second.size(), 2u);
  EXPECT_EQ(got.second[0], want.second[0]);
  EXPECT_EQ(got.second[1], want.second[1]);
}

}  // namespace
}  // namespace qv
