// ZeRO-3 under bf16 mixed precision, with ranks as threads (tests/thread_comm.h): a unit
// gathered for compute travels as bf16 (its byte count, through the communicator, is the bf16
// size of the unit) plus the float values of just the entries the model reads in float (norm
// weights, biases, a tied embedding); a unit with nothing read only in bf16 (an untied
// embedding, the final norm) travels in float as before; what arrives equals one process's bf16
// copies and float values bit for bit; the float masters of the other entries stay sharded; a
// gather / release round after the first allocates nothing. tests/test_train_dist.cpp's zero3_bf16
// cases train the same way under mpirun against one process.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>

#include "alloc_counter.h"
#include "dist/data_parallel.h"
#include "model/qwen3vl.h"
#include "model_test_utils.h"
#include "thread_comm.h"

namespace qv {
namespace {

struct GatherCase {
  int ranks;
  bool tied;
};

class Zero3Bf16Gather : public ::testing::TestWithParam<GatherCase> {};

// Entries the model reads in float, by the test's own rule: no bf16 copy, or the tied embedding
// (the lookup reads float rows, the classifier its bf16 copy).
bool read_in_float(const model::ParamStore& s, size_t i, bool tied) {
  return !s.has_bf16_copy(i) ||
         (tied && s.entries()[i].name == "model.language_model.embed_tokens.weight");
}

TEST_P(Zero3Bf16Gather, UnitsTravelAsBf16AndFloatReadEntriesAsFloat) {
  const GatherCase c = GetParam();
  model::ModelConfig config = testing::tiny_config();
  config.tie_word_embeddings = c.tied;
  const dist::ParallelDims dims{1, c.ranks};
  const int64_t align = dist::unit_alignment(dims);
  model::Qwen3VLModel ref(config, align);
  model::init_params(config, ref.store(), 5);
  ref.enable_bf16_matmuls();
  const model::ParamStore& rs = ref.store();

  // What the all-gathers of one round over every unit must deliver to each rank: bf16 for the
  // whole unit, and per unit the float-read elements of the fullest chunk, once per rank.
  int64_t want_bf16 = 0, want_f32 = 0, float_bytes = 0, piece_bytes = 0;
  for (const auto& u : rs.units()) {
    bool any_bf16_only = false;
    for (size_t e : u.entries) any_bf16_only |= !read_in_float(rs, e, c.tied);
    if (!any_bf16_only) {  // nothing to halve (an untied embedding, the norm): float in place
      want_f32 += (u.end - u.begin) * 4;
      continue;
    }
    want_bf16 += (u.end - u.begin) * 2;
    float_bytes += (u.end - u.begin) * 4;
    const int64_t chunk = (u.end - u.begin) / c.ranks;
    int64_t most = 0;
    for (int r = 0; r < c.ranks; ++r) {
      int64_t n = 0;
      for (size_t e : u.entries) {
        if (!read_in_float(rs, e, c.tied)) continue;
        const auto& ref_e = rs.entries()[e].ref;
        n += std::max<int64_t>(0, std::min(u.begin + chunk * (r + 1), ref_e.offset + ref_e.numel) -
                                      std::max(u.begin + chunk * r, ref_e.offset));
      }
      most = std::max(most, n);
    }
    piece_bytes += 4 * c.ranks * most;
  }
  want_f32 += piece_bytes;
  // The float-read entries are small: the units that travel as bf16 move little more than half
  // their float bytes.
  EXPECT_LT(want_bf16 + piece_bytes, 0.6 * float_bytes);
  std::printf("[zero3 bf16] bf16 units: %lld bf16 + %lld float bytes for %lld float bytes\n",
              static_cast<long long>(want_bf16), static_cast<long long>(piece_bytes),
              static_cast<long long>(float_bytes));

  testing::run_ranks(c.ranks, [&](testing::ThreadCommunicator& comm) {
    model::Qwen3VLModel m(config, align);
    model::init_params(config, m.store(), 5);
    m.enable_bf16_matmuls();
    model::ParamStore& s = m.store();
    auto dp = dist::make_sharded(s, comm, dims);
    dp->release_all();
    comm.reset_counts();
    for (size_t ui = 0; ui < s.units().size(); ++ui) {
      const auto& u = s.units()[ui];
      const dist::FlatRange own = dp->owned()[ui];
      dp->gather(static_cast<int>(ui));
      for (size_t e : u.entries) {
        const auto& entry = s.entries()[e];
        const int64_t o = entry.ref.offset, n = entry.ref.numel;
        if (s.has_bf16_copy(e)) {
          EXPECT_EQ(std::memcmp(s.value_bf16(entry.ref), rs.value_bf16(entry.ref), n * 2), 0)
              << entry.name << " rank " << comm.rank();
        }
        if (read_in_float(rs, e, c.tied)) {
          EXPECT_EQ(std::memcmp(s.value(entry.ref), rs.value(entry.ref), n * 4), 0)
              << entry.name << " rank " << comm.rank();
        } else {
          // Only bf16 travelled: the float master stays on its owner (others read zeros).
          int64_t foreign_nonzero = 0;
          for (int64_t i = o; i < o + n; ++i)
            if ((i < own.begin || i >= own.end) && s.values()[i] != 0.0f) ++foreign_nonzero;
          EXPECT_EQ(foreign_nonzero, 0) << entry.name << " rank " << comm.rank();
        }
      }
      dp->release(static_cast<int>(ui));
    }
    EXPECT_EQ(comm.gathered().bf16, want_bf16) << "rank " << comm.rank();
    EXPECT_EQ(comm.gathered().f32, want_f32) << "rank " << comm.rank();

    // A second round allocates nothing (packing buffers are sized at construction).
    comm.barrier();
    if (comm.rank() == 0) testing::start_counting_allocations();
    comm.barrier();
    for (size_t ui = 0; ui < s.units().size(); ++ui) {
      dp->gather(static_cast<int>(ui));
      dp->release(static_cast<int>(ui));
    }
    comm.barrier();
    if (comm.rank() == 0) {
      EXPECT_EQ(testing::stop_counting_allocations(), 0);
    }
    comm.barrier();

    // Saving and export still see every float master.
    dp->gather_all();
    EXPECT_EQ(std::memcmp(s.values().data(), rs.values().data(), s.total() * 4), 0);
    dp->release_all();
  });
}

INSTANTIATE_TEST_SUITE_P(Ranks, Zero3Bf16Gather,
                         ::testing::Values(GatherCase{2, false}, GatherCase{2, true},
                                           GatherCase{4, false}),
                         [](const auto& info) {
                           return std::to_string(info.param.ranks) + "_ranks" +
                                  (info.param.tied ? "_tied" : "");
                         });

}  // namespace
}  // namespace qv
