#include "data/sources/obelics_parquet.h"

#include "core/error.h"
#include "data/skip_stats.h"
#include "data/utf8.h"

namespace qv::data {

namespace {

ObelicsRow bad_row(std::string_view reason, std::string detail) {
  ObelicsRow r;
  r.skip_reason = reason;
  r.detail = std::move(detail);
  return r;
}

// Empty when every string of the row is valid UTF-8, else which entry is not.
std::string utf8_problem(const parquet::ListRow& row, std::string_view column) {
  for (size_t i = 0; i < row.items.size(); ++i)
    if (row.items[i] && utf8::find_invalid(*row.items[i]) != std::string_view::npos)
      return cat(column, "[", i, "] is not valid UTF-8");
  return {};
}

ObelicsRow to_row(parquet::ListRow& texts, parquet::ListRow& images, const parquet::Limits& lim) {
  if (texts.is_null || images.is_null)
    return bad_row(skip::kMalformedDocument, "'texts' and 'images' must both be lists");
  if (texts.too_large || images.too_large || texts.bytes + images.bytes > lim.max_row_bytes)
    return bad_row(skip::kRowTooLarge,
                   cat("over ", lim.max_row_bytes, " bytes or ", lim.max_row_items, " entries"));
  for (const auto* col : {&texts, &images}) {
    std::string problem = utf8_problem(*col, col == &texts ? "texts" : "images");
    if (!problem.empty()) return bad_row(skip::kMalformedDocument, std::move(problem));
  }
  return obelics_row_from_lists(std::move(texts.items), std::move(images.items), {}, 0);
}

}  // namespace

bool is_parquet_path(std::string_view path) {
  constexpr std::string_view kExt = ".parquet";
  return path.size() >= kExt.size() && path.substr(path.size() - kExt.size()) == kExt;
}

parquet::Limits parquet_limits(const ObelicsOptions& options) {
  parquet::Limits l;
  l.max_row_bytes = options.max_line_bytes;
  return l;
}

ObelicsParquetFile::ObelicsParquetFile(const std::string& path, const parquet::Limits& limits)
    : file_(path, limits) {
  try {
    texts_ = parquet::find_string_list_column(file_.meta(), "texts");
    images_ = parquet::find_string_list_column(file_.meta(), "images");
  } catch (const Error& e) {
    fail("OBELICS Parquet file ", path, ": ", e.what());
  }
  int64_t rows = 0;
  for (const auto& g : file_.meta().row_groups) {
    first_row_.push_back(rows);
    rows += g.num_rows;
  }
}

ObelicsParquetFile::~ObelicsParquetFile() = default;

void ObelicsParquetFile::fail_at(std::string_view what) const {
  fail(file_.path(), ": row group ", group_, ": ", what);
}

void ObelicsParquetFile::seek(int64_t row_group, int64_t rows_before) {
  const auto groups = static_cast<int64_t>(first_row_.size());
  const bool ok = row_group >= 0 && row_group <= groups &&
                  (row_group == groups ? rows_before == num_rows()
                                       : rows_before >= first_row_[row_group] &&
                                             rows_before <= group_end(row_group));
  QV_CHECK(ok, "OBELICS Parquet position (row group ", row_group, ", row ", rows_before,
           ") does not lie in ", file_.path(), " (", groups, " row groups, ", num_rows(), " rows)");
  group_ = row_group;
  row_ = rows_before;
}

void ObelicsParquetFile::position_readers() {
  if (readers_group_ != group_ || readers_row_ > row_) {
    text_reader_ = std::make_unique<parquet::ColumnReader>(file_, static_cast<int>(group_), texts_);
    image_reader_ =
        std::make_unique<parquet::ColumnReader>(file_, static_cast<int>(group_), images_);
    readers_group_ = group_;
    readers_row_ = first_row_[group_];
  }
  for (; readers_row_ < row_; ++readers_row_) {
    if (!text_reader_->next(texts_row_, false) || !image_reader_->next(images_row_, false))
      fail_at(cat("a column ends before the row group's ", file_.meta().row_groups[group_].num_rows,
                  " rows"));
  }
}

bool ObelicsParquetFile::next(ObelicsRow& row) {
  const auto groups = static_cast<int64_t>(first_row_.size());
  while (group_ < groups && row_ == group_end(group_)) ++group_;
  if (group_ == groups) return false;
  position_readers();
  const bool has_text = text_reader_->next(texts_row_);
  const bool has_image = image_reader_->next(images_row_);
  if (!has_text || !has_image)
    fail_at(cat("column '", has_text ? "images" : "texts", "' ends before the row group's ",
                file_.meta().row_groups[group_].num_rows, " rows"));
  ++row_;
  ++readers_row_;
  row = to_row(texts_row_, images_row_, file_.limits());
  if (row_ == group_end(group_) &&
      (text_reader_->next(texts_row_, false) || image_reader_->next(images_row_, false)))
    fail_at(cat("a column holds more than the row group's ",
                file_.meta().row_groups[group_].num_rows, " rows"));
  row.doc.source = file_.path();
  row.doc.line = row_;
  return true;
}

}  // namespace qv::data
