// Counting (and logging) the samples the data path skips, by reason, naming shard and key.
#pragma once
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace qv::data {

class SkipStats {
 public:
  void add(const std::string& reason, const std::string& origin, const std::string& detail = "");
  int64_t total() const;
  std::map<std::string, int64_t> by_reason() const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, int64_t> counts_;
};

}  // namespace qv::data
