// preprocessor_config.json of a model folder.
#include "core/error.h"
#include "data/image/image_processor_config.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto c =
        qv::data::parse_image_processor_config(std::string(qv::fuzz::as_text(data, size)), "fuzz");
    c.validate();
  } catch (const qv::Error&) {
  }
  return 0;
}
