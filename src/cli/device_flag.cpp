// --device / [training] device: parsing and checking the device (cli/device_flag.h).
#include "cli/device_flag.h"

#include "cli/command.h"
#include "core/error.h"
#include "dist/communicator.h"
#include "kernels/device_info.h"

namespace qv::cli {

DeviceChoice parse_device_flag(const std::string& text) {
  DeviceChoice c;
  try {
    c.device = parse_device(text);
  } catch (const Error&) {
    usage_fail("--device must be cpu, cuda or cuda:N, got '", text, "'");
  }
  c.local = text == "cuda";
  c.text = text;
  return c;
}

Device activate_device(const DeviceChoice& choice, std::string* description) {
  Device d = choice.device;
  if (!d.is_cpu()) {
    const int n = kernels::cuda_device_count();
    if (n == 0) fail("device '", choice.text, "': ", kernels::cuda_unavailable_reason());
    if (choice.local) d.index = dist::launcher_local_rank() % n;
    QV_CHECK(d.index < n, "device '", choice.text, "': only ", n, " CUDA device(s) present");
  }
  if (description) *description = kernels::describe_device(d);
  return d;
}

void fail_model_not_on_cuda(const std::string& command) {
  fail(command,
       " --device cuda: the CUDA kernels are built (kernels/cuda/) and the model's memory is "
       "placed on the GPU, but model code still reads and writes some of it from the host, so "
       "the model and trainer do not run there yet (docs/CUDA.md, \"Not done yet\"); use "
       "--device cpu");
}

}  // namespace qv::cli
