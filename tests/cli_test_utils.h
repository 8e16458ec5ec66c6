// Running the qwen3vl binary from tests.
#pragma once
#include <spawn.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>
#include <vector>

extern char** environ;

namespace qv::testing {

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Runs a shell command and waits; exit_code is -1 when it was killed by a signal.
inline CommandResult run_shell(const std::string& cmd) {
  CommandResult r;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

inline CommandResult run_qwen3vl(const std::string& args) {
  return run_shell(std::string(QWEN3VL_BINARY) + " " + args);
}

// Starts `qwen3vl args...` without waiting for it, with `extra_env` ("NAME=value") added to this
// process's environment; returns its pid, or -1.
inline pid_t spawn_qwen3vl(std::vector<std::string> args,
                           const std::vector<std::string>& extra_env = {}) {
  std::string bin = QWEN3VL_BINARY;
  args.insert(args.begin(), bin);
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env(extra_env);
  for (char** e = environ; *e; ++e) env.emplace_back(*e);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawn(&pid, bin.c_str(), nullptr, nullptr, argv.data(), envp.data()) != 0) return -1;
  return pid;
}

}  // namespace qv::testing
