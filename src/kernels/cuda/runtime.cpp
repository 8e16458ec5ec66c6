// The CUDA backend's runtime (kernels/cuda/runtime.h): device discovery, one stream per device,
// and a caching allocator with per-device statistics.
//
// The allocator rounds requests up (512 B below 1 MiB, 2 MiB above) and keeps freed blocks in a
// per-device pool keyed by rounded size; a request takes the smallest cached block that fits and
// is at most twice its size, else cudaMalloc. When cudaMalloc fails the cache is returned to the
// driver and the call is retried once. Reuse is safe without events because every op runs on
// the device's one stream (see runtime.h).
#include "kernels/cuda/runtime.h"

#include <cuda_runtime.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>
#include <utility>

#include "core/allocator.h"
#include "core/device.h"
#include "core/error.h"
#include "kernels/cuda/ops.h"

#define QV_CUDA_CHECK(expr)                                                                      \
  do {                                                                                           \
    const cudaError_t qv_err_ = (expr);                                                          \
    if (qv_err_ != cudaSuccess)                                                                  \
      ::qv::fail("CUDA: ", #expr, " failed: ", cudaGetErrorString(qv_err_), " (", __FILE__, ":", \
                 __LINE__, ")");                                                                 \
  } while (0)

namespace qv::kernels::cuda {
namespace {

constexpr int kMaxDevices = 64;

struct Discovery {
  int count = 0;
  std::string reason;
};

const Discovery& discovery() {
  static const Discovery d = [] {
    Discovery r;
    int n = 0;
    const cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
      r.reason = cat("no CUDA device (cudaGetDeviceCount: ", cudaGetErrorString(err), ")");
      cudaGetLastError();  // clear the sticky-free error so later queries start clean
      n = 0;
    } else if (n == 0) {
      r.reason = "no CUDA device (the driver reports none)";
    }
    r.count = n < kMaxDevices ? n : kMaxDevices;
    return r;
  }();
  return d;
}

int64_t round_size(int64_t bytes) {
  constexpr int64_t kSmall = 512, kLarge = 2 << 20;
  if (bytes <= 0) bytes = 1;
  const int64_t unit = bytes < (1 << 20) ? kSmall : kLarge;
  return (bytes + unit - 1) / unit * unit;
}

struct DevicePool {
  std::mutex mu;
  std::multimap<int64_t, void*> free_blocks;  // rounded size -> block
  std::unordered_map<void*, int64_t> live;    // block -> rounded size
  MemoryStats stats;
  cudaStream_t stream = nullptr;
};

std::array<DevicePool, kMaxDevices>& pools() {
  static std::array<DevicePool, kMaxDevices> p;
  return p;
}

DevicePool& pool(int device) {
  QV_CHECK(device >= 0 && device < device_count(), "CUDA: device ", device, " is not present (",
           device_count(), " device(s))");
  return pools()[static_cast<size_t>(device)];
}

void release_cache(DevicePool& p) {  // caller holds p.mu and has the device current
  for (auto& [size, ptr] : p.free_blocks) {
    cudaFree(ptr);
    p.stats.reserved -= size;
  }
  p.free_blocks.clear();
}

}  // namespace

int device_count() {
  return discovery().count;
}

std::string unavailable_reason() {
  return discovery().reason;
}

void require_device() {
  if (device_count() == 0) fail(unavailable_reason());
}

void set_device(int index) {
  require_device();
  QV_CHECK(index >= 0 && index < device_count(), "CUDA: device cuda:", index, " is not present (",
           device_count(), " device(s))");
  QV_CUDA_CHECK(cudaSetDevice(index));
}

// The thread's current device (core/device.h) when it is a GPU, made CUDA's current device too;
// else CUDA's own current device (code that calls these ops directly, as the tests do).
int current_device_index() {
  require_device();
  int d = 0;
  QV_CUDA_CHECK(cudaGetDevice(&d));
  const Device cur = qv::current_device();
  if (cur.kind == DeviceKind::kCuda && cur.index != d) {
    QV_CHECK(cur.index >= 0 && cur.index < device_count(), "CUDA: device ", to_string(cur),
             " is not present (", device_count(), " device(s))");
    QV_CUDA_CHECK(cudaSetDevice(cur.index));
    d = cur.index;
  }
  return d;
}

std::string describe_device(int index) {
  require_device();
  cudaDeviceProp p{};
  QV_CUDA_CHECK(cudaGetDeviceProperties(&p, index));
  char mem[32];
  std::snprintf(mem, sizeof mem, "%.1f GiB", static_cast<double>(p.totalGlobalMem) / (1 << 30));
  return cat(p.name, " (sm_", p.major, p.minor, ", ", p.multiProcessorCount, " SMs, ", mem, ")");
}

double bf16_dense_peak_tflops(int index) {
  require_device();
  cudaDeviceProp p{};
  QV_CUDA_CHECK(cudaGetDeviceProperties(&p, index));
  const std::string name = p.name;
  // Vendor datasheets, dense (no sparsity). PCIe / NVL parts have lower clocks and fewer SMs.
  if (name.find("H200") != std::string::npos) return 989.4;
  if (name.find("H100") != std::string::npos)
    return name.find("PCIe") != std::string::npos ? 756.0 : 989.4;
  if (name.find("A100") != std::string::npos) return 312.0;
  return 0;
}

double fp32_peak_tflops(int index) {
  require_device();
  cudaDeviceProp p{};
  QV_CUDA_CHECK(cudaGetDeviceProperties(&p, index));
  const std::string name = p.name;
  if (name.find("H200") != std::string::npos) return 66.9;
  if (name.find("H100") != std::string::npos)
    return name.find("PCIe") != std::string::npos ? 51.2 : 66.9;
  if (name.find("A100") != std::string::npos) return 19.5;
  return 0;
}

MemoryStats memory_stats(int device) {
  DevicePool& p = pool(device);
  std::lock_guard<std::mutex> lock(p.mu);
  return p.stats;
}

void reset_peak(int device) {
  DevicePool& p = pool(device);
  std::lock_guard<std::mutex> lock(p.mu);
  p.stats.peak = p.stats.allocated;
}

std::string format_memory(const MemoryStats& s) {
  char buf[128];
  const double g = 1 << 30;
  std::snprintf(buf, sizeof buf, "mem alloc %.2f GiB reserved %.2f GiB peak %.2f GiB",
                static_cast<double>(s.allocated) / g, static_cast<double>(s.reserved) / g,
                static_cast<double>(s.peak) / g);
  return buf;
}

void* allocate(int64_t bytes) {
  const int device = current_device_index();
  DevicePool& p = pool(device);
  const int64_t size = round_size(bytes);
  std::lock_guard<std::mutex> lock(p.mu);
  void* ptr = nullptr;
  auto it = p.free_blocks.lower_bound(size);
  if (it != p.free_blocks.end() && it->first <= 2 * size) {
    ptr = it->second;
    const int64_t got = it->first;
    p.free_blocks.erase(it);
    p.live[ptr] = got;
    p.stats.allocated += got;
  } else {
    cudaError_t err = cudaMalloc(&ptr, static_cast<size_t>(size));
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      release_cache(p);
      err = cudaMalloc(&ptr, static_cast<size_t>(size));
    }
    if (err != cudaSuccess) {
      cudaGetLastError();
      fail("CUDA: cannot allocate ", bytes, " bytes on cuda:", device, " (",
           cudaGetErrorString(err), "; ", format_memory(p.stats), ")");
    }
    p.live[ptr] = size;
    p.stats.reserved += size;
    p.stats.allocated += size;
  }
  if (p.stats.allocated > p.stats.peak) p.stats.peak = p.stats.allocated;
  return ptr;
}

// The block goes back to the pool of the device it came from, which need not be the current one.
void deallocate(void* ptr, int64_t /*bytes*/) {
  if (!ptr) return;
  const int current = current_device_index();
  for (int k = 0; k < device_count(); ++k) {
    DevicePool& p = pools()[static_cast<size_t>((current + k) % device_count())];
    std::lock_guard<std::mutex> lock(p.mu);
    auto it = p.live.find(ptr);
    if (it == p.live.end()) continue;
    p.stats.allocated -= it->second;
    p.free_blocks.emplace(it->second, ptr);
    p.live.erase(it);
    return;
  }
  fail("CUDA: deallocate of a pointer this allocator did not hand out");
}

void empty_cache() {
  const int device = current_device_index();
  synchronize();  // before taking the pool's lock: stream() takes it too
  DevicePool& p = pool(device);
  std::lock_guard<std::mutex> lock(p.mu);
  release_cache(p);
}

void* stream() {
  const int device = current_device_index();
  DevicePool& p = pool(device);
  std::lock_guard<std::mutex> lock(p.mu);
  if (!p.stream) QV_CUDA_CHECK(cudaStreamCreateWithFlags(&p.stream, cudaStreamNonBlocking));
  return p.stream;
}

void copy_to_device(void* dst, const void* src, int64_t bytes) {
  if (bytes <= 0) return;
  cudaStream_t s = static_cast<cudaStream_t>(stream());
  QV_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(bytes), cudaMemcpyHostToDevice, s));
  // From pageable memory the call returns once the source was staged; from pinned memory it may
  // not have been read yet, and the caller may reuse src at once: wait.
  QV_CUDA_CHECK(cudaStreamSynchronize(s));
}

void copy_to_device_async(void* dst, const void* src, int64_t bytes) {
  if (bytes <= 0) return;
  QV_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(bytes), cudaMemcpyHostToDevice,
                                static_cast<cudaStream_t>(stream())));
}

void copy_to_host(void* dst, const void* src, int64_t bytes) {
  if (bytes <= 0) return;
  cudaStream_t s = static_cast<cudaStream_t>(stream());
  QV_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(bytes), cudaMemcpyDeviceToHost, s));
  QV_CUDA_CHECK(cudaStreamSynchronize(s));
}

void copy_on_device(void* dst, const void* src, int64_t bytes) {
  if (bytes <= 0) return;
  QV_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(bytes), cudaMemcpyDeviceToDevice,
                                static_cast<cudaStream_t>(stream())));
}

void fill_zero(void* p, int64_t bytes) {
  if (bytes <= 0) return;
  QV_CUDA_CHECK(
      cudaMemsetAsync(p, 0, static_cast<size_t>(bytes), static_cast<cudaStream_t>(stream())));
}

void synchronize() {
  QV_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream())));
}

BatchUploader::BatchUploader() : device_(current_device_index()) {
  cudaStream_t s = nullptr;
  QV_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  copy_stream_ = s;
  for (Slot& slot : slots_) {
    cudaEvent_t e = nullptr;
    QV_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    slot.done = e;
  }
}

BatchUploader::~BatchUploader() {
  cudaStreamSynchronize(static_cast<cudaStream_t>(copy_stream_));
  for (Slot& slot : slots_) {
    if (slot.pinned) cudaFreeHost(slot.pinned);
    cudaEventDestroy(static_cast<cudaEvent_t>(slot.done));
  }
  cudaStreamDestroy(static_cast<cudaStream_t>(copy_stream_));
}

void BatchUploader::upload(void* device_dst, const void* host_src, int64_t bytes, Order order) {
  if (bytes <= 0) return;
  QV_CHECK(current_device_index() == device_, "BatchUploader: made for cuda:", device_,
           ", used on cuda:", current_device_index());
  Slot& slot = slots_[next_];
  next_ = (next_ + 1) % kSlots;
  cudaEvent_t done = static_cast<cudaEvent_t>(slot.done);
  QV_CUDA_CHECK(cudaEventSynchronize(done));  // the slot's previous copy has finished
  if (slot.capacity < bytes) {
    if (slot.pinned) QV_CUDA_CHECK(cudaFreeHost(slot.pinned));
    slot.pinned = nullptr;
    QV_CUDA_CHECK(cudaMallocHost(&slot.pinned, static_cast<size_t>(bytes)));
    slot.capacity = bytes;
  }
  std::memcpy(slot.pinned, host_src, static_cast<size_t>(bytes));
  cudaStream_t copy = static_cast<cudaStream_t>(copy_stream_);
  if (order == Order::kAfterCompute) {
    // The destination may still be read by earlier compute: the copy waits for that work first.
    cudaEvent_t compute_mark = nullptr;
    QV_CUDA_CHECK(cudaEventCreateWithFlags(&compute_mark, cudaEventDisableTiming));
    QV_CUDA_CHECK(cudaEventRecord(compute_mark, static_cast<cudaStream_t>(stream())));
    QV_CUDA_CHECK(cudaStreamWaitEvent(copy, compute_mark, 0));
    QV_CUDA_CHECK(cudaEventDestroy(compute_mark));  // released once the wait is satisfied
  }
  QV_CUDA_CHECK(cudaMemcpyAsync(device_dst, slot.pinned, static_cast<size_t>(bytes),
                                cudaMemcpyHostToDevice, copy));
  QV_CUDA_CHECK(cudaEventRecord(done, copy));
  QV_CUDA_CHECK(cudaStreamWaitEvent(static_cast<cudaStream_t>(stream()), done, 0));
}

void* allocate_pinned(int64_t bytes) {
  require_device();
  void* p = nullptr;
  QV_CUDA_CHECK(cudaMallocHost(&p, static_cast<size_t>(bytes > 0 ? bytes : 1)));
  return p;
}

void free_pinned(void* p) {
  if (p) QV_CUDA_CHECK(cudaFreeHost(p));
}

// ---- kernels/device.h on CUDA ----

namespace {

// Runs fn with `index` as CUDA's current device, restoring the previous one.
template <typename Fn>
void on_device(int index, Fn fn) {
  int prev = 0;
  QV_CUDA_CHECK(cudaGetDevice(&prev));
  if (prev != index) QV_CUDA_CHECK(cudaSetDevice(index));
  try {
    fn();
  } catch (...) {
    cudaSetDevice(prev);
    throw;
  }
  if (prev != index) QV_CUDA_CHECK(cudaSetDevice(prev));
}

// The stream of device `index` (its pool's; created on first use).
cudaStream_t stream_of(int index) {
  cudaStream_t s = nullptr;
  on_device(index, [&] { s = static_cast<cudaStream_t>(stream()); });
  return s;
}

}  // namespace

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) {
  if (bytes == 0) return;
  require_device();
  const bool dst_gpu = dst_device.kind == DeviceKind::kCuda;
  const bool src_gpu = src_device.kind == DeviceKind::kCuda;
  if (dst_gpu && src_gpu) {
    // After the source's pending work, on the destination's stream; then wait for it.
    QV_CUDA_CHECK(cudaStreamSynchronize(stream_of(src_device.index)));
    cudaStream_t s = stream_of(dst_device.index);
    QV_CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_device.index, src, src_device.index, bytes, s));
    QV_CUDA_CHECK(cudaStreamSynchronize(s));
    return;
  }
  QV_CHECK(dst_gpu || src_gpu, "copy_bytes on CUDA between two host buffers");
  const int gpu = dst_gpu ? dst_device.index : src_device.index;
  cudaStream_t s = stream_of(gpu);
  QV_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes,
                                dst_gpu ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost, s));
  QV_CUDA_CHECK(cudaStreamSynchronize(s));
}

void zero_bytes(void* p, size_t bytes) {
  fill_zero(p, static_cast<int64_t>(bytes));
}

void copy_on_device_bytes(void* dst, const void* src, size_t bytes) {
  require_device();
  copy_on_device(dst, src, static_cast<int64_t>(bytes));
}

namespace {

// Two uploaders per GPU, one for a forward's own uploads and one for the uploads ahead, made on
// first use and kept for the process (never destroyed: the driver may be gone by the time
// static objects are). Apart, so that an ahead upload rarely waits for a slot whose copy waits
// for compute (only behind an ahead upload into fresh memory).
void upload_with(bool ahead, void* dst, const void* host, size_t bytes,
                 BatchUploader::Order order) {
  if (bytes == 0) return;
  require_device();
  static std::mutex mu;
  static std::map<std::pair<int, bool>, BatchUploader*> uploaders;
  BatchUploader* u = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu);
    BatchUploader*& slot = uploaders[{current_device_index(), ahead}];
    if (!slot) slot = new BatchUploader();
    u = slot;
  }
  u->upload(dst, host, static_cast<int64_t>(bytes), order);
}

}  // namespace

void upload_input(void* dst, const void* host, size_t bytes) {
  upload_with(/*ahead=*/false, dst, host, bytes, BatchUploader::Order::kAfterCompute);
}

void upload_input_ahead(void* dst, const void* host, size_t bytes, AheadWait wait) {
  upload_with(/*ahead=*/true, dst, host, bytes,
              wait == AheadWait::kNone ? BatchUploader::Order::kDestinationIdle
                                       : BatchUploader::Order::kAfterCompute);
}

// ---- the CUDA allocator of core/allocator.h ----

namespace {

class CudaAllocator final : public Allocator {
 public:
  Device device() const override { return {DeviceKind::kCuda, current_device_index()}; }
  void* allocate(size_t bytes) override {
    return bytes == 0 ? nullptr : cuda::allocate(static_cast<int64_t>(bytes));
  }
  void deallocate(void* p, size_t bytes) override {
    cuda::deallocate(p, static_cast<int64_t>(bytes));
  }
  void zero(void* p, size_t bytes) override { fill_zero(p, static_cast<int64_t>(bytes)); }
  // Pages from the caching allocator, whose blocks are only 512-byte aligned: one page more is
  // taken and the first page boundary inside is handed out. A released range is zeroed, not
  // returned to the driver (a cudaMalloc block cannot give back part of itself), so under ZeRO-3
  // on a GPU the shards other ranks own still occupy device memory (docs/CUDA.md).
  void* allocate_pages(size_t bytes) override {
    if (bytes == 0) return nullptr;
    void* p = cuda::allocate(static_cast<int64_t>(bytes + page_bytes()));
    auto addr = reinterpret_cast<uintptr_t>(p);
    const uintptr_t page = page_bytes();
    const uintptr_t aligned = (addr + page - 1) / page * page;
    std::lock_guard<std::mutex> lock(mu_);
    bases_[aligned] = p;
    fill_zero(reinterpret_cast<void*>(aligned), static_cast<int64_t>(bytes));
    return reinterpret_cast<void*>(aligned);
  }
  void deallocate_pages(void* p, size_t bytes) override {
    if (!p) return;
    void* base = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = bases_.find(reinterpret_cast<uintptr_t>(p));
      QV_CHECK(it != bases_.end(), "deallocate_pages: not a page block of the CUDA allocator");
      base = it->second;
      bases_.erase(it);
    }
    cuda::deallocate(base, static_cast<int64_t>(bytes + page_bytes()));
  }
  void release_pages(void* p, size_t bytes) override { fill_zero(p, static_cast<int64_t>(bytes)); }

 private:
  std::mutex mu_;
  std::map<uintptr_t, void*> bases_;  // page-aligned address -> the caching allocator's block
};

// Registered when this file is linked in (it is whenever any CUDA op is); touches no GPU.
const bool kRegistered = [] {
  static CudaAllocator allocator;
  register_allocator(DeviceKind::kCuda, &allocator);
  return true;
}();

}  // namespace

}  // namespace qv::kernels::cuda
