#include "kernels/device.h"

#include <cstring>

#include "kernels/dispatch.h"

namespace qv::kernels {

namespace {

// An input upload that needs no CUDA call: nothing to copy, a plain copy on the CPU, or the
// guarded device's checked copy (noted as `kind`). False when the CUDA backend must do it.
bool upload_without_cuda(guarded::Transfer kind, void* dst, const void* host, size_t bytes) {
  if (bytes == 0) return true;
  const Device device = current_device();
  if (device.is_cpu()) {
    std::memcpy(dst, host, bytes);
    return true;
  }
  if (device.kind == DeviceKind::kGuarded) {
    guarded::check_pointers("upload_input", dst);
    guarded::note_transfer(kind, bytes);
    const guarded::OpenScope open;
    std::memcpy(dst, host, bytes);
    return true;
  }
  return false;
}

}  // namespace

void unsupported_on_device(const char* op, const char* why) {
  throw Error(std::string("kernel ") + op + " on " + to_string(current_device()) + ": " + why);
}

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) {
  if (bytes == 0) return;
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    std::memcpy(dst, src, bytes);
    return;
  }
  if (!dst_device.is_cuda() && !src_device.is_cuda()) {  // the guarded device and the host
    if (!dst_device.is_cpu()) guarded::check_pointers("copy_bytes", dst);
    if (!src_device.is_cpu()) guarded::check_pointers("copy_bytes", src);
    if (dst_device.is_cpu() != src_device.is_cpu())
      guarded::note_transfer(
          dst_device.is_cpu() ? guarded::Transfer::kToHost : guarded::Transfer::kToDevice, bytes);
    const guarded::OpenScope open;
    std::memcpy(dst, src, bytes);
    return;
  }
#if QWEN3VL_HAS_CUDA
  cuda::copy_bytes(dst, dst_device, src, src_device, bytes);
#else
  throw Error("copy between " + to_string(src_device) + " and " + to_string(dst_device) +
              ": this binary was built without the CUDA backend");
#endif
}

void zero_bytes(void* p, size_t bytes) {
  if (bytes == 0) return;
  const Device device = current_device();
  if (device.is_cpu()) {
    std::memset(p, 0, bytes);
    return;
  }
  if (device.kind == DeviceKind::kGuarded) {
    guarded::check_pointers("zero_bytes", p);
    const guarded::OpenScope open;
    std::memset(p, 0, bytes);
    return;
  }
  QV_CUDA_CALL(zero_bytes, p, bytes);
}

void copy_on_device(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  const Device device = current_device();
  if (device.is_cpu()) {
    std::memcpy(dst, src, bytes);
    return;
  }
  if (device.kind == DeviceKind::kGuarded) {
    guarded::check_pointers("copy_on_device", dst, src);
    const guarded::OpenScope open;
    std::memcpy(dst, src, bytes);
    return;
  }
  QV_CUDA_CALL(copy_on_device_bytes, dst, src, bytes);
}

void upload_input(void* dst, const void* host, size_t bytes) {
  if (upload_without_cuda(guarded::Transfer::kInputUpload, dst, host, bytes)) return;
  QV_CUDA_CALL(upload_input, dst, host, bytes);
}

void upload_input_ahead(void* dst, const void* host, size_t bytes, AheadWait wait) {
  if (upload_without_cuda(guarded::Transfer::kInputUploadAhead, dst, host, bytes)) return;
  QV_CUDA_CALL(upload_input_ahead, dst, host, bytes, wait);
}

}  // namespace qv::kernels
