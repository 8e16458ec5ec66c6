// The activation arena's allocator: size classes, reuse, trimming between steps, threads.
#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "core/buffer_pool.h"

namespace qv {
namespace {

TEST(BufferPool, ClassesCoverTheRequestWithLittleWaste) {
  size_t previous = 0;
  for (size_t bytes = 1; bytes < (size_t{1} << 32); bytes = bytes * 9 / 8 + 1) {
    const size_t c = BufferPool::class_bytes(bytes);
    EXPECT_GE(c, bytes);
    EXPECT_LE(c, std::max<size_t>(64, bytes + bytes / 16)) << bytes;
    EXPECT_GE(c, previous) << "classes must grow with the request";
    EXPECT_EQ(BufferPool::class_bytes(c), c) << "a class size is its own class";
    previous = c;
  }
}

TEST(BufferPool, FreedBlockIsReusedWithoutAskingTheSystem) {
  BufferPool& pool = BufferPool::instance();
  void* a = pool.allocate(100000);
  pool.deallocate(a, 100000);
  const int64_t before = pool.stats().system_allocations;
  void* b = pool.allocate(99000);  // same class
  EXPECT_EQ(a, b);
  EXPECT_EQ(pool.stats().system_allocations, before);
  pool.deallocate(b, 99000);
}

TEST(BufferPool, EndStepReturnsBlocksAStepDidNotNeed) {
  BufferPool& pool = BufferPool::instance();
  const size_t bytes = 3 << 20;
  pool.release_cached();
  void* blocks[3];
  for (void*& p : blocks) p = pool.allocate(bytes);
  for (void* p : blocks) pool.deallocate(p, bytes);
  pool.end_step();  // the step that made them needed all three: all stay
  const int64_t cached = pool.stats().cached_bytes;
  EXPECT_GE(cached, static_cast<int64_t>(3 * bytes));
  void* one = pool.allocate(bytes);  // the next step needs only one
  pool.deallocate(one, bytes);
  pool.end_step();
  EXPECT_EQ(pool.stats().cached_bytes,
            cached - 2 * static_cast<int64_t>(BufferPool::class_bytes(bytes)));
  pool.release_cached();
  EXPECT_EQ(pool.stats().cached_bytes, 0);
}

TEST(BufferPool, ThreadsGetDistinctIntactBlocks) {
  auto work = [](int id) {
    for (int round = 0; round < 200; ++round) {
      PoolVector<int> v(1000 + 37 * round, id);
      for (int x : v) ASSERT_EQ(x, id);
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back(work, t);
  for (auto& t : threads) t.join();
}

}  // namespace
}  // namespace qv
