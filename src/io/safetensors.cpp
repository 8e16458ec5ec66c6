#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/json_depth.h"

namespace qv::io {

using nlohmann::json;

SafetensorsHeader parse_safetensors_header(const std::byte* file, size_t size,
                                           const std::string& path) {
  QV_CHECK(size >= 8, path, ": not a safetensors file (", size, " bytes, need at least 8)");
  SafetensorsHeader out;
  uint64_t header_len = 0;
  std::memcpy(&header_len, file, 8);
  QV_CHECK(header_len <= kMaxSafetensorsHeader, path, ": header of ", header_len,
           " bytes exceeds the limit of ", kMaxSafetensorsHeader);
  QV_CHECK(8 + header_len <= size, path, ": header length ", header_len,
           " runs past the end of the file (", size, " bytes)");
  out.data_start = 8 + header_len;
  const char* h = reinterpret_cast<const char*>(file + 8);
  check_json_depth(std::string_view(h, header_len), path);
  json header;
  try {
    header = json::parse(h, h + header_len, nullptr, true, false);
  } catch (const json::exception& e) {
    fail(path, ": header is not valid JSON: ", e.what());
  }
  QV_CHECK(header.is_object(), path, ": header is not a JSON object");
  const size_t data_size = size - out.data_start;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (it->is_object())
        for (auto m = it->begin(); m != it->end(); ++m)
          if (m->is_string()) out.metadata[m.key()] = m->get<std::string>();
      continue;
    }
    const json& e = *it;
    QV_CHECK(
        e.is_object() && e.contains("dtype") && e.contains("shape") && e.contains("data_offsets"),
        path, ": tensor '", it.key(), "' lacks dtype/shape/data_offsets");
    TensorInfo info;
    QV_CHECK(e["dtype"].is_string(), path, ": tensor '", it.key(), "' dtype is not a string");
    try {
      info.dtype = dtype_from_name(e["dtype"].get<std::string>());
    } catch (const Error& err) {
      fail(path, ": tensor '", it.key(), "': ", err.what());
    }
    QV_CHECK(e["shape"].is_array(), path, ": tensor '", it.key(), "' shape is not a list");
    for (const auto& d : e["shape"]) {
      QV_CHECK(d.is_number_integer() && d.get<int64_t>() >= 0, path, ": tensor '", it.key(),
               "' has an invalid dimension");
      info.shape.push_back(d.get<int64_t>());
    }
    const auto& off = e["data_offsets"];
    QV_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() &&
                 off[1].is_number_unsigned(),
             path, ": tensor '", it.key(), "' data_offsets must be two non-negative integers");
    info.begin = off[0].get<uint64_t>();
    info.end = off[1].get<uint64_t>();
    QV_CHECK(info.begin <= info.end && info.end <= data_size, path, ": tensor '", it.key(),
             "' data [", info.begin, ", ", info.end, ") lies outside the data section (", data_size,
             " bytes)");
    int64_t n = 0;
    try {
      n = numel(info.shape);
    } catch (const Error& err) {
      fail(path, ": tensor '", it.key(), "': ", err.what());
    }
    QV_CHECK(static_cast<uint64_t>(n) <= (UINT64_MAX / 8) &&
                 static_cast<uint64_t>(n) * dtype_size(info.dtype) == info.end - info.begin,
             path, ": tensor '", it.key(), "' has shape ", shape_str(info.shape), " of ",
             dtype_name(info.dtype), " but ", info.end - info.begin, " bytes of data");
    out.infos[it.key()] = info;
  }
  return out;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  QV_CHECK(fd >= 0, "cannot open safetensors file ", path, ": ", std::strerror(errno));
  struct stat st {};
  ::fstat(fd, &st);
  map_size_ = static_cast<size_t>(st.st_size);
  if (map_size_ < 8) {
    ::close(fd);
    fail(path, ": not a safetensors file (", map_size_, " bytes, need at least 8)");
  }
  void* p = ::mmap(nullptr, map_size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  QV_CHECK(p != MAP_FAILED, "cannot map ", path, ": ", std::strerror(errno));
  map_ = static_cast<const std::byte*>(p);
  try {
    SafetensorsHeader header = parse_safetensors_header(map_, map_size_, path);
    infos_ = std::move(header.infos);
    metadata_ = std::move(header.metadata);
    data_start_ = header.data_start;
  } catch (...) {
    ::munmap(const_cast<std::byte*>(map_), map_size_);
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(const_cast<std::byte*>(map_), map_size_);
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  for (const auto& [name, _] : infos_) out.push_back(name);
  return out;
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = infos_.find(name);
  QV_CHECK(it != infos_.end(), path_, ": no tensor named '", name, "'");
  return it->second;
}

Tensor SafetensorsFile::read(const std::string& name) const {
  const TensorInfo& i = info(name);
  Tensor t(i.dtype, i.shape);
  if (i.end > i.begin) std::memcpy(t.raw(), map_ + data_start_ + i.begin, i.end - i.begin);
  return t;
}

const std::byte* SafetensorsFile::bytes(const std::string& name) const {
  return map_ + data_start_ + info(name).begin;
}

TensorMap load_safetensors(const std::string& path) {
  SafetensorsFile file(path);
  TensorMap out;
  for (const auto& name : file.names()) out[name] = file.read(name);
  return out;
}

size_t TensorSource::nbytes() const {
  return static_cast<size_t>(numel(shape)) * dtype_size(dtype);
}

size_t TensorParts::nbytes() const {
  return static_cast<size_t>(numel(shape)) * dtype_size(dtype);
}

uint32_t write_safetensors(const std::string& path, std::vector<TensorSource> tensors,
                           const std::map<std::string, std::string>& metadata) {
  std::vector<TensorParts> parts;
  parts.reserve(tensors.size());
  for (TensorSource& t : tensors)
    parts.push_back(
        {std::move(t.name), t.dtype, t.shape, {{t.data, numel(t.shape)}}, t.source_dtype});
  return write_safetensors(path, std::move(parts), metadata);
}

uint32_t write_safetensors(const std::string& path, std::vector<TensorParts> tensors,
                           const std::map<std::string, std::string>& metadata) {
  std::sort(tensors.begin(), tensors.end(),
            [](const TensorParts& a, const TensorParts& b) { return a.name < b.name; });
  std::vector<SafetensorsWriter::Tensor> decl;
  decl.reserve(tensors.size());
  for (const TensorParts& t : tensors) decl.push_back({t.name, t.dtype, t.shape, t.source_dtype});
  SafetensorsWriter file(path, std::move(decl), metadata);
  for (const TensorParts& t : tensors) {
    int64_t count = 0;
    for (const auto& p : t.parts) count += p.count;
    QV_CHECK(count == numel(t.shape), path, ": the parts of tensor '", t.name, "' hold ", count,
             " elements, its shape ", numel(t.shape));
    for (const TensorParts::Part& part : t.parts) file.append(part.data, part.count);
  }
  return file.commit();
}

SafetensorsWriter::SafetensorsWriter(const std::string& path, std::vector<Tensor> tensors,
                                     const std::map<std::string, std::string>& metadata)
    : path_(path), tensors_(std::move(tensors)) {
  std::stable_sort(tensors_.begin(), tensors_.end(),
                   [](const Tensor& a, const Tensor& b) { return a.name < b.name; });
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  size_t offset = 0;
  for (const Tensor& t : tensors_) {
    QV_CHECK(t.source_dtype == t.dtype || (t.source_dtype == DType::kF32 &&
                                           (t.dtype == DType::kBF16 || t.dtype == DType::kF16)),
             path, ": cannot store tensor '", t.name, "' of ", dtype_name(t.source_dtype), " as ",
             dtype_name(t.dtype));
    QV_CHECK(!header.contains(t.name), path, ": tensor '", t.name, "' given twice");
    const size_t bytes = static_cast<size_t>(numel(t.shape)) * dtype_size(t.dtype);
    header[t.name] = {{"dtype", dtype_name(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string h = header.dump();
  while ((h.size() % 8) != 0) h.push_back(' ');
  file_ = std::make_unique<AtomicFile>(path);
  const uint64_t len = h.size();
  file_->write(&len, 8);
  file_->write(h.data(), h.size());
  while (current_ < tensors_.size() && numel(tensors_[current_].shape) == 0) ++current_;
}

SafetensorsWriter::~SafetensorsWriter() = default;

void SafetensorsWriter::append(const void* data, int64_t count) {
  if (count == 0) return;
  QV_CHECK(current_ < tensors_.size(), path_, ": ", count,
           " values appended after the last tensor");
  const Tensor& t = tensors_[current_];
  QV_CHECK(count > 0 && filled_ + count <= numel(t.shape), path_, ": tensor '", t.name, "' has ",
           numel(t.shape), " elements; ", filled_, " written and ", count, " more appended");
  if (t.source_dtype == t.dtype) {
    file_->write(data, static_cast<size_t>(count) * dtype_size(t.dtype));
  } else {
    const auto* src = static_cast<const float*>(data);
    constexpr int64_t kChunk = 1 << 16;
    chunk_.resize(kChunk);
    for (int64_t i = 0; i < count; i += kChunk) {
      const int64_t m = std::min(kChunk, count - i);
      if (t.dtype == DType::kBF16)
        for (int64_t k = 0; k < m; ++k) chunk_[k] = f32_to_bf16(src[i + k]);
      else
        for (int64_t k = 0; k < m; ++k) chunk_[k] = f32_to_f16(src[i + k]);
      file_->write(chunk_.data(), m * sizeof(uint16_t));
    }
  }
  filled_ += count;
  if (filled_ < numel(t.shape)) return;
  filled_ = 0;
  ++current_;
  while (current_ < tensors_.size() && numel(tensors_[current_].shape) == 0) ++current_;
}

uint32_t SafetensorsWriter::commit() {
  QV_CHECK(current_ == tensors_.size(), path_, ": tensor '", tensors_[current_].name,
           "' is incomplete (", filled_, " of ", numel(tensors_[current_].shape),
           " elements written)");
  file_->commit();
  return file_->crc32c();
}

void save_safetensors(const std::string& path, const TensorMap& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<TensorSource> sources;
  for (const auto& [name, t] : tensors)
    sources.push_back({name, t.dtype(), t.shape(), t.raw(), t.dtype()});
  write_safetensors(path, std::move(sources), metadata);
}

std::map<std::string, std::string> parse_checkpoint_index(const std::string& text,
                                                          const std::string& origin,
                                                          const std::string& dir) {
  namespace fs = std::filesystem;
  const json j = parse_json(text, origin);
  QV_CHECK(j.contains("weight_map") && j["weight_map"].is_object(), origin,
           ": missing 'weight_map' object");
  std::map<std::string, std::string> where;
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    QV_CHECK(it->is_string(), origin, ": weight_map entry '", it.key(), "' is not a file name");
    const std::string file = it->get<std::string>();
    QV_CHECK(file.find('/') == std::string::npos && file.find("..") == std::string::npos, origin,
             ": shard name '", file, "' must be a plain file name");
    where[it.key()] = (fs::path(dir) / file).string();
  }
  return where;
}

std::map<std::string, std::string> list_checkpoint_tensors(const std::string& dir) {
  namespace fs = std::filesystem;
  std::map<std::string, std::string> where;
  const fs::path index = fs::path(dir) / "model.safetensors.index.json";
  if (fs::exists(index))
    return parse_checkpoint_index(read_file(index.string()), index.string(), dir);
  const fs::path single = fs::path(dir) / "model.safetensors";
  QV_CHECK(fs::exists(single), dir, ": no model.safetensors or model.safetensors.index.json");
  SafetensorsFile file(single.string());
  for (const auto& name : file.names()) where[name] = single.string();
  return where;
}

}  // namespace qv::io
