// --device / [training] device: parsing and selecting the device (cli/device_flag.h).
#include "cli/device_flag.h"

#include <regex>

#include "cli/command.h"
#include "core/error.h"
#include "dist/communicator.h"
#ifdef QWEN3VL_HAS_CUDA
#include "kernels/cuda/runtime.h"
#endif

namespace qv::cli {

DeviceChoice parse_device_flag(const std::string& text) {
  std::smatch m;
  if (!std::regex_match(text, m, std::regex("(cpu|cuda)(?::([0-9]{1,4}))?")) ||
      (m[1] == "cpu" && m[2].matched))
    usage_fail("--device must be cpu, cuda or cuda:N, got '", text, "'");
  DeviceChoice d;
  d.cuda = m[1] == "cuda";
  d.index = m[2].matched ? std::stoi(m[2].str()) : -1;
  d.text = text;
  return d;
}

std::string activate_device(const DeviceChoice& d) {
  if (!d.cuda) return "cpu";
#ifndef QWEN3VL_HAS_CUDA
  fail("device '", d.text,
       "': this qwen3vl was built without the CUDA backend (build with the CUDA toolkit, "
       "-DQWEN3VL_CUDA=ON)");
#else
  namespace gpu = qv::kernels::cuda;
  if (gpu::device_count() == 0) fail("device '", d.text, "': ", gpu::unavailable_reason());
  const int index = d.index >= 0 ? d.index : dist::launcher_local_rank() % gpu::device_count();
  QV_CHECK(index < gpu::device_count(), "device '", d.text, "': only ", gpu::device_count(),
           " CUDA device(s) present");
  gpu::set_device(index);
  return cat("cuda:", index, " ", gpu::describe_device(index));
#endif
}

void fail_model_not_on_cuda(const std::string& command) {
  fail(command,
       " --device cuda: the CUDA kernels are built (kernels/cuda/), but the model and trainer do "
       "not run on them yet (docs/CUDA.md); use --device cpu");
}

}  // namespace qv::cli
