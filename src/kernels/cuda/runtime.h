// The CUDA backend's runtime, as seen from host C++ code (no CUDA headers needed): whether a
// device is there, which one this thread uses, device memory through a caching allocator with
// per-device statistics, copies, pinned host memory, and the stream every op runs on.
//
// Every op of the backend runs on one stream per device (in issue order), so memory freed on
// the host side can be handed out again at once: later work on that stream runs after the
// earlier work that used it. Copies to the host wait for the stream.
#pragma once
#include <cstdint>
#include <string>

namespace qv::kernels::cuda {

// Usable CUDA devices; 0 when there is no driver or no device. Never throws.
int device_count();
// Why device_count() is 0, e.g. "no CUDA device (cudaGetDeviceCount: no CUDA-capable device is
// detected)"; empty when there is a device.
std::string unavailable_reason();
// Throws qv::Error "no CUDA device ..." when device_count() is 0.
void require_device();

// The device of the calling thread's CUDA work (cudaSetDevice); checked against device_count().
void set_device(int index);
int current_device_index();
// "NVIDIA H200 (sm_90, 132 SMs, 139.8 GiB)".
std::string describe_device(int index);
// Peak dense bf16 tensor-core rate of a known device in TFLOP/s (H100/H200 SXM: 989), 0 if
// unknown: the figure MFU is quoted against.
double bf16_dense_peak_tflops(int index);
// Peak plain fp32 rate (no tensor cores) of a known device in TFLOP/s (H100/H200 SXM: 66.9), 0 if
// unknown.
double fp32_peak_tflops(int index);

// Device memory in bytes: allocated (handed out now), reserved (held from the driver, including
// cached free blocks), peak (highest allocated since start or reset_peak).
struct MemoryStats {
  int64_t allocated = 0, reserved = 0, peak = 0;
};
MemoryStats memory_stats(int device);
void reset_peak(int device);
// "mem alloc 1.23 GiB reserved 2.00 GiB peak 1.80 GiB": the step line's memory field.
std::string format_memory(const MemoryStats& s);

// Device memory of the current device through the caching allocator. deallocate takes the size
// that was asked for. empty_cache() returns every cached free block to the driver.
void* allocate(int64_t bytes);
void deallocate(void* p, int64_t bytes);
void empty_cache();

// Copies on the current device's stream; the ones to the host return when the data is there.
void copy_to_device(void* dst, const void* src, int64_t bytes);
void copy_to_host(void* dst, const void* src, int64_t bytes);
void copy_on_device(void* dst, const void* src, int64_t bytes);
void fill_zero(void* p, int64_t bytes);
// Returns at once when src is pinned (allocate_pinned): the copy overlaps later host work and
// runs before later ops on the stream. src must stay untouched until synchronize().
void copy_to_device_async(void* dst, const void* src, int64_t bytes);
void synchronize();

// Page-locked host memory (fast, asynchronous copies).
void* allocate_pinned(int64_t bytes);
void free_pinned(void* p);

// The current device's stream, as a cudaStream_t cast to void*.
void* stream();

// Uploads of training inputs (token ids, labels, pixels, the index arrays the host computes)
// that overlap compute: upload() copies the host data into a pinned slot (kSlots slots, used in
// turn, each grown on demand) and issues the copy on a separate copy stream; the compute stream
// waits for it through an event, the host does not, so the loader's host buffers are free again
// as soon as upload() returns. With Order::kAfterCompute the copy waits for the compute issued
// before it (its destination, drawn from the activation arena, may have been in use there);
// with Order::kDestinationIdle it does not (the caller guarantees no earlier work uses the
// destination: a trainer's ahead upload of the next step, which then overlaps this step's
// compute). A slot is reused only after its previous copy completed: with 8 slots the host
// waits for the upload 8 calls back, not for the GPU to drain (a forward makes about a dozen
// uploads in a burst, at its start).
class BatchUploader {
 public:
  enum class Order { kAfterCompute, kDestinationIdle };
  BatchUploader();
  ~BatchUploader();
  BatchUploader(const BatchUploader&) = delete;
  BatchUploader& operator=(const BatchUploader&) = delete;
  void upload(void* device_dst, const void* host_src, int64_t bytes,
              Order order = Order::kAfterCompute);
  static constexpr int kSlots = 8;

 private:
  struct Slot {
    void* pinned = nullptr;
    int64_t capacity = 0;
    void* done = nullptr;  // cudaEvent_t: the slot's last copy finished
  };
  Slot slots_[kSlots];
  int next_ = 0;
  void* copy_stream_ = nullptr;  // cudaStream_t
  int device_ = 0;
};

// RAII device array of n elements of T (tests, staging).
template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  explicit DeviceArray(int64_t n) : n_(n), p_(static_cast<T*>(allocate(bytes()))) {}
  DeviceArray(const T* host, int64_t n) : DeviceArray(n) { upload(host); }
  ~DeviceArray() { reset(); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  DeviceArray(DeviceArray&& o) noexcept : n_(o.n_), p_(o.p_) { o.n_ = 0, o.p_ = nullptr; }
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    if (this != &o) reset(), n_ = o.n_, p_ = o.p_, o.n_ = 0, o.p_ = nullptr;
    return *this;
  }
  T* data() { return p_; }
  const T* data() const { return p_; }
  int64_t size() const { return n_; }
  int64_t bytes() const { return n_ * static_cast<int64_t>(sizeof(T)); }
  void upload(const T* host) { copy_to_device(p_, host, bytes()); }
  void download(T* host) const { copy_to_host(host, p_, bytes()); }

 private:
  void reset() {
    if (p_) deallocate(p_, bytes());
    p_ = nullptr, n_ = 0;
  }
  int64_t n_ = 0;
  T* p_ = nullptr;
};

}  // namespace qv::kernels::cuda
