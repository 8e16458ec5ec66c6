// state.json and index.json of a checkpoint, and reading the pieces the index names. parse_state
// accepts only a state.json whose fields have the types and ranges the loaders rely on (the
// format, the step, the saving layout, the file CRCs) and whose own CRC matches.
// index.json of a sharded (v2) checkpoint: The index says, per
// tensor, its dtype, shape and pieces (which rank file, which elements of the flattened tensor),
// plus the layout that saved, AdamW's step counts and every rank file's CRC-32C. parse_index
// accepts only an index whose every tensor is covered by its pieces exactly once, in rank files
// the index lists with a CRC, so the loaders and `checkpoint inspect|export` can trust its shape;
// PieceReader then checks each piece against its file (present, the same range, its CRC).
// Nothing here needs the model: the fuzz targets fuzz/fuzz_checkpoint_index.cpp and
// fuzz/fuzz_checkpoint_state.cpp run it alone.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "io/safetensors.h"

namespace qv::train {

// The safetensors metadata key of a rank file's pieces: {name: [begin, end, crc32c]}.
inline constexpr const char* kPiecesKey = "qwen3vl_pieces";

// The name of rank r's files ("model-rank00003.safetensors" ...).
std::string rank_file(const std::string& kind, int64_t rank, const std::string& ext);

inline constexpr const char* kFormatV1 = "qwen3vl-checkpoint-v1";  // whole tensors, rank 0
inline constexpr const char* kFormatV2 = "qwen3vl-checkpoint-v2";  // sharded, with index.json

// CRC-32C of state.json's content without its own checksum field ("state_crc32c"), over the
// compact dump: a flipped byte that still parses (a digit of the step) changes it.
uint32_t state_crc(nlohmann::json state);

// Parses and checks a state.json text: format (v1 or v2), its own CRC when present (a mismatch
// is "state.json is corrupt"), step >= 0, extra (an object), the file CRCs (file names of the
// folder, 32-bit values); v2 also world = replicate x shard (each >= 1), has_optimizer and
// index.json's CRC; v1 an optional data_state object. Errors name `origin` and the field.
nlohmann::json parse_state(const std::string& text, const std::string& origin);

// Parses and checks an index.json text; errors name `origin` and what is wrong (a field's type,
// a piece that overlaps or leaves a gap, a file with no CRC, ...).
nlohmann::json parse_index(const std::string& text, const std::string& origin);

// index.json of a v2 checkpoint, its CRC checked against state.json (from parse_state), then
// parse_index; the index's layout (world, replicate, shard, has_optimizer) must be state.json's.
nlohmann::json read_index(const std::string& path, const nlohmann::json& state);

// The optimizer file holding the moments of the pieces in a model rank file
// ("model-rank00003.safetensors" -> "optim-rank00003.safetensors").
std::string optimizer_file_of(const std::string& model_file);

// The rank files of one checkpoint, mapped on first use and kept open; a piece's CRC-32C (from
// its file's header) is checked the first time it is read, and a missing file is an error
// naming it.
class PieceReader {
 public:
  explicit PieceReader(std::string dir);
  ~PieceReader();
  // Elements [begin, end) of tensor `name` as stored in `file` (in place in the mapping).
  const float* piece(const std::string& file, const std::string& name, int64_t begin, int64_t end);

 private:
  io::SafetensorsFile& open(const std::string& file);
  std::string dir_;
  std::map<std::string, std::unique_ptr<io::SafetensorsFile>> files_;
  std::map<std::string, nlohmann::json> pieces_;
  std::set<std::string> checked_;
};

}  // namespace qv::train
