// safetensors header parsing from memory, then every tensor copied out as SafetensorsFile::read
// does: a header that passes validation must describe bytes inside the input.
#include <cstring>

#include "core/error.h"
#include "fuzz_util.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto* file = reinterpret_cast<const std::byte*>(data);
    const qv::io::SafetensorsHeader h = qv::io::parse_safetensors_header(file, size, "fuzz");
    for (const auto& [name, info] : h.infos) {
      qv::fuzz::require(h.data_start + info.end <= size, "tensor data past the end of the input");
      qv::Tensor t(info.dtype, info.shape);
      qv::fuzz::require(t.nbytes() == info.end - info.begin, "shape x dtype != data bytes");
      if (t.nbytes() > 0) std::memcpy(t.raw(), file + h.data_start + info.begin, t.nbytes());
    }
  } catch (const qv::Error&) {
  }
  return 0;
}
