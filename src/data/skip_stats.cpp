#include "data/skip_stats.h"

#include "core/log.h"

namespace qv::data {

std::string SkipRecord::message() const {
  std::string m = origin + ": " + reason;
  if (!detail.empty()) m += " (" + detail + ")";
  return m;
}

void SkipStats::add(std::string_view reason, std::string_view origin, std::string_view detail) {
  SkipRecord record{std::string(reason), std::string(origin), std::string(detail)};
  bool logged = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = counts_.find(reason);
    if (it == counts_.end()) it = counts_.emplace(std::string(reason), 0).first;
    logged = ++it->second <= log_limit_;
    if (logged) records_.push_back(record);
  }
  const std::string line = "skipped " + record.message();
  if (logged) {
    log::warn(line);
  } else {
    log::debug(line);
  }
}

int64_t SkipStats::total() const {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t n = 0;
  for (const auto& [reason, c] : counts_) n += c;
  return n;
}

int64_t SkipStats::count(std::string_view reason) const {
  std::lock_guard<std::mutex> lock(mu_);
  const auto it = counts_.find(reason);
  return it == counts_.end() ? 0 : it->second;
}

std::map<std::string, int64_t> SkipStats::by_reason() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {counts_.begin(), counts_.end()};
}

std::vector<SkipRecord> SkipStats::records() const {
  std::lock_guard<std::mutex> lock(mu_);
  return records_;
}

nlohmann::json SkipStats::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [reason, c] : by_reason()) j[reason] = c;
  return j;
}

void SkipStats::reset(const nlohmann::json& counts) {
  std::lock_guard<std::mutex> lock(mu_);
  counts_.clear();
  records_.clear();
  if (!counts.is_object()) return;
  for (auto it = counts.begin(); it != counts.end(); ++it)
    if (it->is_number_integer()) counts_[it.key()] = it->get<int64_t>();
}

std::string SkipStats::summary() const {
  std::string s;
  for (const auto& [reason, c] : by_reason()) {
    if (!s.empty()) s += ", ";
    s += reason + ": " + std::to_string(c);
  }
  return s.empty() ? "none" : s;
}

}  // namespace qv::data
