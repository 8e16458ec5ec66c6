#include "data/shard_list.h"

#include <glob.h>

#include <algorithm>
#include <filesystem>

#include "core/error.h"

namespace qv::data {

std::vector<std::string> expand_braces(const std::string& p) {
  const size_t open = p.find('{');
  if (open == std::string::npos) return {p};
  const size_t close = p.find('}', open);
  QV_CHECK(close != std::string::npos, "unbalanced '{' in dataset path '", p, "'");
  const std::string head = p.substr(0, open), body = p.substr(open + 1, close - open - 1),
                    tail = p.substr(close + 1);
  std::vector<std::string> parts;
  const size_t dots = body.find("..");
  if (dots != std::string::npos) {
    const std::string a = body.substr(0, dots), b = body.substr(dots + 2);
    QV_CHECK(!a.empty() && !b.empty() && std::all_of(a.begin(), a.end(), ::isdigit) &&
                 std::all_of(b.begin(), b.end(), ::isdigit),
             "range '{", body, "}' in '", p, "' must be {first..last} with digits");
    const long long lo = std::stoll(a), hi = std::stoll(b);
    QV_CHECK(lo <= hi && hi - lo < 10000000, "range '{", body, "}' in '", p, "' is empty or huge");
    const size_t width = a.size();
    for (long long i = lo; i <= hi; ++i) {
      std::string s = std::to_string(i);
      if (s.size() < width) s.insert(0, width - s.size(), '0');
      parts.push_back(s);
    }
  } else {
    size_t start = 0;
    while (true) {
      const size_t comma = body.find(',', start);
      parts.push_back(body.substr(start, comma - start));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  std::vector<std::string> out;
  for (const auto& part : parts)
    for (const auto& rest : expand_braces(tail)) out.push_back(head + part + rest);
  return out;
}

std::vector<std::string> expand_shards(const std::string& pattern) {
  QV_CHECK(!pattern.empty(), "empty dataset path");
  std::vector<std::string> out;
  for (const auto& p : expand_braces(pattern)) {
    if (p.find_first_of("*?[") == std::string::npos) {
      QV_CHECK(std::filesystem::exists(p), "dataset shard '", p, "' does not exist");
      out.push_back(p);
      continue;
    }
    glob_t g{};
    const int rc = ::glob(p.c_str(), 0, nullptr, &g);
    std::vector<std::string> matches(g.gl_pathv, g.gl_pathv + g.gl_pathc);
    globfree(&g);
    QV_CHECK(rc == 0 && !matches.empty(), "dataset pattern '", p, "' matches no file");
    std::sort(matches.begin(), matches.end());
    out.insert(out.end(), matches.begin(), matches.end());
  }
  return out;
}

}  // namespace qv::data
