// Minimal leveled logging to stderr: "YYYY-MM-DD HH:MM:SS.mmm [level] message" (local time).
#pragma once
#include <string>

namespace qv::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

void set_level(Level level);
Level level();
void write(Level level, const std::string& message);

inline void debug(const std::string& m) {
  write(Level::kDebug, m);
}
inline void info(const std::string& m) {
  write(Level::kInfo, m);
}
inline void warn(const std::string& m) {
  write(Level::kWarn, m);
}
inline void error(const std::string& m) {
  write(Level::kError, m);
}

}  // namespace qv::log
