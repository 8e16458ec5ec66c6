// Subcommand registry: each cli/cmd_*.cpp registers itself with a static Registration.
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/error.h"

namespace qv::cli {

// A malformed command line (unknown or missing flag, a value of the wrong kind): main() prints
// it with a pointer to --help and exits 2, where other errors exit 1.
struct UsageError : Error {
  using Error::Error;
};

template <typename... Args>
[[noreturn]] void usage_fail(const Args&... args) {
  throw UsageError(cat(args...));
}

using Args = std::vector<std::string>;

struct Command {
  std::string name;
  std::string summary;
  std::function<int(const Args&)> run;
};

std::map<std::string, Command>& registry();

struct Registration {
  explicit Registration(Command c) { registry()[c.name] = std::move(c); }
};

// Small flag parser: --name value / --name=value / --flag; positional arguments are rejected.
// Its errors are UsageErrors.
class Flags {
 public:
  Flags(const Args& args, const std::vector<std::string>& boolean_flags = {});
  bool has(const std::string& name) const { return values_.count(name) != 0; }
  std::string get(const std::string& name, const std::string& fallback = "") const;
  std::string require(const std::string& name) const;
  long long get_int(const std::string& name, long long fallback) const;
  double get_double(const std::string& name, double fallback) const;
  // Errors out naming any flag that is not in `known`.
  void allow_only(const std::vector<std::string>& known) const;
  const std::map<std::string, std::string>& values() const { return values_; }

 private:
  std::map<std::string, std::string> values_;
};

}  // namespace qv::cli
