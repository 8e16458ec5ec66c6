// ZeRO-3 under bf16 mixed precision, with ranks as threads (tests/thread_comm.h): a unit
// gathered for compute travels as bf16 (its byte count, through the communicator, is the bf16
// size of the unit) plus the float values of just the entries the model reads in float (norm
// weights, biases); a unit with nothing read only in bf16 (an untied embedding, the final norm)
// travels in float when gathered whole; what arrives equals one process's bf16 copies and float
// values bit for bit; the float masters of the other entries stay sharded; a gather / release
// round after the first allocates nothing. The embedding's lookup gathers only the union of the
// ranks' rows (gather_rows), in float, in any precision, tied or not; a training forward and
// backward under 2 thread ranks moves exactly the whole-embedding bytes less than it would
// without that, and computes the same loss as one process on each rank's rows.
// tests/test_train_dist.cpp's zero3_bf16 cases train the same way under mpirun against one process.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <vector>

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

// Entries a whole-unit gather brings in float, by the test's own rule: those without a bf16 copy.
// A tied embedding travels as bf16 alone: its lookup asks for its float rows with gather_rows
// (tested below), the classifier reads its bf16 copy.
bool read_in_float(const model::ParamStore& s, size_t i, bool /*tied*/) {
  return !s.has_bf16_copy(i);
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

// gather_rows ----------------------------------------------------------------------------------

// hidden_size 40 makes the embedding's rows straddle the shards' chunk boundaries.
model::ModelConfig rows_config(bool tied) {
  model::ModelConfig c = testing::tiny_config();
  c.text.hidden_size = 40;
  c.vision.out_hidden_size = 40;
  c.tie_word_embeddings = tied;
  return c;
}

struct RowsCase {
  int ranks;
  bool tied, bf16;
};

class Zero3GatherRows : public ::testing::TestWithParam<RowsCase> {};

// Rank r asks for these rows (repeats included): some shared, some its own, two across a chunk
// boundary (with 2 ranks the chunk ends inside row 76).
std::vector<int64_t> rows_of_rank(int r) {
  return {3, 3, 17 + r, 50 + 2 * r, 127 - r, 76, 77, 3};
}

TEST_P(Zero3GatherRows, BringsTheUnionOfTheRanksRowsInFloatAndNothingElse) {
  const RowsCase c = GetParam();
  const model::ModelConfig config = rows_config(c.tied);
  const dist::ParallelDims dims{1, c.ranks};
  const int64_t align = dist::unit_alignment(dims);
  model::Qwen3VLModel ref(config, align);
  model::init_params(config, ref.store(), 5);
  if (c.bf16) ref.enable_bf16_matmuls();
  const model::ParamStore& rs = ref.store();
  const model::ParamEntry& table = *rs.find("model.language_model.embed_tokens.weight");
  const int64_t V = config.text.vocab_size, H = config.text.hidden_size;
  int unit = -1;
  for (size_t u = 0; u < rs.units().size(); ++u)
    if (rs.units()[u].begin <= table.ref.offset && table.ref.offset < rs.units()[u].end)
      unit = static_cast<int>(u);
  ASSERT_GE(unit, 0);

  // Expected: the union of the rows; each rank packs its chunk's elements of them, the fullest
  // rank sets the block size, every rank receives ranks blocks of floats.
  std::vector<uint8_t> in_union(V, 0);
  for (int r = 0; r < c.ranks; ++r)
    for (int64_t id : rows_of_rank(r)) in_union[id] = 1;
  const auto& u = rs.units()[unit];
  const int64_t chunk = (u.end - u.begin) / c.ranks;
  int64_t most = 0;
  for (int k = 0; k < c.ranks; ++k) {
    int64_t n = 0;
    for (int64_t v = 0; v < V; ++v) {
      if (!in_union[v]) continue;
      const int64_t b = table.ref.offset + v * H;
      n += std::max<int64_t>(
          0, std::min(b + H, u.begin + chunk * (k + 1)) - std::max(b, u.begin + chunk * k));
    }
    most = std::max(most, n);
  }
  ASSERT_GT(most, 0);
  const int64_t want_f32 = c.ranks * most * 4;
  std::printf("[gather_rows] %d ranks: %lld bytes for the rows, %lld for the whole table\n",
              c.ranks, static_cast<long long>(want_f32),
              static_cast<long long>((u.end - u.begin) * 4));

  testing::run_ranks(c.ranks, [&](testing::ThreadCommunicator& comm) {
    model::Qwen3VLModel m(config, align);
    model::init_params(config, m.store(), 5);
    if (c.bf16) m.enable_bf16_matmuls();
    model::ParamStore& s = m.store();
    auto dp = dist::make_sharded(s, comm, dims);
    dp->release_all();
    const dist::FlatRange own = dp->owned()[unit];
    const std::vector<int64_t> ids = rows_of_rank(comm.rank());
    for (int round = 0; round < 2; ++round) {
      comm.reset_counts();
      comm.barrier();
      if (round == 1 && comm.rank() == 0) testing::start_counting_allocations();
      comm.barrier();
      dp->gather_rows(unit, table.ref.offset, V, H, ids.data(), static_cast<int64_t>(ids.size()));
      comm.barrier();
      if (round == 1 && comm.rank() == 0) {
        // The packing buffers were sized by the first round.
        EXPECT_EQ(testing::stop_counting_allocations(), 0);
      }
      EXPECT_EQ(comm.gathered().f32, want_f32) << "rank " << comm.rank();
      EXPECT_EQ(comm.gathered().bf16, 0) << "rank " << comm.rank();
      EXPECT_EQ(dp->gathered_bytes().rows, want_f32 * (round + 1)) << "rank " << comm.rank();
      for (int64_t v = 0; v < V; ++v) {
        const int64_t b = table.ref.offset + v * H;
        if (in_union[v]) {
          EXPECT_EQ(std::memcmp(s.values().data() + b, rs.values().data() + b, H * 4), 0)
              << "row " << v << " rank " << comm.rank();
          continue;
        }
        int64_t foreign_nonzero = 0;
        for (int64_t i = b; i < b + H; ++i)
          if ((i < own.begin || i >= own.end) && s.values()[i] != 0.0f) ++foreign_nonzero;
        EXPECT_EQ(foreign_nonzero, 0) << "row " << v << " (not asked for) rank " << comm.rank();
      }
      dp->release(unit);
    }
    // A whole-unit gather after the rows (the tied classifier's) still brings everything it
    // brings without them.
    dp->gather_rows(unit, table.ref.offset, V, H, ids.data(), static_cast<int64_t>(ids.size()));
    dp->gather(unit);
    if (c.bf16 && c.tied)
      EXPECT_EQ(std::memcmp(s.value_bf16(table.ref), rs.value_bf16(table.ref), V * H * 2), 0);
    else
      EXPECT_EQ(std::memcmp(s.value(table.ref), rs.value(table.ref), V * H * 4), 0);
    dp->release(unit);
  });
}

INSTANTIATE_TEST_SUITE_P(Ranks, Zero3GatherRows,
                         ::testing::Values(RowsCase{2, false, true}, RowsCase{2, true, true},
                                           RowsCase{4, false, true}, RowsCase{2, false, false},
                                           RowsCase{4, true, false}),
                         [](const auto& info) {
                           return std::to_string(info.param.ranks) + "_ranks" +
                                  (info.param.tied ? "_tied" : "") +
                                  (info.param.bf16 ? "_bf16" : "_f32");
                         });

// The gather_rows hook turned back into a whole-unit gather (what the model did before it
// asked for rows).
class WholeUnitHooks final : public model::UnitHooks {
 public:
  explicit WholeUnitHooks(model::UnitHooks& dp) : dp_(dp) {}
  void gather(int u) override { dp_.gather(u); }
  void release(int u) override { dp_.release(u); }
  void grads_ready(int u) override { dp_.grads_ready(u); }

 private:
  model::UnitHooks& dp_;
};

// Rank r's batch: one text row of 12 tokens.
model::ModelInputs text_row(int r) {
  model::ModelInputs in;
  in.batch = 1;
  in.seq = 12;
  for (int64_t i = 0; i < in.seq; ++i) in.input_ids.push_back((r * 37 + i * 11) % 100);
  in.labels = in.input_ids;
  return in;
}

double one_process_loss(const model::ModelConfig& config, int64_t align,
                        const model::ModelInputs& in) {
  model::Qwen3VLModel m(config, align);
  model::init_params(config, m.store(), 5);
  m.enable_bf16_matmuls();
  model::ForwardOptions o;
  o.backward = true;
  return m.forward(in, o).loss;
}

// A training pass (untied, bf16) on 2 thread ranks: the embedding's rows cost the union's rows,
// the whole-unit gather the table's float bytes; all else travels alike; the losses equal one
// process's on each rank's row.
TEST(Zero3GatherRows, ATrainingPassMovesTheRowsInsteadOfTheTable) {
  const model::ModelConfig config = rows_config(false);
  const dist::ParallelDims dims{1, 2};
  const int64_t align = dist::unit_alignment(dims);
  const double want_loss[2] = {one_process_loss(config, align, text_row(0)),
                               one_process_loss(config, align, text_row(1))};
  testing::run_ranks(2, [&](testing::ThreadCommunicator& comm) {
    model::Qwen3VLModel m(config, align);
    model::init_params(config, m.store(), 5);
    m.enable_bf16_matmuls();
    auto dp = dist::make_sharded(m.store(), comm, dims);
    dp->release_all();
    WholeUnitHooks whole(*dp);
    int64_t f32[2], bf16[2], rows[2];
    for (int pass = 0; pass < 2; ++pass) {  // 0: gather_rows, 1: the whole unit
      m.set_unit_hooks(pass == 0 ? static_cast<model::UnitHooks*>(dp.get()) : &whole);
      comm.reset_counts();
      const int64_t rows_before = dp->gathered_bytes().rows;
      dp->begin_step();
      model::ForwardOptions o;
      o.backward = true;
      const double loss = m.forward(text_row(comm.rank()), o).loss;
      m.backward();
      EXPECT_EQ(loss, want_loss[comm.rank()]) << "pass " << pass << " rank " << comm.rank();
      f32[pass] = comm.gathered().f32;
      bf16[pass] = comm.gathered().bf16;
      rows[pass] = dp->gathered_bytes().rows - rows_before;
    }
    const model::ParamEntry& table = *m.store().find("model.language_model.embed_tokens.weight");
    int64_t table_unit_bytes = 0;
    for (const auto& u : m.store().units())
      if (u.begin <= table.ref.offset && table.ref.offset < u.end)
        table_unit_bytes = (u.end - u.begin) * 4;
    EXPECT_GT(rows[0], 0);
    EXPECT_EQ(rows[1], 0);
    EXPECT_EQ(bf16[0], bf16[1]);
    EXPECT_EQ(f32[1] - f32[0], table_unit_bytes - rows[0]) << "rank " << comm.rank();
  });
}

}  // namespace
}  // namespace qv
