// The compute device a command runs on: `--device cpu|cuda|cuda:N` (forward, generate, bench)
// and `[training] device` (train). "cuda" without an index is the node-local rank's GPU under
// mpirun / srun (one process per GPU), else GPU 0.
#pragma once
#include <string>

namespace qv::cli {

struct DeviceChoice {
  bool cuda = false;
  int index = -1;  // -1: the local rank's
  std::string text = "cpu";
};

// Throws a UsageError for anything but cpu, cuda, cuda:N.
DeviceChoice parse_device_flag(const std::string& text);

// Makes the choice current for this thread, or throws a qv::Error that says why it cannot:
// a binary built without the CUDA backend, no CUDA device (with the driver's reason), an index
// past the devices present. Returns a description for logs ("cpu", "cuda:0 NVIDIA H200 ...").
std::string activate_device(const DeviceChoice& d);

// What the commands that do not run the model on a GPU yet say after activate_device(): the
// CUDA kernels exist (kernels/cuda/), the model and trainer do not call them yet.
[[noreturn]] void fail_model_not_on_cuda(const std::string& command);

}  // namespace qv::cli
