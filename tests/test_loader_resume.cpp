// Loader resume by seeking: the batches after restore() equal an uninterrupted run's at any
// point (mid-epoch, across epoch boundaries, another thread count; cc12m and OBELICS), and
// restore() re-reads only what sat in the shuffle and packing buffers instead of the epoch.
#include <gtest/gtest.h>

#include <set>

#include "core/error.h"
#include "data/pipeline/loader.h"
#include "data_test_utils.h"
#include "loader_test_utils.h"

namespace qv {
namespace {

using testing::expect_same;
using testing::small_config;
using testing::take;

// Restores at each cut point into a loader with `restored_workers` threads and compares the
// batches that follow with an uninterrupted run of `total` batches. Returns the pipeline epochs
// of the cut points, so callers can check that the cuts straddle an epoch boundary.
std::set<int64_t> expect_exact_resume(const data::LoaderConfig& c, int total,
                                      const std::vector<int>& cuts, int restored_workers) {
  data::DataLoader straight(c);
  const auto all = take(straight, total);
  std::set<int64_t> epochs;
  for (const int at : cuts) {
    data::DataLoader a(c);
    take(a, at);
    const auto state = a.state();
    EXPECT_TRUE(state.contains("pipeline")) << state.dump();
    if (!state.contains("pipeline")) continue;
    epochs.insert(state.at("pipeline").at("epoch").get<int64_t>());
    auto other = c;
    other.num_workers = restored_workers;  // the state does not depend on the thread count
    data::DataLoader b(other);
    b.restore(state);
    const auto resumed = take(b, total - at);
    for (int i = 0; i < total - at; ++i) {
      SCOPED_TRACE("restored at " + std::to_string(at) + ", batch " + std::to_string(at + i));
      expect_same(all[at + i], resumed[i]);
    }
    EXPECT_EQ(b.state().value("batches", 0), total);
  }
  return epochs;
}

TEST(LoaderResume, Cc12mSeekRestoreIsExactAtEveryCutAcrossEpochs) {
  // 12 batches of 2 rows span more than one epoch of the shard's 32 samples.
  auto c = small_config();
  c.prefetch = 1;  // less work thrown away when a loader is dropped
  const auto epochs = expect_exact_resume(c, 12, {2, 6, 10}, 3);
  EXPECT_GE(epochs.size(), 2u) << "the cuts do not straddle an epoch boundary";
}

// An OBELICS file of `n` documents, 0 to 2 images each, with a malformed row in the middle.
std::string obelics_file(const testing::TempDir& dir, int n) {
  const std::string images = testing::source_path("tests/data/obelics/images");
  std::string text;
  for (int i = 0; i < n; ++i) {
    if (i == n / 2) text += "{not json\n";
    std::string texts = "\"document " + std::to_string(i) + " says " +
                        std::string(static_cast<size_t>(i % 7) * 3 + 1, 'w') + "\"";
    std::string imgs = "null";
    for (int k = 0; k < i % 3; ++k) {
      texts += ", null";
      imgs += std::string(", \"") + images + (k ? "/blue.png\"" : "/red.png\"");
    }
    text += "{\"texts\": [" + texts + "], \"images\": [" + imgs + "]}\n";
  }
  testing::write_bytes(dir.file("docs.jsonl"), text);
  return dir.file("docs.jsonl");
}

TEST(LoaderResume, ObelicsSeekRestoreIsExactAtEveryCutAcrossEpochs) {
  testing::TempDir dir;
  auto c = small_config();
  c.dataset = "obelics";
  c.path = obelics_file(dir, 24);
  c.obelics.fetch_remote = false;
  c.seq_len = 96;
  c.prefetch = 1;
  const auto epochs = expect_exact_resume(c, 12, {1, 5, 9}, 1);
  EXPECT_GE(epochs.size(), 2u) << "the cuts do not straddle an epoch boundary";
}

TEST(LoaderResume, RestoreRebuildsOnlyTheBufferedSamples) {
  auto c = small_config();
  c.prefetch = 1;
  data::DataLoader a(c);
  const auto before = take(a, 40);
  size_t handed_docs = 0;  // what a replay would build again, at least
  for (const auto& b : before) handed_docs += b.origins.size();
  const auto state = a.state();
  const auto& pipeline = state.at("pipeline");
  int64_t buffered = static_cast<int64_t>(pipeline.at("packer").at("buffer").size());
  for (const auto& row : pipeline.at("packer").at("ready"))
    buffered += static_cast<int64_t>(row.size());

  data::DataLoader b(c);
  b.restore(state);
  expect_same(b.next(), a.next());
  // Built since restore(): the packer's samples, then at most what the producer needs for the
  // batch handed out, the one queued (prefetch 1) and the one it waits to queue: each batch is
  // 2 rows of at most seq_len / 8 documents (every sample has more than 8 tokens), plus what
  // refills the packing buffer and one chunk of 4 per worker.
  const int64_t bound =
      buffered + 3 * 2 * (c.seq_len / 8) + c.packing_buffer_size + 4 * c.num_workers;
  EXPECT_GT(b.samples_built(), buffered);
  EXPECT_LE(b.samples_built(), bound);
  EXPECT_LT(b.samples_built(), static_cast<int64_t>(handed_docs)) << "no cheaper than a replay";
}

TEST(LoaderResume, SkipCountsContinueFromTheSavedOnes) {
  auto c = small_config();
  c.max_tokens_per_sample = 30;
  c.truncate_long_samples = false;  // long captions become counted skips
  data::DataLoader a(c);
  take(a, 4);
  const auto state = a.state();
  const int64_t skipped = state.at("pipeline").at("skips").value("too many tokens", int64_t{0});
  ASSERT_GT(skipped, 0);
  data::DataLoader b(c);
  b.restore(state);
  const auto rest_a = take(a, 2), rest_b = take(b, 2);
  for (int i = 0; i < 2; ++i) expect_same(rest_a[i], rest_b[i]);
  // Neither restarted from zero nor doubled by re-reading the buffers. (The live counts run
  // ahead with the producer; the state's are those as of the last batch handed out.)
  EXPECT_GE(b.skips().count("too many tokens"), skipped);
  EXPECT_EQ(b.state().at("pipeline").at("skips"), a.state().at("pipeline").at("skips"));
}

TEST(LoaderResume, StateWithoutPipelineOrOfAnotherRankIsReplayed) {
  // One shard, two ranks: each rank takes every other sample of it.
  auto c0 = small_config(), c1 = small_config();
  c0.world_size = c1.world_size = 2;
  c1.rank = 1;
  data::DataLoader r0(c0), r1(c1);
  take(r0, 3);
  take(r1, 3);
  const auto rest1 = take(r1, 2);
  auto old_state = r0.state();
  old_state.erase("pipeline");  // as written before resume by seeking existed
  // A multi-rank checkpoint holds rank 0's state; rank 1 must not continue rank 0's stream.
  for (const auto& state : {old_state, r0.state()}) {
    data::DataLoader b(c1);
    b.restore(state);
    const auto resumed = take(b, 2);
    for (int i = 0; i < 2; ++i) expect_same(rest1[i], resumed[i]);
  }
}

// When the rank count changed since a checkpoint, a rank starts an epoch from its beginning over
// its new share: deterministic (two restarts agree), labelled with that epoch, and not the
// order of epoch 0 (each epoch is shuffled with its own seed).
TEST(LoaderResume, RestartAtEpochIsDeterministicAndStartsThatEpoch) {
  auto c = small_config();
  c.world_size = 2;  // 16 of the shard's 32 samples per epoch: the first batch stays in it
  c.rank = 1;
  data::DataLoader a(c), b(c), fresh(c);
  a.restart_at_epoch(2);
  b.restart_at_epoch(2);
  const auto first = take(a, 1);
  EXPECT_EQ(a.state().at("pipeline").at("epoch"), 2);  // the state after that batch
  const auto from_a = take(a, 1), from_b = take(b, 2), epoch0 = take(fresh, 2);
  expect_same(first[0], from_b[0]);
  expect_same(from_a[0], from_b[1]);
  EXPECT_NE(first[0].origins, epoch0[0].origins);
  EXPECT_EQ(a.state().at("rank"), 1);
  EXPECT_EQ(a.state().at("world"), 2);
  EXPECT_THROW(a.restart_at_epoch(-1), Error);
}

TEST(LoaderResume, ChangedDataIsAnErrorNotOtherBatches) {
  data::DataLoader a(small_config());
  take(a, 1);  // early, so that the shuffle buffer is full
  auto state = a.state();
  auto& buffered = state.at("pipeline").at("stream").at("buffer");
  ASSERT_FALSE(buffered.empty());
  buffered[0][4] = buffered[0][4].get<uint32_t>() ^ 1u;  // as if another sample were there now
  data::DataLoader b(small_config());
  b.restore(state);
  try {
    b.next();
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("did the data change"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace qv
