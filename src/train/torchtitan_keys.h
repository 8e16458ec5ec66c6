// torchtitan job-config keys that this trainer does not implement, and what it does with each:
// accepted (with one warning listing them) when the value is torchtitan's default or means
// nothing here, refused with the reason when it asks for something this system cannot do.
// The key list is torchtitan's torchtitan/config/job_config.py as of commit e347b1e5e (the last
// TOML-era schema, the one torchtitan's qwen3_vl train_configs/debug_model.toml is written for).
#pragma once
#include <string>
#include <vector>

namespace qv::train {

// One torchtitan key we do not implement.
struct TorchtitanKey {
  std::string key;                    // "section.key" (nested tables joined with dots)
  std::vector<std::string> accepted;  // canonical value strings accepted; empty = any value
  std::string why;                    // why it is accepted, or why other values are refused
};

// Every such key, in torchtitan's section order.
const std::vector<TorchtitanKey>& torchtitan_only_keys();

// The key's entry, or null when `key` is not one of them.
const TorchtitanKey* find_torchtitan_key(const std::string& key);

// Throws qv::Error ("<origin>: key = value asks for ...; <why>") when `value` (canonical string,
// see canonical_value in job_config.cpp) is not accepted.
void check_torchtitan_value(const TorchtitanKey& k, const std::string& value,
                            const std::string& origin);

}  // namespace qv::train
