#include <gtest/gtest.h>

#include <filesystem>

#include "data/sources/http_fetch.h"
#include "data_test_utils.h"

namespace qv::data {
namespace {

HttpFetchOptions local_options() {
  HttpFetchOptions o;
  o.use_env_proxy = false;  // tests talk to 127.0.0.1 only
  o.connect_timeout_ms = 2000;
  o.timeout_ms = 2000;
  o.retry_backoff_ms = 1;
  return o;
}

TEST(HttpFetch, RecognisesUrls) {
  EXPECT_TRUE(is_http_url("http://a/b.png"));
  EXPECT_TRUE(is_http_url("HTTPS://a/b.png"));
  EXPECT_FALSE(is_http_url("file:///etc/passwd"));
  EXPECT_FALSE(is_http_url("images/a.png"));
  EXPECT_TRUE(has_url_scheme("file:///etc/passwd"));
  EXPECT_TRUE(has_url_scheme("s3://bucket/x"));
  EXPECT_FALSE(has_url_scheme("images/a://b.png"));
  EXPECT_FALSE(has_url_scheme("images/a.png"));
}

TEST(HttpFetch, RefusesOtherSchemesWithoutNetwork) {
  HttpFetcher f(local_options());
  for (const char* url : {"file:///etc/hostname", "ftp://127.0.0.1/x", "gopher://127.0.0.1/"}) {
    const FetchResult r = f.fetch(url);
    EXPECT_EQ(r.error, FetchError::kNotAllowed) << url;
    EXPECT_EQ(r.attempts, 0);
    EXPECT_TRUE(r.bytes.empty());
  }
}

TEST(HttpFetch, SecondFetchIsACacheHit) {
  testing::TempDir dir;
  testing::LoopbackServer server;
  const std::string png =
      testing::read_bytes(testing::source_path("tests/data/obelics/images/blue.png"));
  server.set("/blue.png", {200, png, ""});
  HttpFetchOptions o = local_options();
  o.cache_dir = dir.file("cache");
  HttpFetcher f(o);
  const FetchResult first = f.fetch(server.url("/blue.png"));
  ASSERT_TRUE(first.ok()) << first.message;
  EXPECT_FALSE(first.from_cache);
  EXPECT_EQ(first.attempts, 1);
  EXPECT_EQ(first.bytes, png);
  const FetchResult second = f.fetch(server.url("/blue.png"));
  ASSERT_TRUE(second.ok());
  EXPECT_TRUE(second.from_cache);
  EXPECT_EQ(second.bytes, png);
  EXPECT_EQ(server.requests("/blue.png"), 1);
  EXPECT_EQ(f.cache_hits(), 1);
  EXPECT_EQ(f.downloads(), 1);
  EXPECT_TRUE(std::filesystem::exists(f.cache_path(server.url("/blue.png"))));

  // A damaged cache entry is a miss: fetched again and rewritten.
  testing::write_bytes(f.cache_path(server.url("/blue.png")), "garbage");
  const FetchResult third = f.fetch(server.url("/blue.png"));
  ASSERT_TRUE(third.ok());
  EXPECT_FALSE(third.from_cache);
  EXPECT_EQ(third.bytes, png);
  EXPECT_EQ(server.requests("/blue.png"), 2);
  EXPECT_TRUE(f.fetch(server.url("/blue.png")).from_cache);
}

TEST(HttpFetch, RetriesTransientFailuresOnly) {
  testing::LoopbackServer server;
  server.set("/busy", {503, "busy", ""});
  server.set("/gone", {404, "gone", ""});
  HttpFetchOptions o = local_options();
  o.max_attempts = 3;
  HttpFetcher f(o);
  const FetchResult busy = f.fetch(server.url("/busy"));
  EXPECT_EQ(busy.error, FetchError::kFailed);
  EXPECT_EQ(busy.attempts, 3);
  EXPECT_NE(busy.message.find("HTTP status 503"), std::string::npos) << busy.message;
  EXPECT_EQ(server.requests("/busy"), 3);
  const FetchResult gone = f.fetch(server.url("/gone"));
  EXPECT_EQ(gone.error, FetchError::kFailed);
  EXPECT_EQ(gone.attempts, 1);
  EXPECT_EQ(server.requests("/gone"), 1);
}

TEST(HttpFetch, TimesOutWithBoundedAttempts) {
  testing::LoopbackServer silent(/*silent=*/true);
  HttpFetchOptions o = local_options();
  o.connect_timeout_ms = 1000;
  o.timeout_ms = 1000;
  o.max_attempts = 2;
  o.retry_backoff_ms = 0;
  HttpFetcher f(o);
  const FetchResult r = f.fetch(silent.url("/never.png"));
  EXPECT_EQ(r.error, FetchError::kFailed);
  EXPECT_EQ(r.attempts, 2);
  EXPECT_NE(r.message.find("Timeout"), std::string::npos) << r.message;
  silent.stop();
  EXPECT_EQ(silent.connections(), 2);
}

TEST(HttpFetch, SizeLimitAndRedirectsToOtherSchemes) {
  testing::LoopbackServer server;
  server.set("/big", {200, std::string(5000, 'b'), ""});
  server.set("/to-file", {302, "", "Location: file:///etc/hostname\r\n"});
  server.set("/to-big", {302, "", "Location: /big\r\n"});
  HttpFetchOptions o = local_options();
  o.max_bytes = 1000;
  HttpFetcher f(o);
  EXPECT_EQ(f.fetch(server.url("/big")).error, FetchError::kTooLarge);
  EXPECT_EQ(f.fetch(server.url("/to-big")).error, FetchError::kTooLarge);  // redirects followed
  const FetchResult r = f.fetch(server.url("/to-file"));
  EXPECT_EQ(r.error, FetchError::kFailed);
  EXPECT_TRUE(r.bytes.empty());
  EXPECT_EQ(r.attempts, 1);
}

}  // namespace
}  // namespace qv::data
