#include "train/checkpoint_index.h"

#include <cstdio>
#include <filesystem>
#include <limits>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/checksum.h"
#include "io/json_depth.h"

namespace qv::train {

namespace fs = std::filesystem;
using nlohmann::json;

std::string rank_file(const std::string& kind, int64_t rank, const std::string& ext) {
  char buf[96];
  std::snprintf(buf, sizeof(buf), "%s-rank%05lld.%s", kind.c_str(), static_cast<long long>(rank),
                ext.c_str());
  return buf;
}

namespace {

constexpr const char* kModelPrefix = "model-rank";
constexpr const char* kSafetensors = ".safetensors";

// "model-rank<digits>.safetensors", the only files pieces live in.
bool is_model_rank_file(const std::string& f) {
  const size_t p = std::string(kModelPrefix).size(), s = std::string(kSafetensors).size();
  if (f.size() <= p + s || f.rfind(kModelPrefix, 0) != 0 ||
      f.compare(f.size() - s, s, kSafetensors) != 0)
    return false;
  for (size_t i = p; i < f.size() - s; ++i)
    if (f[i] < '0' || f[i] > '9') return false;
  return true;
}

// A name a checkpoint folder can hold: one plain file name.
bool is_plain_file_name(const std::string& f) {
  return !f.empty() && f != "." && f != ".." && f.find('/') == std::string::npos &&
         f.find('\0') == std::string::npos;
}

// Reads fields of one JSON object, each error naming the file and the field's path.
class Fields {
 public:
  Fields(const json& j, std::string origin, std::string where)
      : j_(j), origin_(std::move(origin)), where_(std::move(where)) {
    QV_CHECK(j_.is_object(), origin_, ": ", where_, " is not a JSON object");
  }
  const json& at(const std::string& key, json::value_t type) const {
    QV_CHECK(j_.contains(key), origin_, ": ", where_, " has no '", key, "'");
    const json& v = j_[key];
    const bool ok =
        type == json::value_t::number_integer ? v.is_number_integer() : v.type() == type;
    QV_CHECK(ok, origin_, ": ", where_, ".", key, " is not ", type_name(type));
    return v;
  }
  int64_t integer(const std::string& key, int64_t lo, int64_t hi) const {
    const json& v = at(key, json::value_t::number_integer);
    bool ok = false;
    if (v.is_number_unsigned()) {
      const uint64_t u = v.get<uint64_t>();
      ok = u <= static_cast<uint64_t>(hi) && (lo <= 0 || u >= static_cast<uint64_t>(lo));
    } else {
      const int64_t i = v.get<int64_t>();
      ok = i >= lo && i <= hi;
    }
    QV_CHECK(ok, origin_, ": ", where_, ".", key, " = ", v.dump(), " is outside [", lo, ", ", hi,
             "]");
    return v.get<int64_t>();
  }

 private:
  static const char* type_name(json::value_t t) {
    switch (t) {
      case json::value_t::object:
        return "an object";
      case json::value_t::array:
        return "an array";
      case json::value_t::string:
        return "a string";
      case json::value_t::boolean:
        return "true or false";
      default:
        return "an integer";
    }
  }
  const json& j_;
  std::string origin_, where_;
};

// Elements a tensor of `shape` holds; refuses negative dimensions and counts whose F32 bytes
// would not fit in 63 bits.
int64_t checked_numel(const json& shape, const std::string& origin, const std::string& where) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max() / 8;
  int64_t n = 1;
  for (const json& d : shape) {
    QV_CHECK(d.is_number_integer() && (d.is_number_unsigned() || d.get<int64_t>() >= 0), origin,
             ": ", where, ".shape holds ", d.dump(), " (dimensions are integers >= 0)");
    QV_CHECK(!d.is_number_unsigned() || d.get<uint64_t>() <= static_cast<uint64_t>(kMax), origin,
             ": ", where, ".shape dimension ", d.dump(), " is too large");
    const int64_t v = d.get<int64_t>();
    QV_CHECK(v == 0 || n <= kMax / v, origin, ": ", where, ".shape ", shape.dump(),
             " holds too many elements");
    n *= v;
  }
  return n;
}

// Every tensor's pieces: in order, each a range of elements of a listed model rank file, together
// covering the tensor exactly once.
void check_tensor(const std::string& name, const json& t, const json& files, bool has_optimizer,
                  const std::string& origin) {
  const std::string where = "tensors." + name;
  const Fields f(t, origin, where);
  QV_CHECK(f.at("dtype", json::value_t::string) == "F32", origin, ": ", where, ".dtype is ",
           t["dtype"].dump(), " (pieces are F32)");
  const int64_t numel = checked_numel(f.at("shape", json::value_t::array), origin, where);
  int64_t covered = 0;
  const json& pieces = f.at("pieces", json::value_t::array);
  for (size_t i = 0; i < pieces.size(); ++i) {
    const std::string pw = where + ".pieces[" + std::to_string(i) + "]";
    const Fields p(pieces[i], origin, pw);
    const std::string file = p.at("file", json::value_t::string).get<std::string>();
    QV_CHECK(is_model_rank_file(file), origin, ": ", pw, ".file '", file,
             "' is not a model rank file (model-rankNNNNN.safetensors)");
    QV_CHECK(files.contains(file), origin, ": ", pw, ".file ", file, " has no CRC in 'files'");
    QV_CHECK(!has_optimizer || files.contains(optimizer_file_of(file)), origin, ": ", pw,
             ": the optimizer state's ", optimizer_file_of(file), " has no CRC in 'files'");
    const int64_t begin = p.integer("begin", 0, numel), end = p.integer("end", 0, numel);
    QV_CHECK(begin == covered, origin, ": ", pw, " starts at element ", begin,
             " where the pieces before it end at ", covered, " (",
             begin < covered ? "an overlap" : "a gap",
             "; pieces must cover the tensor once, in order)");
    QV_CHECK(end > begin, origin, ": ", pw, " is empty or reversed ([", begin, ", ", end, "))");
    covered = end;
  }
  QV_CHECK(covered == numel, origin, ": ", where, " is covered only up to element ", covered,
           " of ", numel);
}

constexpr int64_t kMaxRanks = 1 << 24;
constexpr int64_t kMaxCrc = 0xffffffffll;

// The file CRCs: {name: crc}, each name a file of the checkpoint folder.
void check_file_crcs(const json& files, const std::string& origin, const std::string& where) {
  const Fields crcs(files, origin, where);
  for (const auto& [name, crc] : files.items()) {
    QV_CHECK(is_plain_file_name(name), origin, ": ", where, " names '", name,
             "', not a file of the checkpoint folder");
    crcs.integer(name, 0, kMaxCrc);
  }
}

}  // namespace

std::string optimizer_file_of(const std::string& model_file) {
  QV_CHECK(model_file.rfind("model-", 0) == 0, "not a model rank file: ", model_file);
  return "optim-" + model_file.substr(6);
}

json parse_index(const std::string& text, const std::string& origin) {
  json j = io::parse_json(text, origin);
  const Fields top(j, origin, "the index");
  QV_CHECK(top.at("format", json::value_t::string) == "qwen3vl-checkpoint-v2-index", origin,
           ": format is ", j["format"].dump(), " (expected \"qwen3vl-checkpoint-v2-index\")");
  top.integer("world", 1, kMaxRanks);
  top.integer("replicate", 1, kMaxRanks);
  top.integer("shard", 1, kMaxRanks);
  const bool has_optimizer = top.at("has_optimizer", json::value_t::boolean).get<bool>();
  const json& files = top.at("files", json::value_t::object);
  check_file_crcs(files, origin, "files");
  const json& tensors = top.at("tensors", json::value_t::object);
  for (const auto& [name, t] : tensors.items()) check_tensor(name, t, files, has_optimizer, origin);
  const json& steps = top.at("optimizer_steps", json::value_t::object);
  const Fields st(steps, origin, "optimizer_steps");
  for (const auto& [name, n] : steps.items())
    st.integer(name, 0, std::numeric_limits<int64_t>::max());
  if (has_optimizer)
    for (const auto& [name, t] : tensors.items())
      QV_CHECK(steps.contains(name), origin, ": optimizer_steps has no count for tensor '", name,
               "'");
  return j;
}

uint32_t state_crc(json state) {
  state.erase("state_crc32c");
  const std::string text = state.dump();
  return io::crc32c(text.data(), text.size());
}

json parse_state(const std::string& text, const std::string& origin) {
  json j = io::parse_json(text, origin);
  const Fields top(j, origin, "state");
  const std::string format = top.at("format", json::value_t::string).get<std::string>();
  QV_CHECK(format == kFormatV1 || format == kFormatV2, origin,
           ": not a qwen3vl checkpoint (state.json format field is ", j["format"].dump(), ")");
  // Checkpoints written before the field existed have none.
  if (j.contains("state_crc32c")) {
    const int64_t want = top.integer("state_crc32c", 0, kMaxCrc);
    QV_CHECK(want == static_cast<int64_t>(state_crc(j)), origin,
             ": state.json is corrupt (CRC-32C of its content does not match)");
  }
  top.integer("step", 0, std::numeric_limits<int64_t>::max());
  if (j.contains("extra")) top.at("extra", json::value_t::object);
  if (format == kFormatV1) {
    if (j.contains("crc32c"))
      check_file_crcs(top.at("crc32c", json::value_t::object), origin, "crc32c");
    if (j.contains("data_state")) top.at("data_state", json::value_t::object);
    return j;
  }
  const int64_t world = top.integer("world", 1, kMaxRanks);
  const int64_t replicate = top.integer("replicate", 1, kMaxRanks);
  const int64_t shard = top.integer("shard", 1, kMaxRanks);
  QV_CHECK(replicate * shard == world, origin, ": world = ", world, " is not replicate (",
           replicate, ") x shard (", shard, ")");
  top.at("has_optimizer", json::value_t::boolean);
  const json& files = top.at("crc32c", json::value_t::object);
  check_file_crcs(files, origin, "crc32c");
  QV_CHECK(files.contains("index.json"), origin,
           ": crc32c has no 'index.json' (a v2 checkpoint's index)");
  return j;
}

json read_index(const std::string& path, const json& state) {
  const std::string file = (fs::path(path) / "index.json").string();
  QV_CHECK(fs::exists(file), path, ": missing index.json (listed in state.json)");
  const std::string text = io::read_file(file);
  const uint32_t crc = io::crc32c(text.data(), text.size());
  const uint32_t want = state.at("crc32c").at("index.json").get<uint32_t>();
  QV_CHECK(crc == want, path, ": index.json is corrupt (CRC-32C mismatch: stored ", want,
           ", computed ", crc, ")");
  json index = parse_index(text, file);
  for (const char* key : {"world", "replicate", "shard", "has_optimizer"})
    QV_CHECK(index[key] == state.at(key), path, ": index.json's ", key, " (", index[key].dump(),
             ") is not state.json's (", state.at(key).dump(), ")");
  return index;
}

PieceReader::PieceReader(std::string dir) : dir_(std::move(dir)) {}
PieceReader::~PieceReader() = default;

const float* PieceReader::piece(const std::string& file, const std::string& name, int64_t begin,
                                int64_t end) {
  io::SafetensorsFile& f = open(file);
  QV_CHECK(f.has(name), f.path(), ": missing piece '", name, "'");
  const io::TensorInfo& i = f.info(name);
  QV_CHECK(i.dtype == DType::kF32 && i.shape.size() == 1 && i.shape[0] == end - begin, f.path(),
           ": piece '", name, "' is not F32 x ", end - begin);
  const auto* p = reinterpret_cast<const float*>(f.bytes(name));
  const std::string key = file + "\n" + name;
  if (!checked_.count(key)) {
    const json& meta = pieces_.at(file);
    const json* m = meta.contains(name) ? &meta[name] : nullptr;
    const bool listed = m && m->is_array() && m->size() == 3 && (*m)[0].is_number_integer() &&
                        (*m)[1].is_number_integer() && (*m)[2].is_number_unsigned() &&
                        (*m)[2].get<uint64_t>() <= 0xffffffffull;
    QV_CHECK(listed && (*m)[0].get<int64_t>() == begin && (*m)[1].get<int64_t>() == end, f.path(),
             ": piece '", name, "' is not the elements [", begin, ", ", end, ") index.json names");
    const auto want = (*m)[2].get<uint32_t>();
    const uint32_t crc = io::crc32c(p, static_cast<size_t>(end - begin) * sizeof(float));
    QV_CHECK(crc == want, f.path(), ": piece '", name, "' is corrupt (CRC-32C mismatch: stored ",
             want, ", computed ", crc, ")");
    checked_.insert(key);
  }
  return p;
}

io::SafetensorsFile& PieceReader::open(const std::string& file) {
  auto& f = files_[file];
  if (f) return *f;
  QV_CHECK(is_plain_file_name(file) && file.find("..") == std::string::npos, dir_,
           ": index.json names a file outside the checkpoint: '", file, "'");
  const std::string path = (fs::path(dir_) / file).string();
  QV_CHECK(fs::is_regular_file(path), dir_, ": missing shard file ", file,
           " (listed in index.json; was the checkpoint copied incompletely?)");
  auto opened = std::make_unique<io::SafetensorsFile>(path);
  const auto& meta = opened->metadata();
  auto it = meta.find(kPiecesKey);
  QV_CHECK(it != meta.end(), path, ": no '", kPiecesKey, "' metadata (not a checkpoint shard)");
  json pieces;
  try {
    io::check_json_depth(it->second, path);
    pieces = json::parse(it->second);
  } catch (const json::exception& e) {
    fail(path, ": bad '", kPiecesKey, "' metadata: ", e.what());
  }
  QV_CHECK(pieces.is_object(), path, ": bad '", kPiecesKey, "' metadata: not a JSON object");
  pieces_[file] = std::move(pieces);
  f = std::move(opened);
  return *f;
}

}  // namespace qv::train
