// The folder layering of docs/ARCHITECTURE.md, checked on the sources: every project #include
// in src/ points to the same folder or to one the table below allows (a lower layer).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace qv {
namespace {

namespace fs = std::filesystem;

// Folder -> folders it may include (besides itself). data/ has sub-layers: pipeline/ sits on
// sources/, tokenizer/ and image/, which sit beside each other on data/'s shared helpers.
const std::map<std::string, std::set<std::string>>& allowed() {
  static const std::map<std::string, std::set<std::string>> kAllowed = {
      {"cli", {"train", "infer", "dist", "model", "data", "kernels", "io", "core"}},
      {"train", {"dist", "model", "data", "kernels", "io", "core"}},
      {"infer", {"dist", "model", "data", "kernels", "io", "core"}},
      {"dist", {"model", "kernels", "io", "core"}},
      {"model", {"kernels", "io", "core"}},
      {"data/pipeline", {"data/sources", "data/tokenizer", "data/image", "data", "io", "core"}},
      {"data/sources", {"data", "io", "core"}},
      {"data/tokenizer", {"data", "io", "core"}},
      {"data/image", {"data", "io", "core"}},
      {"data", {"io", "core"}},
      {"kernels", {"core"}},
      {"io", {"core"}},
      {"core", {}},
  };
  return kAllowed;
}

// The layer a path under src/ belongs to: "data/<sub>" for data's subfolders, else the top
// folder ("kernels/cpu/x.h" -> "kernels").
std::string layer_of(const std::string& path) {
  const size_t slash = path.find('/');
  const std::string top = path.substr(0, slash);
  if (top == "data") {
    const size_t next = path.find('/', slash + 1);
    if (next != std::string::npos) return path.substr(0, next);
  }
  return top;
}

// The path of a `#include "path"` line, or "" for any other line (angle-bracket includes too).
// Plain string scanning: std::regex draws -Wmaybe-uninitialized from libstdc++'s own headers in
// the sanitizer build.
std::string quoted_include(const std::string& line) {
  size_t i = line.find_first_not_of(" \t");
  if (i == std::string::npos || line[i] != '#') return "";
  i = line.find_first_not_of(" \t", i + 1);
  if (i == std::string::npos || line.compare(i, 7, "include") != 0) return "";
  i = line.find_first_not_of(" \t", i + 7);
  if (i == std::string::npos || line[i] != '"') return "";
  const size_t end = line.find('"', i + 1);
  return end == std::string::npos ? "" : line.substr(i + 1, end - i - 1);
}

TEST(Layering, IncludesOnlyPointDown) {
  const fs::path src = fs::path(QWEN3VL_SOURCE_DIR) / "src";
  int files = 0, includes = 0;
  for (const auto& entry : fs::recursive_directory_iterator(src)) {
    const std::string ext = entry.path().extension().string();
    if (!entry.is_regular_file() || (ext != ".h" && ext != ".cpp")) continue;
    ++files;
    const std::string file = fs::relative(entry.path(), src).string();
    const std::string from = layer_of(file);
    ASSERT_TRUE(allowed().count(from)) << file << ": folder not in the layer table";
    std::ifstream in(entry.path());
    std::string line;
    while (std::getline(in, line)) {
      const std::string target = quoted_include(line);
      if (target.find('/') == std::string::npos) continue;  // none, or a file beside it ("x.h")
      ++includes;
      // Outside data/, its subfolders count as data/ itself.
      std::string to = layer_of(target);
      if (from.rfind("data", 0) != 0) to = to.substr(0, to.find('/'));
      EXPECT_TRUE(to == from || allowed().at(from).count(to))
          << file << " includes " << target << " (" << from << " -> " << to << ")";
    }
  }
  EXPECT_GT(files, 100);  // the walk found the sources
  EXPECT_GT(includes, 300);
}

// The device seam: above kernels/, code sees only the neutral op set (kernels/<family>.h); a
// backend's folder (kernels/cpu/, kernels/cuda/, kernels/guarded/) is included only from inside
// src/kernels/.
TEST(Layering, OnlyKernelsSeeABackendFolder) {
  const fs::path src = fs::path(QWEN3VL_SOURCE_DIR) / "src";
  int checked = 0;
  for (const auto& entry : fs::recursive_directory_iterator(src)) {
    const std::string file = fs::relative(entry.path(), src).string();
    if (!entry.is_regular_file() || layer_of(file) == "kernels") continue;
    ++checked;
    std::ifstream in(entry.path());
    std::string line;
    while (std::getline(in, line)) {
      const std::string target = quoted_include(line);
      for (const char* backend : {"kernels/cpu/", "kernels/cuda/", "kernels/guarded/"})
        EXPECT_NE(target.rfind(backend, 0), 0u) << file << ": " << line;
    }
  }
  EXPECT_GT(checked, 100);
}

}  // namespace
}  // namespace qv
