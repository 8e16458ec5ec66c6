// Communicator over MPI. Every collective runs under a watchdog: a collective that does not
// finish within the timeout (a dead or stalled rank) aborts the whole job with a message,
// so no rank hangs forever.
#include <mpi.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "dist/communicator.h"

namespace qv::dist {
namespace {

class Watchdog {
 public:
  explicit Watchdog(double timeout_s) : timeout_s_(timeout_s), thread_([this] { loop(); }) {}
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void begin(const char* what) {
    std::lock_guard<std::mutex> lock(mu_);
    what_ = what;
    deadline_ = std::chrono::steady_clock::now() +
                std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                    std::chrono::duration<double>(timeout_s_));
    armed_ = true;
    cv_.notify_all();
  }
  void end() {
    std::lock_guard<std::mutex> lock(mu_);
    armed_ = false;
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      if (!armed_) {
        cv_.wait(lock);
        continue;
      }
      if (cv_.wait_until(lock, deadline_) == std::cv_status::timeout && armed_ && !stop_ &&
          std::chrono::steady_clock::now() >= deadline_) {
        int rank = -1;
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        std::fprintf(stderr,
                     "qwen3vl: rank %d: collective '%s' did not complete within %.0f s (a rank "
                     "died or stalled); aborting the job\n",
                     rank, what_, timeout_s_);
        std::fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, 3);
        std::_Exit(3);
      }
    }
  }
  double timeout_s_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool armed_ = false, stop_ = false;
  const char* what_ = "";
  std::chrono::steady_clock::time_point deadline_;
  std::thread thread_;
};

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(double timeout_s) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
      owns_ = true;
    }
    // Errors abort instead of returning codes we would have to thread through every call.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    watchdog_ = std::make_unique<Watchdog>(timeout_s);
  }
  ~MpiCommunicator() override {
    watchdog_.reset();
    if (owns_) MPI_Finalize();
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void all_reduce_sum(float* d, int64_t n) override {
    chunked(
        n,
        [&](int64_t o, int c) {
          MPI_Allreduce(MPI_IN_PLACE, d + o, c, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        },
        "all_reduce");
  }
  void all_reduce_sum(double* d, int64_t n) override {
    chunked(
        n,
        [&](int64_t o, int c) {
          MPI_Allreduce(MPI_IN_PLACE, d + o, c, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        },
        "all_reduce");
  }
  void all_reduce_max(double* d, int64_t n) override {
    chunked(
        n,
        [&](int64_t o, int c) {
          MPI_Allreduce(MPI_IN_PLACE, d + o, c, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        },
        "all_reduce_max");
  }
  void all_gather(const float* in, float* out, int64_t n) override {
    QV_CHECK(n < (1ll << 31), "all_gather block too large");
    watchdog_->begin("all_gather");
    MPI_Allgather(in == out + rank_ * n ? MPI_IN_PLACE : in, static_cast<int>(n), MPI_FLOAT, out,
                  static_cast<int>(n), MPI_FLOAT, MPI_COMM_WORLD);
    watchdog_->end();
  }
  void reduce_scatter_sum(const float* in, float* out, int64_t n) override {
    QV_CHECK(n < (1ll << 31), "reduce_scatter block too large");
    watchdog_->begin("reduce_scatter");
    MPI_Reduce_scatter_block(in, out, static_cast<int>(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    watchdog_->end();
  }
  void broadcast(float* d, int64_t n, int root) override {
    chunked(
        n, [&](int64_t o, int c) { MPI_Bcast(d + o, c, MPI_FLOAT, root, MPI_COMM_WORLD); },
        "broadcast");
  }
  void barrier() override {
    watchdog_->begin("barrier");
    MPI_Barrier(MPI_COMM_WORLD);
    watchdog_->end();
  }

 private:
  template <typename F>
  void chunked(int64_t n, F f, const char* what) {
    watchdog_->begin(what);
    const int64_t kMax = 1 << 30;
    for (int64_t o = 0; o < n; o += kMax) f(o, static_cast<int>(std::min(kMax, n - o)));
    watchdog_->end();
  }
  int rank_ = 0, size_ = 1;
  bool owns_ = false;
  std::unique_ptr<Watchdog> watchdog_;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(double timeout_s) {
  return std::make_unique<MpiCommunicator>(timeout_s);
}

bool launched_under_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(v)) return true;
  return false;
}

}  // namespace qv::dist
