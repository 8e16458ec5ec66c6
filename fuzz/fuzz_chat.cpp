// Chat JSONL: the input is a whole file read by ChatReader (line bound, conversation parsing,
// image references resolved but never fetched), every row also parsed and rendered on its own.
#include "core/error.h"
#include "data/pipeline/chat_sample.h"
#include "data/sources/chat_jsonl.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = qv::fuzz::as_text(data, size);
  for (size_t begin = 0; begin < text.size();) {
    size_t end = text.find('\n', begin);
    if (end == std::string_view::npos) end = text.size();
    const auto row = qv::data::parse_chat_row(text.substr(begin, end - begin), "fuzz.jsonl", 1);
    if (row.skip_reason.empty()) (void)qv::data::render_chat(row.conv);
    begin = end + 1;
  }
  const qv::fuzz::MemFile file(data, size);
  try {
    qv::data::ObelicsOptions options;
    options.max_line_bytes = 4096;
    options.max_image_bytes = 1 << 16;
    options.fetch_remote = false;
    qv::data::ChatReader reader({file.path()}, options);
    qv::data::Conversation conv;
    while (reader.next(conv)) {
    }
  } catch (const qv::Error&) {
  }
  return 0;
}
