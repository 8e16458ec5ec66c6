// Reading and writing the safetensors format (8-byte little-endian header length, JSON header of
// {name: {dtype, shape, data_offsets}}, raw little-endian data), single files or sharded folders
// with model.safetensors.index.json.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace qv::io {

class AtomicFile;

struct TensorInfo {
  DType dtype;
  Shape shape;
  size_t begin = 0, end = 0;  // byte offsets within the data section
};

// The parsed, validated header of a safetensors file.
struct SafetensorsHeader {
  std::map<std::string, TensorInfo> infos;
  std::map<std::string, std::string> metadata;
  size_t data_start = 0;  // offset of the data section in the file
};

// Parses the header of a whole safetensors file held in memory (`size` bytes, so that every
// tensor's data is checked to lie inside it). Throws qv::Error naming `origin` and the tensor.
SafetensorsHeader parse_safetensors_header(const std::byte* file, size_t size,
                                           const std::string& origin);

// A safetensors file opened with its header parsed and validated; data read on demand.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  std::vector<std::string> names() const;
  bool has(const std::string& name) const { return infos_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // A copy of the tensor in its stored dtype.
  Tensor read(const std::string& name) const;
  // The tensor's stored bytes, in place in the mapped file (valid while this object lives).
  const std::byte* bytes(const std::string& name) const;

 private:
  std::string path_;
  std::map<std::string, TensorInfo> infos_;
  std::map<std::string, std::string> metadata_;
  const std::byte* map_ = nullptr;
  size_t map_size_ = 0;
  size_t data_start_ = 0;
};

using TensorMap = std::map<std::string, Tensor>;

// Reads every tensor of one file.
TensorMap load_safetensors(const std::string& path);

// A tensor to write straight from memory the caller owns (no copy is made): `shape` values of
// `source_dtype` at `data`, stored as `dtype`. The two dtypes are equal, or F32 -> BF16 / F16
// (rounded to nearest even, as Tensor::to does), converted in small chunks on the way out.
struct TensorSource {
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;
  const void* data = nullptr;
  DType source_dtype = DType::kF32;
  size_t nbytes() const;  // stored size
};

// Writes tensors (sorted by name, header padded to 8 bytes) atomically (io::AtomicFile) and
// returns the CRC-32C of the file's bytes. Memory use stays at the header plus one small
// conversion buffer, whatever the tensors' total size.
uint32_t write_safetensors(const std::string& path, std::vector<TensorSource> tensors,
                           const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// A tensor whose values lie in several places in memory, one after another (numel(shape)
// elements of source_dtype in all): assembled while it is written, never held whole (a
// checkpoint's pieces exported as one Hugging Face tensor).
struct TensorParts {
  struct Part {
    const void* data = nullptr;
    int64_t count = 0;  // elements of source_dtype
  };
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;
  std::vector<Part> parts;
  DType source_dtype = DType::kF32;
  size_t nbytes() const;  // stored size
};
uint32_t write_safetensors(const std::string& path, std::vector<TensorParts> tensors,
                           const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// One safetensors file written tensor after tensor: the header (every tensor's name, stored
// dtype, shape and offsets, sorted by name) goes out first, then each tensor's values in that
// order as the caller appends them, converted on the way (F32 -> BF16 / F16 as Tensor::to
// does). So a tensor needs to exist only while its values are appended: assembled from a
// checkpoint's pieces, or from windows other ranks send. write_safetensors is this writer fed
// from memory, so both give the same bytes. Written atomically (io::AtomicFile): the file
// appears at commit() or never.
class SafetensorsWriter {
 public:
  struct Tensor {
    std::string name;
    DType dtype = DType::kF32;  // stored
    Shape shape;
    DType source_dtype = DType::kF32;  // what append() receives
  };
  SafetensorsWriter(const std::string& path, std::vector<Tensor> tensors,
                    const std::map<std::string, std::string>& metadata = {{"format", "pt"}});
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  // The tensors in the order their values are appended (by name).
  const std::vector<Tensor>& order() const { return tensors_; }
  // The next `count` elements (source dtype) of the current tensor; a tensor's values may come
  // in any number of calls, and the next tensor starts once one is complete.
  void append(const void* data, int64_t count);
  // Checks that every tensor is complete, makes the file durable and visible; returns the
  // CRC-32C of its bytes.
  uint32_t commit();

 private:
  std::string path_;
  std::vector<Tensor> tensors_;
  std::unique_ptr<AtomicFile> file_;
  size_t current_ = 0;  // tensor being appended
  int64_t filled_ = 0;  // its elements so far
  std::vector<uint16_t> chunk_;
};

// Writes tensors (keys sorted, header padded to 8 bytes) atomically.
void save_safetensors(const std::string& path, const TensorMap& tensors,
                      const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// The tensors of a model folder: model.safetensors, or the shards named by
// model.safetensors.index.json. Maps tensor name -> file path.
std::map<std::string, std::string> list_checkpoint_tensors(const std::string& dir);

// The weight_map of a model.safetensors.index.json text: tensor name -> shard path inside `dir`.
// Throws qv::Error naming `origin` on bad JSON or a shard name that is not a plain file name.
std::map<std::string, std::string> parse_checkpoint_index(const std::string& text,
                                                          const std::string& origin,
                                                          const std::string& dir);

// Maximum accepted JSON header size; larger headers are rejected before allocating.
constexpr size_t kMaxSafetensorsHeader = 100u << 20;

}  // namespace qv::io
