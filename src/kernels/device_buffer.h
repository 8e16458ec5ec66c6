// DeviceBuffer<T>: a vector of trivially copyable elements in the activation arena
// (core/buffer_pool.h) of the device that was current when it was made, which host code never
// has to touch to use: new elements are zeroed by the device's Allocator::zero, growing copies
// with kernels::copy_bytes, a fill with a non-zero value is uploaded from a host staging
// buffer. It replaces PoolVector<T> (a std::vector, whose elements the host value-initialises)
// for activations: the same arena, the same zeros, so the CPU path computes exactly as before.
//
// Host access (operator[], begin(), end(), a span over it) is for memory the host may read:
// buffers on the CPU. On another device it is a bug, which the guarded test device
// (kernels/guarded/guard.h) catches.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/allocator.h"
#include "core/buffer_pool.h"
#include "core/device.h"
#include "core/error.h"
#include "kernels/device.h"

namespace qv {

template <class T>
class DeviceBuffer {
  static_assert(std::is_trivially_copyable_v<T>, "DeviceBuffer holds plain values");

 public:
  using value_type = T;

  DeviceBuffer() noexcept : device_(current_device()) {}
  // n zeros.
  explicit DeviceBuffer(size_t n) : DeviceBuffer() { resize(n); }
  DeviceBuffer(size_t n, T value) : DeviceBuffer() { assign(n, value); }
  DeviceBuffer(const DeviceBuffer& other) : device_(other.device_) {
    reallocate(other.size_);
    copy_elements(data_, other.data_, other.size_);
    size_ = other.size_;
  }
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : device_(other.device_),
        data_(std::exchange(other.data_, nullptr)),
        size_(std::exchange(other.size_, 0)),
        capacity_(std::exchange(other.capacity_, 0)) {}
  DeviceBuffer& operator=(const DeviceBuffer& other) {
    if (this != &other) DeviceBuffer(other).swap(*this);
    return *this;
  }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    DeviceBuffer(std::move(other)).swap(*this);
    return *this;
  }
  ~DeviceBuffer() { free_storage(); }

  void swap(DeviceBuffer& other) noexcept {
    std::swap(device_, other.device_);
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    std::swap(capacity_, other.capacity_);
  }

  Device device() const { return device_; }
  size_t size() const { return size_; }
  size_t capacity() const { return capacity_; }
  bool empty() const { return size_ == 0; }
  T* data() { return data_; }
  const T* data() const { return data_; }

  void reserve(size_t n) {
    if (n > capacity_) grow_to(n);
  }
  // Keeps the first min(size, n) elements; elements added are zero. Grows as std::vector does
  // (to max(n, 2 * size)), so the arena sees the same requests as before.
  void resize(size_t n) {
    if (n > capacity_) grow_to(std::max(n, 2 * size_));
    if (n > size_) allocator_for(device_).zero(data_ + size_, (n - size_) * sizeof(T));
    size_ = n;
  }
  // n copies of value (zeros through Allocator::zero; other values from the host).
  void assign(size_t n, T value) {
    size_ = 0;
    resize(n);
    if (is_zero(value) || n == 0) return;
    if (device_.is_cpu()) {
      std::fill_n(data_, n, value);
      return;
    }
    const std::vector<T> host(n, value);
    kernels::copy_bytes(data_, device_, host.data(), kCpuDevice, n * sizeof(T));
  }
  void clear() { size_ = 0; }
  // The n values at `host` (host memory), copied over.
  void assign_from_host(const T* host, size_t n) {
    if (n > capacity_) reallocate(n);
    size_ = n;
    if (n) kernels::copy_bytes(data_, device_, host, kCpuDevice, n * sizeof(T));
  }

  // The same for a forward's inputs: n elements from host through kernels::upload_input (on a
  // GPU staged in pinned memory and not waited for; later ops see the data).
  void upload_from_host(const T* host, size_t n) {
    if (n > capacity_) reallocate(n);
    size_ = n;
    if (n) kernels::upload_input(data_, host, n * sizeof(T));
  }

  // Host access: buffers on the CPU only.
  T& operator[](size_t i) { return data_[i]; }
  const T& operator[](size_t i) const { return data_[i]; }
  T* begin() { return data_; }
  T* end() { return data_ + size_; }
  const T* begin() const { return data_; }
  const T* end() const { return data_ + size_; }

 private:
  static bool is_zero(const T& value) {
    unsigned char bytes[sizeof(T)];
    std::memcpy(bytes, &value, sizeof(T));
    return std::all_of(bytes, bytes + sizeof(T), [](unsigned char b) { return b == 0; });
  }
  void copy_elements(T* dst, const T* src, size_t n) {
    if (n) kernels::copy_bytes(dst, device_, src, device_, n * sizeof(T));
  }
  void grow_to(size_t n) {
    T* old = data_;
    const size_t old_capacity = capacity_;
    data_ = static_cast<T*>(BufferPool::of(device_).allocate(n * sizeof(T)));
    capacity_ = n;
    copy_elements(data_, old, size_);
    if (old) BufferPool::of(device_).deallocate(old, old_capacity * sizeof(T));
  }
  void reallocate(size_t n) {
    free_storage();
    if (n) grow_to(n);
  }
  void free_storage() {
    if (data_) BufferPool::of(device_).deallocate(data_, capacity_ * sizeof(T));
    data_ = nullptr;
    capacity_ = 0;
    size_ = 0;
  }

  Device device_;
  T* data_ = nullptr;
  size_t size_ = 0, capacity_ = 0;
};

// An array the host computes and ops read (cu_seqlens, key_valid, targets, rotary tables, token
// ids): host code fills `host`, then upload() copies it to the device that was current when the
// Mirrored was made, once per forward. data() and size() are what ops get: on the CPU the host
// array itself (no copy is made, the CPU path is as before), elsewhere the uploaded copy.
template <class T>
struct Mirrored {
  HostVector<T> host;
  DeviceBuffer<T> device;  // stays empty on the CPU

  // An input upload (kernels::upload_input: staged in pinned memory, not waited for).
  void upload() {
    if (!device.device().is_cpu()) device.upload_from_host(host.data(), host.size());
  }
  // For ops; on a device, only after upload().
  const T* data() const {
    if (device.device().is_cpu()) return host.data();
    QV_CHECK(device.size() == host.size(),
             "Mirrored::data(): the host array changed since upload()");
    return device.data();
  }
  // data(), or null for an empty array (ops take null for an absent mask or gradient).
  const T* data_or_null() const { return empty() ? nullptr : data(); }
  size_t size() const { return host.size(); }
  bool empty() const { return host.empty(); }
  void clear() {
    host.clear();
    device.clear();
  }
};

// The reverse of Mirrored: an array ops write and the host reads afterwards (decode's logits, the
// forward's logits tensor), `n` elements at `host`. data() is what ops get: on the CPU the host
// array itself (no copy); elsewhere a buffer on the device that was current when the
// DeviceOutput was made, which download() copies into the host array.
template <class T>
class DeviceOutput {
 public:
  DeviceOutput(T* host, size_t n) : host_(host), n_(n) {
    if (!device_.device().is_cpu()) device_.resize(n);
  }
  T* data() { return device_.device().is_cpu() ? host_ : device_.data(); }
  void download() {
    if (!device_.device().is_cpu() && n_)
      kernels::copy_bytes(host_, kCpuDevice, device_.data(), device_.device(), n_ * sizeof(T));
  }

 private:
  T* host_;
  size_t n_;
  DeviceBuffer<T> device_;  // stays empty on the CPU
};

}  // namespace qv
