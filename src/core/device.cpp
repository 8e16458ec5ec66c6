#include "core/device.h"

#include <charconv>

#include "core/error.h"

namespace qv {
namespace {

thread_local Device t_current = kCpuDevice;

}  // namespace

Device current_device() {
  return t_current;
}

DeviceScope::DeviceScope(Device device) : previous_(t_current) {
  t_current = device;
}

DeviceScope::~DeviceScope() {
  t_current = previous_;
}

Device parse_device(std::string_view text) {
  if (text == "cpu") return kCpuDevice;
  if (text == "cuda") return {DeviceKind::kCuda, 0};
  constexpr std::string_view kCudaColon = "cuda:";
  if (text.starts_with(kCudaColon)) {
    const std::string_view digits = text.substr(kCudaColon.size());
    int index = -1;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), index);
    if (ec == std::errc() && end == digits.data() + digits.size() && !digits.empty() && index >= 0)
      return {DeviceKind::kCuda, index};
  }
  throw Error("device \"" + std::string(text) + "\" is not one of cpu, cuda, cuda:N");
}

std::string to_string(Device device) {
  if (device.is_cpu()) return "cpu";
  if (device.kind == DeviceKind::kGuarded) return "guarded";
  return "cuda:" + std::to_string(device.index);
}

}  // namespace qv
