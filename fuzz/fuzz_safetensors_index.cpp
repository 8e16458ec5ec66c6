// model.safetensors.index.json: the weight_map must only ever name files inside the folder.
#include "core/error.h"
#include "fuzz_util.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const std::string text(qv::fuzz::as_text(data, size));
    const std::string dir = "/model";
    for (const auto& [name, path] : qv::io::parse_checkpoint_index(text, "fuzz", dir)) {
      const std::string file = path.substr(dir.size() + 1);
      qv::fuzz::require(path.rfind(dir + "/", 0) == 0 && file.find('/') == std::string::npos &&
                            file.find("..") == std::string::npos,
                        "shard path escapes the model folder");
    }
  } catch (const qv::Error&) {
  }
  return 0;
}
