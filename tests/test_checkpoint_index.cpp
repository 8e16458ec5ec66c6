// index.json of sharded checkpoints (train/checkpoint_index.h): the index the saves write is
// accepted; every way an index can be wrong (the fuzz target's territory: types, ranges,
// overlaps, gaps, files without a CRC, names outside the folder, sizes that overflow) is a
// qv::Error naming index.json and the field, never another exception or a crash; a rank file's
// piece metadata of the wrong shape is an error naming that file. state.json likewise: every
// field the loaders read, wrong in type or range, truncated or not JSON, is an error naming the
// file and the field, and its layout must be the index's.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/checksum.h"
#include "io/safetensors.h"
#include "train/checkpoint_index.h"
#include "train_test_utils.h"

namespace qv {
namespace {

using nlohmann::json;

// The fuzz target's seed (fuzz/corpus/checkpoint_index/two_ranks.json).
json valid_index() {
  const std::string seed =
      std::string(QWEN3VL_SOURCE_DIR) + "/fuzz/corpus/checkpoint_index/two_ranks.json";
  return json::parse(io::read_file(seed));
}

// parse_index's error for `index` (dumped), or "" when accepted.
std::string error_of(const std::string& text) {
  try {
    train::parse_index(text, "ckpt/index.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(CheckpointIndex, TheSavedIndexIsAccepted) {
  EXPECT_EQ(error_of(valid_index().dump()), "");
  json model_only = valid_index();
  model_only["has_optimizer"] = false;
  model_only["optimizer_steps"] = json::object();
  model_only["files"].erase("optim-rank00000.safetensors");
  model_only["files"].erase("optim-rank00001.safetensors");
  EXPECT_EQ(error_of(model_only.dump()), "");
}

struct BadIndex {
  const char* what;
  std::function<void(json&)> edit;
  const char* message;  // part of the expected error
};

TEST(CheckpointIndex, EveryBrokenFieldIsAnErrorNamingIt) {
  auto piece = [](json& j, int t) -> json& { return j["tensors"]["a"]["pieces"][t]; };
  const std::vector<BadIndex> cases = {
      {"not an object", [](json& j) { j = json::array(); }, "the index is not a JSON object"},
      {"format", [](json& j) { j["format"] = "v9"; }, "format is \"v9\""},
      {"no tensors", [](json& j) { j.erase("tensors"); }, "has no 'tensors'"},
      {"tensors not an object", [](json& j) { j["tensors"] = 3; }, "tensors is not an object"},
      {"world zero", [](json& j) { j["world"] = 0; }, "world = 0 is outside"},
      {"world a string", [](json& j) { j["world"] = "2"; }, "world is not an integer"},
      {"has_optimizer", [](json& j) { j["has_optimizer"] = 1; }, "has_optimizer is not true"},
      {"crc above 32 bits", [](json& j) { j["files"]["data-rank00000.json"] = 1ll << 33; },
       "files.data-rank00000.json = 8589934592 is outside"},
      {"negative crc", [](json& j) { j["files"]["data-rank00000.json"] = -1; }, "= -1 is outside"},
      {"crc a float", [](json& j) { j["files"]["data-rank00000.json"] = 1.5; },
       "is not an integer"},
      {"file outside the folder", [](json& j) { j["files"]["../x"] = 1; },
       "files names '../x', not a file of the checkpoint folder"},
      {"overlap", [&](json& j) { piece(j, 1)["begin"] = 7; }, "(an overlap;"},
      {"gap", [&](json& j) { piece(j, 1)["begin"] = 9; }, "(a gap;"},
      {"past the end", [&](json& j) { piece(j, 1)["end"] = 13; }, "end = 13 is outside [0, 12]"},
      {"short", [&](json& j) { piece(j, 1)["end"] = 11; },
       "tensors.a is covered only up to element 11 of 12"},
      {"empty piece", [&](json& j) { piece(j, 1)["end"] = 8; }, "is empty or reversed"},
      {"begin a string", [&](json& j) { piece(j, 0)["begin"] = "0"; },
       "tensors.a.pieces[0].begin is not an integer"},
      {"piece not an object", [&](json& j) { piece(j, 0) = 5; },
       "tensors.a.pieces[0] is not a JSON object"},
      {"piece file not listed", [&](json& j) { j["files"].erase("model-rank00001.safetensors"); },
       "model-rank00001.safetensors has no CRC in 'files'"},
      {"moments not listed", [&](json& j) { j["files"].erase("optim-rank00001.safetensors"); },
       "optim-rank00001.safetensors has no CRC in 'files'"},
      {"piece in a path", [&](json& j) { piece(j, 0)["file"] = "../model-rank00000.safetensors"; },
       "is not a model rank file"},
      {"piece in another kind of file",
       [&](json& j) { piece(j, 0)["file"] = "data-rank00000.json"; }, "is not a model rank file"},
      {"negative dimension", [](json& j) { j["tensors"]["b"]["shape"] = {-5}; },
       "tensors.b.shape holds -5"},
      {"overflowing shape",
       [](json& j) {
         j["tensors"]["b"]["shape"] = {1ll << 40, 1ll << 40};
       },
       "holds too many elements"},
      {"huge unsigned dimension",
       [](json& j) { j["tensors"]["b"]["shape"] = json::parse("[18446744073709551615]"); },
       "is too large"},
      {"dtype", [](json& j) { j["tensors"]["b"]["dtype"] = "BF16"; },
       "tensors.b.dtype is \"BF16\""},
      {"no steps for a tensor", [](json& j) { j["optimizer_steps"].erase("b"); },
       "optimizer_steps has no count for tensor 'b'"},
      {"steps negative", [](json& j) { j["optimizer_steps"]["b"] = -1; }, "optimizer_steps.b = -1"},
  };
  for (const BadIndex& c : cases) {
    json j = valid_index();
    c.edit(j);
    const std::string e = error_of(j.dump());
    EXPECT_NE(e.find("ckpt/index.json: "), std::string::npos) << c.what << ": " << e;
    EXPECT_NE(e.find(c.message), std::string::npos) << c.what << ": " << e;
  }
  EXPECT_NE(error_of("{\"format\": ").find("not valid JSON"), std::string::npos);
  EXPECT_NE(error_of(std::string(100000, '[')).find("ckpt/index.json"), std::string::npos);
}

// The fuzz target's seeds (fuzz/corpus/checkpoint_state/): a v2 state.json as the trainer's
// two-rank save writes it, and a v1 one.
json seed_state(const std::string& name) {
  return json::parse(
      io::read_file(std::string(QWEN3VL_SOURCE_DIR) + "/fuzz/corpus/checkpoint_state/" + name));
}

// parse_state's error for `state` (its own CRC recomputed unless `keep_crc`), or "" when accepted.
std::string state_error(json state, bool keep_crc = false) {
  if (!keep_crc && state.is_object() && state.contains("state_crc32c"))
    state["state_crc32c"] = train::state_crc(state);
  try {
    train::parse_state(state.dump(2), "ckpt/state.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(CheckpointState, TheSavedStatesAreAccepted) {
  EXPECT_EQ(state_error(seed_state("v2.json"), true), "");
  EXPECT_EQ(state_error(seed_state("v1.json"), true), "");
  json old = seed_state("v2.json");  // written before state.json had its own CRC
  old.erase("state_crc32c");
  EXPECT_EQ(state_error(old), "");
}

// Every field the loaders read, wrong in type or range, is an error naming state.json and the
// field (the CRC recomputed, so the field check itself is what fails); a flipped value under the
// old CRC is "corrupt"; text that is not JSON, truncated or nested too deep names the file.
TEST(CheckpointState, EveryBrokenFieldIsAnErrorNamingIt) {
  const std::vector<BadIndex> cases = {
      {"not an object", [](json& j) { j = json::array(); }, "state is not a JSON object"},
      {"no format", [](json& j) { j.erase("format"); }, "state has no 'format'"},
      {"format", [](json& j) { j["format"] = "v9"; },
       "not a qwen3vl checkpoint (state.json format"},
      {"format a number", [](json& j) { j["format"] = 2; }, "state.format is not a string"},
      {"no step", [](json& j) { j.erase("step"); }, "state has no 'step'"},
      {"negative step", [](json& j) { j["step"] = -1; }, "state.step = -1 is outside"},
      {"step a float", [](json& j) { j["step"] = 1.5; }, "state.step is not an integer"},
      {"step a string", [](json& j) { j["step"] = "2"; }, "state.step is not an integer"},
      {"step past int64", [](json& j) { j["step"] = json::parse("18446744073709551615"); },
       "state.step = 18446744073709551615 is outside"},
      {"extra", [](json& j) { j["extra"] = "seed"; }, "state.extra is not an object"},
      {"world zero", [](json& j) { j["world"] = 0; }, "state.world = 0 is outside"},
      {"no world", [](json& j) { j.erase("world"); }, "state has no 'world'"},
      {"shard a string", [](json& j) { j["shard"] = "2"; }, "state.shard is not an integer"},
      {"replicate huge", [](json& j) { j["replicate"] = 1ll << 40; }, "state.replicate = "},
      {"layout", [](json& j) { j["replicate"] = 2; }, "world = 2 is not replicate (2) x shard (2)"},
      {"has_optimizer", [](json& j) { j["has_optimizer"] = 1; }, "state.has_optimizer is not true"},
      {"no crcs", [](json& j) { j.erase("crc32c"); }, "state has no 'crc32c'"},
      {"crcs a list", [](json& j) { j["crc32c"] = json::array(); },
       "state.crc32c is not an object"},
      {"no index crc", [](json& j) { j["crc32c"].erase("index.json"); },
       "crc32c has no 'index.json'"},
      {"crc above 32 bits", [](json& j) { j["crc32c"]["index.json"] = 1ll << 33; },
       "crc32c.index.json = 8589934592 is outside"},
      {"crc negative", [](json& j) { j["crc32c"]["config.json"] = -1; },
       "crc32c.config.json = -1 is outside"},
      {"file outside the folder", [](json& j) { j["crc32c"]["../x"] = 1; },
       "crc32c names '../x', not a file of the checkpoint folder"},
  };
  for (const BadIndex& c : cases) {
    json j = seed_state("v2.json");
    c.edit(j);
    const std::string e = state_error(j);
    EXPECT_NE(e.find("ckpt/state.json: "), std::string::npos) << c.what << ": " << e;
    EXPECT_NE(e.find(c.message), std::string::npos) << c.what << ": " << e;
  }
  json v1 = seed_state("v1.json");
  v1["data_state"] = 3;
  EXPECT_NE(state_error(v1).find("state.data_state is not an object"), std::string::npos);
  v1 = seed_state("v1.json");
  v1["crc32c"]["model.safetensors"] = "x";
  EXPECT_NE(state_error(v1).find("crc32c.model.safetensors is not an integer"), std::string::npos);
  json own = seed_state("v2.json");
  own["state_crc32c"] = "1";
  EXPECT_NE(state_error(own, true).find("state.state_crc32c is not an integer"), std::string::npos);
  json flipped = seed_state("v2.json");
  flipped["step"] = flipped["step"].get<int64_t>() + 1;
  EXPECT_NE(state_error(flipped, true).find("state.json is corrupt"), std::string::npos);
  const std::string text = seed_state("v2.json").dump(2);
  for (size_t cut : {size_t{0}, size_t{1}, text.size() / 2, text.size() - 2}) {
    try {
      train::parse_state(text.substr(0, cut), "ckpt/state.json");
      ADD_FAILURE() << "a state.json cut at " << cut << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("ckpt/state.json: not valid JSON"), std::string::npos)
          << e.what();
    }
  }
  try {
    train::parse_state(std::string(100000, '['), "ckpt/state.json");
    ADD_FAILURE() << "deep nesting accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ckpt/state.json"), std::string::npos) << e.what();
  }
}

// state.json and index.json must agree on the layout that saved: an index of another world is
// an error naming both (here: a state.json edited to 4 ranks, its CRC recomputed).
TEST(CheckpointState, IndexOfAnotherLayoutIsRefused) {
  const std::string dir = testing::fresh_dir("ckptindex", "state_layout");
  std::filesystem::create_directories(dir);
  const std::string index_text = valid_index().dump(1) + "\n";
  io::write_file_atomic(dir + "/index.json", index_text);
  json state = seed_state("v2.json");
  state["crc32c"]["index.json"] = io::crc32c(index_text.data(), index_text.size());
  EXPECT_NO_THROW(train::read_index(dir, state));
  state["world"] = 4;
  state["shard"] = 4;
  try {
    train::read_index(dir, state);
    ADD_FAILURE() << "an index of another world was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("index.json's world (2) is not state.json's (4)"),
              std::string::npos)
        << e.what();
  }
}

// A rank file whose piece metadata is not {name: [begin, end, crc]}: an error naming the file.
TEST(CheckpointIndex, BadPieceMetadataInARankFileIsAnErrorNamingIt) {
  const std::string dir = testing::fresh_dir("ckptindex", "metadata");
  std::filesystem::create_directories(dir);
  const float values[4] = {1, 2, 3, 4};
  const std::vector<std::pair<std::string, std::string>> metas = {
      {"[1, 2]", "not a JSON object"},
      {"{\"a\": 7}", "is not the elements [0, 4)"},
      {"{\"a\": [0, 4, -3]}", "is not the elements [0, 4)"},
      {"{\"a\": [0, 4, \"x\"]}", "is not the elements [0, 4)"},
      {"{\"a\": [0, 3, 1]}", "is not the elements [0, 4)"},
      {"{\"a\": [0, 4, 1]}", "is corrupt (CRC-32C mismatch"},
      {"{\"a\": [[[[", "bad 'qwen3vl_pieces' metadata"}};
  for (const auto& [meta, message] : metas) {
    const std::string file = train::rank_file("model", 0, "safetensors");
    io::write_safetensors(dir + "/" + file, {{"a", DType::kF32, {4}, values, DType::kF32}},
                          {{"format", "pt"}, {train::kPiecesKey, meta}});
    train::PieceReader reader(dir);
    try {
      reader.piece(file, "a", 0, 4);
      ADD_FAILURE() << meta << " accepted";
    } catch (const Error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(file), std::string::npos) << meta << ": " << what;
      EXPECT_NE(what.find(message), std::string::npos) << meta << ": " << what;
    }
  }
}

}  // namespace
}  // namespace qv
