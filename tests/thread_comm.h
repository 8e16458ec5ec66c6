// A dist::Communicator whose ranks are threads of one test process, for testing the data- and
// expert-parallel strategies without mpirun: every collective publishes each rank's buffers,
// waits for all ranks, lets each rank compute its own result from the others' buffers (sums in
// rank order, so results are deterministic), and waits again before anyone may touch them.
// Each rank counts the bytes its all-gathers deliver (what the tests of ZeRO-3's traffic
// check). After construction, the first use of a split and the first all-reduce of a size,
// collectives allocate nothing. The checkpoint tests run their ranks on it too
// (tests/checkpoint_test_utils.h).
#pragma once
#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "dist/communicator.h"

namespace qv::testing {

// Bytes one rank received through all-gathers, by element type.
struct GatherBytes {
  int64_t f32 = 0, bf16 = 0;
};

class ThreadGroup {
 public:
  explicit ThreadGroup(int size)
      : children(size), size_(size), in_(size), out_(size), ints_(size) {}
  int size() const { return size_; }

  // Publishes this rank's buffers, waits for every rank, runs `work` (which may read every
  // rank's published buffers), waits again.
  template <class Work>
  void collective(int rank, const void* in, void* out, int64_t value, Work&& work) {
    in_[rank] = in;
    out_[rank] = out;
    ints_[rank] = value;
    barrier();
    work();
    barrier();
  }
  const void* in(int r) const { return in_[r]; }
  void* out(int r) const { return out_[r]; }
  int64_t value(int r) const { return ints_[r]; }

  void barrier() {
    std::unique_lock<std::mutex> lock(mu_);
    const int64_t gen = generation_;
    if (++arrived_ == size_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return generation_ != gen; });
    }
  }
  // Filled by split: the child group each rank joins (index = this group's rank).
  std::vector<std::shared_ptr<ThreadGroup>> children;

 private:
  int size_;
  std::vector<const void*> in_;
  std::vector<void*> out_;
  std::vector<int64_t> ints_;
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  int64_t generation_ = 0;
};

class ThreadCommunicator final : public dist::Communicator {
 public:
  ThreadCommunicator(std::shared_ptr<ThreadGroup> g, int rank,
                     std::shared_ptr<GatherBytes> bytes = std::make_shared<GatherBytes>())
      : g_(std::move(g)), rank_(rank), bytes_(std::move(bytes)) {}
  int rank() const override { return rank_; }
  int size() const override { return g_->size(); }
  const GatherBytes& gathered() const { return *bytes_; }
  void reset_counts() { *bytes_ = {}; }

  void all_reduce_sum(float* d, int64_t n) override { reduce<float>(d, n, false); }
  void all_reduce_sum(double* d, int64_t n) override { reduce<double>(d, n, false); }
  void all_reduce_max(double* d, int64_t n) override { reduce<double>(d, n, true); }
  void all_gather(const float* in, float* out, int64_t n) override {
    gather(in, out, n);
    bytes_->f32 += size() * n * static_cast<int64_t>(sizeof(float));
  }
  void all_gather_bf16(const bf16* in, bf16* out, int64_t n) override {
    gather(in, out, n);
    bytes_->bf16 += size() * n * static_cast<int64_t>(sizeof(bf16));
  }
  void reduce_scatter_sum(const float* in, float* out, int64_t n) override {
    g_->collective(rank_, in, out, n, [&] {
      for (int64_t i = 0; i < n; ++i) {
        float s = 0;
        for (int r = 0; r < size(); ++r) s += static_cast<const float*>(g_->in(r))[rank_ * n + i];
        out[i] = s;
      }
    });
  }
  void broadcast(float* d, int64_t n, int root) override {
    g_->collective(rank_, d, d, n, [&] {
      if (rank_ != root) std::memcpy(d, g_->in(root), n * sizeof(float));
    });
  }
  void all_to_all_v(const float* in, const int64_t* send_counts, float* out,
                    const int64_t* recv_counts) override {
    g_->collective(rank_, in, out, reinterpret_cast<int64_t>(send_counts), [&] {
      for (int r = 0, o = 0; r < size(); o += static_cast<int>(recv_counts[r]), ++r) {
        const auto* counts = reinterpret_cast<const int64_t*>(g_->value(r));
        int64_t skip = 0;
        for (int k = 0; k < rank_; ++k) skip += counts[k];
        if (recv_counts[r] > 0)  // a rank sending nothing may pass no buffer
          std::memcpy(out + o, static_cast<const float*>(g_->in(r)) + skip,
                      recv_counts[r] * sizeof(float));
      }
    });
  }
  void all_to_all(const int64_t* in, int64_t* out, int64_t n) override {
    g_->collective(rank_, in, out, n, [&] {
      for (int r = 0; r < size(); ++r)
        std::memcpy(out + r * n, static_cast<const int64_t*>(g_->in(r)) + rank_ * n,
                    n * sizeof(int64_t));
    });
  }
  void barrier() override { g_->barrier(); }
  void start_all_reduce_sum(float* d, int64_t n) override { all_reduce_sum(d, n); }
  void progress() override {}
  void wait_all() override {}

  // Ranks with the same color form a group, ranked by (key, rank); the lowest rank of a color
  // creates it. The child counts into the same GatherBytes as this rank.
  std::unique_ptr<Communicator> split(int color, int key) override {
    const int64_t packed = (static_cast<int64_t>(color) << 32) | static_cast<uint32_t>(key);
    std::shared_ptr<ThreadGroup> mine;
    int child_rank = 0;
    g_->collective(rank_, nullptr, nullptr, packed, [&] {
      int first = -1, members = 0;
      for (int r = 0; r < size(); ++r) {
        if ((g_->value(r) >> 32) != color) continue;
        if (first < 0) first = r;
        ++members;
        const int64_t k = static_cast<int32_t>(g_->value(r) & 0xffffffff);
        if (k < key || (k == key && r < rank_)) ++child_rank;
      }
      if (first == rank_) g_->children[rank_] = std::make_shared<ThreadGroup>(members);
    });
    g_->collective(rank_, nullptr, nullptr, packed, [&] {
      for (int r = 0; r < size(); ++r)
        if ((g_->value(r) >> 32) == color) {
          mine = g_->children[r];
          break;
        }
    });
    return std::make_unique<ThreadCommunicator>(mine, child_rank, bytes_);
  }

 private:
  template <typename T>
  void gather(const T* in, T* out, int64_t n) {
    g_->collective(rank_, in, out, n, [&] {
      for (int r = 0; r < size(); ++r)
        if (out + r * n != g_->in(r))  // in place: the own block is there already
          std::memcpy(out + r * n, g_->in(r), n * sizeof(T));
    });
  }
  template <typename T>
  void reduce(T* d, int64_t n, bool max) {
    // Results wait in the rank's scratch until every rank has read the inputs.
    if (reduce_scratch_.size() < n * sizeof(T)) reduce_scratch_.resize(n * sizeof(T));
    T* acc = reinterpret_cast<T*>(reduce_scratch_.data());
    g_->collective(rank_, d, d, n, [&] {
      for (int64_t i = 0; i < n; ++i) {
        T s = static_cast<const T*>(g_->in(0))[i];
        for (int r = 1; r < size(); ++r) {
          const T x = static_cast<const T*>(g_->in(r))[i];
          s = max ? std::max(s, x) : s + x;
        }
        acc[i] = s;
      }
    });
    std::copy(acc, acc + n, d);
  }
  std::shared_ptr<ThreadGroup> g_;
  int rank_;
  std::shared_ptr<GatherBytes> bytes_;
  std::vector<char> reduce_scratch_;  // grown to the largest all-reduce seen
};

using RankFn = std::function<void(ThreadCommunicator&)>;

// Runs fn(comm) on `ranks` threads, one communicator each; returns what each rank threw (null
// when it finished).
inline std::vector<std::exception_ptr> run_ranks_caught(int ranks, const RankFn& fn) {
  auto group = std::make_shared<ThreadGroup>(ranks);
  std::vector<std::exception_ptr> errors(ranks);
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r)
    threads.emplace_back([&, r] {
      try {
        ThreadCommunicator comm(group, r);
        fn(comm);
      } catch (...) {
        errors[r] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  return errors;
}

// The same; rethrows the first failure.
inline void run_ranks(int ranks, const RankFn& fn) {
  for (auto& e : run_ranks_caught(ranks, fn))
    if (e) std::rethrow_exception(e);
}

// The same; each rank's error message (empty when it finished), for tests of failures that
// every rank must report.
inline std::vector<std::string> run_ranks_errors(int ranks, const RankFn& fn) {
  std::vector<std::string> out;
  for (auto& e : run_ranks_caught(ranks, fn)) {
    out.emplace_back();
    if (!e) continue;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      out.back() = x.what();
    } catch (...) {
      out.back() = "unknown exception";
    }
  }
  return out;
}

}  // namespace qv::testing
