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

}  // namespace qv::cli
