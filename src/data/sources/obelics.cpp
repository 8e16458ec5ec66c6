#include "data/sources/obelics.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "data/sources/obelics_parquet.h"
#include "io/json_depth.h"

namespace qv::data {

namespace fs = std::filesystem;

namespace {

HttpFetchOptions with_size_limit(HttpFetchOptions http, int64_t max_bytes) {
  http.max_bytes = max_bytes;
  return http;
}

bool is_blank(std::string_view s) {
  return s.find_first_not_of(" \t\r\n") == std::string_view::npos;
}

ObelicsRow bad_row(std::string_view reason, std::string detail) {
  ObelicsRow r;
  r.skip_reason = reason;
  r.detail = std::move(detail);
  return r;
}

}  // namespace

nlohmann::json ObelicsState::to_json() const {
  return {{"file_index", file_index}, {"file", file}, {"offset", offset}, {"line", line}};
}

ObelicsState ObelicsState::from_json(const nlohmann::json& j) {
  try {
    ObelicsState s;
    s.file_index = j.at("file_index").get<int64_t>();
    s.file = j.at("file").get<std::string>();
    s.offset = j.at("offset").get<int64_t>();
    s.line = j.at("line").get<int64_t>();
    return s;
  } catch (const nlohmann::json::exception& e) {
    fail("bad OBELICS reader state ", j.dump(), ": ", e.what());
  }
}

ObelicsRow parse_obelics_row(std::string_view line, const std::string& source, int64_t line_no) {
  if (const size_t at = io::json_depth_violation(line); at != std::string_view::npos)
    return bad_row(skip::kMalformedJson, cat("line ", line_no, ": JSON nested deeper than ",
                                             io::kMaxJsonDepth, " levels (at byte ", at, ")"));
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    return bad_row(skip::kMalformedJson, cat("line ", line_no, ": ", e.what()));
  }
  if (!j.is_object()) return bad_row(skip::kMalformedDocument, "the row is not a JSON object");
  const auto texts = j.find("texts"), images = j.find("images");
  if (texts == j.end() || images == j.end() || !texts->is_array() || !images->is_array())
    return bad_row(skip::kMalformedDocument, "'texts' and 'images' must both be lists");
  std::vector<ObelicsCell> text_cells(texts->size()), image_cells(images->size());
  for (size_t i = 0; i < texts->size(); ++i) {
    auto& t = (*texts)[i];
    if (t.is_null()) continue;
    if (!t.is_string())
      return bad_row(skip::kMalformedDocument, cat("texts[", i, "] is not a string"));
    text_cells[i] = std::move(t.get_ref<std::string&>());
  }
  for (size_t i = 0; i < images->size(); ++i) {
    auto& im = (*images)[i];
    if (im.is_null()) continue;
    if (!im.is_string())
      return bad_row(skip::kMalformedDocument, cat("images[", i, "] is not a string"));
    image_cells[i] = std::move(im.get_ref<std::string&>());
  }
  return obelics_row_from_lists(std::move(text_cells), std::move(image_cells), source, line_no);
}

ObelicsRow obelics_row_from_lists(std::vector<ObelicsCell> texts, std::vector<ObelicsCell> images,
                                  const std::string& source, int64_t line_no) {
  if (texts.size() != images.size())
    return bad_row(skip::kLengthMismatch,
                   cat("'texts' has ", texts.size(), " entries, 'images' has ", images.size()));
  ObelicsRow row;
  row.doc.source = source;
  row.doc.line = line_no;
  for (size_t i = 0; i < texts.size(); ++i) {
    if (!texts[i] && !images[i]) return bad_row(skip::kNeitherTextNorImage, cat("position ", i));
    if (texts[i] && images[i]) return bad_row(skip::kBothTextAndImage, cat("position ", i));
    DocItem item;
    if (texts[i]) {
      item.text = std::move(*texts[i]);
    } else {
      item.is_image = true;
      item.image_ref = std::move(*images[i]);
    }
    row.doc.items.push_back(std::move(item));
  }
  if (row.doc.items.empty()) return bad_row(skip::kEmptyDocument, "no texts and no images");
  return row;
}

ObelicsReader::ObelicsReader(std::vector<std::string> files, ObelicsOptions options,
                             SkipStats* skips)
    : at_(std::move(files), "OBELICS"),
      options_(std::move(options)),
      fetcher_(with_size_limit(options_.http, options_.max_image_bytes)) {
  QV_CHECK(options_.max_image_bytes > 0 && options_.max_line_bytes > 0,
           "OBELICS reader limits must be positive");
  if (!skips) own_skips_ = std::make_unique<SkipStats>();
  skips_ = skips ? skips : own_skips_.get();
}

ObelicsReader::~ObelicsReader() = default;

bool ObelicsReader::open_file() {
  if (at_.done()) return false;
  if (is_parquet_path(at_.file())) {
    if (!parquet_)
      parquet_ = std::make_unique<ObelicsParquetFile>(at_.file(), parquet_limits(options_));
    parquet_->seek(at_.offset(), at_.line());
    return true;
  }
  lines_ = std::make_unique<LineReader>(at_.file(), options_.max_line_bytes);
  if (!at_.at_start()) lines_->seek(at_.offset(), at_.line());
  return true;
}

void ObelicsReader::close_file() {
  lines_.reset();
  parquet_.reset();
  at_.next_file();
}

std::string_view ObelicsReader::load_image(DocItem& item, const Document& doc,
                                           std::string& detail) {
  const std::string& ref = item.image_ref;
  if (is_http_url(ref)) {
    if (!options_.fetch_remote) return skip::kRemoteImagesDisabled;
    FetchResult r = fetcher_.fetch(ref);
    detail = r.message;
    switch (r.error) {
      case FetchError::kNone:
        break;
      case FetchError::kNotAllowed:
        return skip::kImageUrlNotAllowed;
      case FetchError::kTooLarge:
        return skip::kImageTooLarge;
      case FetchError::kFailed:
        return skip::kImageFetchFailed;
    }
    item.image_bytes = std::move(r.bytes);
  } else if (has_url_scheme(ref)) {
    detail = "only local paths and http(s) URLs are allowed";
    return skip::kImageUrlNotAllowed;
  } else {
    if (ref.empty()) return skip::kMissingImageFile;
    const fs::path p =
        fs::path(ref).is_absolute() ? fs::path(ref) : fs::path(doc.source).parent_path() / ref;
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0) {
      detail = cat(p.string(), ": ", std::strerror(errno));
      return errno == ENOENT ? skip::kMissingImageFile : skip::kUnreadableImageFile;
    }
    if (!S_ISREG(st.st_mode)) {
      detail = cat(p.string(), " is not a regular file");
      return skip::kUnreadableImageFile;
    }
    if (st.st_size > options_.max_image_bytes) {
      detail = cat(p.string(), " has ", st.st_size, " bytes, limit ", options_.max_image_bytes);
      return skip::kImageTooLarge;
    }
    std::ifstream in(p, std::ios::binary);
    item.image_bytes.resize(static_cast<size_t>(st.st_size));
    if (!in || !in.read(item.image_bytes.data(), st.st_size)) {
      item.image_bytes.clear();
      detail = cat(p.string(), ": read failed");
      return skip::kUnreadableImageFile;
    }
  }
  if (item.image_bytes.empty()) return skip::kEmptyImage;
  return {};
}

bool ObelicsReader::load_images(Document& doc) {
  std::vector<DocItem> kept;
  kept.reserve(doc.items.size());
  for (size_t i = 0; i < doc.items.size(); ++i) {
    DocItem& item = doc.items[i];
    if (item.is_image) {
      std::string detail;
      const std::string_view reason = load_image(item, doc, detail);
      if (!reason.empty()) {
        skips_->add(
            reason, doc.origin(),
            cat("images[", i, "] '", item.image_ref, "'", detail.empty() ? "" : ": ", detail));
        if (!options_.drop_unavailable_images) return false;
        continue;
      }
    }
    kept.push_back(std::move(item));
  }
  doc.items = std::move(kept);
  if (doc.items.empty()) {
    skips_->add(skip::kEmptyDocument, doc.origin(), "no item left after dropping images");
    return false;
  }
  return true;
}

bool ObelicsReader::read_row(ObelicsRow& row) {
  if (parquet_) {
    if (!parquet_->next(row)) return false;
    at_.advance(parquet_->row_group(), parquet_->row());
    return true;
  }
  std::string line;
  while (true) {
    const LineReader::Result r = lines_->next(line);
    if (r == LineReader::Result::kEnd) return false;
    at_.advance(lines_->offset(), lines_->line_number());
    const std::string& file = at_.file();
    if (r == LineReader::Result::kTooLong) {
      row.skip_reason = skip::kLineTooLong;
      row.detail = cat("longer than ", options_.max_line_bytes, " bytes");
    } else if (is_blank(line)) {
      continue;
    } else {
      row = parse_obelics_row(line, file, at_.line());
    }
    row.doc.source = file;
    row.doc.line = at_.line();
    return true;
  }
}

bool ObelicsReader::next(Document& doc) {
  while (true) {
    if (!lines_ && !parquet_ && !open_file()) return false;
    ObelicsRow row;
    if (!read_row(row)) {
      close_file();
      continue;
    }
    if (!row.skip_reason.empty()) {
      skips_->add(row.skip_reason, row.doc.origin(), row.detail);
      continue;
    }
    if (options_.max_images > 0) {
      int64_t images = 0;
      for (const DocItem& item : row.doc.items) images += item.is_image;
      if (images > options_.max_images) {
        skips_->add(skip::kTooManyImages, row.doc.origin(),
                    cat(images, " images, limit ", options_.max_images));
        continue;
      }
    }
    if (!load_images(row.doc)) continue;
    doc = std::move(row.doc);
    return true;
  }
}

ObelicsState ObelicsReader::state() const {
  return at_.state();
}

void ObelicsReader::restore(const ObelicsState& s) {
  const bool same_file = s.file_index == at_.state().file_index;
  at_.restore(s);
  lines_.reset();
  if (!same_file) parquet_.reset();  // else seek it
  if (!at_.done()) open_file();      // now, so that a bad offset fails here
}

// ---- FileListCursor ----

FileListCursor::FileListCursor(std::vector<std::string> files, std::string name)
    : files_(std::move(files)), name_(std::move(name)) {
  for (const auto& f : files_) {
    struct stat st {};
    QV_CHECK(::stat(f.c_str(), &st) == 0, name_, " file ", f, " does not exist");
    QV_CHECK(S_ISREG(st.st_mode), name_, " file ", f, " is not a regular file");
  }
}

void FileListCursor::next_file() {
  ++index_;
  offset_ = line_ = 0;
}

ObelicsState FileListCursor::state() const {
  ObelicsState s;
  s.file_index = static_cast<int64_t>(index_);
  if (!done()) s.file = file();
  s.offset = offset_;
  s.line = line_;
  return s;
}

void FileListCursor::restore(const ObelicsState& s) {
  const auto n = static_cast<int64_t>(files_.size());
  QV_CHECK(s.file_index >= 0 && s.file_index <= n, name_, " reader state points at file ",
           s.file_index, " but the list has ", n, " files");
  QV_CHECK(s.file_index == n || files_[s.file_index] == s.file, name_, " reader state names '",
           s.file, "' at index ", s.file_index, " but the list has '",
           s.file_index < n ? files_[s.file_index] : std::string(), "' there");
  index_ = static_cast<size_t>(s.file_index);
  offset_ = s.offset;
  line_ = s.line;
}

}  // namespace qv::data
