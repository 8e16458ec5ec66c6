// Command-line conventions: `qwen3vl <cmd> --help` lists exactly the flags the command accepts,
// with defaults, and exits 0; `train --help` lists every config key with its default;
// --version; malformed command lines exit 2 (other errors 1).
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <sstream>

#include "cli_test_utils.h"
#include "train/job_config.h"

namespace qv {
namespace {

// The flags a command accepts, from its own "unknown flag" message: "(valid: --a --b)".
std::set<std::string> accepted_flags(const std::string& command_line) {
  const auto r = testing::run_qwen3vl(command_line + " --zz-no-such-flag 1");
  EXPECT_EQ(r.exit_code, 2) << command_line << "\n" << r.output;
  std::set<std::string> out;
  const size_t at = r.output.find("(valid:");
  if (at == std::string::npos) {
    ADD_FAILURE() << command_line << ": no flag list in\n" << r.output;
    return out;
  }
  const std::string list = r.output.substr(at, r.output.find(')', at) - at);
  for (size_t p = list.find("--"); p != std::string::npos; p = list.find("--", p + 2)) {
    const size_t end = list.find(' ', p);
    out.insert(list.substr(p + 2, end == std::string::npos ? std::string::npos : end - p - 2));
  }
  return out;
}

// The flag names of each section of a --help text: "flags:" (commands without subcommands) or
// "qwen3vl <command> <sub>:", then one "  --name ..." line per flag.
std::map<std::string, std::set<std::string>> help_sections(const std::string& help) {
  std::map<std::string, std::set<std::string>> out;
  std::istringstream in(help);
  std::string line, section;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == ':' && line.rfind("  ", 0) != 0) {
      section = line.substr(0, line.size() - 1);
    } else if (line.rfind("  --", 0) == 0 && !section.empty()) {
      out[section].insert(line.substr(4, line.find(' ', 4) - 4));
    }
  }
  return out;
}

TEST(CliConventions, HelpListsExactlyTheFlagsEachCommandAccepts) {
  const std::map<std::string, std::vector<std::string>> commands = {
      {"forward", {""}},
      {"generate", {""}},
      {"info", {""}},
      {"preprocess", {""}},
      {"tokenize", {""}},
      {"data", {"inspect", "bench"}},
      {"checkpoint", {"export"}},  // inspect takes only the folder
      {"bench", {"train", "forward"}}};
  for (const auto& [command, subs] : commands) {
    const auto help = testing::run_qwen3vl(command + " --help");
    EXPECT_EQ(help.exit_code, 0) << command << help.output;
    EXPECT_NE(help.output.find("(default: "), std::string::npos) << help.output;
    const auto sections = help_sections(help.output);
    for (const std::string& sub : subs) {
      const std::string name = sub.empty() ? "flags" : "qwen3vl " + command + " " + sub;
      ASSERT_TRUE(sections.count(name)) << name << "\n" << help.output;
      EXPECT_EQ(sections.at(name), accepted_flags(command + (sub.empty() ? "" : " " + sub)))
          << command << " " << sub;
    }
  }
}

TEST(CliConventions, TrainHelpListsEveryConfigKeyWithItsDefault) {
  const auto r = testing::run_qwen3vl("train --help");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string defaults = train::JobConfig().to_toml();
  EXPECT_NE(r.output.find(defaults), std::string::npos);
  for (const std::string& key : train::JobConfig::known_keys())
    EXPECT_NE(r.output.find(key.substr(key.find('.') + 1) + " = "), std::string::npos) << key;
  EXPECT_NE(r.output.find("parallelism.tensor_parallel_degree = '1'"), std::string::npos);
}

TEST(CliConventions, VersionAndUsageErrors) {
  auto r = testing::run_qwen3vl("--version");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.output.rfind("qwen3vl ", 0), 0u) << r.output;
  // Exit 2: malformed command lines, each with a pointer to --help.
  for (const std::string bad :
       {"", "nosuchcommand", "info --flavor", "forward --inputs x.st",
        "info --flavor 8B --seq-len many", "train", "train --config a.toml --training.stepz 3",
        "train stray", "data", "bench nosuchsub", "generate --model m --prompt p --nosuch 1"}) {
    r = testing::run_qwen3vl(bad);
    EXPECT_EQ(r.exit_code, 2) << "'" << bad << "'\n" << r.output;
  }
  r = testing::run_qwen3vl("info --flavor");
  EXPECT_NE(r.output.find("see qwen3vl info --help"), std::string::npos) << r.output;
  // Exit 1: a well-formed command that fails while running.
  r = testing::run_qwen3vl("train --config /nonexistent/job.toml");
  EXPECT_EQ(r.exit_code, 1) << r.output;
}

}  // namespace
}  // namespace qv
