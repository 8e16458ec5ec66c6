#include "data/skip_stats.h"

#include "core/log.h"

namespace qv::data {

void SkipStats::add(const std::string& reason, const std::string& origin,
                    const std::string& detail) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++counts_[reason];
  }
  log::warn("skipped sample " + origin + ": " + reason + (detail.empty() ? "" : " (" + detail + ")"));
}

int64_t SkipStats::total() const {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t n = 0;
  for (const auto& [_, c] : counts_) n += c;
  return n;
}

std::map<std::string, int64_t> SkipStats::by_reason() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counts_;
}

}  // namespace qv::data
