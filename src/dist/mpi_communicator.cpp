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
#include <vector>

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
                     "qwen3vl: rank %d: collective '%s' did not complete within %g s (a rank "
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

// MPI_Init / MPI_Finalize and the watchdog, shared by the world communicator and every
// communicator split from it, so MPI is finalized after the last of them is gone.
class MpiRuntime {
 public:
  explicit MpiRuntime(double timeout_s) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
      owns_ = true;
    }
    // Errors abort instead of returning codes we would have to thread through every call.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
    watchdog = std::make_unique<Watchdog>(timeout_s);
  }
  ~MpiRuntime() {
    watchdog.reset();
    if (owns_) MPI_Finalize();
  }
  std::unique_ptr<Watchdog> watchdog;

 private:
  bool owns_ = false;
};

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(std::shared_ptr<MpiRuntime> runtime, MPI_Comm comm)
      : runtime_(std::move(runtime)), comm_(comm), watchdog_(runtime_->watchdog.get()) {
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }
  ~MpiCommunicator() override {
    if (comm_ != MPI_COMM_WORLD) MPI_Comm_free(&comm_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void all_reduce_sum(float* d, int64_t n) override {
    chunked(
        n,
        [&](int64_t o, int c) { MPI_Allreduce(MPI_IN_PLACE, d + o, c, MPI_FLOAT, MPI_SUM, comm_); },
        "all_reduce");
  }
  void all_reduce_sum(double* d, int64_t n) override {
    chunked(
        n,
        [&](int64_t o, int c) {
          MPI_Allreduce(MPI_IN_PLACE, d + o, c, MPI_DOUBLE, MPI_SUM, comm_);
        },
        "all_reduce");
  }
  void all_reduce_max(double* d, int64_t n) override {
    chunked(
        n,
        [&](int64_t o, int c) {
          MPI_Allreduce(MPI_IN_PLACE, d + o, c, MPI_DOUBLE, MPI_MAX, comm_);
        },
        "all_reduce_max");
  }
  void all_gather(const float* in, float* out, int64_t n) override {
    QV_CHECK(n < (1ll << 31), "all_gather block too large");
    watchdog_->begin("all_gather");
    MPI_Allgather(in == out + rank_ * n ? MPI_IN_PLACE : in, static_cast<int>(n), MPI_FLOAT, out,
                  static_cast<int>(n), MPI_FLOAT, comm_);
    watchdog_->end();
  }
  void all_gather_bf16(const bf16* in, bf16* out, int64_t n) override {
    QV_CHECK(n < (1ll << 31), "all_gather block too large");
    watchdog_->begin("all_gather");
    MPI_Allgather(in == out + rank_ * n ? MPI_IN_PLACE : in, static_cast<int>(n), MPI_UINT16_T, out,
                  static_cast<int>(n), MPI_UINT16_T, comm_);
    watchdog_->end();
  }
  void reduce_scatter_sum(const float* in, float* out, int64_t n) override {
    QV_CHECK(n < (1ll << 31), "reduce_scatter block too large");
    watchdog_->begin("reduce_scatter");
    MPI_Reduce_scatter_block(in, out, static_cast<int>(n), MPI_FLOAT, MPI_SUM, comm_);
    watchdog_->end();
  }
  void broadcast(float* d, int64_t n, int root) override {
    chunked(
        n, [&](int64_t o, int c) { MPI_Bcast(d + o, c, MPI_FLOAT, root, comm_); }, "broadcast");
  }
  void all_to_all_v(const float* in, const int64_t* send_counts, float* out,
                    const int64_t* recv_counts) override {
    std::vector<int> sc(size_), sd(size_), rc(size_), rd(size_);
    int64_t so = 0, ro = 0;
    for (int r = 0; r < size_; ++r) {
      QV_CHECK(so + send_counts[r] < (1ll << 31) && ro + recv_counts[r] < (1ll << 31),
               "all_to_all_v: more than 2^31 floats in one exchange");
      sc[r] = static_cast<int>(send_counts[r]);
      sd[r] = static_cast<int>(so);
      rc[r] = static_cast<int>(recv_counts[r]);
      rd[r] = static_cast<int>(ro);
      so += send_counts[r];
      ro += recv_counts[r];
    }
    watchdog_->begin("all_to_all_v");
    MPI_Alltoallv(in, sc.data(), sd.data(), MPI_FLOAT, out, rc.data(), rd.data(), MPI_FLOAT, comm_);
    watchdog_->end();
  }
  void all_to_all(const int64_t* in, int64_t* out, int64_t n) override {
    QV_CHECK(n < (1ll << 31), "all_to_all block too large");
    watchdog_->begin("all_to_all");
    MPI_Alltoall(in, static_cast<int>(n), MPI_INT64_T, out, static_cast<int>(n), MPI_INT64_T,
                 comm_);
    watchdog_->end();
  }
  void barrier() override {
    watchdog_->begin("barrier");
    MPI_Barrier(comm_);
    watchdog_->end();
  }
  void start_all_reduce_sum(float* d, int64_t n) override {
    const int64_t kMax = 1 << 30;
    for (int64_t o = 0; o < n; o += kMax) {
      requests_.emplace_back();
      MPI_Iallreduce(MPI_IN_PLACE, d + o, static_cast<int>(std::min(kMax, n - o)), MPI_FLOAT,
                     MPI_SUM, comm_, &requests_.back());
    }
  }
  void progress() override {
    int done = 0;
    if (!requests_.empty())
      MPI_Testall(static_cast<int>(requests_.size()), requests_.data(), &done, MPI_STATUSES_IGNORE);
  }
  void wait_all() override {
    if (requests_.empty()) return;
    watchdog_->begin("all_reduce (overlapped with backward)");
    MPI_Waitall(static_cast<int>(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE);
    watchdog_->end();
    requests_.clear();
  }
  std::unique_ptr<Communicator> split(int color, int key) override {
    MPI_Comm sub;
    watchdog_->begin("comm_split");
    MPI_Comm_split(comm_, color, key, &sub);
    watchdog_->end();
    MPI_Comm_set_errhandler(sub, MPI_ERRORS_ARE_FATAL);
    return std::make_unique<MpiCommunicator>(runtime_, sub);
  }

 private:
  template <typename F>
  void chunked(int64_t n, F f, const char* what) {
    watchdog_->begin(what);
    const int64_t kMax = 1 << 30;
    for (int64_t o = 0; o < n; o += kMax) f(o, static_cast<int>(std::min(kMax, n - o)));
    watchdog_->end();
  }
  std::shared_ptr<MpiRuntime> runtime_;
  MPI_Comm comm_;
  Watchdog* watchdog_;
  int rank_ = 0, size_ = 1;
  std::vector<MPI_Request> requests_;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(double timeout_s) {
  QV_CHECK(timeout_s > 0, "collective timeout must be positive, got ", timeout_s);
  return std::make_unique<MpiCommunicator>(std::make_shared<MpiRuntime>(timeout_s), MPI_COMM_WORLD);
}

bool launched_under_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(v)) return true;
  return false;
}

int launcher_local_rank() {
  for (const char* v :
       {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID", "LOCAL_RANK"}) {
    if (const char* s = std::getenv(v)) return std::atoi(s);
  }
  return 0;
}

}  // namespace qv::dist
