#include "data/sources/http_fetch.h"

#include <curl/curl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "core/log.h"

namespace qv::data {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kCacheMagic = "qwen3vl-url-cache 1";

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  return true;
}

uint64_t fnv1a(std::string_view s, uint64_t hash) {
  for (unsigned char c : s) {
    hash ^= c;
    hash *= 0x100000001b3ull;
  }
  return hash;
}

void init_curl_once() {
  static std::once_flag once;
  static CURLcode rc = CURLE_OK;
  std::call_once(once, [] { rc = curl_global_init(CURL_GLOBAL_DEFAULT); });
  QV_CHECK(rc == CURLE_OK, "libcurl failed to initialise: ", curl_easy_strerror(rc));
}

struct Body {
  std::string* out;
  int64_t limit;
  bool too_large = false;
};

size_t write_body(char* data, size_t size, size_t n, void* user) {
  auto* body = static_cast<Body*>(user);
  const size_t bytes = size * n;
  if (static_cast<int64_t>(body->out->size() + bytes) > body->limit) {
    body->too_large = true;
    return 0;  // makes curl stop with CURLE_WRITE_ERROR
  }
  body->out->append(data, bytes);
  return bytes;
}

bool transient(CURLcode rc) {
  switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return true;
    default:
      return false;
  }
}

bool transient_status(long status) {
  return status == 408 || status == 429 || status >= 500;
}

}  // namespace

bool is_http_url(std::string_view ref) {
  return starts_with_nocase(ref, "http://") || starts_with_nocase(ref, "https://");
}

bool has_url_scheme(std::string_view ref) {
  const size_t sep = ref.find("://");
  if (sep == std::string_view::npos || sep == 0) return false;
  return std::all_of(ref.begin(), ref.begin() + sep, [](unsigned char c) {
    return std::isalnum(c) || c == '+' || c == '-' || c == '.';
  });
}

HttpFetcher::HttpFetcher(HttpFetchOptions options) : options_(std::move(options)) {
  QV_CHECK(options_.max_attempts >= 1 && options_.connect_timeout_ms > 0 &&
               options_.timeout_ms > 0 && options_.max_bytes > 0 && options_.retry_backoff_ms >= 0,
           "HTTP fetch options: attempts, timeouts and size limit must be positive");
  init_curl_once();
  curl_ = curl_easy_init();
  QV_CHECK(curl_ != nullptr, "libcurl: cannot create a handle");
}

HttpFetcher::~HttpFetcher() {
  if (curl_) curl_easy_cleanup(static_cast<CURL*>(curl_));
}

std::string HttpFetcher::cache_path(const std::string& url) const {
  char hex[33];
  std::snprintf(hex, sizeof(hex), "%016llx%016llx",
                static_cast<unsigned long long>(fnv1a(url, 0xcbf29ce484222325ull)),
                static_cast<unsigned long long>(fnv1a(url, 0x84222325cbf29ce4ull)));
  return (fs::path(options_.cache_dir) / std::string(hex, 2) / hex).string();
}

// Entry layout: "<magic>\n<byte count>\n<url>\n<bytes>"; anything else is a miss.
bool HttpFetcher::read_cache(const std::string& url, std::string& bytes) const {
  std::ifstream in(cache_path(url), std::ios::binary);
  if (!in) return false;
  std::string magic, count, stored_url;
  if (!std::getline(in, magic) || magic != kCacheMagic || !std::getline(in, count) ||
      !std::getline(in, stored_url) || stored_url != url)
    return false;
  if (count.empty() || count.size() > 18 ||
      count.find_first_not_of("0123456789") != std::string::npos)
    return false;
  const int64_t n = std::stoll(count);
  if (n > options_.max_bytes) return false;
  bytes.resize(static_cast<size_t>(n));
  if (!in.read(bytes.data(), n) || in.peek() != std::char_traits<char>::eof()) return false;
  return true;
}

void HttpFetcher::write_cache(const std::string& url, const std::string& bytes) {
  static std::atomic<uint64_t> counter{0};
  const fs::path target = cache_path(url);
  const fs::path tmp = target.parent_path() / cat(".", target.filename().string(), ".", ::getpid(),
                                                  ".", counter++, ".tmp");
  std::error_code ec;
  fs::create_directories(target.parent_path(), ec);
  bool ok = !ec;
  if (ok) {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << kCacheMagic << '\n' << bytes.size() << '\n' << url << '\n';
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    ok = !out.fail();
  }
  if (ok) {
    fs::rename(tmp, target, ec);  // atomic: readers see no entry or a whole one
    ok = !ec;
  }
  if (!ok) {
    fs::remove(tmp, ec);
    if (!cache_warned_) log::warn(cat("image cache ", options_.cache_dir, " is not writable"));
    cache_warned_ = true;
  }
}

FetchResult HttpFetcher::fetch(const std::string& url) {
  FetchResult r;
  if (!is_http_url(url)) {
    r.error = FetchError::kNotAllowed;
    r.message = "only http and https URLs are allowed";
    return r;
  }
  if (!options_.cache_dir.empty() && read_cache(url, r.bytes)) {
    r.from_cache = true;
    ++cache_hits_;
    return r;
  }
  CURL* h = static_cast<CURL*>(curl_);
  char errbuf[CURL_ERROR_SIZE];
  int64_t backoff = options_.retry_backoff_ms;
  for (int attempt = 1; attempt <= options_.max_attempts; ++attempt) {
    if (attempt > 1 && backoff > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(backoff));
      backoff = std::min<int64_t>(backoff * 2, 10000);
    }
    r.attempts = attempt;
    r.bytes.clear();
    Body body{&r.bytes, options_.max_bytes};
    errbuf[0] = '\0';
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, static_cast<long>(options_.max_redirects));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.connect_timeout_ms));
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.timeout_ms));
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(options_.max_bytes));
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);  // timeouts without SIGALRM, safe in threads
    curl_easy_setopt(h, CURLOPT_USERAGENT, "qwen3vl.cpp");
    if (!options_.use_env_proxy) curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
    const CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (rc == CURLE_OK && status >= 200 && status < 300) {
      ++downloads_;
      if (!options_.cache_dir.empty()) write_cache(url, r.bytes);
      r.message.clear();
      return r;
    }
    r.bytes.clear();
    if (body.too_large || rc == CURLE_FILESIZE_EXCEEDED) {
      r.error = FetchError::kTooLarge;
      r.message = cat("larger than ", options_.max_bytes, " bytes");
      return r;
    }
    r.error = FetchError::kFailed;
    r.message = rc != CURLE_OK ? cat(curl_easy_strerror(rc), errbuf[0] ? ": " : "", errbuf)
                               : cat("HTTP status ", status);
    if (rc == CURLE_OK ? !transient_status(status) : !transient(rc)) break;
  }
  r.message += cat(" (", r.attempts, r.attempts == 1 ? " attempt)" : " attempts)");
  return r;
}

}  // namespace qv::data
