// CUDA emulator (tests/cuda_emu, docs/CUDA.md): stand-in for cuda_runtime.h, so that the CUDA
// backend's own source (src/kernels/cuda/*.cu, compiled as C++) runs on the CPU.
//
// Emulated:
//  - execution: a launch (QVEMU_LAUNCH, what common.cuh's QV_LAUNCH becomes) runs its grid at once
//    and in order, block after block, on the calling thread; inside a block every CUDA thread is
//    a cooperative fiber (emu_device.cpp), so __syncthreads() and the warp collectives are real
//    barriers. threadIdx / blockIdx / blockDim / gridDim are the running fiber's. __shared__
//    variables are static thread_local: one copy per OS thread, shared by the fibers of the block
//    that runs there (blocks of a launch run one after another). Dynamic shared memory is a
//    buffer of the launch's size, filled with 0xff bytes (float NaN) at the start of each block,
//    checked against 48 KiB or the kernel's cudaFuncSetAttribute opt-in (see the limit below).
//  - warp collectives over all 32 lanes: __syncwarp, __shfl(_xor/_down/_up)_sync,
//    __ballot_sync, __any_sync, __all_sync. The lanes named in the mask that have not exited
//    must all arrive with the same mask; reading a lane that did not take part aborts.
//  - atomics (exact: fibers of one block never run at the same time), __fadd_rn & co. (exact IEEE
//    float: the emulated code is compiled with -ffp-contract=off), math as the host libm.
//  - the runtime API our code uses (emu_runtime.cpp): devices, memory, streams, events, copies.
// Not emulated: concurrency between blocks and streams (races between blocks cannot show), the
// memory model (__threadfence is a no-op), speed, independent thread scheduling inside a warp
// beyond what the barriers imply, the GPU's approximate math (__expf, expf, rsqrtf... are the
// host libm here; the device's differ by a few ulp), textures, graphs, cooperative launch.
// Known weakness: the dynamic shared memory opt-in is matched by value, not by kernel (a launch
// over 48 KiB passes when any kernel was opted in to at least its size), because a launch of a
// template name deduced from its arguments has no address the emulator can look up.
#pragma once
#include <math.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "library_types.h"

// ---- qualifiers ----
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __shared__ static thread_local
#define __constant__ static

// ---- vector types ----
struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};

// ---- errors ----
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidMemcpyDirection = 21,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorNotReady = 600,
  cudaErrorLaunchFailure = 719,
};
typedef enum cudaError_t cudaError;

// ---- runtime types ----
struct qvemu_stream;
struct qvemu_event;
typedef qvemu_stream* cudaStream_t;
typedef qvemu_event* cudaEvent_t;

enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};
enum cudaFuncAttribute {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
  cudaFuncAttributePreferredSharedMemoryCarveout = 9,
};

#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01
#define cudaEventDefault 0x00
#define cudaEventBlockingSync 0x01
#define cudaEventDisableTiming 0x02
#define cudaHostAllocDefault 0x00

struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  size_t sharedMemPerBlockOptin;
  size_t sharedMemPerMultiprocessor;
  int regsPerBlock;
  int warpSize;
  int maxThreadsPerBlock;
  int maxThreadsDim[3];
  int maxGridSize[3];
  int major;
  int minor;
  int multiProcessorCount;
  int maxThreadsPerMultiProcessor;
  int clockRate;
  int memoryClockRate;
  int memoryBusWidth;
  int l2CacheSize;
};

// ---- runtime API (emu_runtime.cpp) ----
const char* cudaGetErrorString(cudaError_t err);
const char* cudaGetErrorName(cudaError_t err);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaMalloc(void** p, size_t bytes);
cudaError_t cudaFree(void* p);
cudaError_t cudaMallocHost(void** p, size_t bytes);
cudaError_t cudaFreeHost(void* p);
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream = nullptr);
cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch,
                              size_t width, size_t height, cudaMemcpyKind kind,
                              cudaStream_t stream = nullptr);
cudaError_t cudaMemcpyPeerAsync(void* dst, int dst_device, const void* src, int src_device,
                                size_t bytes, cudaStream_t stream = nullptr);
cudaError_t cudaMemset(void* p, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t stream = nullptr);
cudaError_t cudaStreamCreate(cudaStream_t* s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags = 0);
cudaError_t cudaEventCreate(cudaEvent_t* e);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventQuery(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);

namespace qvemu {

// ---- launches (emu_device.cpp) ----

struct LaunchConfig {
  dim3 grid, block;
  size_t dynamic_smem;
  cudaStream_t stream;
};

// Per-fiber state the kernel sees.
struct ThreadState {
  uint3 thread_idx;
  unsigned linear;  // x + y * bx + z * bx * by
};
struct BlockState {
  uint3 block_idx;
  dim3 block_dim, grid_dim;
  unsigned char* dynamic_smem;
};
extern thread_local ThreadState* tls_thread;
extern thread_local BlockState* tls_block;

// A type-erased "run the kernel body for the current fiber".
struct KernelBody {
  void (*call)(void* self);
  void* self;
};
// Validates the configuration (a bad one sets the sticky launch error, as a GPU launch reports it
// through cudaGetLastError) and runs every block.
void run_grid(const LaunchConfig& cfg, KernelBody body);
void set_dynamic_smem_limit(const void* kernel, int bytes);
// Aborts when a kernel's pointer argument (non-null) is neither in a live device allocation of
// the launching device nor in pinned host memory: a host pointer handed to a kernel.
void check_kernel_pointer(const void* p, int index);
template <typename A>
inline void check_kernel_argument(const A& a, int index) {
  if constexpr (std::is_pointer_v<A>) check_kernel_pointer(static_cast<const void*>(a), index);
}

template <typename F>
struct Launch {
  LaunchConfig cfg;
  F fn;
  template <typename... A>
  void operator()(A... args) {
    int index = 0;
    (check_kernel_argument(args, index++), ...);
    auto body = [&]() { fn(args...); };  // each fiber passes its own copies of the arguments
    run_grid(cfg, KernelBody{[](void* s) { (*static_cast<decltype(body)*>(s))(); }, &body});
  }
};
template <typename F>
Launch(LaunchConfig, F) -> Launch<F>;

template <typename T>
inline T* dynamic_shared() {
  return reinterpret_cast<T*>(tls_block->dynamic_smem);
}

// ---- barriers and warp collectives (emu_device.cpp) ----
void sync_block();
// Every live lane of `mask` arrives with `value` (at most 8 bytes); returns the warp's exchange
// row (32 slots of 8 bytes) once all have. `op` names the collective for mismatch reports.
const uint64_t* warp_exchange(unsigned mask, uint64_t value, const char* op);
// The lanes that took part in the last exchange (for reads of a lane that did not).
unsigned warp_participants();
unsigned lane_id();
[[noreturn]] void fatal(const char* what, const char* detail = "");

template <typename T>
inline uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "shuffles move 8 bytes at most");
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof v);
  return b;
}
template <typename T>
inline T from_bits(uint64_t b) {
  T v;
  std::memcpy(&v, &b, sizeof v);
  return v;
}
template <typename T>
inline T shuffle(unsigned mask, T v, unsigned src, const char* op) {
  const uint64_t* row = warp_exchange(mask, to_bits(v), op);
  if (!(warp_participants() >> src & 1u))
    fatal(op, ": reads a lane that did not take part (exited or outside the mask)");
  return from_bits<T>(row[src]);
}

}  // namespace qvemu

#define QVEMU_LAUNCH(grid, block, smem, stream, ...)                                   \
  ::qvemu::Launch {                                                                    \
    ::qvemu::LaunchConfig{dim3(grid), dim3(block), static_cast<size_t>(smem), stream}, \
        [](auto... qvemu_args) { __VA_ARGS__(qvemu_args...); }                         \
  }
#define QVEMU_DYNAMIC_SHARED(T, name) T* name = ::qvemu::dynamic_shared<T>()

#define threadIdx (::qvemu::tls_thread->thread_idx)
#define blockIdx (::qvemu::tls_block->block_idx)
#define blockDim (::qvemu::tls_block->block_dim)
#define gridDim (::qvemu::tls_block->grid_dim)
constexpr int warpSize = 32;

template <typename Kernel>
inline cudaError_t cudaFuncSetAttribute(Kernel kernel, cudaFuncAttribute attr, int value) {
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (value < 0 || value > 227 * 1024) return cudaErrorInvalidValue;
    ::qvemu::set_dynamic_smem_limit(reinterpret_cast<const void*>(kernel), value);
  }
  return cudaSuccess;
}

// ---- device intrinsics ----
inline void __syncthreads() {
  ::qvemu::sync_block();
}
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  ::qvemu::warp_exchange(mask, 0, "__syncwarp");
}
inline void __threadfence() {}
inline void __threadfence_block() {}

template <typename T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  const unsigned lane = ::qvemu::lane_id();
  const unsigned base = lane & ~static_cast<unsigned>(width - 1);
  return ::qvemu::shuffle(mask, v, base + (static_cast<unsigned>(src) & (width - 1)),
                          "__shfl_sync");
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  const unsigned lane = ::qvemu::lane_id();
  const unsigned src = lane ^ static_cast<unsigned>(lane_mask);
  const bool same_segment =
      (src & ~static_cast<unsigned>(width - 1)) == (lane & ~static_cast<unsigned>(width - 1));
  return ::qvemu::shuffle(mask, v, same_segment && src < 32 ? src : lane, "__shfl_xor_sync");
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const unsigned lane = ::qvemu::lane_id();
  const unsigned in_seg = lane & static_cast<unsigned>(width - 1);
  return ::qvemu::shuffle(mask, v,
                          in_seg + delta < static_cast<unsigned>(width) ? lane + delta : lane,
                          "__shfl_down_sync");
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const unsigned lane = ::qvemu::lane_id();
  const unsigned in_seg = lane & static_cast<unsigned>(width - 1);
  return ::qvemu::shuffle(mask, v, in_seg >= delta ? lane - delta : lane, "__shfl_up_sync");
}
inline unsigned __ballot_sync(unsigned mask, int predicate) {
  const uint64_t* row = ::qvemu::warp_exchange(mask, predicate != 0, "__ballot_sync");
  const unsigned who = ::qvemu::warp_participants();
  unsigned r = 0;
  for (unsigned l = 0; l < 32; ++l)
    if ((who >> l & 1u) && row[l]) r |= 1u << l;
  return r;
}
inline int __any_sync(unsigned mask, int predicate) {
  return __ballot_sync(mask, predicate) != 0;
}
inline int __all_sync(unsigned mask, int predicate) {
  return __ballot_sync(mask, predicate) == (mask & ::qvemu::warp_participants());
}
inline unsigned __activemask() {
  return ::qvemu::warp_participants();
}

// Atomics: fibers of a block never run at the same time and blocks run one after another, so a
// plain read-modify-write is atomic here.
template <typename T>
inline T atomicAdd(T* p, T v) {
  const T old = *p;
  *p = old + v;
  return old;
}
template <typename T>
inline T atomicSub(T* p, T v) {
  const T old = *p;
  *p = old - v;
  return old;
}
template <typename T>
inline T atomicMin(T* p, T v) {
  const T old = *p;
  *p = v < old ? v : old;
  return old;
}
template <typename T>
inline T atomicMax(T* p, T v) {
  const T old = *p;
  *p = v > old ? v : old;
  return old;
}
template <typename T>
inline T atomicExch(T* p, T v) {
  const T old = *p;
  *p = v;
  return old;
}
template <typename T>
inline T atomicCAS(T* p, T compare, T v) {
  const T old = *p;
  if (old == compare) *p = v;
  return old;
}

// Correctly rounded float arithmetic: plain IEEE operations (no contraction: -ffp-contract=off).
inline float __fadd_rn(float a, float b) {
  return a + b;
}
inline float __fsub_rn(float a, float b) {
  return a - b;
}
inline float __fmul_rn(float a, float b) {
  return a * b;
}
inline float __fdiv_rn(float a, float b) {
  return a / b;
}
inline float __fsqrt_rn(float a) {
  return std::sqrt(a);
}
inline float __fmaf_rn(float a, float b, float c) {
  return std::fma(a, b, c);
}
inline double __dadd_rn(double a, double b) {
  return a + b;
}
inline double __dmul_rn(double a, double b) {
  return a * b;
}
// The GPU's fast approximations are the host libm's accurate functions here (a few ulp apart).
inline float __expf(float x) {
  return std::exp(x);
}
inline float __logf(float x) {
  return std::log(x);
}
inline float __sinf(float x) {
  return std::sin(x);
}
inline float __cosf(float x) {
  return std::cos(x);
}
inline float __tanhf(float x) {
  return std::tanh(x);
}
inline float __fdividef(float a, float b) {
  return a / b;
}
inline float rsqrtf(float x) {
  return 1.f / std::sqrt(x);
}
inline float __saturatef(float x) {
  return x < 0.f ? 0.f : (x > 1.f ? 1.f : x);
}
inline int __float_as_int(float f) {
  int i;
  std::memcpy(&i, &f, sizeof i);
  return i;
}
inline float __int_as_float(int i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}
inline unsigned __float_as_uint(float f) {
  unsigned i;
  std::memcpy(&i, &f, sizeof i);
  return i;
}
inline float __uint_as_float(unsigned i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}
template <typename T>
inline T __ldg(const T* p) {
  return *p;
}
inline int __popc(unsigned x) {
  return __builtin_popcount(x);
}
inline int __clz(int x) {
  return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x));
}
inline int __ffs(int x) {
  return __builtin_ffs(x);
}
