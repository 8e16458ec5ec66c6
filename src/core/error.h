// Errors: one exception type whose message says what went wrong and where.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace qv {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Concatenates any streamable values into one string.
template <typename... Args>
std::string cat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

template <typename... Args>
[[noreturn]] void fail(const Args&... args) {
  throw Error(cat(args...));
}

}  // namespace qv

// QV_CHECK(cond, "message parts", ...) throws qv::Error when cond is false.
#define QV_CHECK(cond, ...)               \
  do {                                    \
    if (!(cond)) ::qv::fail(__VA_ARGS__); \
  } while (0)
