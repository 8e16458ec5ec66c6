// The training step's compute (forward, backward, optimizer) allocates nothing from the heap once
// a step of the same shape has run: activations and kernel scratch come from the activation arena
// (core/buffer_pool.h), and the arena itself stops asking the system for memory.
#include <gtest/gtest.h>
#include <omp.h>

#include "alloc_counter.h"
#include "core/buffer_pool.h"
#include "kernels/cpu/gemm.h"
#include "model/qwen3vl.h"
#include "model_test_utils.h"
#include "train/adamw.h"

namespace qv {
namespace {

// Two rows: one packed with an image block and a text document, one right-padded with a
// two-frame video, so every path of the step (vision towers, DeepStack, documents, padding) runs.
model::ModelInputs mixed_batch(const model::ModelConfig& c) {
  const int64_t unit = c.vision.merge_unit();
  model::ModelInputs in;
  in.batch = 2;
  in.seq = 40;
  std::vector<int64_t> row0 = {5, 6};
  testing::append_vision(row0, c, 16 / unit);  // image grid [1, 4, 4]
  while (row0.size() < 26) row0.push_back(7 + row0.size() % 50);
  std::vector<int64_t> doc(26, 0);
  while (row0.size() < 40) {
    row0.push_back(9 + row0.size() % 40);
    doc.push_back(1);
  }
  std::vector<int64_t> row1 = {11};
  testing::append_vision(row1, c, 2 * 16 / unit, /*video=*/true);  // video grid [2, 4, 4]
  while (row1.size() < 30) row1.push_back(13 + row1.size() % 30);
  std::vector<int64_t> mask1(30, 1);
  while (row1.size() < 40) {
    row1.push_back(0);
    mask1.push_back(0);
  }
  in.input_ids = row0;
  in.input_ids.insert(in.input_ids.end(), row1.begin(), row1.end());
  in.labels = in.input_ids;
  for (int64_t i = 0; i < in.tokens(); ++i)
    if (in.input_ids[i] == c.image_token_id || in.input_ids[i] == c.video_token_id)
      in.labels[i] = -100;
  in.document_ids = doc;
  for (int64_t i = 0; i < 40; ++i) in.document_ids.push_back(2);
  in.attention_mask.assign(40, 1);
  in.attention_mask.insert(in.attention_mask.end(), mask1.begin(), mask1.end());
  in.image_grids = {{1, 4, 4}};
  in.pixel_values = testing::random_pixels(16, c.vision.patch_dim(), 1);
  in.video_grids = {{2, 4, 4}};
  in.pixel_values_videos = testing::random_pixels(32, c.vision.patch_dim(), 2);
  return in;
}

class NoAllocation : public ::testing::TestWithParam<const char*> {};

TEST_P(NoAllocation, StepsAfterTheFirstDoNotTouchTheHeap) {
  // "[moe/]MODE" or "[moe/]MODE+bf16": activation checkpointing mode, and bf16 mixed precision;
  // moe/: every decoder layer a sparse MoE block (4 experts, 2 per token).
  std::string param = GetParam();
  const bool moe = param.rfind("moe/", 0) == 0;
  if (moe) param = param.substr(4);
  model::ModelConfig config = testing::tiny_config();
  if (moe) {
    config.text.num_experts = 4;
    config.text.num_experts_per_tok = 2;
    config.text.moe_intermediate_size = 24;
    config.text.decoder_sparse_step = 1;
  }
  // The experts' small products (a few rows each) make oneDNN's threaded sgemm allocate its
  // own scratch inside dnnl_sgemm (QV_TRACE_ALLOCATIONS shows it; 2 calls per step here with 2
  // threads). One thread keeps the count about our code: the MoE block and router statistics.
  const int threads = omp_get_max_threads();
  if (moe) omp_set_num_threads(1);
  struct RestoreThreads {
    int n;
    ~RestoreThreads() { omp_set_num_threads(n); }
  } restore{threads};
  model::Qwen3VLModel model(config);
  model::init_params(config, model.store(), 3);
  const bool bf16 = param.size() > 5 && param.substr(param.size() - 5) == "+bf16";
  if (bf16) model.enable_bf16_matmuls();
  const model::ModelInputs in = mixed_batch(config);
  train::AdamW adamw({}, {{0, model.store().total()}}, {{0, model.store().total()}});
  if (bf16) adamw.write_bf16_copies(model.store().values_bf16().data(), {1});
  const std::vector<uint8_t> active = {1};
  model::ForwardOptions opt;
  opt.backward = true;
  opt.checkpointing =
      model::Checkpointing::parse(bf16 ? param.substr(0, param.size() - 5) : param, "2");
  opt.classifier_chunk = 16;  // several classifier chunks per step
  auto step = [&] {
    model.store().zero_grads();
    const double loss = model.forward(in, opt).loss;
    model.backward();
    adamw.step(model.store().values().data(), model.store().grads().data(), active, 1e-3);
    BufferPool::instance().end_step();
    return loss;
  };
  const double first = step();
  const int64_t system_before = BufferPool::instance().stats().system_allocations;
  double later = 0;
  int64_t news[3], built[3], executed[3];
  for (int i = 0; i < 3; ++i) {
    const auto before = kernels::cpu::bf16_matmul_stats();
    testing::start_counting_allocations();
    later = step();
    news[i] = testing::stop_counting_allocations();
    const auto after = kernels::cpu::bf16_matmul_stats();
    built[i] = after.built - before.built;
    executed[i] = after.executed - before.executed;
  }
  // oneDNN's bf16 matmul builds its argument bookkeeping on the heap at every execution (inside
  // the library, freed before it returns); the counter leaves those out
  // (kernels::cpu::in_bf16_matmul_execution). Everything else counts, and so does any primitive
  // built after the first step: with MoE the experts' row counts move with the routing, and
  // their products must stay on the shapes built in the first step (kernels/cpu/moe.cpp).
  if (bf16)
    std::printf("[no-alloc bf16] bf16 products per step: %lld %lld %lld\n",
                static_cast<long long>(executed[0]), static_cast<long long>(executed[1]),
                static_cast<long long>(executed[2]));
  EXPECT_EQ(news[0] + news[1] + news[2], 0)
      << "operator new calls in 3 steps after the first (QV_TRACE_ALLOCATIONS=5 prints their "
         "stacks)";
  EXPECT_EQ(built[0] + built[1] + built[2], 0) << "bf16 matmul primitives built after step 1";
  EXPECT_EQ(BufferPool::instance().stats().system_allocations, system_before)
      << "the arena asked the system for more memory after the first step";
  // The steps did train (the optimizer moved the loss), so the count covers real work.
  EXPECT_TRUE(std::isfinite(first) && std::isfinite(later));
  EXPECT_NE(first, later);
}

INSTANTIATE_TEST_SUITE_P(ActivationCheckpoint, NoAllocation,
                         ::testing::Values("none", "selective", "full", "none+bf16", "full+bf16",
                                           "moe/none", "moe/full", "moe/none+bf16",
                                           "moe/full+bf16"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& ch : n)
                             if (ch == '/' || ch == '+') ch = '_';
                           return n;
                         });

TEST(NoAllocation, CounterSeesAllocations) {
  // The proof above is only as good as the counter: it must see an ordinary allocation.
  static std::vector<int>* volatile escape = nullptr;
  testing::start_counting_allocations();
  escape = new std::vector<int>(100);
  const int64_t count = testing::stop_counting_allocations();
  delete escape;
  EXPECT_EQ(count, 2);  // the vector object and its storage
}

}  // namespace
}  // namespace qv
