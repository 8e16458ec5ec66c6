// state.json of a checkpoint (train/checkpoint_index.h): parse_state must end in a qv::Error or
// accept a state whose fields are what the loaders read without further checks: a known format,
// a step >= 0, an object of extras, file CRCs that fit 32 bits under plain file names, its own
// CRC matching when present, and for v2 a layout with world = replicate x shard and index.json's
// CRC. Reading those fields as the loaders do must then not throw.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"
#include "fuzz_util.h"
#include "train/checkpoint_index.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using nlohmann::json;
  json j;
  try {
    j = qv::train::parse_state(std::string(qv::fuzz::as_text(data, size)), "state.json");
  } catch (const qv::Error&) {
    return 0;
  }
  const std::string format = j.at("format").get<std::string>();
  const bool v2 = format == qv::train::kFormatV2;
  qv::fuzz::require(v2 || format == qv::train::kFormatV1, "accepted an unknown format");
  qv::fuzz::require(j.at("step").get<int64_t>() >= 0, "accepted a negative step");
  qv::fuzz::require(j.value("extra", json::object()).is_object(), "accepted extra of another type");
  if (j.contains("state_crc32c"))
    qv::fuzz::require(j["state_crc32c"].get<uint32_t>() == qv::train::state_crc(j),
                      "accepted a state whose own CRC does not match");
  const json files = j.value("crc32c", json::object());
  for (const auto& [name, crc] : files.items()) {
    qv::fuzz::require(!name.empty() && name.find('/') == std::string::npos,
                      "accepted a file name outside the folder");
    const bool fits = crc.is_number_unsigned()  ? crc.get<uint64_t>() <= 0xffffffffull
                      : crc.is_number_integer() ? crc.get<int64_t>() == 0
                                                : false;  // "-0" parses as a signed zero
    qv::fuzz::require(fits, "accepted a CRC that does not fit 32 bits");
  }
  if (v2) {
    const int64_t world = j.at("world").get<int64_t>();
    qv::fuzz::require(
        world >= 1 && world == j.at("replicate").get<int64_t>() * j.at("shard").get<int64_t>(),
        "accepted a layout that is not world = replicate x shard");
    j.at("has_optimizer").get<bool>();
    j.at("crc32c").at("index.json").get<uint32_t>();
  } else {
    qv::fuzz::require(j.value("data_state", json::object()).is_object(),
                      "accepted a v1 data_state of another type");
  }
  return 0;
}
