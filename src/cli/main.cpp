// qwen3vl: one binary, many subcommands (see `qwen3vl help`).
#include <cstdio>
#include <exception>

#include "cli/command.h"

namespace {
void print_usage() {
  std::printf("usage: qwen3vl <command> [flags]\n\ncommands:\n");
  for (const auto& [name, cmd] : qv::cli::registry())
    std::printf("  %-12s %s\n", name.c_str(), cmd.summary.c_str());
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "help" || std::string(argv[1]) == "--help") {
    print_usage();
    return argc < 2 ? 2 : 0;
  }
  auto& commands = qv::cli::registry();
  auto it = commands.find(argv[1]);
  if (it == commands.end()) {
    std::fprintf(stderr, "qwen3vl: unknown command '%s'\n\n", argv[1]);
    print_usage();
    return 2;
  }
  try {
    return it->second.run(qv::cli::Args(argv + 2, argv + argc));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qwen3vl %s: error: %s\n", argv[1], e.what());
    return 1;
  }
}
