// Inputs that the fuzz targets (fuzz/, scripts/fuzz.sh) found crashing, kept in
// tests/data/fuzz_regressions/<target>-<what>.<ext>. Each is run through the parser its target
// names, as the target runs it, and must now be rejected with a qv::Error saying why. Every file
// in the folder needs an entry in kRegressions, so a finding cannot be committed unchecked.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <set>

#include "core/error.h"
#include "data/image/image_decode.h"
#include "data/image/image_processor_config.h"
#include "data/sources/obelics.h"
#include "data/sources/tar_reader.h"
#include "data/tokenizer/tokenizer.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "train/job_config.h"

namespace qv {
namespace {

namespace fs = std::filesystem;

struct Regression {
  const char* file;
  const char* message;  // part of the expected error message
};

const Regression kRegressions[] = {
    {"image_processor_config-float-overflow.json", "max_pixels must be an integer"},
    {"tokenizer_json-number-overflow.json", "invalid JSON"},
    {"job_config-float-to-int.toml", "data.max_pixels must be an integer"},
};

fs::path regression_dir() {
  return fs::path(QWEN3VL_SOURCE_DIR) / "tests/data/fuzz_regressions";
}

// Parses `path` with the parser of `target` (the file name up to the first '-'); parsers that
// report bad input as a status rather than an exception have it turned into a qv::Error here.
void parse_as(const std::string& target, const std::string& path) {
  const std::string bytes = io::read_file(path);
  if (target == "image_processor_config") {
    data::parse_image_processor_config(bytes, path);
  } else if (target == "model_config") {
    model::ModelConfig::from_json_text(bytes, path);
  } else if (target == "tokenizer_json") {
    data::Tokenizer::from_json(bytes, path);
  } else if (target == "job_config") {
    train::JobConfig::parse(bytes, path);
  } else if (target == "safetensors") {
    io::SafetensorsFile file(path);
  } else if (target == "safetensors_index") {
    io::parse_checkpoint_index(bytes, path, "/model");
  } else if (target == "image") {
    data::decode_image(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), {}, path);
  } else if (target == "obelics") {
    const data::ObelicsRow row = data::parse_obelics_row(bytes, path, 1);
    if (!row.skip_reason.empty()) fail(path, ": ", row.skip_reason, ": ", row.detail);
  } else if (target == "tar") {
    data::TarReader tar(path);
    data::TarEntry entry;
    std::string member;
    data::TarStatus status;
    while ((status = tar.next(entry)) == data::TarStatus::kOk)
      if ((status = tar.read_data(member)) != data::TarStatus::kOk) break;
    if (status == data::TarStatus::kDamaged) fail(tar.error());
  } else {
    FAIL() << "no parser for fuzz target '" << target << "'";
  }
}

TEST(FuzzRegressions, EachInputIsRejectedWithItsReason) {
  for (const Regression& r : kRegressions) {
    const std::string file = r.file;
    const std::string target = file.substr(0, file.find('-'));
    SCOPED_TRACE(file);
    try {
      parse_as(target, (regression_dir() / file).string());
      ADD_FAILURE() << "accepted without an error";
    } catch (const Error& e) {
      EXPECT_NE(std::strstr(e.what(), r.message), nullptr) << e.what();
    }
  }
}

TEST(FuzzRegressions, EveryCommittedInputIsListed) {
  std::set<std::string> listed;
  for (const Regression& r : kRegressions) listed.insert(r.file);
  for (const auto& entry : fs::directory_iterator(regression_dir())) {
    const std::string name = entry.path().filename().string();
    EXPECT_TRUE(listed.count(name)) << name << " has no entry";
  }
}

}  // namespace
}  // namespace qv
