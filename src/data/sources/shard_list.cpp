#include "data/sources/shard_list.h"

#include <glob.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>

#include "core/error.h"

namespace qv::data {

namespace {

constexpr int64_t kMaxExpansion = 10'000'000;  // a typo like {0..9999999999} must not eat memory

bool all_digits(const std::string& s) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
}

// Position of the '}' matching the '{' at `open`, or npos.
size_t matching_brace(const std::string& p, size_t open) {
  int depth = 0;
  for (size_t i = open; i < p.size(); ++i) {
    if (p[i] == '{') ++depth;
    if (p[i] == '}' && --depth == 0) return i;
  }
  return std::string::npos;
}

// Splits a brace body at its top-level commas.
std::vector<std::string> split_top_level(const std::string& body) {
  std::vector<std::string> parts;
  int depth = 0;
  size_t start = 0;
  for (size_t i = 0; i < body.size(); ++i) {
    if (body[i] == '{') ++depth;
    if (body[i] == '}') --depth;
    if (body[i] == ',' && depth == 0) {
      parts.push_back(body.substr(start, i - start));
      start = i + 1;
    }
  }
  parts.push_back(body.substr(start));
  return parts;
}

// "{first..last}" with decimal bounds; false when the body is not a range.
bool expand_range(const std::string& body, const std::string& pattern,
                  std::vector<std::string>& out) {
  const size_t dots = body.find("..");
  if (dots == std::string::npos) return false;
  const std::string a = body.substr(0, dots), b = body.substr(dots + 2);
  if (!all_digits(a) || !all_digits(b)) return false;
  QV_CHECK(a.size() <= 18 && b.size() <= 18, "range {", body, "} in '", pattern, "' is too large");
  const int64_t lo = std::stoll(a), hi = std::stoll(b);
  const int64_t count = (hi >= lo ? hi - lo : lo - hi) + 1;
  QV_CHECK(count <= kMaxExpansion, "range {", body, "} in '", pattern, "' has ", count,
           " values (limit ", kMaxExpansion, ")");
  // Padding as webdataset's braceexpand: when a bound has a leading zero, every value is padded
  // to the width of the wider bound.
  const bool pad = (a.size() > 1 && a[0] == '0') || (b.size() > 1 && b[0] == '0');
  const size_t width = pad ? std::max(a.size(), b.size()) : 0;
  const int64_t step = hi >= lo ? 1 : -1;
  for (int64_t i = lo;; i += step) {
    std::string s = std::to_string(i);
    if (s.size() < width) s.insert(0, width - s.size(), '0');
    out.push_back(std::move(s));
    if (i == hi) break;
  }
  return true;
}

void expand_into(const std::string& p, const std::string& pattern, std::vector<std::string>& out) {
  // The first '{' that opens a real group (a range or a comma list); literal groups are kept.
  size_t search = 0;
  while (true) {
    const size_t open = p.find('{', search);
    if (open == std::string::npos) {
      out.push_back(p);
      return;
    }
    const size_t close = matching_brace(p, open);
    QV_CHECK(close != std::string::npos, "unbalanced '{' in dataset path '", pattern, "'");
    const std::string body = p.substr(open + 1, close - open - 1);
    std::vector<std::string> alternatives;
    if (!expand_range(body, pattern, alternatives)) {
      alternatives = split_top_level(body);
      if (alternatives.size() < 2) {  // "{abc}": literal, look further right
        search = open + 1;
        continue;
      }
    }
    const std::string head = p.substr(0, open), tail = p.substr(close + 1);
    for (const auto& alt : alternatives) {
      QV_CHECK(static_cast<int64_t>(out.size()) < kMaxExpansion, "dataset path '", pattern,
               "' expands to more than ", kMaxExpansion, " names");
      expand_into(head + alt + tail, pattern, out);
    }
    return;
  }
}

bool has_glob_chars(const std::string& p) {
  return p.find_first_of("*?[") != std::string::npos;
}

}  // namespace

std::vector<std::string> expand_braces(const std::string& pattern) {
  std::vector<std::string> out;
  expand_into(pattern, pattern, out);
  return out;
}

std::vector<std::string> expand_shards(const std::string& pattern) {
  QV_CHECK(!pattern.empty(), "empty dataset path");
  QV_CHECK(pattern.find("://") == std::string::npos, "dataset path '", pattern,
           "' is a URL; only local shard files are supported");
  std::vector<std::string> out;
  for (const auto& p : expand_braces(pattern)) {
    if (!has_glob_chars(p)) {
      struct stat st {};
      QV_CHECK(::stat(p.c_str(), &st) == 0, "dataset shard '", p, "' does not exist");
      out.push_back(p);
      continue;
    }
    glob_t g{};
    const int rc = ::glob(p.c_str(), GLOB_ERR, nullptr, &g);
    std::vector<std::string> matches;
    if (rc == 0) matches.assign(g.gl_pathv, g.gl_pathv + g.gl_pathc);
    globfree(&g);
    QV_CHECK(rc == 0 || rc == GLOB_NOMATCH, "cannot read the folders of dataset pattern '", p, "'");
    QV_CHECK(!matches.empty(), "dataset pattern '", p, "' matches no file");
    std::sort(matches.begin(), matches.end());  // glob sorts by locale; make it bytewise
    out.insert(out.end(), matches.begin(), matches.end());
  }
  return out;
}

std::vector<std::string> expand_shards(const std::vector<std::string>& patterns) {
  QV_CHECK(!patterns.empty(), "no dataset path given");
  std::vector<std::string> out;
  for (const auto& p : patterns) {
    const auto part = expand_shards(p);
    out.insert(out.end(), part.begin(), part.end());
  }
  return out;
}

RankShare share_for_rank(const std::vector<std::string>& shards, int rank, int world_size) {
  QV_CHECK(world_size >= 1 && rank >= 0 && rank < world_size, "invalid rank ", rank,
           " for world size ", world_size);
  QV_CHECK(!shards.empty(), "no shards to share among ", world_size, " ranks");
  RankShare share;
  if (static_cast<int64_t>(shards.size()) >= world_size) {
    for (size_t i = static_cast<size_t>(rank); i < shards.size(); i += world_size)
      share.shards.push_back(shards[i]);
  } else {
    share.shards = shards;
    share.sample_stride = world_size;
    share.sample_offset = rank;
  }
  return share;
}

}  // namespace qv::data
