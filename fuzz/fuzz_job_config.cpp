// The training job's TOML file (toml++ underneath).
#include "core/error.h"
#include "fuzz_util.h"
#include "train/job_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    (void)qv::train::JobConfig::parse(std::string(qv::fuzz::as_text(data, size)), "fuzz.toml");
  } catch (const qv::Error&) {
  }
  return 0;
}
