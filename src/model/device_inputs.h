// A batch's token ids and pixels on the model's device, in buffers of their own (not the
// activation arena), uploaded ahead of the batch's forward: the trainer issues step N+1's
// uploads while step N computes (train/trainer.cpp, docs/CUDA.md "The asynchronous step") and
// hands them to the forward (ForwardOptions::uploaded), which then uploads only what it derives
// on the host (positions, documents, targets). On the CPU nothing is copied and the forward
// reads the host arrays, as before.
//
// The copies do not wait for the device's earlier work (kernels::upload_input_ahead), so the
// caller must not upload into a DeviceInputs that work still reads: the trainer keeps two sets
// and fills the one of step N+1, last read by step N-1, whose results the host has waited for.
// A buffer that must grow is new memory from the device's allocator, possibly just freed by
// work still pending: its copy waits for the earlier compute (AheadWait::kEarlierWork).
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/device.h"
#include "model/inputs.h"

namespace qv::model {

class DeviceInputs {
 public:
  DeviceInputs() = default;
  DeviceInputs(const DeviceInputs&) = delete;
  DeviceInputs& operator=(const DeviceInputs&) = delete;
  DeviceInputs(DeviceInputs&&) noexcept = default;
  DeviceInputs& operator=(DeviceInputs&&) noexcept = default;

  // Issues the copies of in's token ids and pixels to the current device (nothing on the CPU).
  void upload(const ModelInputs& in);
  // The uploaded arrays on the device; null on the CPU, before upload(), or when absent.
  const int64_t* input_ids() const { return ids_.get<int64_t>(); }
  const float* pixel_values() const { return pixels_.get<float>(); }
  const float* pixel_values_videos() const { return video_pixels_.get<float>(); }

 private:
  // Bytes of one device, kept between uploads (grown when too small).
  class Storage {
   public:
    Storage() = default;
    Storage(Storage&& o) noexcept;
    Storage& operator=(Storage&& o) noexcept;
    ~Storage();
    void upload(const void* host, size_t bytes);
    template <class T>
    const T* get() const {
      return static_cast<const T*>(bytes_ ? data_ : nullptr);
    }

   private:
    void release();
    Device device_ = kCpuDevice;
    void* data_ = nullptr;
    size_t capacity_ = 0, bytes_ = 0;
  };
  Storage ids_, pixels_, video_pixels_;
};

}  // namespace qv::model
