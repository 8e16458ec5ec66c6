// Data parallelism on the guarded device (kernels/guarded/guard.h): what a multi-GPU job does
// with device memory, checked on the CPU. Ranks are threads (tests/thread_comm.h), each with its
// own guarded device ({kGuarded, rank}, one "GPU" per rank as under mpirun + NCCL), building its
// model there and training it with Trainer::run: replicated (with and without the overlapped
// all-reduce), ZeRO-3 (unit gathers and releases, the embedding's row gather gather_rows and
// release_pages, reduce-scatters) in float and in bf16, the image model sharded, a 2 x 2
// hybrid, and expert parallelism on the MoE model (the exchange's all-to-alls, the expert
// units' slices: EP 2 on 2 ranks, and on 4 ranks with each slice sharded over 2; the padded
// slices on their own in DeviceGuardExpertSlices). The communicator is a device op there, as
// NCCL is: GuardedComm opens the guard's OpenScope around each collective, and its float / bf16
// buffers must be guarded memory (a host pointer is reported, as for any op); the double
// collectives (loss sums, norms) and the all-to-all counts take host memory, as NCCL's do, and
// run with guarded memory closed. Every host access and host pointer fails the test, and the
// losses, gradient norms and router statistics must equal, bit for bit, those of the same
// thread ranks on the CPU (the same CPU kernels run; only the memory is guarded).
//
// The guard's open state is process-wide: while one thread runs an op or a collective, guarded
// memory is open for every thread. So the rank threads take turns (RankTurn): one runs at a
// time, and a rank gives its turn up only to meet its peers in a collective, which they enter
// and leave together (barriers with guarded memory closed). No rank's host code runs while
// guarded memory is open, so every host access on a rank thread is caught, as in the
// single-process tests (test_device_guard.cpp). The price is speed: the ranks no longer overlap.
//
// Also here: the readback of `qwen3vl forward` (logits and recorded tensors come to the host by
// explicit copies), strict on the guarded device.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/buffer_pool.h"
#include "core/device.h"
#include "device_guard_test_utils.h"
#include "dist/communicator.h"
#include "dist/data_parallel.h"
#include "dist/parallel_dims.h"
#include "guard_census.h"
#include "io/safetensors.h"
#include "kernels/device.h"
#include "kernels/guarded/guard.h"
#include "model/inputs_io.h"
#include "model/params.h"
#include "model/qwen3vl.h"
#include "model_test_utils.h"
#include "thread_comm.h"
#include "train/batch_source.h"
#include "train/data_source.h"
#include "train/trainer.h"
#include "train_test_utils.h"

namespace qv {
namespace {

using testing::GuardCensus;

// One rank thread runs at a time: each holds the turn while it runs (RankTurn) and gives it up
// only while it meets its peers in a collective. So no rank's host code ever runs while another
// rank is inside an op or collective with guarded memory open, and every host access of every
// rank is caught (with the ranks running freely, one waiting inside a collective kept guarded
// memory open while the others ran host code: a host read in MoeBlock::forward_parallel went
// unnoticed on both ranks).
std::mutex g_turn;

struct RankTurn {
  RankTurn() { g_turn.lock(); }
  ~RankTurn() { g_turn.unlock(); }
  RankTurn(const RankTurn&) = delete;
  RankTurn& operator=(const RankTurn&) = delete;
};

// Gives the turn up for its lifetime (the rank waits for its peers).
struct TurnGivenUp {
  TurnGivenUp() { g_turn.unlock(); }
  ~TurnGivenUp() { g_turn.lock(); }
  TurnGivenUp(const TurnGivenUp&) = delete;
  TurnGivenUp& operator=(const TurnGivenUp&) = delete;
};

// A rank's communicator as a device op: collectives run with guarded memory open, and the
// float / bf16 buffers they are given must be device (guarded) memory. Doubles and the
// all-to-all counts are host memory (NCCL stages them) and run with guarded memory closed.
class GuardedComm final : public dist::Communicator {
 public:
  explicit GuardedComm(dist::Communicator& inner) : inner_(inner) {}
  explicit GuardedComm(std::unique_ptr<dist::Communicator> owned)
      : owned_(std::move(owned)), inner_(*owned_) {}

  int rank() const override { return inner_.rank(); }
  int size() const override { return inner_.size(); }
  void all_reduce_sum(float* d, int64_t n) override {
    device_op("all_reduce_sum", d);
    opened([&] { inner_.all_reduce_sum(d, n); });
  }
  void all_reduce_sum(double* d, int64_t n) override {
    closed([&] { inner_.all_reduce_sum(d, n); });
  }
  void all_reduce_max(double* d, int64_t n) override {
    closed([&] { inner_.all_reduce_max(d, n); });
  }
  void all_gather(const float* in, float* out, int64_t n) override {
    device_op("all_gather", in, out);
    opened([&] { inner_.all_gather(in, out, n); });
  }
  void all_gather_bf16(const bf16* in, bf16* out, int64_t n) override {
    device_op("all_gather_bf16", in, out);
    opened([&] { inner_.all_gather_bf16(in, out, n); });
  }
  void reduce_scatter_sum(const float* in, float* out, int64_t n) override {
    device_op("reduce_scatter_sum", in, out);
    opened([&] { inner_.reduce_scatter_sum(in, out, n); });
  }
  void broadcast(float* d, int64_t n, int root) override {
    device_op("broadcast", d);
    opened([&] { inner_.broadcast(d, n, root); });
  }
  void all_to_all_v(const float* in, const int64_t* send_counts, float* out,
                    const int64_t* recv_counts) override {
    device_op("all_to_all_v", in, out);
    opened([&] { inner_.all_to_all_v(in, send_counts, out, recv_counts); });
  }
  void all_to_all(const int64_t* in, int64_t* out, int64_t n) override {
    closed([&] { inner_.all_to_all(in, out, n); });
  }
  void barrier() override {
    closed([&] { inner_.barrier(); });
  }
  void start_all_reduce_sum(float* d, int64_t n) override {
    device_op("start_all_reduce_sum", d);
    opened([&] { inner_.start_all_reduce_sum(d, n); });
  }
  void progress() override { inner_.progress(); }
  void wait_all() override { inner_.wait_all(); }
  std::unique_ptr<Communicator> split(int color, int key) override {
    std::unique_ptr<Communicator> group;
    closed([&] { group = inner_.split(color, key); });
    return std::make_unique<GuardedComm>(std::move(group));
  }

 private:
  // The guarded device's pointer check of an op (host memory given to a collective is reported).
  template <class... P>
  void device_op(const char* op, P... pointers) {
    if (current_device().kind == DeviceKind::kGuarded)
      kernels::guarded::check_pointers(op, pointers...);
  }
  // Runs a collective with guarded memory open. The ranks give up the turn and meet first with
  // it closed, run the collective together, and meet again before taking turns again: no rank's
  // host code runs while guarded memory is open for a collective.
  template <class F>
  void opened(F collective) {
    const TurnGivenUp wait;
    inner_.barrier();
    {
      const kernels::guarded::OpenScope open;
      collective();
    }
    inner_.barrier();
  }
  // A collective on host memory (guarded memory stays closed).
  template <class F>
  void closed(F collective) {
    const TurnGivenUp wait;
    collective();
  }
  std::unique_ptr<dist::Communicator> owned_;
  dist::Communicator& inner_;
};

Device rank_device(bool guarded, int rank) {
  return guarded ? Device{DeviceKind::kGuarded, rank} : kCpuDevice;
}

std::string fixture_dir(const std::string& name) {
  return std::string(QWEN3VL_SOURCE_DIR) + "/tests/fixtures/" + name;
}

enum class Batch {
  kFixture,       // the fixture's own batch
  kFourTextRows,  // the text fixture's two rows twice (4 ranks)
  kTwoImageRows,  // the image fixture's row (and its image) twice (2 ranks)
  kMoeMixedRows,  // one row per rank: the MoE fixture's image row and text rows, alternating
};

// The image fixture's one row twice, each with its image: every rank runs the vision tower.
std::string two_image_rows(const std::string& dir) {
  model::ModelInputs m = model::load_inputs(fixture_dir("hf-tiny-image") + "/inputs.safetensors");
  m.batch = 2;
  for (auto* v : {&m.input_ids, &m.labels, &m.attention_mask})
    if (!v->empty()) v->insert(v->end(), v->begin(), v->end());
  const Tensor one = m.pixel_values;
  m.pixel_values = Tensor(DType::kF32, {2 * one.shape()[0], one.shape()[1]});
  std::memcpy(m.pixel_values.raw(), one.raw(), one.nbytes());
  std::memcpy(static_cast<char*>(m.pixel_values.raw()) + one.nbytes(), one.raw(), one.nbytes());
  m.image_grids.insert(m.image_grids.end(), m.image_grids.begin(), m.image_grids.end());
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/two_image_rows.safetensors";
  io::save_safetensors(path, model::inputs_to_tensors(m));
  return path;
}

// One row per rank for the MoE fixture, alternating its own row (with its image) and the text
// fixture's rows (padded): the ranks route different tokens, so the expert-parallel exchange's
// counts differ from rank to rank.
std::string moe_mixed_rows(const std::string& dir, int ranks) {
  const model::ModelInputs img =
      model::load_inputs(fixture_dir("hf-tiny-moe") + "/inputs.safetensors");
  const model::ModelInputs txt =
      model::load_inputs(fixture_dir("hf-tiny-text") + "/inputs.safetensors");
  const int64_t S = img.seq, images = (ranks + 1) / 2;
  model::ModelInputs m = img;
  m.batch = ranks;
  m.input_ids.clear();
  m.labels.clear();
  m.attention_mask.clear();
  for (int r = 0; r < ranks; ++r) {
    if (r % 2 == 0) {
      m.input_ids.insert(m.input_ids.end(), img.input_ids.begin(), img.input_ids.end());
      m.labels.insert(m.labels.end(), img.labels.begin(), img.labels.end());
      for (int64_t s = 0; s < S; ++s) m.attention_mask.push_back(img.valid(s) ? 1 : 0);
      continue;
    }
    const int64_t row = (r / 2) % txt.batch;
    for (int64_t s = 0; s < S; ++s) {
      const bool in_row = s < txt.seq;
      const int64_t i = row * txt.seq + s;
      m.input_ids.push_back(in_row ? txt.input_ids[i] : 0);
      m.labels.push_back(in_row ? txt.labels[i] : -100);
      m.attention_mask.push_back(in_row && txt.valid(i) ? 1 : 0);
    }
  }
  const Tensor one = img.pixel_values;
  m.pixel_values = Tensor(DType::kF32, {images * one.shape()[0], one.shape()[1]});
  for (int64_t i = 0; i < images; ++i)
    std::memcpy(static_cast<char*>(m.pixel_values.raw()) + i * one.nbytes(), one.raw(),
                one.nbytes());
  m.image_grids.clear();
  for (int64_t i = 0; i < images; ++i) m.image_grids.push_back(img.image_grids[0]);
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/moe_mixed_rows.safetensors";
  io::save_safetensors(path, model::inputs_to_tensors(m));
  return path;
}

struct DistRun {
  std::string name, fixture;
  int ranks = 2;
  std::vector<std::pair<std::string, std::string>> overrides;
  Batch batch = Batch::kFixture;
};

void PrintTo(const DistRun& r, std::ostream* os) {
  *os << r.name;
}

// Trainer::run of 2 steps on every rank (threads), each rank's model built on its device.
// Returns each rank's step records.
std::vector<std::vector<train::StepRecord>> train_on_ranks(const DistRun& run, bool guarded) {
  const std::string tag = run.name + (guarded ? "_guarded" : "_cpu");
  const std::string rows_dir = testing::fresh_dir("guard_dist", tag + "_rows");
  const std::string batch =
      run.batch == Batch::kFourTextRows   ? testing::four_row_text_batch(rows_dir)
      : run.batch == Batch::kTwoImageRows ? two_image_rows(rows_dir)
      : run.batch == Batch::kMoeMixedRows ? moe_mixed_rows(rows_dir, run.ranks)
                                          : "";
  std::vector<std::vector<train::StepRecord>> out(run.ranks);
  testing::run_ranks(run.ranks, [&](testing::ThreadCommunicator& comm) {
    const RankTurn turn;
    const int r = comm.rank();
    const DeviceScope on_device(rank_device(guarded, r));
    const std::string dump = testing::fresh_dir("guard_dist", tag + "_rank" + std::to_string(r));
    auto overrides = run.overrides;
    overrides.emplace_back("checkpoint.enable", "false");
    if (!batch.empty()) overrides.emplace_back("training.dataset_path", batch);
    auto config =
        train::JobConfig::load(testing::fixed_batch_config(run.fixture, dump, 2, 2), overrides);
    const auto dims =
        dist::resolve_parallel_dims(config.dp_replicate, config.dp_shard, comm.size());
    auto model = train::build_model(config, dist::unit_alignment(dims));
    auto data = train::make_batch_source(config, model->config(), r, comm.size());
    train::Trainer trainer(config, std::move(model), std::move(data),
                           std::make_unique<GuardedComm>(comm));
    out[r] = trainer.run();
  });
  return out;
}

class DeviceGuardDist : public ::testing::TestWithParam<DistRun> {};

TEST_P(DeviceGuardDist, TrainingIsCleanAndEqualsTheCpuRanks) {
  const DistRun& run = GetParam();
  const auto want = train_on_ranks(run, /*guarded=*/false);
  GuardCensus census;
  const auto got = train_on_ranks(run, /*guarded=*/true);
  const std::string table = census.report(run.name + ": Trainer::run, 2 steps, " +
                                          std::to_string(run.ranks) + " thread ranks");
  std::printf("%s", table.c_str());
  EXPECT_EQ(census.faults(), 0) << table;
  EXPECT_EQ(census.host_pointers(), 0) << table;
  for (int r = 0; r < run.ranks; ++r) {
    ASSERT_EQ(got[r].size(), 2u) << "rank " << r;
    ASSERT_EQ(want[r].size(), 2u) << "rank " << r;
    for (size_t i = 0; i < 2; ++i) {
      EXPECT_EQ(got[r][i].loss, want[r][i].loss) << "rank " << r << " step " << i + 1;
      EXPECT_EQ(got[r][i].grad_norm, want[r][i].grad_norm) << "rank " << r << " step " << i + 1;
      EXPECT_EQ(got[r][i].aux_loss, want[r][i].aux_loss) << "rank " << r << " step " << i + 1;
      EXPECT_EQ(got[r][i].expert_max_share, want[r][i].expert_max_share)
          << "rank " << r << " step " << i + 1;
    }
  }
  // The ranks agree with each other (the loss is summed over them).
  for (int r = 1; r < run.ranks; ++r) EXPECT_EQ(got[r][1].loss, got[0][1].loss);
  for (int r = 0; r < run.ranks; ++r) BufferPool::of(rank_device(true, r)).release_cached();
  EXPECT_EQ(kernels::guarded::live_blocks(), 0);
}

const std::vector<std::pair<std::string, std::string>> kShard2 = {
    {"parallelism.data_parallel_shard_degree", "2"}};
const std::vector<std::pair<std::string, std::string>> kReplicate2 = {
    {"parallelism.data_parallel_replicate_degree", "2"},
    {"parallelism.data_parallel_shard_degree", "1"}};

std::vector<std::pair<std::string, std::string>> with(
    std::vector<std::pair<std::string, std::string>> base,
    const std::vector<std::pair<std::string, std::string>>& more) {
  base.insert(base.end(), more.begin(), more.end());
  return base;
}

INSTANTIATE_TEST_SUITE_P(
    Modes, DeviceGuardDist,
    ::testing::Values(DistRun{"replicated", "hf-tiny-text", 2, kReplicate2},
                      DistRun{"replicated_blocking", "hf-tiny-text", 2,
                              with(kReplicate2, {{"parallelism.overlap_grad_reduce", "false"}})},
                      DistRun{"zero3", "hf-tiny-text", 2, kShard2},
                      DistRun{"zero3_bf16", "hf-tiny-text", 2,
                              with(kShard2, {{"training.mixed_precision_param", "bfloat16"}})},
                      DistRun{"zero3_image", "hf-tiny-image", 2, kShard2, Batch::kTwoImageRows},
                      DistRun{"hybrid_2x2_bf16",
                              "hf-tiny-text",
                              4,
                              {{"parallelism.data_parallel_replicate_degree", "2"},
                               {"parallelism.data_parallel_shard_degree", "2"},
                               {"training.mixed_precision_param", "bfloat16"}},
                              Batch::kFourTextRows},
                      // Expert parallelism (the MoE fixture, experts split over an EP group of
                      // 2 inside the shard group): the exchange's all-to-alls, the owner's
                      // grouped GEMMs, the expert units' slices. With the load-balancing loss,
                      // bf16 gathers and full activation checkpointing (the exchange rerun in
                      // the recompute); and 4 ranks with EP 2, each expert slice sharded over
                      // the 2 ranks that hold it.
                      DistRun{"ep2_moe", "hf-tiny-moe", 2,
                              with(kShard2, {{"parallelism.expert_parallel_degree", "2"}}),
                              Batch::kMoeMixedRows},
                      DistRun{"ep2_moe_bf16_aux_full_ac", "hf-tiny-moe", 2,
                              with(kShard2, {{"parallelism.expert_parallel_degree", "2"},
                                             {"training.mixed_precision_param", "bfloat16"},
                                             {"model.router_aux_loss_coef", "0.01"},
                                             {"activation_checkpoint.mode", "full"}}),
                              Batch::kMoeMixedRows},
                      DistRun{"ep2_shard4_moe",
                              "hf-tiny-moe",
                              4,
                              {{"parallelism.data_parallel_shard_degree", "4"},
                               {"parallelism.expert_parallel_degree", "2"}},
                              Batch::kMoeMixedRows}),
    [](const auto& info) { return info.param.name; });

// The expert units' padded slices (dist/sharded_data_parallel.cpp), which the fixture's
// experts never need (their slices divide over 2 holders): 6 ranks, shard 6, EP 2, so 3 ranks
// hold each slice and a tiny MoE's expert tensors (intermediate size 20) do not divide by 3.
// Each rank builds the model on its device, gathers and releases every expert unit (bf16
// copies), gives it a gradient on its own experts and reduce-scatters it, then gathers every
// value for saving. Strict, and the values and own gradient chunks equal the CPU ranks' bit for
// bit.
struct ExpertSlices {
  std::vector<float> values, grads;  // the whole store after gather_all; the own chunks' grads
  int padded = 0;                    // expert slices that do not divide over their holders
};

std::vector<ExpertSlices> expert_slices_on_ranks(bool guarded) {
  model::ModelConfig config = testing::tiny_config();
  config.text.num_experts = 4;
  config.text.num_experts_per_tok = 2;
  config.text.moe_intermediate_size = 20;
  config.text.decoder_sparse_step = 1;
  const dist::ParallelDims dims{1, 6, 2};
  std::vector<ExpertSlices> out(6);
  testing::run_ranks(6, [&](testing::ThreadCommunicator& thread_comm) {
    const RankTurn turn;
    const int rank = thread_comm.rank();
    const Device device = rank_device(guarded, rank);
    const DeviceScope on_device(device);
    GuardedComm comm(thread_comm);
    model::Qwen3VLModel m(config, dist::unit_alignment(dims));
    model::init_params(config, m.store(), 9);
    m.enable_bf16_matmuls();
    model::ParamStore& st = m.store();
    auto dp = dist::make_sharded(st, comm, dims);
    dp->release_all();
    dp->begin_step();
    const int64_t ep_rank = rank % dims.expert;
    for (size_t ui = 0; ui < st.units().size(); ++ui) {
      const auto& u = st.units()[ui];
      if (u.experts == 0) continue;
      dp->gather(static_cast<int>(ui));
      dp->release(static_cast<int>(ui));
      // A gradient on this rank's experts (exact small integers), uploaded.
      const auto& ref = st.entries()[u.entries[0]].ref;
      const int64_t L = ref.numel / dims.expert, base = ref.offset + ep_rank * L;
      out[rank].padded += L % (dims.shard / dims.expert) != 0;
      std::vector<float> g(L);
      for (int64_t i = 0; i < L; ++i) g[i] = static_cast<float>((rank + 1) * 1000 + i % 977);
      kernels::copy_bytes(st.grads().data() + base, device, g.data(), kCpuDevice,
                          L * sizeof(float));
      dp->grads_ready(static_cast<int>(ui));
    }
    dp->finish_grads();
    for (const dist::FlatRange& r : dp->owned()) {
      const auto g = testing::read_back(st.grads().data() + r.begin, r.size(), device);
      out[rank].grads.insert(out[rank].grads.end(), g.begin(), g.end());
    }
    dp->gather_all();
    out[rank].values = testing::host_copy(st.values(), device);
    dp->release_all();
  });
  return out;
}

TEST(DeviceGuardExpertSlices, PaddedSlicesAreCleanAndEqualTheCpuRanks) {
  const std::vector<ExpertSlices> want = expert_slices_on_ranks(/*guarded=*/false);
  GuardCensus census;
  const std::vector<ExpertSlices> got = expert_slices_on_ranks(/*guarded=*/true);
  testing::report(census, "padded expert slices: 6 thread ranks, shard 6, EP 2, bf16", true);
  for (int r = 0; r < 6; ++r) {
    ASSERT_EQ(got[r].values.size(), want[r].values.size()) << "rank " << r;
    ASSERT_EQ(got[r].grads.size(), want[r].grads.size()) << "rank " << r;
    EXPECT_EQ(got[r].values, want[r].values) << "rank " << r;
    EXPECT_EQ(got[r].grads, want[r].grads) << "rank " << r;
  }
  EXPECT_EQ(want[0].padded, 4) << "each layer's gate_up and down slices are padded";
  // The gradients were reduced: some own chunk holds a sum over holders (a value no single
  // rank wrote: at least 1000 + 2000 + 3000 for the three holders of EP rank 0's experts).
  float most = 0;
  for (float g : want[0].grads) most = std::max(most, g);
  EXPECT_GE(most, 6000.0f);
  for (int r = 0; r < 6; ++r) BufferPool::of(rank_device(true, r)).release_cached();
  EXPECT_EQ(kernels::guarded::live_blocks(), 0);
}

// qwen3vl forward's readback: the logits (want_logits) and the recorded intermediate tensors
// come to the host through explicit copies, so a forward on the guarded device that records
// everything is clean and returns exactly the CPU's tensors.
TEST(DeviceGuardReadback, ForwardLogitsAndRecordedTensorsComeBackByCopies) {
  for (const std::string fixture : {"hf-tiny-text", "hf-tiny-image"}) {
    const std::string dir = fixture_dir(fixture);
    const model::ModelInputs in = model::load_inputs(dir + "/inputs.safetensors");
    model::ForwardOptions opt;
    opt.want_logits = true;
    opt.record = true;
    const model::ForwardResult want = model::Qwen3VLModel::from_pretrained(dir)->forward(in, opt);
    GuardCensus census;
    model::ForwardResult got;
    {
      const DeviceScope on_guarded(testing::kGuardedDevice);
      got = model::Qwen3VLModel::from_pretrained(dir)->forward(in, opt);
    }
    const std::string table = census.report(fixture + ": forward with logits and recording");
    std::printf("%s", table.c_str());
    EXPECT_EQ(census.faults(), 0) << table;
    EXPECT_EQ(census.host_pointers(), 0) << table;
    EXPECT_EQ(got.loss, want.loss);
    ASSERT_EQ(got.logits.shape(), want.logits.shape());
    EXPECT_EQ(std::memcmp(got.logits.raw(), want.logits.raw(), want.logits.nbytes()), 0);
    ASSERT_EQ(got.recorded.size(), want.recorded.size());
    EXPECT_GT(want.recorded.size(), 5u);
    for (const auto& [name, t] : want.recorded) {
      const auto it = got.recorded.find(name);
      ASSERT_NE(it, got.recorded.end()) << name;
      ASSERT_EQ(it->second.shape(), t.shape()) << name;
      EXPECT_EQ(std::memcmp(it->second.raw(), t.raw(), t.nbytes()), 0) << name;
    }
    BufferPool::of(testing::kGuardedDevice).release_cached();
  }
}

}  // namespace
}  // namespace qv
