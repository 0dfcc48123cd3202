#include "checkpoint/model_report.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "formats/gguf.h"
#include "formats/hf_config.h"
#include "formats/safetensors.h"
#include "formats/gguf_metadata.h"
#include "formats/tensor_names.h"

namespace piquant {
namespace {

using nlohmann::json;

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

// MLP widths from the ffn_up tensors (whatever the metadata claims): per layer.
std::vector<std::int64_t> widths_from_tensors(const json& tensors, bool gguf) {
  std::vector<std::int64_t> widths;
  for (const auto& t : tensors) {
    const std::string name = t["name"];
    const auto id = gguf ? parse_gguf_tensor_name(name) : parse_hf_tensor_name(name);
    if (!id || id->kind != WeightKind::FfnUp) continue;
    if (static_cast<std::int64_t>(widths.size()) <= id->layer) widths.resize(static_cast<std::size_t>(id->layer + 1), 0);
    // ggml order: shape[1] is the output width; HF order: shape[0].
    widths[static_cast<std::size_t>(id->layer)] = gguf ? t["shape"][1].get<std::int64_t>() : t["shape"][0].get<std::int64_t>();
  }
  return widths;
}

void add_totals(json& report, bool gguf) {
  std::uint64_t params = 0, bytes = 0;
  for (const auto& t : report["tensors"]) {
    std::uint64_t n = 1;
    for (const auto& d : t["shape"]) n *= d.get<std::uint64_t>();
    if (t["name"] != "rope_freqs.weight") params += n;
    bytes += t["bytes"].get<std::uint64_t>();
  }
  report["n_params"] = params;
  report["tensor_bytes"] = bytes;
  report["size_gb"] = static_cast<double>(bytes) / 1e9;
  report["size_gib"] = static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0);
  report["bits_per_weight"] = params ? 8.0 * static_cast<double>(bytes) / static_cast<double>(params) : 0.0;
  report["mlp_widths"] = widths_from_tensors(report["tensors"], gguf);
}

json inspect_gguf(const std::string& path) {
  const GgufFile file(path);
  json report;
  report["format"] = "gguf";
  report["path"] = path;
  report["version"] = file.version();
  report["alignment"] = file.alignment();
  report["file_bytes"] = file.file().size();
  report["architecture"] = file.get_string("general.architecture", "");
  json metadata = json::object();
  for (const auto& [key, value] : file.metadata()) metadata[key] = gguf_value_to_json(value);
  report["metadata"] = std::move(metadata);
  if (const GgufValue* ft = file.find("general.file_type"); ft != nullptr && ft->is_integer()) {
    report["file_type"] = llama_file_type_name(static_cast<std::uint32_t>(ft->as_int()));
  }
  json tensors = json::array();
  for (const auto& t : file.tensors()) {
    tensors.push_back({{"name", t.name},
                       {"type", ggml_type_name(t.type)},
                       {"type_id", static_cast<std::uint32_t>(t.type)},
                       {"shape", t.shape},
                       {"offset", t.offset},
                       {"bytes", t.size_bytes}});
  }
  report["tensors"] = std::move(tensors);
  add_totals(report, true);
  return report;
}

void add_safetensors(json& tensors, const SafetensorsFiles& checkpoint) {
  for (const auto& name : checkpoint.names()) {
    const SafeTensor& t = checkpoint.tensor(name);
    tensors.push_back({{"name", t.name},
                       {"type", safe_dtype_name(t.dtype)},
                       {"shape", t.shape},
                       {"offset", t.file_offset},
                       {"bytes", t.data.size()},
                       {"file", std::filesystem::path(t.file).filename().string()}});
  }
}

json inspect_safetensors(const std::string& path) {
  namespace fs = std::filesystem;
  json report;
  report["format"] = fs::is_directory(path) ? "hf" : "safetensors";
  report["path"] = path;
  const SafetensorsFiles checkpoint(path);
  json tensors = json::array();
  add_safetensors(tensors, checkpoint);
  report["tensors"] = std::move(tensors);
  std::uint64_t file_bytes = 0;
  if (fs::is_directory(path)) {
    for (const auto& entry : fs::directory_iterator(path)) {
      if (entry.is_regular_file()) file_bytes += entry.file_size();
    }
    const fs::path config = fs::path(path) / "config.json";
    if (fs::exists(config)) {
      const LlamaParams params = load_hf_config(config.string());
      report["architecture"] = params.uniform_ff() ? "llama" : "llama (per-layer MLP widths)";
      report["config"] = hf_config_to_json(params);
    }
  } else {
    file_bytes = fs::file_size(path);
  }
  report["file_bytes"] = file_bytes;
  add_totals(report, false);
  return report;
}

std::string shape_text(const json& shape) {
  std::string s;
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? " x " : "") + std::to_string(shape[i].get<std::int64_t>());
  return s;
}

// "14336 x4, 10752 x24, 14336 x4": runs of equal widths.
std::string widths_text(const json& widths) {
  std::ostringstream s;
  for (std::size_t i = 0; i < widths.size();) {
    std::size_t j = i;
    while (j < widths.size() && widths[j] == widths[i]) ++j;
    if (i > 0) s << ", ";
    s << widths[i].get<std::int64_t>() << " x" << (j - i) << " (layers " << i;
    if (j - i > 1) s << "-" << (j - 1);
    s << ")";
    i = j;
  }
  return s.str();
}

std::string value_text(const json& value) {
  if (value.is_array()) {
    std::string s = "[";
    for (std::size_t i = 0; i < value.size() && i < 6; ++i) s += (i ? ", " : "") + value_text(value[i]);
    if (value.size() > 6) s += ", ... (" + std::to_string(value.size()) + " items)";
    return s + "]";
  }
  std::string s = value.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

}  // namespace

json gguf_value_to_json(const GgufValue& value) {
  switch (value.type()) {
    case GgufType::ARRAY: {
      json out = json::array();
      for (const auto& item : value.as_array()) out.push_back(gguf_value_to_json(item));
      return out;
    }
    case GgufType::STRING: return value.as_string();
    case GgufType::BOOL: return value.as_bool();
    case GgufType::FLOAT32:
    case GgufType::FLOAT64: return value.as_float();
    case GgufType::UINT64:
      try {
        return value.as_int();
      } catch (const Error&) {
        return value.to_string();
      }
    default: return value.as_int();
  }
}

json inspect_model_file(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec)) throw Error(path + ": no such file or folder");
  if (fs::is_directory(path, ec)) return inspect_safetensors(path);
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  if (in.gcount() == 4 && std::string(magic, 4) == "GGUF") return inspect_gguf(path);
  if (path.size() > 12 && path.substr(path.size() - 12) == ".safetensors") return inspect_safetensors(path);
  throw Error(path + ": not a GGUF file, a .safetensors file or a Hugging Face folder");
}

std::string render_model_report(const json& r, bool show_all_metadata) {
  std::ostringstream out;
  out << "file:           " << r["path"].get<std::string>() << "\n";
  out << "format:         " << r["format"].get<std::string>();
  if (r.contains("version")) out << " v" << r["version"] << ", alignment " << r["alignment"];
  out << "\n";
  if (r.contains("architecture")) out << "architecture:   " << r["architecture"].get<std::string>() << "\n";
  if (r.contains("file_type")) out << "file type:      " << r["file_type"].get<std::string>() << "\n";
  if (!r["mlp_widths"].empty()) out << "MLP widths:     " << widths_text(r["mlp_widths"]) << "\n";
  const double params = r["n_params"].get<double>();
  out << "parameters:     " << fixed(params / 1e9, 3) << " B (" << r["n_params"] << ")\n";
  out << "tensor data:    " << fixed(r["size_gb"].get<double>(), 3) << " GB, " << fixed(r["size_gib"].get<double>(), 3) << " GiB ("
      << r["tensor_bytes"] << " bytes); file " << r["file_bytes"] << " bytes\n";
  out << "bits/weight:    " << fixed(r["bits_per_weight"].get<double>(), 3) << "\n";
  if (r.contains("metadata")) {
    out << "\nmetadata (" << r["metadata"].size() << " keys):\n";
    for (const auto& [key, value] : r["metadata"].items()) {
      out << "  " << key << " = " << (show_all_metadata ? value.dump(-1, ' ', false, json::error_handler_t::replace) : value_text(value)) << "\n";
    }
  }
  out << "\ntensors (" << r["tensors"].size() << "):\n";
  char line[512];
  std::snprintf(line, sizeof line, "  %5s  %-44s %-6s %-20s %14s\n", "#", "name", "type", "shape", "bytes");
  out << line;
  std::size_t i = 0;
  for (const auto& t : r["tensors"]) {
    std::snprintf(line, sizeof line, "  %5zu  %-44s %-6s %-20s %14llu\n", i++, t["name"].get<std::string>().c_str(),
                  t["type"].get<std::string>().c_str(), shape_text(t["shape"]).c_str(),
                  static_cast<unsigned long long>(t["bytes"].get<std::uint64_t>()));
    out << line;
  }
  return out.str();
}

}  // namespace piquant
