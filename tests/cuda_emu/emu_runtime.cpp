// CUDA emulator (tests/cuda_emu, docs/CUDA.md): the CUDA runtime API calls our backend makes.
//
// Emulated: QWEN3VL_CUDA_EMU_DEVICES devices (default 1, at most 8), each described as an H200
// ("NVIDIA H200 (emulated)", sm_90, 132 SMs, 227 KiB opt-in shared memory, 141 GiB) whose
// memory is host memory; the current device per OS thread; device allocations (filled with 0xff
// bytes, float NaN, so a read of memory never written shows) with a per-device budget
// (QWEN3VL_CUDA_EMU_MEMORY_MB, default the 141 GiB) past which cudaMalloc returns
// cudaErrorMemoryAllocation; pinned host memory; copies and memsets checked against the live
// allocations they name (a range outside one fails with cudaErrorInvalidValue, as the runtime
// reports a bad pointer); streams and events bound to their device (a launch on another device's
// stream fails). Work runs at once, in issue order, so streams never overlap and events are
// complete as soon as recorded; cudaStreamWaitEvent only checks its handles.
// Not emulated: asynchrony (a use-after-free racing a copy cannot show), peer access rules,
// unified memory, timing (cudaEventElapsedTime reports 0), error stickiness of real faults.
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>
#include <string>

#include "emu_internal.h"

struct qvemu_stream {
  int device;
};
struct qvemu_event {
  int device;
};

namespace qvemu {
namespace {

constexpr size_t kGlobalMem = 141ull << 30;

struct Alloc {
  size_t bytes;
  int device;  // -1: pinned host memory
};

struct State {
  std::mutex mu;
  std::map<uintptr_t, Alloc> allocs;
  size_t used[8] = {};
  std::set<qvemu_stream*> streams;
  std::set<qvemu_event*> events;
};

State& state() {
  static State* s = new State();  // never destroyed: static destructors may still free memory
  return *s;
}

int device_total() {
  static const int n = [] {
    const char* e = std::getenv("QWEN3VL_CUDA_EMU_DEVICES");
    const int v = e ? std::atoi(e) : 1;
    return v < 0 ? 0 : (v > 8 ? 8 : v);
  }();
  return n;
}

size_t memory_budget() {
  static const size_t b = [] {
    const char* e = std::getenv("QWEN3VL_CUDA_EMU_MEMORY_MB");
    return e ? static_cast<size_t>(std::strtoull(e, nullptr, 10)) << 20 : kGlobalMem;
  }();
  return b;
}

thread_local int tls_device = 0;
thread_local cudaError_t tls_last_error = cudaSuccess;

cudaError_t fail(cudaError_t err) {
  tls_last_error = err;
  return err;
}

// The allocation holding [p, p + bytes), or nullptr. Caller holds the lock.
const Alloc* find(const State& s, const void* p, size_t bytes, uintptr_t* base) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  auto it = s.allocs.upper_bound(a);
  if (it == s.allocs.begin()) return nullptr;
  --it;
  if (a + bytes > it->first + it->second.bytes) return nullptr;
  if (base) *base = it->first;
  return &it->second;
}

bool device_range(const void* p, size_t bytes) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  const Alloc* a = find(s, p, bytes, nullptr);
  return a && a->device >= 0;
}

// Checks both sides of a copy against its kind.
cudaError_t check_copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  const bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (kind == cudaMemcpyDefault || kind == cudaMemcpyHostToHost) return cudaSuccess;
  if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault)
    return cudaErrorInvalidMemcpyDirection;
  if (dst_dev && !device_range(dst, bytes)) return cudaErrorInvalidValue;
  if (src_dev && !device_range(src, bytes)) return cudaErrorInvalidValue;
  return cudaSuccess;
}

bool valid_stream(cudaStream_t s) {
  return stream_device(s) >= 0;
}

}  // namespace

void set_last_error(cudaError_t err) {
  tls_last_error = err;
}

bool valid_range(const void* p, size_t bytes, bool pinned_ok) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  const Alloc* a = find(s, p, bytes, nullptr);
  if (!a) return false;
  return a->device == tls_device || (pinned_ok && a->device < 0);
}

int stream_device(cudaStream_t st) {
  if (!st) return tls_device;
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.streams.count(st) ? st->device : -1;
}

int current_device() {
  return tls_device;
}

}  // namespace qvemu

using qvemu::fail;
using qvemu::state;

const char* cudaGetErrorName(cudaError_t err) {
  switch (err) {
    case cudaSuccess:
      return "cudaSuccess";
    case cudaErrorInvalidValue:
      return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation:
      return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration:
      return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer:
      return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidMemcpyDirection:
      return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorInvalidResourceHandle:
      return "cudaErrorInvalidResourceHandle";
    case cudaErrorNoDevice:
      return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice:
      return "cudaErrorInvalidDevice";
    case cudaErrorNotReady:
      return "cudaErrorNotReady";
    case cudaErrorLaunchFailure:
      return "cudaErrorLaunchFailure";
  }
  return "cudaErrorUnknown";
}

const char* cudaGetErrorString(cudaError_t err) {
  switch (err) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInvalidValue:
      return "invalid argument";
    case cudaErrorMemoryAllocation:
      return "out of memory";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer:
      return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection:
      return "invalid copy direction for memcpy";
    case cudaErrorInvalidResourceHandle:
      return "invalid resource handle";
    case cudaErrorNoDevice:
      return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice:
      return "invalid device ordinal";
    case cudaErrorNotReady:
      return "device not ready";
    case cudaErrorLaunchFailure:
      return "unspecified launch failure";
  }
  return "unknown error";
}

cudaError_t cudaGetLastError() {
  const cudaError_t e = qvemu::tls_last_error;
  qvemu::tls_last_error = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError() {
  return qvemu::tls_last_error;
}

cudaError_t cudaGetDeviceCount(int* count) {
  *count = qvemu::device_total();
  return *count > 0 ? cudaSuccess : fail(cudaErrorNoDevice);
}

cudaError_t cudaSetDevice(int device) {
  if (device < 0 || device >= qvemu::device_total()) return fail(cudaErrorInvalidDevice);
  qvemu::tls_device = device;
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
  if (qvemu::device_total() == 0) return fail(cudaErrorNoDevice);
  *device = qvemu::tls_device;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device) {
  if (device < 0 || device >= qvemu::device_total()) return fail(cudaErrorInvalidDevice);
  *p = cudaDeviceProp{};
  std::snprintf(p->name, sizeof p->name, "NVIDIA H200 (emulated)");
  p->totalGlobalMem = qvemu::memory_budget();
  p->sharedMemPerBlock = 48 * 1024;
  p->sharedMemPerBlockOptin = 227 * 1024;
  p->sharedMemPerMultiprocessor = 228 * 1024;
  p->regsPerBlock = 65536;
  p->warpSize = 32;
  p->maxThreadsPerBlock = 1024;
  p->maxThreadsDim[0] = p->maxThreadsDim[1] = 1024;
  p->maxThreadsDim[2] = 64;
  p->maxGridSize[0] = 0x7fffffff;
  p->maxGridSize[1] = p->maxGridSize[2] = 65535;
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = 132;
  p->maxThreadsPerMultiProcessor = 2048;
  p->l2CacheSize = 50 << 20;
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize() {
  return cudaSuccess;
}

cudaError_t cudaMalloc(void** p, size_t bytes) {
  *p = nullptr;
  if (qvemu::device_total() == 0) return fail(cudaErrorNoDevice);
  if (bytes == 0) return cudaSuccess;
  const int dev = qvemu::tls_device;
  const size_t rounded = (bytes + 255) / 256 * 256;
  auto& s = state();
  {
    std::lock_guard<std::mutex> lock(s.mu);
    if (s.used[dev] + rounded > qvemu::memory_budget()) return fail(cudaErrorMemoryAllocation);
    s.used[dev] += rounded;
  }
  void* mem = std::aligned_alloc(256, rounded);
  if (!mem) {
    std::lock_guard<std::mutex> lock(s.mu);
    s.used[dev] -= rounded;
    return fail(cudaErrorMemoryAllocation);
  }
  std::memset(mem, 0xff, rounded);  // never-written device memory reads as NaN
  std::lock_guard<std::mutex> lock(s.mu);
  s.allocs[reinterpret_cast<uintptr_t>(mem)] = qvemu::Alloc{bytes, dev};
  *p = mem;
  return cudaSuccess;
}

namespace {
cudaError_t release(void* p, bool pinned) {
  if (!p) return cudaSuccess;
  auto& s = state();
  {
    std::lock_guard<std::mutex> lock(s.mu);
    auto it = s.allocs.find(reinterpret_cast<uintptr_t>(p));
    if (it == s.allocs.end() || (it->second.device < 0) != pinned)
      return fail(pinned ? cudaErrorInvalidValue : cudaErrorInvalidDevicePointer);
    if (!pinned) s.used[it->second.device] -= (it->second.bytes + 255) / 256 * 256;
    s.allocs.erase(it);
  }
  std::free(p);
  return cudaSuccess;
}
}  // namespace

cudaError_t cudaFree(void* p) {
  return release(p, false);
}

cudaError_t cudaMallocHost(void** p, size_t bytes) {
  *p = nullptr;
  const size_t rounded = (bytes + 255) / 256 * 256 + 256;
  void* mem = std::aligned_alloc(256, rounded);
  if (!mem) return fail(cudaErrorMemoryAllocation);
  auto& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  s.allocs[reinterpret_cast<uintptr_t>(mem)] = qvemu::Alloc{bytes, -1};
  *p = mem;
  return cudaSuccess;
}

cudaError_t cudaFreeHost(void* p) {
  return release(p, true);
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  auto& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  *total_bytes = qvemu::memory_budget();
  *free_bytes = *total_bytes - s.used[qvemu::tls_device];
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream) {
  if (!qvemu::valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
  if (bytes == 0) return cudaSuccess;
  const cudaError_t e = qvemu::check_copy(dst, src, bytes, kind);
  if (e != cudaSuccess) return fail(e);
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  return cudaMemcpyAsync(dst, src, bytes, kind, nullptr);
}

cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch,
                              size_t width, size_t height, cudaMemcpyKind kind,
                              cudaStream_t stream) {
  if (!qvemu::valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
  if (width > dpitch || width > spitch) return fail(cudaErrorInvalidValue);
  if (width == 0 || height == 0) return cudaSuccess;
  auto* d = static_cast<char*>(dst);
  const auto* s = static_cast<const char*>(src);
  const size_t dspan = (height - 1) * dpitch + width, sspan = (height - 1) * spitch + width;
  const cudaError_t e = qvemu::check_copy(d, s, 0, kind);
  if (e != cudaSuccess) return fail(e);
  if (kind != cudaMemcpyDefault && kind != cudaMemcpyHostToHost) {
    const bool dst_dev = kind != cudaMemcpyDeviceToHost, src_dev = kind != cudaMemcpyHostToDevice;
    if ((dst_dev && !qvemu::device_range(d, dspan)) || (src_dev && !qvemu::device_range(s, sspan)))
      return fail(cudaErrorInvalidValue);
  }
  for (size_t r = 0; r < height; ++r) std::memmove(d + r * dpitch, s + r * spitch, width);
  return cudaSuccess;
}

cudaError_t cudaMemcpyPeerAsync(void* dst, int dst_device, const void* src, int src_device,
                                size_t bytes, cudaStream_t stream) {
  if (!qvemu::valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
  if (dst_device < 0 || dst_device >= qvemu::device_total() || src_device < 0 ||
      src_device >= qvemu::device_total())
    return fail(cudaErrorInvalidDevice);
  if (bytes == 0) return cudaSuccess;
  auto& s = state();
  {
    std::lock_guard<std::mutex> lock(s.mu);
    const qvemu::Alloc* d = qvemu::find(s, dst, bytes, nullptr);
    const qvemu::Alloc* a = qvemu::find(s, src, bytes, nullptr);
    if (!d || !a || d->device != dst_device || a->device != src_device)
      return fail(cudaErrorInvalidValue);
  }
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t stream) {
  if (!qvemu::valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
  if (bytes == 0) return cudaSuccess;
  if (!qvemu::device_range(p, bytes)) return fail(cudaErrorInvalidValue);
  std::memset(p, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemset(void* p, int value, size_t bytes) {
  return cudaMemsetAsync(p, value, bytes, nullptr);
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* st, unsigned /*flags*/) {
  if (qvemu::device_total() == 0) return fail(cudaErrorNoDevice);
  *st = new qvemu_stream{qvemu::tls_device};
  auto& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  s.streams.insert(*st);
  return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t* st) {
  return cudaStreamCreateWithFlags(st, cudaStreamDefault);
}

cudaError_t cudaStreamDestroy(cudaStream_t st) {
  auto& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  if (!st || !s.streams.erase(st)) return fail(cudaErrorInvalidResourceHandle);
  delete st;
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t st) {
  return qvemu::valid_stream(st) ? cudaSuccess : fail(cudaErrorInvalidResourceHandle);
}

namespace {
bool valid_event(cudaEvent_t e) {
  auto& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  return e && s.events.count(e);
}
}  // namespace

cudaError_t cudaStreamWaitEvent(cudaStream_t st, cudaEvent_t e, unsigned /*flags*/) {
  if (!qvemu::valid_stream(st) || !valid_event(e)) return fail(cudaErrorInvalidResourceHandle);
  return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned /*flags*/) {
  if (qvemu::device_total() == 0) return fail(cudaErrorNoDevice);
  *e = new qvemu_event{qvemu::tls_device};
  auto& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  s.events.insert(*e);
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* e) {
  return cudaEventCreateWithFlags(e, cudaEventDefault);
}

cudaError_t cudaEventDestroy(cudaEvent_t e) {
  auto& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  if (!e || !s.events.erase(e)) return fail(cudaErrorInvalidResourceHandle);
  delete e;
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t st) {
  if (!valid_event(e) || !qvemu::valid_stream(st)) return fail(cudaErrorInvalidResourceHandle);
  // A GPU refuses an event and a stream of different devices.
  if (e->device != qvemu::stream_device(st)) return fail(cudaErrorInvalidResourceHandle);
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  return valid_event(e) ? cudaSuccess : fail(cudaErrorInvalidResourceHandle);
}

cudaError_t cudaEventQuery(cudaEvent_t e) {
  return valid_event(e) ? cudaSuccess : fail(cudaErrorInvalidResourceHandle);
}

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (!valid_event(start) || !valid_event(end)) return fail(cudaErrorInvalidResourceHandle);
  *ms = 0.f;
  return cudaSuccess;
}
