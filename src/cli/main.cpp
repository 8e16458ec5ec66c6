// qwen3vl: one binary, many subcommands (see `qwen3vl help`). Exit codes: 0 success, 1 an
// error while running, 2 a malformed command line, 128 + N stopped by signal N (train).
#include <algorithm>
#include <cstdio>
#include <exception>

#include "cli/command.h"
#include "cli/command_help.h"

namespace {

void print_usage(FILE* out) {
  std::fprintf(out,
               "usage: qwen3vl <command> [flags]   (qwen3vl <command> --help lists its flags; "
               "qwen3vl --version)\n\ncommands:\n");
  for (const auto& [name, cmd] : qv::cli::registry())
    std::fprintf(out, "  %-12s %s\n", name.c_str(), cmd.summary.c_str());
}

bool wants_help(const qv::cli::Args& args) {
  return std::any_of(args.begin(), args.end(),
                     [](const std::string& a) { return a == "--help" || a == "-h"; });
}

// A command with subcommands named first (data inspect, bench train): a usage error otherwise.
void check_subcommand(const std::string& command, const qv::cli::Args& args) {
  const qv::cli::CommandDoc* doc = qv::cli::command_doc(command);
  if (!doc || doc->subcommands.empty()) return;
  if (!args.empty() && std::find(doc->subcommands.begin(), doc->subcommands.end(), args[0]) !=
                           doc->subcommands.end())
    return;
  std::string subs;
  for (const auto& s : doc->subcommands) subs += (subs.empty() ? "" : "|") + s;
  qv::cli::usage_fail("qwen3vl ", command, " needs a subcommand first: ", subs, "\nusage: qwen3vl ",
                      doc->usage);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    print_usage(stderr);
    return 2;
  }
  const std::string first = argv[1];
  if (first == "help" || first == "--help" || first == "-h") {
    print_usage(stdout);
    return 0;
  }
  if (first == "--version") {
    std::printf("qwen3vl %s\n", QWEN3VL_VERSION);
    return 0;
  }
  auto& commands = qv::cli::registry();
  auto it = commands.find(first);
  if (it == commands.end()) {
    std::fprintf(stderr, "qwen3vl: unknown command '%s'\n\n", argv[1]);
    print_usage(stderr);
    return 2;
  }
  const qv::cli::Args args(argv + 2, argv + argc);
  if (wants_help(args)) {
    std::fputs(qv::cli::command_help(first).c_str(), stdout);
    return 0;
  }
  try {
    check_subcommand(first, args);
    return it->second.run(args);
  } catch (const qv::cli::UsageError& e) {
    std::fprintf(stderr, "qwen3vl %s: usage error: %s\n(see qwen3vl %s --help)\n", argv[1],
                 e.what(), argv[1]);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qwen3vl %s: error: %s\n", argv[1], e.what());
    return 1;
  }
}
