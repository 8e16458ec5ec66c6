// A tar shard read entry by entry (TarReader), then as a WebDataset shard: damage must be
// reported, never crash, and reading must always end.
#include "core/error.h"
#include "data/sources/tar_reader.h"
#include "data/sources/webdataset.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const qv::fuzz::MemFile file(data, size);
  try {
    qv::data::TarReader tar(file.path());
    qv::data::TarEntry entry;
    std::string bytes;
    while (tar.next(entry) == qv::data::TarStatus::kOk) {
      if (tar.read_data(bytes) != qv::data::TarStatus::kOk) break;
      qv::fuzz::require(static_cast<int64_t>(bytes.size()) == entry.size, "entry data size");
    }
  } catch (const qv::Error&) {
  }
  try {
    qv::data::ReaderLimits limits;
    limits.max_member_bytes = 1 << 20;
    qv::data::WebDatasetReader reader({file.path()}, limits);
    qv::data::RawSample sample;
    qv::data::ReaderState mid;
    for (int n = 0; reader.next(sample); ++n)
      if (n == 0) mid = reader.state();
    if (!mid.shard.empty()) {  // resuming from a recorded state must work on the same bytes
      qv::data::WebDatasetReader again({file.path()}, limits);
      again.restore(mid);
      while (again.next(sample)) {
      }
    }
  } catch (const qv::Error&) {
  }
  return 0;
}
