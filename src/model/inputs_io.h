// ModelInputs <-> safetensors files with the fixture tensor names: input_ids, labels,
// attention_mask, document_ids, pixel_values, image_grid_thw, pixel_values_videos, video_grid_thw.
#pragma once
#include <string>

#include "io/safetensors.h"
#include "model/inputs.h"

namespace qv::model {

ModelInputs inputs_from_tensors(const io::TensorMap& tensors, const std::string& origin);
ModelInputs load_inputs(const std::string& path);
io::TensorMap inputs_to_tensors(const ModelInputs& inputs);

}  // namespace qv::model
