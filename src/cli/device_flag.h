// The compute device a command runs on: `--device cpu|cuda|cuda:N` (forward, generate, bench)
// and `[training] device` (train). "cuda" without an index is the node-local rank's GPU under
// mpirun / srun (one process per GPU), else GPU 0.
#pragma once
#include <string>

#include "core/device.h"

namespace qv::cli {

struct DeviceChoice {
  Device device;             // cuda: index resolved by activate_device when `local` is set
  bool local = false;        // "cuda" without an index: the local rank's GPU
  std::string text = "cpu";  // as written
};

// Throws a UsageError for anything but cpu, cuda, cuda:N.
DeviceChoice parse_device_flag(const std::string& text);

// Checks the choice can be used and returns the device, or throws a qv::Error that says why not:
// a binary built without the CUDA backend, no CUDA device (with the driver's reason), an index
// past the devices present. `description` receives "cpu" or "cuda:0 NVIDIA H200 (...)".
Device activate_device(const DeviceChoice& choice, std::string* description = nullptr);

}  // namespace qv::cli
