// Hugging Face config.json: parse + validate, then the derived figures every command prints.
#include "core/error.h"
#include "fuzz_util.h"
#include "model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto c =
        qv::model::ModelConfig::from_json_text(std::string(qv::fuzz::as_text(data, size)), "fuzz");
    (void)qv::model::count_params(c);
    (void)qv::model::text_train_flops_per_token(c, 2048);
    (void)qv::model::vision_train_flops_per_patch(c, 1024);
    (void)c.to_json_text();
  } catch (const qv::Error&) {
  }
  return 0;
}
