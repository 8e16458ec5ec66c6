#include "data/obelics.h"

#include <curl/curl.h>

#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/checksum.h"

namespace qv::data {

namespace fs = std::filesystem;

namespace {

size_t write_body(char* p, size_t size, size_t n, void* user) {
  auto* ctx = static_cast<std::pair<std::string*, int64_t>*>(user);
  if (static_cast<int64_t>(ctx->first->size() + size * n) > ctx->second) return 0;  // too big
  ctx->first->append(p, size * n);
  return size * n;
}

std::string cache_name(const std::string& url) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%08x%08zx", io::crc32c(url.data(), url.size()),
                std::hash<std::string>{}(url));
  return buf;
}

}  // namespace

std::string fetch_url(const std::string& url, const UrlFetchConfig& c) {
  QV_CHECK(url.rfind("http://", 0) == 0 || url.rfind("https://", 0) == 0, "URL '", url,
           "' is not http(s)");
  const fs::path cached = fs::path(c.cache_dir) / cache_name(url);
  if (fs::exists(cached)) return io::read_file(cached.string());
  static const bool curl_ready = curl_global_init(CURL_GLOBAL_DEFAULT) == 0;
  QV_CHECK(curl_ready, "libcurl failed to initialise");
  std::string last_error;
  for (int attempt = 0; attempt <= c.retries; ++attempt) {
    std::string body;
    std::pair<std::string*, int64_t> ctx{&body, c.max_bytes};
    CURL* h = curl_easy_init();
    QV_CHECK(h != nullptr, "libcurl: cannot create a handle");
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(c.timeout_s * 1000));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(c.timeout_s * 1000));
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &ctx);
    const CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    if (rc == CURLE_OK && status == 200) {
      fs::create_directories(c.cache_dir);
      io::write_file_atomic(cached.string(), body);
      return body;
    }
    last_error = rc != CURLE_OK ? curl_easy_strerror(rc) : "HTTP status " + std::to_string(status);
    if (rc == CURLE_OK && status >= 400 && status < 500) break;  // retrying will not help
  }
  fail("cannot fetch ", url, ": ", last_error, " (after ", c.retries + 1, " attempts)");
}

Document parse_obelics_row(const std::string& line, const std::string& origin) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    fail(origin, ": not valid JSON: ", e.what());
  }
  QV_CHECK(j.is_object() && j.contains("texts") && j.contains("images") && j["texts"].is_array() &&
               j["images"].is_array(),
           origin, ": a row needs 'texts' and 'images' lists");
  const auto& texts = j["texts"];
  const auto& images = j["images"];
  QV_CHECK(texts.size() == images.size(), origin, ": 'texts' has ", texts.size(),
           " entries but 'images' has ", images.size());
  Document d;
  d.origin = origin;
  for (size_t i = 0; i < texts.size(); ++i) {
    const bool t = !texts[i].is_null(), im = !images[i].is_null();
    QV_CHECK(t != im, origin, ": position ", i, " must have exactly one of text and image");
    DocItem item;
    if (t) {
      QV_CHECK(texts[i].is_string(), origin, ": texts[", i, "] is not a string");
      item.text = texts[i].get<std::string>();
    } else {
      QV_CHECK(images[i].is_string(), origin, ": images[", i, "] is not a string");
      item.is_image = true;
      item.image_ref = images[i].get<std::string>();
    }
    d.items.push_back(std::move(item));
  }
  return d;
}

ObelicsReader::ObelicsReader(std::vector<std::string> files, UrlFetchConfig fetch, SkipStats& skips)
    : files_(std::move(files)), fetch_(std::move(fetch)), skips_(skips) {}

bool ObelicsReader::load_images(Document& doc, const std::string& base_dir) {
  for (DocItem& item : doc.items) {
    if (!item.is_image) continue;
    try {
      const std::string& ref = item.image_ref;
      if (ref.rfind("http://", 0) == 0 || ref.rfind("https://", 0) == 0) {
        item.image_bytes = fetch_url(ref, fetch_);
      } else {
        QV_CHECK(ref.find("://") == std::string::npos, "image '", ref,
                 "' uses an unsupported scheme (local paths and http(s) only)");
        const fs::path p = fs::path(ref).is_absolute() ? fs::path(ref) : fs::path(base_dir) / ref;
        QV_CHECK(fs::exists(p), "image file ", p.string(), " does not exist");
        item.image_bytes = io::read_file(p.string());
      }
    } catch (const Error& e) {
      skips_.add("image unavailable", doc.origin, e.what());
      return false;
    }
  }
  return true;
}

bool ObelicsReader::next(Document& doc) {
  while (file_ < files_.size()) {
    if (!in_.is_open()) {
      in_.open(files_[file_]);
      line_ = 0;
      QV_CHECK(in_.good(), "cannot open OBELICS file ", files_[file_]);
    }
    std::string line;
    if (!std::getline(in_, line)) {
      in_.close();
      ++file_;
      continue;
    }
    ++line_;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string origin = files_[file_] + ":" + std::to_string(line_);
    try {
      doc = parse_obelics_row(line, origin);
    } catch (const Error& e) {
      skips_.add("malformed row", origin, e.what());
      continue;
    }
    if (!load_images(doc, fs::path(files_[file_]).parent_path().string())) continue;
    return true;
  }
  return false;
}

}  // namespace qv::data
