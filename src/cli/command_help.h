// `qwen3vl <command> --help`: each command's flags with their defaults, kept in one table so the
// command files stay as they are (tests/test_cli_conventions.cpp checks the table against the
// flags each command accepts).
#pragma once
#include <string>
#include <vector>

namespace qv::cli {

struct FlagDoc {
  std::string name;      // without "--"
  std::string value;     // placeholder ("N", "DIR"); "" for a boolean flag
  std::string fallback;  // the default, "" when required or off
  std::string help;
};

struct CommandDoc {
  std::string usage;                     // one line after "usage: qwen3vl "
  std::vector<std::string> subcommands;  // e.g. {"inspect", "bench"}; empty if none
  // Flags per subcommand ("" when there are no subcommands).
  std::vector<std::pair<std::string, std::vector<FlagDoc>>> flags;
};

// The documentation of `command`, or null when there is none.
const CommandDoc* command_doc(const std::string& command);

// The full help text of a command (flags with defaults; for train every config key).
std::string command_help(const std::string& command);

}  // namespace qv::cli
