#include "model/hf_weights.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"

namespace qv::model {

namespace fs = std::filesystem;

void load_hf_weights(const std::string& dir, ParamStore& store) {
  const auto where = io::list_checkpoint_tensors(dir);
  std::map<std::string, std::unique_ptr<io::SafetensorsFile>> files;
  auto file_for = [&](const std::string& path) -> io::SafetensorsFile& {
    auto& f = files[path];
    if (!f) f = std::make_unique<io::SafetensorsFile>(path);
    return *f;
  };
  std::set<std::string> used;
  for (const ParamEntry& e : store.entries()) {
    auto it = where.find(e.name);
    QV_CHECK(it != where.end(), dir, ": checkpoint is missing tensor '", e.name,
             "' (expected shape ", shape_str(e.shape), ")");
    io::SafetensorsFile& f = file_for(it->second);
    QV_CHECK(f.has(e.name), it->second, ": index names tensor '", e.name,
             "' but the shard does not contain it");
    const io::TensorInfo& info = f.info(e.name);
    QV_CHECK(numel(info.shape) == e.ref.numel &&
                 (info.shape == e.shape || (e.shape.size() == 5 && info.shape.size() == 2)),
             it->second, ": tensor '", e.name, "' has shape ", shape_str(info.shape),
             " but the model expects ", shape_str(e.shape));
    QV_CHECK(info.dtype == DType::kF32 || info.dtype == DType::kBF16 || info.dtype == DType::kF16 ||
                 info.dtype == DType::kF64,
             it->second, ": tensor '", e.name, "' has dtype ", dtype_name(info.dtype),
             " (expected a float type)");
    Tensor t = f.read(e.name).to(DType::kF32);
    store.write_value(e.ref, t.data<float>(), e.ref.numel);
    used.insert(e.name);
  }
  for (const auto& [name, path] : where) {
    if (used.count(name)) continue;
    if (name == "lm_head.weight" && store.find("lm_head.weight") == nullptr) continue;  // tied
    fail(path, ": unexpected tensor '", name, "' (not a parameter of this model config)");
  }
}

namespace {

// The export's files, written into `dir` (an empty folder).
void write_hf_files(const fs::path& dir, const ModelConfig& config, const ParamStore& store,
                    DType dtype, int64_t max_shard_bytes) {
  const char* torch_dtype = dtype == DType::kBF16  ? "bfloat16"
                            : dtype == DType::kF16 ? "float16"
                                                   : "float32";
  io::write_file_atomic((dir / "config.json").string(), config.to_json_text(torch_dtype));
  // Tensors go straight from a host parameter store (converted on the way for BF16): no copy
  // of the model is made. A store on a GPU is copied to the host first (4 bytes a parameter).
  std::vector<std::vector<float>> host_copies;
  std::vector<io::TensorSource> tensors;
  std::vector<std::string> names;
  std::vector<int64_t> bytes;
  for (const ParamEntry& e : store.entries()) {
    const float* values = store.value(e.ref);
    if (!store.device().is_cpu()) {
      host_copies.emplace_back(static_cast<size_t>(e.ref.numel));
      store.read_value(e.ref, host_copies.back().data(), e.ref.numel);
      values = host_copies.back().data();
    }
    tensors.push_back({e.name, dtype, e.shape, values, DType::kF32});
    names.push_back(e.name);
    bytes.push_back(static_cast<int64_t>(tensors.back().nbytes()));
  }
  const std::vector<HfWeightsFile> files = split_hf_weights(bytes, max_shard_bytes);
  for (const HfWeightsFile& f : files) {
    std::vector<io::TensorSource> mine;
    for (size_t i : f.tensors) mine.push_back(tensors[i]);
    io::write_safetensors((dir / f.name).string(), std::move(mine));
  }
  if (files.size() > 1)
    io::write_file_atomic((dir / "model.safetensors.index.json").string(),
                          hf_weights_index_json(files, names, bytes));
}

}  // namespace

std::vector<HfWeightsFile> split_hf_weights(const std::vector<int64_t>& tensor_bytes,
                                            int64_t max_bytes) {
  std::vector<HfWeightsFile> files(1);
  int64_t file_bytes = 0;
  for (size_t i = 0; i < tensor_bytes.size(); ++i) {
    if (file_bytes > 0 && file_bytes + tensor_bytes[i] > max_bytes) {
      files.emplace_back();
      file_bytes = 0;
    }
    files.back().tensors.push_back(i);
    file_bytes += tensor_bytes[i];
  }
  if (files.size() == 1) {
    files[0].name = "model.safetensors";
    return files;
  }
  for (size_t i = 0; i < files.size(); ++i) {
    char name[64];
    std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", i + 1, files.size());
    files[i].name = name;
  }
  return files;
}

std::string hf_weights_index_json(const std::vector<HfWeightsFile>& files,
                                  const std::vector<std::string>& names,
                                  const std::vector<int64_t>& tensor_bytes) {
  nlohmann::json weight_map = nlohmann::json::object();
  int64_t total = 0;
  for (const HfWeightsFile& f : files)
    for (size_t i : f.tensors) {
      weight_map[names[i]] = f.name;
      total += tensor_bytes[i];
    }
  const nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  return index.dump(2) + "\n";
}

void save_hf_checkpoint(const std::string& dir, const ModelConfig& config, const ParamStore& store,
                        DType dtype, int64_t max_shard_bytes,
                        const std::vector<std::pair<std::string, std::string>>& extra_files,
                        const std::vector<std::pair<std::string, std::string>>& extra_texts) {
  QV_CHECK(dtype == DType::kF32 || dtype == DType::kBF16 || dtype == DType::kF16,
           "export dtype must be F32, BF16 or F16");
  fs::path target = fs::absolute(dir).lexically_normal();
  if (!target.has_filename()) target = target.parent_path();  // "out/"
  const fs::path tmp = io::temp_sibling(target.string(), "");
  try {
    fs::create_directories(target.parent_path());
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    write_hf_files(tmp, config, store, dtype, max_shard_bytes);
    for (const auto& [name, source] : extra_files)
      io::write_file_atomic((tmp / name).string(), io::read_file(source));
    for (const auto& [name, text] : extra_texts) io::write_file_atomic((tmp / name).string(), text);
    io::publish_dir(tmp.string(), target.string());
  } catch (const std::exception& e) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    fail("export to ", dir, " failed (the folder is left as it was): ", e.what());
  }
}

}  // namespace qv::model
