// Host code that reads or writes memory of any device: checkpoint and export files, CRCs, LoRA
// merges, decode's logits. On the CPU the memory is the host's and is used in place (no copy:
// the CPU path stays what it was); on another device the values go through a host staging
// buffer and explicit copies (kernels/device.h copy_bytes), so host code never touches device
// memory itself (the guarded test device, kernels/guarded/guard.h, checks it).
#pragma once
#include <algorithm>
#include <cstddef>
#include <vector>

#include "core/device.h"
#include "kernels/device.h"

namespace qv::kernels {

// The most bytes the chunked reader below stages at a time (4 MiB).
inline constexpr size_t kStagingBytes = size_t{4} << 20;

// The n elements at p on `device`, readable by the host: p itself on the CPU, else a copy in
// `staging` (resized to n).
template <class T>
const T* host_readable(const T* p, Device device, size_t n, std::vector<T>& staging) {
  if (device.is_cpu()) return p;
  staging.resize(n);
  copy_bytes(staging.data(), kCpuDevice, p, device, n * sizeof(T));
  return staging.data();
}

// Where host code writes the n elements bound for p on `device`: p itself on the CPU, else
// `staging` (resized to n; holding p's values first when keep_contents), which upload_staged
// then copies to p.
template <class T>
T* host_writable(T* p, Device device, size_t n, std::vector<T>& staging,
                 bool keep_contents = false) {
  if (device.is_cpu()) return p;
  staging.resize(n);
  if (keep_contents) copy_bytes(staging.data(), kCpuDevice, p, device, n * sizeof(T));
  return staging.data();
}
template <class T>
void upload_staged(T* p, Device device, const std::vector<T>& staging) {
  if (!device.is_cpu())
    copy_bytes(p, device, staging.data(), kCpuDevice, staging.size() * sizeof(T));
}

// Calls fn(const T* host, size_t count) over the n elements at p on `device`, in order: on the
// CPU once, with p itself; elsewhere chunk by chunk (at most kStagingBytes each) through one
// host buffer, so the host holds no more than that whatever n is.
template <class T, class Fn>
void for_each_staged(const T* p, Device device, size_t n, Fn&& fn) {
  if (device.is_cpu()) {
    fn(p, n);
    return;
  }
  const size_t chunk = std::max<size_t>(1, kStagingBytes / sizeof(T));
  std::vector<T> staging(std::min(n, chunk));
  for (size_t at = 0; at < n; at += chunk) {
    const size_t m = std::min(chunk, n - at);
    copy_bytes(staging.data(), kCpuDevice, p + at, device, m * sizeof(T));
    fn(static_cast<const T*>(staging.data()), m);
  }
}

}  // namespace qv::kernels
