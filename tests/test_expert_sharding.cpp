// Expert tensors under expert parallelism with ZeRO-3 (dist/sharded_data_parallel.cpp), ranks as
// threads (tests/thread_comm.h): each expert unit is split by expert over the EP group, then
// sharded over the ranks holding the same experts (padded chunks when the slice does not
// divide). Checked against a one-process store: the owned chunks tile every expert tensor
// exactly once per replica; a gather for compute brings back this rank's experts (bit-equal,
// float or bf16) and nothing else, so the expert values and gradients a rank materialises drop
// by the EP degree; a gradient is summed over the ranks holding the same experts only;
// gather_all restores every expert for saving; a round after the first allocates nothing.
#include <gtest/gtest.h>

#include <cstring>
#include <mutex>

#include "alloc_counter.h"
#include "dist/data_parallel.h"
#include "model/qwen3vl.h"
#include "model_test_utils.h"
#include "thread_comm.h"

namespace qv {
namespace {

struct EpCase {
  int replicate, shard, ep;
  bool bf16;
};

model::ModelConfig moe_config() {
  model::ModelConfig c = testing::tiny_config();
  c.text.num_experts = 4;
  c.text.num_experts_per_tok = 2;
  c.text.moe_intermediate_size = 20;
  c.text.decoder_sparse_step = 1;
  return c;
}

// The gradient a rank "computes" for element i of an expert tensor (exact in float: small
// integers), nonzero only on the experts it runs.
float fake_grad(int rank, int64_t i) {
  return static_cast<float>((rank + 1) * 1000 + i % 977);
}

class ExpertSharding : public ::testing::TestWithParam<EpCase> {};

TEST_P(ExpertSharding, EachRankHoldsItsExpertsShardedOverTheirHolders) {
  const EpCase c = GetParam();
  const model::ModelConfig config = moe_config();
  const dist::ParallelDims dims{c.replicate, c.shard, c.ep};
  const int world = c.replicate * c.shard;
  const int64_t align = dist::unit_alignment(dims);
  model::Qwen3VLModel ref(config, align);
  model::init_params(config, ref.store(), 9);
  if (c.bf16) ref.enable_bf16_matmuls();
  const model::ParamStore& rs = ref.store();
  std::vector<int> expert_units;
  for (size_t u = 0; u < rs.units().size(); ++u)
    if (rs.units()[u].experts > 0) expert_units.push_back(static_cast<int>(u));
  ASSERT_EQ(expert_units.size(), 2u * config.text.num_layers);

  std::mutex mu;
  std::vector<std::vector<dist::FlatRange>> owned(world);
  testing::run_ranks(world, [&](testing::ThreadCommunicator& comm) {
    const int rank = comm.rank(), s = rank % c.shard, e = s % c.ep;
    model::Qwen3VLModel m(config, align);
    model::init_params(config, m.store(), 9);
    if (c.bf16) m.enable_bf16_matmuls();
    model::ParamStore& st = m.store();
    auto dp = dist::make_sharded(st, comm, dims);
    dp->release_all();
    {
      std::lock_guard<std::mutex> lock(mu);
      owned[rank] = dp->owned();
    }
    dp->begin_step();
    for (int ui : expert_units) {
      const auto& u = st.units()[ui];
      const auto& ref_e = st.entries()[u.entries[0]].ref;
      const int64_t L = ref_e.numel / c.ep, base = ref_e.offset + e * L;
      // Gathered for compute: exactly this rank's experts, bit-equal to one process.
      comm.reset_counts();
      dp->gather(ui);
      const int64_t elt = c.bf16 ? 2 : 4;
      const int64_t holders = c.shard / c.ep;
      const int64_t chunk = (L + holders - 1) / holders;
      // One holder: the slice is its own chunk, nothing travels.
      EXPECT_EQ(comm.gathered().f32 + comm.gathered().bf16,
                holders == 1 ? 0 : holders * chunk * elt)
          << u.name;
      int64_t materialised = 0, wrong = 0;
      for (int64_t i = ref_e.offset; i < ref_e.offset + ref_e.numel; ++i) {
        const bool mine = i >= base && i < base + L;
        const bool present = c.bf16 ? st.values_bf16()[i].bits != 0 : st.values()[i] != 0.0f;
        materialised += present;
        if (mine && c.bf16) wrong += st.values_bf16()[i].bits != ref.store().values_bf16()[i].bits;
        if (mine && !c.bf16) wrong += st.values()[i] != rs.values()[i];
      }
      // (No ASSERT inside a rank: a rank that returns early leaves the others at a collective.)
      EXPECT_EQ(wrong, 0) << u.name << " rank " << rank;
      // Init draws no exact zeros, so every element of the slice is present, and no other.
      EXPECT_EQ(materialised, L) << u.name << " rank " << rank;
      dp->release(ui);
      // Backward: this rank's experts get its gradient; the reduce leaves the own chunk the
      // sum over the ranks holding the same experts (same EP rank, every replica is separate).
      float* g = st.grads().data();
      for (int64_t i = base; i < base + L; ++i) g[i] = fake_grad(rank, i - ref_e.offset);
      dp->grads_ready(ui);
    }
    dp->finish_grads();
    for (int ui : expert_units) {
      const auto& u = st.units()[ui];
      const auto& ref_e = st.entries()[u.entries[0]].ref;
      const dist::FlatRange own = dp->owned()[ui];
      int64_t wrong = 0, stale = 0;
      for (int64_t i = own.begin; i < own.end; ++i) {
        float want = 0;  // summed over every rank with the same EP rank (all replicas)
        for (int r = 0; r < world; ++r)
          if ((r % c.shard) % c.ep == e) want += fake_grad(r, i - ref_e.offset);
        wrong += st.grads()[i] != want;
      }
      for (int64_t i = u.begin; i < u.end; ++i)
        stale += (i < own.begin || i >= own.end) && st.grads()[i] != 0.0f;
      EXPECT_EQ(wrong, 0) << u.name << " rank " << rank;
      EXPECT_EQ(stale, 0) << u.name << " rank " << rank;
    }

    // A second round of gathers, releases and reduces allocates nothing.
    comm.barrier();
    if (rank == 0) testing::start_counting_allocations();
    comm.barrier();
    for (int ui : expert_units) {
      dp->gather(ui);
      dp->release(ui);
      dp->grads_ready(ui);
    }
    comm.barrier();
    if (rank == 0) {
      EXPECT_EQ(testing::stop_counting_allocations(), 0);
    }
    comm.barrier();

    // Saving and export: every expert's float master.
    dp->gather_all();
    for (int ui : expert_units) {
      const auto& u = st.units()[ui];
      EXPECT_EQ(std::memcmp(st.values().data() + u.begin, rs.values().data() + u.begin,
                            (u.end - u.begin) * 4),
                0)
          << u.name;
    }
    dp->release_all();
  });

  // Per replica, the owned chunks of the shard group tile every expert tensor exactly once, and
  // each rank owns numel / shard of it (rounded up to whole chunks): masters, gradients and
  // AdamW state (sized by owned()) per rank.
  for (int ui : expert_units) {
    const auto& ref_e = rs.entries()[rs.units()[ui].entries[0]].ref;
    for (int rep = 0; rep < c.replicate; ++rep) {
      std::vector<int> hits(ref_e.numel, 0);
      for (int s = 0; s < c.shard; ++s) {
        const dist::FlatRange o = owned[rep * c.shard + s][ui];
        EXPECT_LE(o.size(), (ref_e.numel / c.ep + c.shard / c.ep - 1) / (c.shard / c.ep));
        for (int64_t i = o.begin; i < o.end; ++i) ++hits[i - ref_e.offset];
      }
      for (int64_t i = 0; i < ref_e.numel; ++i) ASSERT_EQ(hits[i], 1) << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Layouts, ExpertSharding,
                         ::testing::Values(EpCase{1, 2, 2, false}, EpCase{1, 2, 2, true},
                                           EpCase{1, 4, 2, false}, EpCase{1, 4, 2, true},
                                           EpCase{1, 4, 4, false},
                                           // 3 holders per slice: padded chunks
                                           EpCase{1, 6, 2, true}, EpCase{2, 2, 2, false}),
                         [](const auto& info) {
                           const EpCase& c = info.param;
                           return std::to_string(c.replicate) + "x" + std::to_string(c.shard) +
                                  "_ep" + std::to_string(c.ep) + (c.bf16 ? "_bf16" : "");
                         });

}  // namespace
}  // namespace qv
