// Fetching image URLs over http(s) with libcurl: connect and transfer timeouts, a bounded number
// of attempts with exponential backoff for transient failures (timeouts, refused connections,
// HTTP 408/429/5xx), a size limit, and an on-disk cache keyed by a hash of the URL. Only http
// and https are allowed, for the URL and for every redirect (no file://, ftp://, ...).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace qv::data {

struct HttpFetchOptions {
  std::string cache_dir;  // empty: no cache
  int64_t connect_timeout_ms = 5000;
  int64_t timeout_ms = 30000;  // whole transfer of one attempt
  int max_attempts = 3;
  int64_t retry_backoff_ms = 250;  // before the second attempt; doubled after each failure
  int64_t max_bytes = 32ll << 20;
  int max_redirects = 5;
  bool use_env_proxy = true;  // honour http_proxy / https_proxy / no_proxy
};

enum class FetchError { kNone, kNotAllowed, kTooLarge, kFailed };

struct FetchResult {
  FetchError error = FetchError::kNone;
  std::string bytes;
  std::string message;  // on failure: the cause and the number of attempts
  bool from_cache = false;
  int attempts = 0;  // network attempts made (0 for a cache hit or a refused URL)
  bool ok() const { return error == FetchError::kNone; }
};

// One fetcher per thread (it reuses one connection handle).
class HttpFetcher {
 public:
  explicit HttpFetcher(HttpFetchOptions options = {});
  ~HttpFetcher();
  HttpFetcher(const HttpFetcher&) = delete;
  HttpFetcher& operator=(const HttpFetcher&) = delete;

  // Never throws for network trouble or a bad URL; the result says what happened.
  FetchResult fetch(const std::string& url);

  int64_t cache_hits() const { return cache_hits_; }
  int64_t downloads() const { return downloads_; }
  const HttpFetchOptions& options() const { return options_; }

  // Cache file of a URL: <cache_dir>/<2 hex>/<32 hex> (128-bit hash). Each entry also stores the
  // URL, checked on every hit, so a hash collision is a miss, never wrong bytes.
  std::string cache_path(const std::string& url) const;

 private:
  bool read_cache(const std::string& url, std::string& bytes) const;
  void write_cache(const std::string& url, const std::string& bytes);

  HttpFetchOptions options_;
  void* curl_ = nullptr;  // CURL*
  int64_t cache_hits_ = 0, downloads_ = 0;
  bool cache_warned_ = false;
};

// "http://..." or "https://..." (scheme case-insensitive).
bool is_http_url(std::string_view ref);
// Any "scheme://" prefix (a reference that is not a plain local path).
bool has_url_scheme(std::string_view ref);

}  // namespace qv::data
