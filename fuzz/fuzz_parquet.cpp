// OBELICS Parquet: the input is a whole file read by ObelicsParquetFile (footer, schema, pages,
// levels, dictionary and PLAIN values, snappy/zstd) with small limits, then re-read after a
// seek into its middle; the input is also decoded as a bare FileMetaData (the Thrift footer
// parser on its own).
#include "core/error.h"
#include "data/sources/obelics_parquet.h"
#include "data/sources/parquet.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    (void)qv::data::parquet::parse_file_meta(data, size);
  } catch (const qv::Error&) {
  }
  const qv::fuzz::MemFile file(data, size);
  qv::data::parquet::Limits limits;
  limits.max_footer_bytes = 1 << 16;
  limits.max_page_bytes = 1 << 20;
  limits.max_page_header_bytes = 1 << 16;
  limits.max_row_bytes = 1 << 16;
  limits.max_row_items = 1 << 12;
  limits.max_page_values = 1 << 12;
  try {
    qv::data::ObelicsParquetFile reader(file.path(), limits);
    qv::data::ObelicsRow row;
    int64_t group = 0, rows = 0, n = 0;
    while (reader.next(row)) {
      if (++n == 2) {
        group = reader.row_group();
        rows = reader.row();
      }
    }
    qv::fuzz::require(reader.row() == reader.num_rows(), "rows read equal the footer's count");
    reader.seek(group, rows);
    while (reader.next(row)) {
    }
  } catch (const qv::Error&) {
  }
  return 0;
}
