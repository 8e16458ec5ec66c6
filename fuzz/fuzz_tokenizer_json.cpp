// tokenizer.json: load, then encode and decode a fixed multilingual text with the result.
#include "core/error.h"
#include "data/tokenizer/tokenizer.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto tok = qv::data::Tokenizer::from_json(qv::fuzz::as_text(data, size), "fuzz", 64);
    const auto ids = tok.encode("Hello, world! 你好 <|im_start|>user\n  1234 naïve\u00e9\t");
    (void)tok.decode(ids);
    (void)tok.vocab_size();
  } catch (const qv::Error&) {
  }
  return 0;
}
