// How src/kernels/<family>.cpp route an op to the backend of the calling thread's device
// (kernels/device.h): the CPU implementation in kernels/cpu/, the CUDA one in kernels/cuda/ when
// the binary has it (QWEN3VL_HAS_CUDA), otherwise a clear error. On the guarded test device
// (kernels/guarded/guard.h) the CPU implementation runs with guarded memory opened for the op.
// The CPU is tested first, so its path is one comparison, as before. Private to src/kernels.
#pragma once
#include <string>
#include <type_traits>

#include "core/error.h"
#include "kernels/device.h"
#include "kernels/guarded/guard.h"

#if QWEN3VL_HAS_CUDA
#include "kernels/cuda/ops.h"
#endif

namespace qv::kernels {

[[noreturn]] void unsupported_on_device(const char* op, const char* why);

}  // namespace qv::kernels

#if QWEN3VL_HAS_CUDA
#define QV_CUDA_CALL(op, ...) return cuda::op(__VA_ARGS__)
#define QV_CUDA_CALL_T(T, op, ...)                                                        \
  do {                                                                                    \
    if constexpr (std::is_same_v<T, float>)                                               \
      return cuda::op(__VA_ARGS__);                                                       \
    else                                                                                  \
      ::qv::kernels::unsupported_on_device(#op, "double precision runs on the CPU only"); \
  } while (0)
#else
#define QV_CUDA_CALL(op, ...) \
  ::qv::kernels::unsupported_on_device(#op, "this binary was built without the CUDA backend")
#define QV_CUDA_CALL_T(T, op, ...) QV_CUDA_CALL(op, __VA_ARGS__)
#endif

// The guarded device's branch: the pointers checked, then the CPU op with guarded memory open
// while it runs.
#define QV_GUARDED_CALL(kind, op, ...)                        \
  if (kind == ::qv::DeviceKind::kGuarded) {                   \
    ::qv::kernels::guarded::check_pointers(#op, __VA_ARGS__); \
    const ::qv::kernels::guarded::OpenScope qv_guard_open;    \
    return cpu::op(__VA_ARGS__);                              \
  }

// The body of a dispatching op: QV_DISPATCH(name, args...) for plain functions,
// QV_DISPATCH_T(T, name, args...) for ones templated on the element type (float or double).
#define QV_DISPATCH(op, ...)                               \
  do {                                                     \
    const ::qv::Device qv_device = ::qv::current_device(); \
    if (qv_device.is_cpu()) return cpu::op(__VA_ARGS__);   \
    QV_GUARDED_CALL(qv_device.kind, op, __VA_ARGS__)       \
    QV_CUDA_CALL(op, __VA_ARGS__);                         \
  } while (0)
#define QV_DISPATCH_T(T, op, ...)                          \
  do {                                                     \
    const ::qv::Device qv_device = ::qv::current_device(); \
    if (qv_device.is_cpu()) return cpu::op(__VA_ARGS__);   \
    QV_GUARDED_CALL(qv_device.kind, op, __VA_ARGS__)       \
    QV_CUDA_CALL_T(T, op, __VA_ARGS__);                    \
  } while (0)
