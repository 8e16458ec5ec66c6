#include "core/log.h"

#include <cstdio>
#include <mutex>

namespace qv::log {
namespace {
Level g_level = Level::kInfo;
std::mutex g_mutex;
const char* tag(Level level) {
  switch (level) {
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarn:
      return "warn";
    case Level::kError:
      return "error";
  }
  return "?";
}
}  // namespace

void set_level(Level level) {
  g_level = level;
}
Level level() {
  return g_level;
}

void write(Level level, const std::string& message) {
  if (level < g_level) return;
  std::lock_guard<std::mutex> lock(g_mutex);
  std::fprintf(stderr, "[%s] %s\n", tag(level), message.c_str());
}

}  // namespace qv::log
