// NCCL communicator (dist/nccl_communicator.h). Collectives run on this communicator's own
// stream; each starts after an event recorded on the GPU's compute stream
// (kernels::cuda_native_stream()), so it sees every kernel issued before it. Completion is polled
// with cudaEventQuery and ncclCommGetAsyncError under the timeout, so a dead peer ends in an error,
// not a hang. The all-to-alls (expert parallelism, the streamed export) are grouped
// ncclSend / ncclRecv pairs on the same stream under the same polling.
#include "dist/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstring>
#include <optional>
#include <thread>
#include <vector>

#include "core/allocator.h"
#include "core/device.h"
#include "core/error.h"
#include "kernels/device.h"
#include "kernels/device_info.h"

namespace qv::dist {
namespace {

#define QV_NCCL_CHECK(expr)                                                                    \
  do {                                                                                         \
    const ncclResult_t qv_r_ = (expr);                                                         \
    if (qv_r_ != ncclSuccess)                                                                  \
      ::qv::fail("NCCL: ", #expr, " failed: ", ncclGetErrorString(qv_r_), " (", __FILE__, ":", \
                 __LINE__, ")");                                                               \
  } while (0)
#define QV_CUDA_OK(expr)                                                                           \
  do {                                                                                             \
    const cudaError_t qv_e_ = (expr);                                                              \
    if (qv_e_ != cudaSuccess) ::qv::fail("CUDA: ", #expr, " failed: ", cudaGetErrorString(qv_e_)); \
  } while (0)

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(ncclComm_t comm, double timeout_s)
      : comm_(comm), timeout_s_(timeout_s), device_(current_device()) {
    QV_NCCL_CHECK(ncclCommUserRank(comm_, &rank_));
    QV_NCCL_CHECK(ncclCommCount(comm_, &size_));
    QV_CUDA_OK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    QV_CUDA_OK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
    QV_CUDA_OK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
  }
  ~NcclCommunicator() override {
    cudaStreamSynchronize(stream_);
    cudaEventDestroy(done_);
    cudaEventDestroy(ready_);
    cudaStreamDestroy(stream_);
    ncclCommDestroy(comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void all_reduce_sum(float* data, int64_t n) override {
    start_all_reduce_sum(data, n);
    wait_all();
  }
  void all_reduce_sum(double* data, int64_t n) override { host_double(data, n, ncclSum); }
  void all_reduce_max(double* data, int64_t n) override { host_double(data, n, ncclMax); }

  void all_gather(const float* in, float* out, int64_t n) override {
    begin();
    QV_NCCL_CHECK(ncclAllGather(in, out, count(n), ncclFloat32, comm_, stream_));
    wait_all();
  }
  void all_gather_bf16(const bf16* in, bf16* out, int64_t n) override {
    begin();
    QV_NCCL_CHECK(ncclAllGather(in, out, count(n), ncclBfloat16, comm_, stream_));
    wait_all();
  }
  void reduce_scatter_sum(const float* in, float* out, int64_t n) override {
    begin();
    QV_NCCL_CHECK(ncclReduceScatter(in, out, count(n), ncclFloat32, ncclSum, comm_, stream_));
    wait_all();
  }
  void broadcast(float* data, int64_t n, int root) override {
    begin();
    QV_NCCL_CHECK(ncclBroadcast(data, data, count(n), ncclFloat32, root, comm_, stream_));
    wait_all();
  }
  // Grouped point-to-point sends and receives (one ncclSend / ncclRecv per peer with data, NCCL
  // has no all-to-all-v collective). Expert parallelism passes device rows; the streamed export
  // passes host windows, which are staged through device memory.
  void all_to_all_v(const float* in, const int64_t* send_counts, float* out,
                    const int64_t* recv_counts) override {
    exchange(in, send_counts, out, recv_counts, ncclFloat32, sizeof(float));
  }
  // The same with n int64 values per peer (counts and ranges, host memory).
  void all_to_all(const int64_t* in, int64_t* out, int64_t n) override {
    std::vector<int64_t> counts(size_, n);
    exchange(in, counts.data(), out, counts.data(), ncclInt64, sizeof(int64_t));
  }
  void barrier() override {
    Scratch one(sizeof(float));
    kernels::zero_bytes(one.p, sizeof(float));
    all_reduce_sum(static_cast<float*>(one.p), 1);
  }

  void start_all_reduce_sum(float* data, int64_t n) override {
    begin();
    QV_NCCL_CHECK(ncclAllReduce(data, data, count(n), ncclFloat32, ncclSum, comm_, stream_));
  }
  void progress() override {}
  // Waits (host side) for every collective issued so far, under the timeout; the compute stream
  // is then free to read the results.
  void wait_all() override {
    QV_CUDA_OK(cudaEventRecord(done_, stream_));
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                              std::chrono::duration<double>(timeout_s_));
    for (;;) {
      const cudaError_t q = cudaEventQuery(done_);
      if (q == cudaSuccess) return;
      if (q != cudaErrorNotReady) QV_CUDA_OK(q);
      ncclResult_t async = ncclSuccess;
      QV_NCCL_CHECK(ncclCommGetAsyncError(comm_, &async));
      if (async != ncclSuccess && async != ncclInProgress) {
        ncclCommAbort(comm_);
        fail("NCCL: rank ", rank_, ": collective failed: ", ncclGetErrorString(async));
      }
      if (std::chrono::steady_clock::now() > deadline) {
        ncclCommAbort(comm_);
        fail("NCCL: rank ", rank_, ": a collective did not complete within ", timeout_s_,
             " s (a rank died or stalled)");
      }
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  std::unique_ptr<Communicator> split(int color, int key) override {
    ncclComm_t sub = nullptr;
    QV_NCCL_CHECK(ncclCommSplit(comm_, color, key, &sub, nullptr));
    QV_CHECK(sub != nullptr, "NCCL: split with color ", color, " gave no communicator");
    return std::make_unique<NcclCommunicator>(sub, timeout_s_);
  }

 private:
  static size_t count(int64_t n) {
    QV_CHECK(n >= 0, "NCCL: negative element count ", n);
    return static_cast<size_t>(n);
  }
  // Orders the communication stream after everything issued on the compute stream.
  void begin() {
    QV_CUDA_OK(cudaEventRecord(ready_, static_cast<cudaStream_t>(kernels::cuda_native_stream())));
    QV_CUDA_OK(cudaStreamWaitEvent(stream_, ready_, 0));
  }
  void host_double(double* data, int64_t n, ncclRedOp_t op) {
    if (n <= 0) return;
    const size_t bytes = count(n) * sizeof(double);
    Scratch d(bytes);
    kernels::copy_bytes(d.p, device_, data, kCpuDevice, bytes);
    begin();
    QV_NCCL_CHECK(ncclAllReduce(d.p, d.p, count(n), ncclFloat64, op, comm_, stream_));
    wait_all();
    kernels::copy_bytes(data, kCpuDevice, d.p, device_, bytes);
  }
  // in / out in device memory, or staged there when they are host memory.
  static bool on_device(const void* p) {
    cudaPointerAttributes a{};
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
      (void)cudaGetLastError();  // a plain host pointer on older runtimes
      return false;
    }
    return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
  }
  // Peer r gets send_counts[r] elements of `in` (peers in rank order, packed) and this rank
  // receives recv_counts[r] elements from peer r into `out` (the same packing).
  void exchange(const void* in, const int64_t* send_counts, void* out, const int64_t* recv_counts,
                ncclDataType_t type, size_t elem) {
    std::vector<size_t> so(size_ + 1, 0), ro(size_ + 1, 0);
    for (int r = 0; r < size_; ++r) {
      so[r + 1] = so[r] + count(send_counts[r]);
      ro[r + 1] = ro[r] + count(recv_counts[r]);
    }
    const size_t send_bytes = so[size_] * elem, recv_bytes = ro[size_] * elem;
    std::optional<Scratch> staged_in, staged_out;
    const char* send = static_cast<const char*>(in);
    char* recv = static_cast<char*>(out);
    if (send_bytes > 0 && !on_device(in)) {
      staged_in.emplace(send_bytes);
      kernels::copy_bytes(staged_in->p, device_, in, kCpuDevice, send_bytes);
      send = static_cast<const char*>(staged_in->p);
    }
    if (recv_bytes > 0 && !on_device(out)) {
      staged_out.emplace(recv_bytes);
      recv = static_cast<char*>(staged_out->p);
    }
    begin();
    // The group is closed before a failure is reported: one left open would break the next
    // collective.
    QV_NCCL_CHECK(ncclGroupStart());
    ncclResult_t first = ncclSuccess;
    for (int r = 0; r < size_; ++r) {
      ncclResult_t e = ncclSuccess;
      if (so[r + 1] > so[r])
        e = ncclSend(send + so[r] * elem, so[r + 1] - so[r], type, r, comm_, stream_);
      if (e == ncclSuccess && ro[r + 1] > ro[r])
        e = ncclRecv(recv + ro[r] * elem, ro[r + 1] - ro[r], type, r, comm_, stream_);
      if (first == ncclSuccess) first = e;
    }
    const ncclResult_t ended = ncclGroupEnd();
    if (first != ncclSuccess)
      fail("NCCL: ncclSend / ncclRecv of an all-to-all failed: ", ncclGetErrorString(first));
    QV_NCCL_CHECK(ended);
    wait_all();
    if (staged_out) kernels::copy_bytes(out, kCpuDevice, staged_out->p, device_, recv_bytes);
  }
  // Device memory of this communicator's GPU for the duration of one call.
  struct Scratch {
    explicit Scratch(size_t bytes)
        : bytes(bytes), p(allocator_for(current_device()).allocate(bytes)) {}
    ~Scratch() { allocator_for(current_device()).deallocate(p, bytes); }
    size_t bytes;
    void* p;
  };

  ncclComm_t comm_;
  double timeout_s_;
  Device device_;
  int rank_ = 0, size_ = 1;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ready_ = nullptr, done_ = nullptr;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(Communicator& bootstrap, double timeout_s) {
  QV_CHECK(current_device().kind == DeviceKind::kCuda,
           "NCCL communicator: the calling thread's device must be a GPU (DeviceScope), not ",
           to_string(current_device()));
  QV_CHECK(kernels::cuda_device_count() > 0,
           "NCCL communicator: ", kernels::cuda_unavailable_reason());
  // NCCL's 128-byte id travels through the bootstrap's float broadcast as 32 raw words: MPI
  // moves MPI_FLOAT data between like machines bit for bit.
  static_assert(sizeof(ncclUniqueId) % sizeof(float) == 0, "ncclUniqueId size");
  constexpr int64_t kWords = sizeof(ncclUniqueId) / sizeof(float);
  ncclUniqueId id{};
  if (bootstrap.rank() == 0) QV_NCCL_CHECK(ncclGetUniqueId(&id));
  float words[kWords];
  std::memcpy(words, &id, sizeof id);
  bootstrap.broadcast(words, kWords, 0);
  std::memcpy(&id, words, sizeof id);
  ncclComm_t comm = nullptr;
  QV_NCCL_CHECK(ncclCommInitRank(&comm, bootstrap.size(), id, bootstrap.rank()));
  return std::make_unique<NcclCommunicator>(comm, timeout_s);
}

}  // namespace qv::dist
