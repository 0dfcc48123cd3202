#pragma once
// What `piquant inspect` reports about a GGUF file, a .safetensors file or a Hugging
// Face folder: architecture, per-layer MLP widths, parameter count, sizes, bits per
// weight, metadata and the tensor table, as JSON (text rendering below).
#include <string>

#include <nlohmann/json.hpp>

namespace piquant {

class GgufValue;

nlohmann::json inspect_model_file(const std::string& path);
std::string render_model_report(const nlohmann::json& report, bool show_all_metadata);
nlohmann::json gguf_value_to_json(const GgufValue& value);

}  // namespace piquant
