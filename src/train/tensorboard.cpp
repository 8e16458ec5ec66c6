#include "train/tensorboard.h"

#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "io/checksum.h"

namespace qv::train {

namespace {

// Minimal protobuf encoding helpers.
void varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void tag(std::string& out, int field, int wire) {
  varint(out, (field << 3) | wire);
}
void fixed64(std::string& out, const void* p) {
  out.append(static_cast<const char*>(p), 8);
}
void fixed32(std::string& out, const void* p) {
  out.append(static_cast<const char*>(p), 4);
}
void bytes(std::string& out, int field, const std::string& b) {
  tag(out, field, 2);
  varint(out, b.size());
  out += b;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// tensorflow.Event: wall_time = 1 (double), step = 2 (int64), file_version = 3 (string),
// summary = 5 (Summary { repeated Value value = 1 { tag = 1, simple_value = 2 (float) } }).
std::string event(int64_t step, const std::string* file_version, const std::string* tag_name,
                  float value) {
  std::string e;
  const double t = now_seconds();
  tag(e, 1, 1);
  fixed64(e, &t);
  tag(e, 2, 0);
  varint(e, static_cast<uint64_t>(step));
  if (file_version) bytes(e, 3, *file_version);
  if (tag_name) {
    std::string v;
    bytes(v, 1, *tag_name);
    tag(v, 2, 5);
    fixed32(v, &value);
    std::string summary;
    bytes(summary, 1, v);
    bytes(e, 5, summary);
  }
  return e;
}

}  // namespace

TensorBoardWriter::TensorBoardWriter(const std::string& folder) {
  std::filesystem::create_directories(folder);
  char host[256] = "localhost";
  ::gethostname(host, sizeof(host) - 1);
  path_ = folder + "/events.out.tfevents." + std::to_string(static_cast<long long>(now_seconds())) +
          "." + host + "." + std::to_string(::getpid());
  out_.open(path_, std::ios::binary);
  QV_CHECK(out_.good(), "cannot create TensorBoard event file ", path_);
  const std::string version = "brain.Event:2";
  write_record(event(0, &version, nullptr, 0));
}

void TensorBoardWriter::write_record(const std::string& payload) {
  const uint64_t len = payload.size();
  const uint32_t len_crc = io::masked_crc32c(&len, 8);
  const uint32_t data_crc = io::masked_crc32c(payload.data(), payload.size());
  out_.write(reinterpret_cast<const char*>(&len), 8);
  out_.write(reinterpret_cast<const char*>(&len_crc), 4);
  out_.write(payload.data(), payload.size());
  out_.write(reinterpret_cast<const char*>(&data_crc), 4);
}

void TensorBoardWriter::scalar(const std::string& name, double value, int64_t step) {
  write_record(event(step, nullptr, &name, static_cast<float>(value)));
}

void TensorBoardWriter::flush() {
  out_.flush();
}

}  // namespace qv::train
