// Shared by the CUDA backend's .cu files: error checks that throw qv::Error, the stream, the
// element types (float, qv::bf16 as __nv_bfloat16) loaded and stored as float, and warp / block
// reductions; kernel launches and dynamic shared memory through macros (below).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/bf16.h"
#include "core/error.h"
#include "kernels/cuda/runtime.h"

#define QV_CUDA_CHECK(expr)                                                                      \
  do {                                                                                           \
    const cudaError_t qv_err_ = (expr);                                                          \
    if (qv_err_ != cudaSuccess)                                                                  \
      ::qv::fail("CUDA: ", #expr, " failed: ", cudaGetErrorString(qv_err_), " (", __FILE__, ":", \
                 __LINE__, ")");                                                                 \
  } while (0)

// After a kernel launch: a bad configuration is reported here; faults inside the kernel surface
// at the next synchronizing call.
#define QV_CUDA_LAUNCHED() QV_CUDA_CHECK(cudaGetLastError())

// QV_LAUNCH(grid, block, smem, stream, kernel)(args...) is kernel<<<grid, block, smem,
// stream>>>(args...); the kernel comes last so template arguments keep their commas.
// QV_DYNAMIC_SHARED(T, name) declares the launch's dynamic shared memory as T name[].
// Macros so that the same source also builds with the host compiler against the CUDA emulator
// (tests/cuda_emu/, QWEN3VL_CUDA_EMU; docs/CUDA.md), which defines them to run the grid on the CPU.
#ifndef QWEN3VL_CUDA_EMU
#define QV_LAUNCH(grid, block, smem, stream, ...) __VA_ARGS__<<<(grid), (block), (smem), (stream)>>>
#define QV_DYNAMIC_SHARED(T, name) extern __shared__ T name[]
#else
#define QV_LAUNCH(grid, block, smem, stream, ...) \
  QVEMU_LAUNCH(grid, block, smem, stream, __VA_ARGS__)
#define QV_DYNAMIC_SHARED(T, name) QVEMU_DYNAMIC_SHARED(T, name)
#endif

namespace qv::kernels::cuda {

inline cudaStream_t cuda_stream() {
  return static_cast<cudaStream_t>(stream());
}

inline int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// Grid for n elements in blocks of `threads`, capped (kernels loop with a grid stride).
inline unsigned grid_for(int64_t n, int threads, int64_t cap = 65535LL * 8) {
  int64_t g = ceil_div(n, threads);
  if (g < 1) g = 1;
  return static_cast<unsigned>(g < cap ? g : cap);
}

// Opts a kernel into more than the default 48 KiB of dynamic shared memory when it needs it.
template <typename Kernel>
void opt_in_dynamic_smem(Kernel kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    QV_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(bytes)));
}

// Device element type of a host element type: qv::bf16 is stored as __nv_bfloat16 (same bits).
template <typename T>
struct DeviceType {
  using type = T;
};
template <>
struct DeviceType<qv::bf16> {
  using type = __nv_bfloat16;
};
template <typename T>
using dev_t = typename DeviceType<T>::type;
template <typename T>
inline dev_t<T>* dev(T* p) {
  return reinterpret_cast<dev_t<T>*>(p);
}
template <typename T>
inline const dev_t<T>* dev(const T* p) {
  return reinterpret_cast<const dev_t<T>*>(p);
}

__device__ __forceinline__ float to_f(float x) {
  return x;
}
__device__ __forceinline__ float to_f(__nv_bfloat16 x) {
  return __bfloat162float(x);
}
template <typename D>
__device__ __forceinline__ D from_f(float x);
template <>
__device__ __forceinline__ float from_f<float>(float x) {
  return x;
}
// Round to nearest even, as core/bf16.h's to_bf16 (NaN stays NaN).
template <>
__device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

template <typename A>
__device__ __forceinline__ A warp_sum(A v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// `scratch` holds 32 values of shared memory; the call ends with a barrier, so scratch may be
// reused by the next call.
template <typename A>
__device__ __forceinline__ A block_sum(A v, A* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  A t = lane < warps ? scratch[lane] : A(0);
  t = warp_sum(t);
  __syncthreads();
  return t;
}
__device__ __forceinline__ float block_max(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_max(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float t = lane < warps ? scratch[lane] : -INFINITY;
  t = warp_max(t);
  __syncthreads();
  return t;
}

}  // namespace qv::kernels::cuda
