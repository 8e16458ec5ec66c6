// Sharded checkpoints in one process: ranks are threads over a small in-memory communicator, so
// every layout (replicated, ZeRO-3, hybrid; 1, 2 and 4 ranks) saves through the real collective
// protocol and every other layout loads it back. Checked bit for bit: parameter values,
// both AdamW moments, step counts, each rank's data state; a rank reads only its own ranges;
// a missing or corrupt shard is an error naming it; v1 checkpoints still load; the streamed
// export equals the export of the whole model.
#include <gtest/gtest.h>

#include <cmath>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>

#include "checkpoint_test_utils.h"
#include "core/error.h"
#include "dist/parallel_dims.h"
#include "io/atomic_file.h"
#include "model/hf_weights.h"
#include "train/checkpoint.h"
#include "train/checkpoint_tools.h"
#include "train/trainer.h"
#include "train_test_utils.h"

namespace qv {
namespace {

namespace fs = std::filesystem;
using testing::Layout;
using testing::owned_ranges;
using train::FlatRange;

// The reference state: distinct values per element and per moment, steps per entry.
struct Reference {
  std::vector<float> values, m, v;
  std::vector<int64_t> steps;
};

Reference make_reference(const model::ParamStore& store) {
  Reference r;
  r.values.assign(store.total(), 0.0f);
  r.m.assign(store.total(), 0.0f);
  r.v.assign(store.total(), 0.0f);
  for (const auto& e : store.entries())
    for (int64_t i = e.ref.offset; i < e.ref.offset + e.ref.numel; ++i) {
      r.values[i] = std::sin(0.001f * static_cast<float>(i)) + 1e-7f * static_cast<float>(i % 97);
      r.m[i] = static_cast<float>(i) * 1e-3f;
      r.v[i] = 1.0f / static_cast<float>(i + 1);
    }
  for (size_t i = 0; i < store.entries().size(); ++i)
    r.steps.push_back(static_cast<int64_t>(3 + i));
  return r;
}

std::unique_ptr<model::Qwen3VLModel> tiny_model(const std::string& dump) {
  auto config = train::JobConfig::load(testing::fixed_batch_config("hf-tiny-text", dump, 1, 1));
  // Aligned for 4 shards (also good for 2).
  return train::build_model(config, dist::unit_alignment({1, 4}));
}

// Saves `ref` as `l` would: every rank a thread writing its part of its owned ranges.
std::string save_as(const model::ParamStore& store, const Reference& ref, const Layout& l,
                    const std::string& folder, int64_t step) {
  std::vector<nlohmann::json> data;
  for (int r = 0; r < l.world(); ++r) data.push_back({{"rank", r}, {"world", l.world()}});
  return testing::save_layout(store, ref.m, ref.v, ref.steps, l, folder, step, data, "{}");
}

// Loads `path` as rank `rank` of `l` and checks every element it owns bit for bit; elements of
// the store outside its ranges must stay untouched (it read only its share).
void expect_loads_exactly(const std::string& path, model::ParamStore& store, const Reference& ref,
                          const Layout& l, int rank) {
  SCOPED_TRACE("loaded as rank " + std::to_string(rank) + " of " + l.name());
  const float kUntouched = -12345.0f;
  std::fill(store.values().data(), store.values().data() + store.total(), kUntouched);
  const auto owned = owned_ranges(store, l, rank);
  int64_t n = 0;
  for (const auto& o : owned) n += o.size();
  std::vector<float> m(n, 7.0f), v(n, 7.0f);
  std::vector<int64_t> steps;
  train::OptimizerTarget target{m, v, owned, &steps};
  const train::TrainState st = train::load_checkpoint(path, store, &target, &owned);
  EXPECT_EQ(st.step, 5);
  EXPECT_EQ(steps, ref.steps);
  std::vector<uint8_t> inside(store.total(), 0), param(store.total(), 0);
  for (const auto& e : store.entries())
    std::fill(param.begin() + e.ref.offset, param.begin() + e.ref.offset + e.ref.numel, 1);
  int64_t at = 0, bad = 0;
  for (const auto& o : owned)
    for (int64_t i = o.begin; i < o.end; ++i, ++at) {
      inside[i] = 1;
      // Padding between parameters is stored nowhere: values stay, moments read as zero.
      const float want_v = param[i] ? ref.values[i] : kUntouched;
      if (std::memcmp(&store.values().data()[i], &want_v, 4) != 0 ||
          std::memcmp(&m[at], &ref.m[i], 4) != 0 || std::memcmp(&v[at], &ref.v[i], 4) != 0)
        ++bad;
    }
  EXPECT_EQ(bad, 0);
  int64_t touched = 0;
  for (int64_t i = 0; i < store.total(); ++i)
    if (!inside[i] && store.values().data()[i] != kUntouched) ++touched;
  EXPECT_EQ(touched, 0) << "elements outside the rank's ranges were written";
}

const std::vector<Layout> kLayouts = {{1, 1}, {2, 1}, {4, 1}, {1, 2}, {1, 4}, {2, 2}};

TEST(CheckpointShards, EveryLayoutLoadsEveryOtherBitExactly) {
  const std::string dump = testing::fresh_dir("ckptshards", "matrix");
  auto model = tiny_model(dump);
  model::ParamStore& store = model->store();
  const Reference ref = make_reference(store);
  std::memcpy(store.values().data(), ref.values.data(), store.total() * 4);
  for (const Layout& from : kLayouts) {
    SCOPED_TRACE("saved as " + from.name());
    std::memcpy(store.values().data(), ref.values.data(), store.total() * 4);
    const std::string path = save_as(store, ref, from, dump + "/" + from.name(), 5);
    ASSERT_TRUE(fs::exists(path + "/state.json"));
    // Every rank wrote a share (the writing is spread over all ranks).
    for (int r = 0; r < from.world(); ++r)
      EXPECT_GT(fs::file_size(path + "/" + train::rank_file("model", r, "safetensors")), 100u) << r;
    for (const Layout& to : kLayouts)
      for (int r = 0; r < to.world(); ++r) expect_loads_exactly(path, store, ref, to, r);
    // Each rank's data state comes back under its rank.
    std::memcpy(store.values().data(), ref.values.data(), store.total() * 4);
    const train::TrainState st =
        train::load_checkpoint(path, store, static_cast<const train::OptimizerTarget*>(nullptr));
    ASSERT_EQ(static_cast<int64_t>(st.data_states.size()), from.world());
    for (int r = 0; r < from.world(); ++r) EXPECT_EQ(st.data_states[r]["rank"], r);
    const train::CheckpointReport report = train::inspect_checkpoint(path);
    EXPECT_TRUE(report.ok()) << report.describe();
    EXPECT_EQ(report.world, from.world());
    EXPECT_EQ(report.tensors, static_cast<int64_t>(store.entries().size()));
  }
}

TEST(CheckpointShards, MissingOrCorruptShardIsAnErrorNamingIt) {
  const std::string dump = testing::fresh_dir("ckptshards", "faults");
  auto model = tiny_model(dump);
  model::ParamStore& store = model->store();
  const Reference ref = make_reference(store);
  std::memcpy(store.values().data(), ref.values.data(), store.total() * 4);
  const std::string path = save_as(store, ref, {1, 2}, dump, 5);
  train::OptimizerState opt;
  auto expect_error = [&](const std::string& needle) {
    try {
      train::load_checkpoint(path, store, &opt);
      ADD_FAILURE() << "no error; expected one naming " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  // A flipped byte in the last piece of rank 1's parameters.
  const std::string model1 = path + "/model-rank00001.safetensors";
  const std::string good = io::read_file(model1);
  std::string bad = good;
  bad[bad.size() - 3] ^= 0x20;
  std::ofstream(model1, std::ios::binary | std::ios::trunc) << bad;
  expect_error("is corrupt");
  EXPECT_FALSE(train::inspect_checkpoint(path).ok());
  std::ofstream(model1, std::ios::binary | std::ios::trunc) << good;
  EXPECT_TRUE(train::inspect_checkpoint(path).ok());
  // A shard file that is not there.
  fs::rename(path + "/optim-rank00001.safetensors", dump + "/moved");
  expect_error("missing shard file optim-rank00001.safetensors");
  EXPECT_NE(train::inspect_checkpoint(path).describe().find("MISSING"), std::string::npos);
  fs::rename(dump + "/moved", path + "/optim-rank00001.safetensors");
  fs::remove(path + "/data-rank00001.json");
  expect_error("missing shard file data-rank00001.json");
}

// A rank reads only the pieces that overlap its ranges: with the other rank's files gone it
// still loads its share, and a corrupt piece it does not need (whose CRC it would check on
// reading) goes unnoticed by it while the rank that needs it reports it.
TEST(CheckpointShards, ARankReadsOnlyThePiecesItsRangesNeed) {
  const std::string dump = testing::fresh_dir("ckptshards", "selective");
  auto model = tiny_model(dump);
  model::ParamStore& store = model->store();
  const Reference ref = make_reference(store);
  std::memcpy(store.values().data(), ref.values.data(), store.total() * 4);
  auto load_as = [&](const std::string& path, int rank) {
    const Layout l{1, 2};
    const auto owned = owned_ranges(store, l, rank);
    int64_t n = 0;
    for (const auto& o : owned) n += o.size();
    std::vector<float> m(n), v(n);
    std::vector<int64_t> steps;
    train::OptimizerTarget target{m, v, owned, &steps};
    train::load_checkpoint(path, store, &target, &owned);
  };
  // Saved by ZeRO-3 on 2 ranks; rank 1's parameter and optimizer files removed.
  const std::string two = save_as(store, ref, {1, 2}, dump + "/two", 5);
  fs::remove(two + "/model-rank00001.safetensors");
  fs::remove(two + "/optim-rank00001.safetensors");
  EXPECT_NO_THROW(load_as(two, 0));
  EXPECT_THROW(load_as(two, 1), Error);
  // Saved by one rank (whole tensors in one file); a flipped byte in a tensor only rank 1 owns.
  const std::string one = save_as(store, ref, {1, 1}, dump + "/one", 5);
  const auto rank1 = owned_ranges(store, {1, 2}, 1);
  const model::ParamEntry* target = nullptr;
  for (const auto& e : store.entries())
    for (const auto& o : rank1)
      if (!target && e.ref.offset >= o.begin && e.ref.offset + e.ref.numel <= o.end) target = &e;
  ASSERT_NE(target, nullptr);
  const std::string file = one + "/model-rank00000.safetensors";
  std::string bytes = io::read_file(file);
  uint64_t header = 0;
  std::memcpy(&header, bytes.data(), 8);
  const size_t at = 8 + header + io::SafetensorsFile(file).info(target->name).begin;
  bytes[at + 1] ^= 0x20;
  std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;
  EXPECT_NO_THROW(load_as(one, 0));
  try {
    load_as(one, 1);
    ADD_FAILURE() << "rank 1 read the corrupt piece of " << target->name << " without an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'" + target->name + "' is corrupt"), std::string::npos)
        << e.what();
  }
}

TEST(CheckpointShards, FailedRankLeavesNoCheckpointAndEveryRankReportsIt) {
  const std::string dump = testing::fresh_dir("ckptshards", "rankfail");
  auto model = tiny_model(dump);
  const model::ParamStore& store = model->store();
  const auto errors = testing::run_ranks_errors(2, [&](testing::ThreadCommunicator& comm) {
    const int r = comm.rank();
    const std::vector<FlatRange> all = {{0, store.total()}};
    const auto write = train::ranges_to_write(all, 2, r);
    const std::string final_dir = train::checkpoint_dir(dump + "/checkpoint", 3);
    const std::string tmp = train::begin_sharded_save(comm, final_dir);
    auto files = train::write_rank_files(tmp, r, store.entries(),
                                         train::view_share(store, write, all, nullptr, nullptr),
                                         nlohmann::json::object());
    if (r == 1) files.error = "No space left on device (simulated)";
    train::finish_sharded_save(comm, tmp, final_dir, files, write, store, {});
  });
  EXPECT_NE(errors[1].find("No space left on device (simulated)"), std::string::npos) << errors[1];
  EXPECT_NE(errors[0].find("writing failed on rank 1"), std::string::npos) << errors[0];
  EXPECT_FALSE(train::latest_checkpoint(dump + "/checkpoint").has_value());
  for (const auto& e : fs::directory_iterator(dump + "/checkpoint"))
    ADD_FAILURE() << "left behind: " << e.path();
}

TEST(CheckpointShards, VersionOneCheckpointsStillLoad) {
  const std::string dump = testing::fresh_dir("ckptshards", "v1");
  auto model = tiny_model(dump);
  model::ParamStore& store = model->store();
  const Reference ref = make_reference(store);
  std::memcpy(store.values().data(), ref.values.data(), store.total() * 4);
  train::OptimizerState saved{ref.m, ref.v, ref.steps};
  train::TrainState state;
  state.step = 5;
  state.data_state = {{"batches", 9}};
  const std::string path = train::save_checkpoint_v1(dump, store, &saved, state, 0);
  for (const Layout& to : {Layout{1, 1}, Layout{1, 2}, Layout{2, 2}})
    for (int r = 0; r < to.world(); ++r) expect_loads_exactly(path, store, ref, to, r);
  const auto st =
      train::load_checkpoint(path, store, static_cast<const train::OptimizerTarget*>(nullptr));
  EXPECT_EQ(st.data_state["batches"], 9);
  EXPECT_TRUE(st.data_states.empty());
  EXPECT_TRUE(train::inspect_checkpoint(path).ok());
}

TEST(CheckpointShards, StreamedExportEqualsTheWholeModelsExport) {
  const std::string dump = testing::fresh_dir("ckptshards", "export");
  auto model = tiny_model(dump);
  model::ParamStore& store = model->store();
  const Reference ref = make_reference(store);
  std::memcpy(store.values().data(), ref.values.data(), store.total() * 4);
  // A checkpoint of 4 ranks (hybrid 2 x 2) with the real config.json.
  const std::string path = save_as(store, ref, {2, 2}, dump + "/ckpt", 5);
  io::write_file_atomic(path + "/config.json", model->config().to_json_text());
  for (const DType dtype : {DType::kF32, DType::kBF16}) {
    model::save_hf_checkpoint(dump + "/whole", model->config(), store, dtype);
    // Small shards: the export is split over several files, with an index.
    train::export_checkpoint(path, dump + "/streamed", dtype, 200000);
    EXPECT_TRUE(fs::exists(dump + "/streamed/model.safetensors.index.json"));
    const auto whole = io::load_safetensors(dump + "/whole/model.safetensors");
    const auto where = io::list_checkpoint_tensors(dump + "/streamed");
    ASSERT_EQ(where.size(), whole.size());
    for (const auto& [name, t] : whole) {
      const io::SafetensorsFile f(where.at(name));
      const Tensor s = f.read(name);
      ASSERT_EQ(s.dtype(), t.dtype()) << name;
      ASSERT_EQ(s.shape(), t.shape()) << name;
      EXPECT_EQ(std::memcmp(s.raw(), t.raw(), t.nbytes()), 0) << name;
    }
  }
  // The export loads as a model.
  auto again = tiny_model(dump + "/again");
  model::load_hf_weights(dump + "/streamed", again->store());
}

}  // namespace
}  // namespace qv
