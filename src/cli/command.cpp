#include "cli/command.h"

#include <algorithm>

namespace qv::cli {

std::map<std::string, Command>& registry() {
  static std::map<std::string, Command> commands;
  return commands;
}

Flags::Flags(const Args& args, const std::vector<std::string>& boolean_flags) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.rfind("--", 0) != 0 || a.size() <= 2)
      usage_fail("unexpected argument '", a, "' (flags look like --name value)");
    std::string name = a.substr(2), value;
    const size_t eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else if (std::find(boolean_flags.begin(), boolean_flags.end(), name) != boolean_flags.end()) {
      value = "true";
    } else {
      if (i + 1 >= args.size()) usage_fail("flag --", name, " needs a value");
      value = args[++i];
    }
    values_[name] = value;
  }
}

std::string Flags::get(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second;
}

std::string Flags::require(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) usage_fail("missing required flag --", name);
  return it->second;
}

long long Flags::get_int(const std::string& name, long long fallback) const {
  if (!has(name)) return fallback;
  const std::string v = get(name);
  try {
    size_t used = 0;
    long long x = std::stoll(v, &used);
    QV_CHECK(used == v.size(), "");
    return x;
  } catch (...) {
    usage_fail("flag --", name, " expects an integer, got '", v, "'");
  }
}

double Flags::get_double(const std::string& name, double fallback) const {
  if (!has(name)) return fallback;
  const std::string v = get(name);
  try {
    size_t used = 0;
    double x = std::stod(v, &used);
    QV_CHECK(used == v.size(), "");
    return x;
  } catch (...) {
    usage_fail("flag --", name, " expects a number, got '", v, "'");
  }
}

void Flags::allow_only(const std::vector<std::string>& known) const {
  for (const auto& [name, _] : values_) {
    if (std::find(known.begin(), known.end(), name) != known.end()) continue;
    std::string list;
    for (const auto& k : known) list += " --" + k;
    usage_fail("unknown flag --", name, " (valid:", list, ")");
  }
}

}  // namespace qv::cli
