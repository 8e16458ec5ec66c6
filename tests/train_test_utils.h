// Helpers for end-to-end training tests that run the qwen3vl binary.
#pragma once
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli_test_utils.h"
#include "io/safetensors.h"
#include "model/inputs_io.h"

namespace qv::testing {

// An empty folder for one test: <temp dir>/qwen3vl_<suite>_<name>, emptied first.
inline std::string fresh_dir(const std::string& suite, const std::string& name) {
  const auto p = std::filesystem::temp_directory_path() / ("qwen3vl_" + suite + "_" + name);
  std::filesystem::remove_all(p);
  return p.string();
}

inline std::vector<nlohmann::json> read_metrics(const std::string& dump) {
  std::vector<nlohmann::json> out;
  std::ifstream in(dump + "/metrics.jsonl");
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

// A job on a fixture's fixed batch: writes the TOML into dump/../name.toml and returns its path.
inline std::string fixed_batch_config(const std::string& fixture, const std::string& dump,
                                      int steps, int interval, const std::string& extra = "") {
  const std::string dir = std::string(QWEN3VL_SOURCE_DIR) + "/tests/fixtures/" + fixture;
  std::filesystem::create_directories(dump);
  const std::string path = dump + "/job.toml";
  std::ofstream(path) << "[job]\ndump_folder = \"" << dump << "\"\n[model]\nhf_config = \"" << dir
                      << "\"\n[optimizer]\nlr = 1e-3\nbetas = [0.9, 0.95]\nweight_decay = 0.1\n"
                      << "[lr_scheduler]\nwarmup_steps = 2\n[training]\nsteps = " << steps
                      << "\nlocal_batch_size = 1\ndataset = \"fixed\"\ndataset_path = \"" << dir
                      << "/inputs.safetensors\"\n[checkpoint]\nenable = true\ninterval = "
                      << interval << "\nkeep_latest_k = 0\ninitial_load_path = \"" << dir << "\"\n"
                      << extra;
  return path;
}

// The fixtures' 5-step Hugging Face + torch.optim.AdamW job (tests/fixtures/*/train_steps.json):
// AdamW lr 1e-3, warmup 2, clipping at 1, on the fixture's batch from its weights. The TOML text
// (tests/test_train_fixture.cpp against PyTorch; tests/test_cuda_model.cpp, GPU against CPU).
inline std::string fixture_five_step_toml(const std::string& fixture, const std::string& dump) {
  const std::string dir = std::string(QWEN3VL_SOURCE_DIR) + "/tests/fixtures/" + fixture;
  return "[job]\ndump_folder = \"" + dump + "\"\n[model]\nhf_config = \"" + dir +
         "\"\n[optimizer]\nlr = 1e-3\nbetas = [0.9, 0.95]\neps = 1e-8\nweight_decay = 0.1\n"
         "[lr_scheduler]\nname = \"hf_linear\"\nwarmup_steps = 2\n"
         "[training]\nsteps = 5\nmax_norm = 1.0\ndataset = \"fixed\"\ndataset_path = \"" +
         dir + "/inputs.safetensors\"\n[checkpoint]\ninitial_load_path = \"" + dir +
         "\"\n[metrics]\nenable_jsonl = false\n";
}

// The text fixture's two rows twice, written to dir/four_rows.safetensors: four rows, so 1, 2
// and 4 ranks all split the batch evenly. Returns the path.
inline std::string four_row_text_batch(const std::string& dir) {
  const std::string fixture = std::string(QWEN3VL_SOURCE_DIR) + "/tests/fixtures/hf-tiny-text";
  model::ModelInputs m = model::load_inputs(fixture + "/inputs.safetensors");
  m.batch = 4;
  for (auto* v : {&m.input_ids, &m.labels, &m.attention_mask})
    if (!v->empty()) v->insert(v->end(), v->begin(), v->end());
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/four_rows.safetensors";
  io::save_safetensors(path, model::inputs_to_tensors(m));
  return path;
}

inline double max_weight_diff(const std::string& a_dir, const std::string& b_dir) {
  const auto a = io::load_safetensors(a_dir + "/model.safetensors");
  const auto b = io::load_safetensors(b_dir + "/model.safetensors");
  double worst = a.size() == b.size() ? 0 : 1e30;
  for (const auto& [name, t] : a) {
    auto it = b.find(name);
    if (it == b.end()) return 1e30;
    for (int64_t i = 0; i < t.numel(); ++i)
      worst = std::max(
          worst, static_cast<double>(std::fabs(t.data<float>()[i] - it->second.data<float>()[i])));
  }
  return worst;
}

inline std::string mpirun(int np) {
  // OpenMPI refuses to run as root (CI runs as root) unless both variables are set.
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  return "mpirun -np " + std::to_string(np) + " --oversubscribe ";
}

}  // namespace qv::testing
