// Memory follows the device (issue #12): the parameter store's pages, the activation arena's
// blocks and tensors come from the Allocator registered for the device they are made for. A
// RecordingAllocator (device_test_utils.h) stands in for the CPU allocator to see every block
// a model and its training step take, and for the CUDA one to place buffers "on a GPU" on a
// machine without one (its memory is host memory, only never read through such a scope).
#include <gtest/gtest.h>

#include <vector>

#include "core/allocator.h"
#include "core/buffer_pool.h"
#include "core/device.h"
#include "core/error.h"
#include "core/page_buffer.h"
#include "core/tensor.h"
#include "device_test_utils.h"
#include "model/params.h"
#include "model/qwen3vl.h"
#include "model_test_utils.h"
#include "train/trainer.h"
#include "train_test_utils.h"

namespace qv {
namespace {

using testing::RecordingAllocator;

constexpr Device kGpu1{DeviceKind::kCuda, 1};

TEST(DeviceMemory, RegisteringReturnsThePreviousAllocatorAndRestores) {
  RecordingAllocator rec(kCpuDevice);
  {
    RecordingAllocator::Scope scope(DeviceKind::kCpu, rec);
    EXPECT_EQ(&allocator_for(kCpuDevice), &rec);
  }
  EXPECT_EQ(&allocator_for(kCpuDevice), &cpu_allocator());
}

TEST(DeviceMemory, CpuPagesAreZeroAlignedAndReleasable) {
  Allocator& a = cpu_allocator();
  const size_t page = page_bytes();
  auto* p = static_cast<float*>(a.allocate_pages(4 * page));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % page, 0u);
  const size_t per_page = page / sizeof(float);
  for (size_t i = 0; i < 4 * per_page; ++i) ASSERT_EQ(p[i], 0.0f);
  for (size_t i = 0; i < 4 * per_page; ++i) p[i] = 1.0f;
  a.release_pages(p + per_page, 2 * page);  // pages 1 and 2 read as zeros again
  EXPECT_EQ(p[per_page - 1], 1.0f);
  EXPECT_EQ(p[per_page], 0.0f);
  EXPECT_EQ(p[3 * per_page - 1], 0.0f);
  EXPECT_EQ(p[3 * per_page], 1.0f);
  a.deallocate_pages(p, 4 * page);
}

// The parameter store and the arena of a model built on the CPU draw from the CPU's allocator,
// and a training step's activations all come from the arena's blocks of that allocator.
TEST(DeviceMemory, AModelAndItsStepAllocateFromItsDevicesAllocator) {
  BufferPool::of(kCpuDevice).release_cached();  // blocks cached so far came from elsewhere
  RecordingAllocator rec(kCpuDevice);
  RecordingAllocator::Scope scope(DeviceKind::kCpu, rec);
  const model::ModelConfig config = testing::tiny_config();
  model::Qwen3VLModel model(config);
  EXPECT_TRUE(model.device().is_cpu());
  model::init_params(config, model.store(), 1);
  model.enable_bf16_matmuls();
  const model::ParamStore& s = model.store();
  const size_t bytes = static_cast<size_t>(s.total()) * sizeof(float);
  EXPECT_TRUE(rec.owns(s.values().data(), bytes, /*pages=*/true));
  EXPECT_TRUE(rec.owns(s.grads().data(), bytes, true));
  EXPECT_TRUE(rec.owns(model.store().values_bf16().data(), bytes / 2, true));
  EXPECT_EQ(rec.page_allocations(), 3);

  model::ModelInputs in;
  in.batch = 1;
  in.seq = 12;
  for (int64_t i = 0; i < in.seq; ++i) in.input_ids.push_back(5 + i);
  testing::append_vision(in.input_ids, config, 4);
  in.seq = static_cast<int64_t>(in.input_ids.size());
  in.labels = in.input_ids;
  in.image_grids = {{1, 4, 4}};
  in.pixel_values = testing::random_pixels(16, config.vision.patch_dim(), 1);
  const int64_t system_before = BufferPool::of(kCpuDevice).stats().system_allocations;
  const int64_t blocks_before = rec.block_allocations();
  model::ForwardOptions opt;
  opt.backward = true;
  EXPECT_TRUE(std::isfinite(model.forward(in, opt).loss));
  model.backward();
  const int64_t system = BufferPool::of(kCpuDevice).stats().system_allocations - system_before;
  EXPECT_GT(system, 0);
  // Every block the arena asked for during the step is one the registered allocator handed out.
  EXPECT_EQ(rec.block_allocations() - blocks_before, system);
  BufferPool::of(kCpuDevice).release_cached();  // give the blocks back while rec is registered
}

// The trainer's placement, checked on the CPU (issue #18): with a recording allocator standing
// in for the CPU's, a training job's parameters, gradients, bf16 copies, optimizer moments and
// every activation block of its steps come from the allocator of the model's device. On a GPU
// the same code takes them from the CUDA allocator.
TEST(DeviceMemory, TrainingTakesModelAndOptimizerMemoryFromTheDevicesAllocator) {
  BufferPool::of(kCpuDevice).release_cached();
  RecordingAllocator rec(kCpuDevice);
  RecordingAllocator::Scope scope(DeviceKind::kCpu, rec);
  const std::string dump = testing::fresh_dir("device_memory", "trainer");
  auto config = train::JobConfig::load(
      testing::fixed_batch_config("hf-tiny-text", dump, 2, 100),
      {{"checkpoint.enable", "false"}, {"training.mixed_precision_param", "bfloat16"}});
  auto model = train::build_model(config);
  train::Trainer trainer(config, std::move(model), train::make_fixed_source(config.dataset_path),
                         dist::make_local_communicator());
  const int64_t arena_before = BufferPool::of(kCpuDevice).stats().system_allocations;
  const int64_t blocks_before = rec.block_allocations();
  const auto history = trainer.run();
  ASSERT_EQ(history.size(), 2u);
  EXPECT_TRUE(std::isfinite(history.back().loss));

  const model::ParamStore& s = trainer.model().store();
  const size_t bytes = static_cast<size_t>(s.total()) * sizeof(float);
  EXPECT_TRUE(rec.owns(s.values().data(), bytes, /*pages=*/true));
  EXPECT_TRUE(rec.owns(s.grads().data(), bytes, true));
  ASSERT_TRUE(s.has_bf16_copies());
  EXPECT_TRUE(rec.owns(trainer.model().store().values_bf16().data(), bytes / 2, true));
  train::AdamW& opt = trainer.optimizer();
  const size_t moments = static_cast<size_t>(opt.exp_avg().size()) * sizeof(float);
  EXPECT_GT(moments, 0u);
  EXPECT_TRUE(rec.owns(opt.exp_avg().data(), moments, true));
  EXPECT_TRUE(rec.owns(opt.exp_avg_sq().data(), moments, true));
  // The steps' activations came from the arena, whose blocks all came from `rec`.
  const int64_t arena = BufferPool::of(kCpuDevice).stats().system_allocations - arena_before;
  EXPECT_GT(arena, 0);
  EXPECT_GE(rec.block_allocations() - blocks_before, arena);
  BufferPool::of(kCpuDevice).release_cached();
  EXPECT_EQ(rec.foreign_frees(), 0) << "the arena held a block of another allocator";
}

// Host code reaches a parameter through copies (write_value / read_value), which on the CPU are
// plain copies of exactly the parameter's elements.
TEST(DeviceMemory, ParameterValuesGoInAndOutThroughCopies) {
  model::ParamStore store;
  const model::ParamRef a = store.add("a", {3, 5});
  const model::ParamRef b = store.add("b", {7});
  store.allocate();
  std::vector<float> in(15), out(15, -1.0f);
  for (size_t i = 0; i < in.size(); ++i) in[i] = 0.5f * static_cast<float>(i);
  store.write_value(a, in.data(), 15);
  store.read_value(a, out.data(), 15);
  EXPECT_EQ(out, in);
  std::vector<float> b_out(7, -1.0f);
  store.read_value(b, b_out.data(), 7);
  EXPECT_EQ(b_out, std::vector<float>(7, 0.0f));  // the neighbour is untouched
  EXPECT_THROW(store.write_value(a, in.data(), 14), Error);
}

// ZeRO-3's release of other ranks' shards reaches the device's allocator as whole pages.
TEST(DeviceMemory, DiscardedPagesGoThroughTheAllocator) {
  RecordingAllocator rec(kCpuDevice);
  RecordingAllocator::Scope scope(DeviceKind::kCpu, rec);
  const int64_t pp = PageBuffer::per_page();
  PageBuffer buf(4 * pp);
  for (int64_t i = 0; i < buf.size(); ++i) buf[i] = 2.0f;
  buf.discard_inside(pp / 2, 2 * pp + pp / 2);  // whole pages inside: [pp, 3 pp)
  EXPECT_EQ(rec.page_releases(), 1);
  EXPECT_EQ(rec.released_bytes(), 2 * pp * static_cast<int64_t>(sizeof(float)));
  EXPECT_EQ(buf[pp - 1], 2.0f);
  EXPECT_EQ(buf[pp], 0.0f);
  EXPECT_EQ(buf[3 * pp], 2.0f);
}

// A stand-in registered for CUDA: what is made under a cuda:1 scope lands in its allocator and
// in cuda:1's own arena, never in the CPU's; objects with owning members stay on the host.
TEST(DeviceMemory, BuffersMadeUnderADeviceScopeLiveOnThatDevice) {
  RecordingAllocator gpu(kGpu1);
  RecordingAllocator::Scope scope(DeviceKind::kCuda, gpu);
  const BufferPoolStats cpu_before = BufferPool::of(kCpuDevice).stats();
  {
    DeviceScope on_gpu(kGpu1);
    PoolVector<float> v;
    EXPECT_EQ(v.get_allocator().device, kGpu1);
    v.reserve(1000);
    EXPECT_TRUE(gpu.owns(v.data(), 1000 * sizeof(float)));
    EXPECT_EQ(BufferPool::of(kGpu1).stats().in_use_bytes,
              static_cast<int64_t>(BufferPool::class_bytes(4000)));
    PoolVector<float> moved = std::move(v);  // the device travels with the memory
    EXPECT_EQ(moved.get_allocator().device, kGpu1);
    PoolVector<std::vector<int>> host_objects;  // owning members: always on the host
    EXPECT_TRUE(host_objects.get_allocator().device.is_cpu());

    model::ParamStore store;
    EXPECT_EQ(store.device(), kGpu1);
    store.add("w", {64, 64});
    store.allocate();
    EXPECT_TRUE(gpu.owns(store.values().data(), 64 * 64 * sizeof(float), true));
    EXPECT_TRUE(gpu.owns(store.grads().data(), 64 * 64 * sizeof(float), true));

    const Tensor t(DType::kF32, {8, 8}, kGpu1);
    EXPECT_EQ(t.device(), kGpu1);
    EXPECT_TRUE(gpu.owns(t.raw(), t.nbytes()));
  }
  // A freed block went back to cuda:1's arena, which reuses it and returns it to its allocator.
  EXPECT_EQ(BufferPool::of(kGpu1).stats().in_use_bytes, 0);
  EXPECT_GT(BufferPool::of(kGpu1).stats().cached_bytes, 0);
  BufferPool::of(kGpu1).release_cached();
  EXPECT_EQ(gpu.live_blocks(), 0);
  EXPECT_EQ(BufferPool::of(kCpuDevice).stats().system_allocations, cpu_before.system_allocations);
}

// The device arena keeps its free list on the host (it never writes into a cached block), and
// reuses blocks by size class as the host arena does.
TEST(DeviceMemory, TheDeviceArenaReusesBlocks) {
  RecordingAllocator gpu(kGpu1);
  RecordingAllocator::Scope scope(DeviceKind::kCuda, gpu);
  BufferPool& pool = BufferPool::of(kGpu1);
  const int64_t reuses = pool.stats().reuses;
  void* a = pool.allocate(3000);
  pool.deallocate(a, 3000);
  void* b = pool.allocate(2990);  // same size class (3072 bytes)
  EXPECT_EQ(a, b);
  EXPECT_EQ(pool.stats().reuses, reuses + 1);
  pool.deallocate(b, 2990);
  pool.release_cached();
  EXPECT_EQ(gpu.live_blocks(), 0);
}

}  // namespace
}  // namespace qv
