#include "model/device_inputs.h"

#include <utility>

#include "core/allocator.h"
#include "kernels/device.h"

namespace qv::model {

void DeviceInputs::upload(const ModelInputs& in) {
  if (current_device().is_cpu()) return;
  auto bytes_of = [](const Tensor& t) { return t.defined() ? t.nbytes() : size_t{0}; };
  ids_.upload(in.input_ids.data(), in.input_ids.size() * sizeof(int64_t));
  pixels_.upload(in.pixel_values.defined() ? in.pixel_values.raw() : nullptr,
                 bytes_of(in.pixel_values));
  video_pixels_.upload(in.pixel_values_videos.defined() ? in.pixel_values_videos.raw() : nullptr,
                       bytes_of(in.pixel_values_videos));
}

DeviceInputs::Storage::Storage(Storage&& o) noexcept
    : device_(o.device_),
      data_(std::exchange(o.data_, nullptr)),
      capacity_(std::exchange(o.capacity_, 0)),
      bytes_(std::exchange(o.bytes_, 0)) {}

DeviceInputs::Storage& DeviceInputs::Storage::operator=(Storage&& o) noexcept {
  if (this != &o) {
    release();
    device_ = o.device_;
    data_ = std::exchange(o.data_, nullptr);
    capacity_ = std::exchange(o.capacity_, 0);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

DeviceInputs::Storage::~Storage() {
  release();
}

void DeviceInputs::Storage::release() {
  if (data_) allocator_for(device_).deallocate(data_, capacity_);
  data_ = nullptr;
  capacity_ = bytes_ = 0;
}

void DeviceInputs::Storage::upload(const void* host, size_t bytes) {
  bytes_ = bytes;
  if (bytes == 0) return;
  const Device device = current_device();
  if (data_ && device == device_ && bytes <= capacity_) {
    kernels::upload_input_ahead(data_, host, bytes, kernels::AheadWait::kNone);  // ours, idle
    return;
  }
  release();
  bytes_ = bytes;
  device_ = device;
  data_ = allocator_for(device).allocate(bytes);
  capacity_ = bytes;
  kernels::upload_input_ahead(data_, host, bytes, kernels::AheadWait::kEarlierWork);  // fresh
}

}  // namespace qv::model
