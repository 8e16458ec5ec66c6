// A TensorBoard event-file writer for scalars (TFRecord framing + the few protobuf fields of
// tensorflow.Event that scalars need), readable by `tensorboard --logdir`.
#pragma once
#include <cstdint>
#include <fstream>
#include <string>

namespace qv::train {

class TensorBoardWriter {
 public:
  explicit TensorBoardWriter(const std::string& folder);
  void scalar(const std::string& tag, double value, int64_t step);
  void flush();
  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& payload);
  std::string path_;
  std::ofstream out_;
};

}  // namespace qv::train
