#include "model/inputs_io.h"

#include <cstring>

#include "core/error.h"

namespace qv::model {

namespace {

std::vector<int64_t> int_rows(const Tensor& t, const std::string& name, const std::string& origin,
                              int64_t batch, int64_t seq) {
  QV_CHECK(t.ndim() == 2 && t.dim(0) == batch && t.dim(1) == seq, origin, ": '", name,
           "' has shape ", shape_str(t.shape()), ", expected [", batch, ", ", seq, "]");
  QV_CHECK(t.dtype() == DType::kI64 || t.dtype() == DType::kI32 || t.dtype() == DType::kU8 ||
               t.dtype() == DType::kBool,
           origin, ": '", name, "' must be an integer tensor, is ", dtype_name(t.dtype()));
  Tensor v = t.dtype() == DType::kBool ? t.to(DType::kU8).to(DType::kI64) : t.to(DType::kI64);
  return std::vector<int64_t>(v.data<int64_t>(), v.data<int64_t>() + v.numel());
}

std::vector<Grid> grids(const Tensor& t, const std::string& name, const std::string& origin) {
  QV_CHECK(t.ndim() == 2 && t.dim(1) == 3, origin, ": '", name, "' has shape ",
           shape_str(t.shape()), ", expected [n, 3]");
  QV_CHECK(t.dtype() == DType::kI64 || t.dtype() == DType::kI32, origin, ": '", name,
           "' must be an integer tensor");
  Tensor v = t.to(DType::kI64);
  std::vector<Grid> out;
  for (int64_t i = 0; i < t.dim(0); ++i) {
    const int64_t* g = v.data<int64_t>() + 3 * i;
    QV_CHECK(g[0] > 0 && g[1] > 0 && g[2] > 0, origin, ": '", name, "' row ", i, " = [", g[0], ", ",
             g[1], ", ", g[2], "] must be positive");
    out.push_back({g[0], g[1], g[2]});
  }
  return out;
}

Tensor pixels(const Tensor& t, const std::string& name, const std::string& origin) {
  QV_CHECK(t.ndim() == 2, origin, ": '", name, "' must be 2-D [patches, C*T*P*P], has shape ",
           shape_str(t.shape()));
  QV_CHECK(t.dtype() == DType::kF32 || t.dtype() == DType::kBF16 || t.dtype() == DType::kF16 ||
               t.dtype() == DType::kF64,
           origin, ": '", name, "' must be a float tensor");
  return t.to(DType::kF32);
}

}  // namespace

ModelInputs inputs_from_tensors(const io::TensorMap& m, const std::string& origin) {
  auto it = m.find("input_ids");
  QV_CHECK(it != m.end(), origin, ": missing 'input_ids'");
  QV_CHECK(it->second.ndim() == 2, origin, ": 'input_ids' must be [batch, seq], has shape ",
           shape_str(it->second.shape()));
  ModelInputs in;
  in.batch = it->second.dim(0);
  in.seq = it->second.dim(1);
  in.input_ids = int_rows(it->second, "input_ids", origin, in.batch, in.seq);
  if (m.count("labels")) in.labels = int_rows(m.at("labels"), "labels", origin, in.batch, in.seq);
  if (m.count("attention_mask"))
    in.attention_mask =
        int_rows(m.at("attention_mask"), "attention_mask", origin, in.batch, in.seq);
  if (m.count("document_ids"))
    in.document_ids = int_rows(m.at("document_ids"), "document_ids", origin, in.batch, in.seq);
  if (m.count("pixel_values")) {
    in.pixel_values = pixels(m.at("pixel_values"), "pixel_values", origin);
    QV_CHECK(m.count("image_grid_thw"), origin, ": 'pixel_values' without 'image_grid_thw'");
    in.image_grids = grids(m.at("image_grid_thw"), "image_grid_thw", origin);
  }
  if (m.count("pixel_values_videos")) {
    in.pixel_values_videos = pixels(m.at("pixel_values_videos"), "pixel_values_videos", origin);
    QV_CHECK(m.count("video_grid_thw"), origin, ": 'pixel_values_videos' without 'video_grid_thw'");
    in.video_grids = grids(m.at("video_grid_thw"), "video_grid_thw", origin);
  }
  return in;
}

ModelInputs load_inputs(const std::string& path) {
  return inputs_from_tensors(io::load_safetensors(path), path);
}

io::TensorMap inputs_to_tensors(const ModelInputs& in) {
  io::TensorMap m;
  const Shape bs = {in.batch, in.seq};
  m["input_ids"] = Tensor::from_i64(in.input_ids, bs);
  if (!in.labels.empty()) m["labels"] = Tensor::from_i64(in.labels, bs);
  if (!in.attention_mask.empty()) m["attention_mask"] = Tensor::from_i64(in.attention_mask, bs);
  if (!in.document_ids.empty()) m["document_ids"] = Tensor::from_i64(in.document_ids, bs);
  auto grid_tensor = [](const std::vector<Grid>& g) {
    std::vector<int64_t> v;
    for (const Grid& x : g) v.insert(v.end(), {x.t, x.h, x.w});
    return Tensor::from_i64(v, {static_cast<int64_t>(g.size()), 3});
  };
  if (in.pixel_values.defined()) {
    m["pixel_values"] = in.pixel_values;
    m["image_grid_thw"] = grid_tensor(in.image_grids);
  }
  if (in.pixel_values_videos.defined()) {
    m["pixel_values_videos"] = in.pixel_values_videos;
    m["video_grid_thw"] = grid_tensor(in.video_grids);
  }
  return m;
}

}  // namespace qv::model
