// OBELICS JSONL: the input is a whole file read by ObelicsReader (line bound, row parsing,
// image references resolved but never fetched), every row also parsed on its own.
#include "core/error.h"
#include "data/sources/obelics.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = qv::fuzz::as_text(data, size);
  for (size_t begin = 0; begin < text.size();) {
    size_t end = text.find('\n', begin);
    if (end == std::string_view::npos) end = text.size();
    (void)qv::data::parse_obelics_row(text.substr(begin, end - begin), "fuzz.jsonl", 1);
    begin = end + 1;
  }
  const qv::fuzz::MemFile file(data, size);
  try {
    qv::data::ObelicsOptions options;
    options.max_line_bytes = 4096;
    options.max_image_bytes = 1 << 16;
    options.fetch_remote = false;
    options.drop_unavailable_images = true;
    qv::data::ObelicsReader reader({file.path()}, options);
    qv::data::Document doc;
    while (reader.next(doc)) {
    }
  } catch (const qv::Error&) {
  }
  return 0;
}
