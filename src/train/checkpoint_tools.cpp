#include "train/checkpoint_tools.h"

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/checksum.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "train/checkpoint_shards.h"

namespace qv::train {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// state.json, checked as a load checks it (train/checkpoint_index.h).
json read_state_file(const fs::path& dir) {
  const std::string file = (dir / "state.json").string();
  QV_CHECK(fs::exists(file), "missing ", file);
  return parse_state(io::read_file(file), file);
}

CheckpointFileReport check_file(const fs::path& dir, const std::string& name, uint32_t want) {
  CheckpointFileReport f;
  f.name = name;
  const fs::path p = dir / name;
  if (!fs::exists(p)) return f;
  f.bytes = static_cast<int64_t>(fs::file_size(p));
  f.crc_ok = io::crc32c_file(p.string()) == want;
  return f;
}

}  // namespace

bool CheckpointReport::ok() const {
  for (const auto& f : files)
    if (f.bytes < 0 || !f.crc_ok) return false;
  return true;
}

std::string CheckpointReport::describe() const {
  std::string out;
  char line[256];
  std::snprintf(line, sizeof(line),
                "checkpoint %s\n  format %s, step %lld\n  saved by %lld ranks (replicate %lld x "
                "shard %lld), optimizer state: %s\n  %lld tensors, %lld parameters\n  files:\n",
                path.c_str(), format.c_str(), static_cast<long long>(step),
                static_cast<long long>(world), static_cast<long long>(replicate),
                static_cast<long long>(shard), has_optimizer ? "yes" : "no (model only)",
                static_cast<long long>(tensors), static_cast<long long>(parameters));
  out += line;
  int64_t total = 0;
  for (const auto& f : files) {
    if (f.bytes >= 0) total += f.bytes;
    std::snprintf(line, sizeof(line), "    %-32s %12s  %s\n", f.name.c_str(),
                  f.bytes < 0 ? "-" : std::to_string(f.bytes).c_str(),
                  f.bytes < 0 ? "MISSING"
                  : f.crc_ok  ? "crc ok"
                              : "CRC MISMATCH");
    out += line;
  }
  std::snprintf(line, sizeof(line), "  %lld bytes in %zu files: %s\n",
                static_cast<long long>(total), files.size(),
                ok() ? "all CRC-32C checks passed" : "CHECK FAILED");
  return out + line;
}

CheckpointReport inspect_checkpoint(const std::string& path) {
  const fs::path dir(path);
  const json state = read_state_file(dir);
  CheckpointReport r;
  r.path = path;
  r.format = state.at("format").get<std::string>();
  r.step = state.at("step").get<int64_t>();
  const json files = state.value("crc32c", json::object());
  for (auto it = files.begin(); it != files.end(); ++it)
    r.files.push_back(check_file(dir, it.key(), it->get<uint32_t>()));
  if (r.format == kFormatV1) {
    r.has_optimizer = files.contains("optimizer.safetensors");
    if (fs::exists(dir / "model.safetensors")) {
      io::SafetensorsFile m((dir / "model.safetensors").string());
      for (const auto& name : m.names()) {
        ++r.tensors;
        r.parameters += numel(m.info(name).shape);
      }
    }
    return r;
  }
  r.world = state.value("world", int64_t{1});
  r.replicate = state.value("replicate", int64_t{1});
  r.shard = state.value("shard", int64_t{1});
  r.has_optimizer = state.value("has_optimizer", false);
  if (!fs::exists(dir / "index.json")) return r;  // reported missing above
  const std::string index_file = (dir / "index.json").string();
  const json index = parse_index(io::read_file(index_file), index_file);
  for (const auto& [name, t] : index.at("tensors").items()) {
    ++r.tensors;
    r.parameters += numel(t.at("shape").get<Shape>());
  }
  for (const auto& [name, crc] : index.at("files").items())
    r.files.push_back(check_file(dir, name, crc.get<uint32_t>()));
  return r;
}

namespace {

// The export's tensors, split into files of at most max_bytes, written into `dir`.
void write_export_files(const fs::path& dir, const std::string& ckpt, const json& index,
                        DType dtype, int64_t max_bytes) {
  PieceReader reader(ckpt);
  std::vector<std::vector<io::TensorParts>> shards(1);
  int64_t shard_bytes = 0;
  for (const auto& [name, t] : index.at("tensors").items()) {
    io::TensorParts parts{name, dtype, t.at("shape").get<Shape>(), {}, DType::kF32};
    for (const json& p : t.at("pieces")) {
      const int64_t b = p.at("begin").get<int64_t>(), e = p.at("end").get<int64_t>();
      parts.parts.push_back({reader.piece(p.at("file").get<std::string>(), name, b, e), e - b});
    }
    const auto bytes = static_cast<int64_t>(parts.nbytes());
    if (shard_bytes > 0 && shard_bytes + bytes > max_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(std::move(parts));
    shard_bytes += bytes;
  }
  if (shards.size() == 1) {
    io::write_safetensors((dir / "model.safetensors").string(), std::move(shards[0]));
    return;
  }
  json weight_map = json::object();
  int64_t total = 0;
  for (size_t i = 0; i < shards.size(); ++i) {
    char name[64];
    std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
    for (const io::TensorParts& t : shards[i]) {
      weight_map[t.name] = name;
      total += static_cast<int64_t>(t.nbytes());
    }
    io::write_safetensors((dir / name).string(), std::move(shards[i]));
  }
  const json idx = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  io::write_file_atomic((dir / "model.safetensors.index.json").string(), idx.dump(2) + "\n");
}

}  // namespace

void export_checkpoint(const std::string& path, const std::string& out, DType dtype,
                       int64_t max_shard_bytes) {
  QV_CHECK(dtype == DType::kF32 || dtype == DType::kBF16 || dtype == DType::kF16,
           "export dtype must be F32, BF16 or F16");
  const fs::path dir(path);
  const json state = read_state_file(dir);
  QV_CHECK(state.at("format") == kFormatV2, path,
           ": export reads sharded (v2) checkpoints; a v1 checkpoint's model.safetensors already "
           "holds whole HF-named tensors (copy it next to the model's config.json)");
  const json index = read_index(path, state);
  QV_CHECK(fs::exists(dir / "config.json"), path,
           ": has no config.json (saved by a library call without the model config)");
  const model::ModelConfig config =
      model::ModelConfig::from_json_file((dir / "config.json").string());
  const char* torch_dtype = dtype == DType::kBF16  ? "bfloat16"
                            : dtype == DType::kF16 ? "float16"
                                                   : "float32";
  fs::path target = fs::absolute(out).lexically_normal();
  if (!target.has_filename()) target = target.parent_path();
  const fs::path tmp = io::temp_sibling(target.string(), "");
  try {
    fs::create_directories(target.parent_path());
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    io::write_file_atomic((tmp / "config.json").string(), config.to_json_text(torch_dtype));
    write_export_files(tmp, path, index, dtype, max_shard_bytes);
    io::publish_dir(tmp.string(), target.string());
  } catch (const std::exception& e) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    fail("export of ", path, " to ", out, " failed (the folder is left as it was): ", e.what());
  }
}

}  // namespace qv::train
