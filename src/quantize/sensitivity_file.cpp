#include "quantize/sensitivity_file.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/fnv1a.h"

namespace piquant {
namespace {

constexpr const char* kFormat = "piquant-sensitivity";
constexpr int kVersion = 1;

std::string hex(std::uint64_t h) {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(h));
  return text;
}

template <class T>
std::uint64_t hash_value(std::uint64_t h, T value) {
  return fnv1a64(h, &value, sizeof value);
}

std::uint64_t hash_string(std::uint64_t h, const std::string& s) {
  h = hash_value<std::uint64_t>(h, s.size());
  return fnv1a64(h, s.data(), s.size());
}

}  // namespace

std::string checkpoint_fingerprint(const Checkpoint& checkpoint) {
  std::uint64_t h = kFnv1aOffset;
  std::vector<float> rows;
  for (const CheckpointTensor& t : checkpoint.tensors()) {
    h = hash_string(h, t.name);
    for (const std::int64_t d : t.shape) h = hash_value(h, d);
    const std::int64_t per_step = std::max<std::int64_t>(1, (16 << 20) / std::max<std::int64_t>(1, t.row_length()));
    for (std::int64_t first = 0; first < t.n_rows(); first += per_step) {
      const std::int64_t n = std::min(per_step, t.n_rows() - first);
      rows.resize(static_cast<std::size_t>(n * t.row_length()));
      checkpoint.read_rows(t, first, n, rows.data());
      h = fnv1a64(h, rows.data(), rows.size() * sizeof(float));
    }
    checkpoint.release(t);
  }
  return hex(h);
}

std::string imatrix_fingerprint(const ImportanceMatrix& imatrix) {
  std::uint64_t h = kFnv1aOffset;
  for (const auto& [name, entry] : imatrix.entries) {
    h = hash_string(h, name);
    h = hash_value(h, entry.ncall);
    h = fnv1a64(h, entry.values.data(), entry.values.size() * sizeof(float));
  }
  return hex(h);
}

std::string calibration_fingerprint(const EvalChunks& chunks) {
  std::uint64_t h = kFnv1aOffset;
  h = hash_value<std::int64_t>(h, chunks.n_ctx());
  h = hash_value<std::int64_t>(h, chunks.n_chunks());
  h = hash_value<std::int32_t>(h, chunks.bos_id());
  const auto tokens = chunks.tokens();
  return hex(fnv1a64(h, tokens.data(), tokens.size() * sizeof(std::int32_t)));
}

std::string sensitivity_source_mismatch(const SensitivitySource& cached, const SensitivitySource& wanted,
                                        bool compare_calibration) {
  if (cached.model_fingerprint != wanted.model_fingerprint) {
    return "they were measured on another model (" + cached.model_path + ")";
  }
  if (cached.imatrix_fingerprint != wanted.imatrix_fingerprint) {
    if (cached.imatrix_fingerprint.empty()) return "they were measured without an imatrix";
    if (wanted.imatrix_fingerprint.empty()) return "they were measured with an imatrix (" + cached.imatrix_path + ")";
    return "they were measured with another imatrix (" + cached.imatrix_path + ")";
  }
  if (compare_calibration && cached.calibration_fingerprint != wanted.calibration_fingerprint) {
    return "they were measured on another calibration text or chunking (" + cached.calibration_path + ", " +
           std::to_string(cached.n_chunks) + " chunks of " + std::to_string(cached.n_ctx) + ")";
  }
  return "";
}

std::optional<SensitivityRecord> read_sensitivity_file(const std::string& path) {
  if (!std::filesystem::exists(path)) return std::nullopt;
  std::ifstream in(path, std::ios::binary);
  if (!in) throw_system_error(path, "open");
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(path, "JSON", e.what());
  }
  const auto field = [&](const nlohmann::json& object, const char* key, const std::string& where) -> const nlohmann::json& {
    if (!object.is_object() || !object.contains(key)) throw FormatError(path, where.empty() ? key : where + "." + key, "missing");
    return object.at(key);
  };
  const auto string_field = [&](const nlohmann::json& object, const char* key, const std::string& where) {
    const nlohmann::json& v = field(object, key, where);
    if (!v.is_string()) throw FormatError(path, where + "." + key, "not a string");
    return v.get<std::string>();
  };
  const auto int_field = [&](const nlohmann::json& object, const char* key, const std::string& where) {
    const nlohmann::json& v = field(object, key, where);
    if (!v.is_number_integer()) throw FormatError(path, where + "." + key, "not an integer");
    return v.get<std::int64_t>();
  };
  if (!j.is_object() || !j.contains("format") || j.at("format") != kFormat) {
    throw FormatError(path, "format", std::string("not a sensitivity file (no \"format\": \"") + kFormat + "\")");
  }
  if (!j.contains("version") || j.at("version") != kVersion) {
    throw FormatError(path, "version", "version " + (j.contains("version") ? j.at("version").dump() : std::string("missing")) +
                                           ", this piquant reads " + std::to_string(kVersion));
  }
  SensitivityRecord r;
  const nlohmann::json& model = field(j, "model", "");
  r.source.model_path = string_field(model, "path", "model");
  r.source.model_fingerprint = string_field(model, "fingerprint", "model");
  const nlohmann::json& imatrix = field(j, "imatrix", "");
  r.source.imatrix_path = string_field(imatrix, "path", "imatrix");
  r.source.imatrix_fingerprint = string_field(imatrix, "fingerprint", "imatrix");
  const nlohmann::json& calibration = field(j, "calibration", "");
  r.source.calibration_path = string_field(calibration, "path", "calibration");
  r.source.calibration_fingerprint = string_field(calibration, "fingerprint", "calibration");
  r.source.n_ctx = int_field(calibration, "n_ctx", "calibration");
  r.source.n_chunks = int_field(calibration, "n_chunks", "calibration");
  const nlohmann::json& seconds = field(j, "measure_seconds", "");
  if (!seconds.is_number()) throw FormatError(path, "measure_seconds", "not a number");
  r.measure_seconds = seconds.get<double>();
  const nlohmann::json& kld = field(j, "kld", "");
  if (!kld.is_object()) throw FormatError(path, "kld", "not an object");
  for (const auto& [tensor, types] : kld.items()) {
    if (!types.is_object()) throw FormatError(path, "kld." + tensor, "not an object");
    for (const auto& [type_name, value] : types.items()) {
      const auto type = ggml_type_from_name(type_name);
      if (!type) throw FormatError(path, "kld." + tensor + "." + type_name, "unknown type");
      if (!value.is_number() || !std::isfinite(value.get<double>()) || value.get<double>() < 0) {
        throw FormatError(path, "kld." + tensor + "." + type_name, "not a finite non-negative number");
      }
      r.table.kld[tensor][*type] = value.get<double>();
    }
  }
  return r;
}

void write_sensitivity_file(const std::string& path, const SensitivityRecord& record) {
  nlohmann::ordered_json kld = nlohmann::ordered_json::object();
  for (const auto& [tensor, types] : record.table.kld) {
    nlohmann::ordered_json row = nlohmann::ordered_json::object();
    for (const auto& [type, value] : types) row[ggml_type_name(type)] = value;
    kld[tensor] = row;
  }
  const SensitivitySource& s = record.source;
  const nlohmann::ordered_json j = {
      {"format", kFormat},
      {"version", kVersion},
      {"model", {{"path", s.model_path}, {"fingerprint", s.model_fingerprint}}},
      {"imatrix", {{"path", s.imatrix_path}, {"fingerprint", s.imatrix_fingerprint}}},
      {"calibration",
       {{"path", s.calibration_path}, {"fingerprint", s.calibration_fingerprint}, {"n_ctx", s.n_ctx}, {"n_chunks", s.n_chunks}}},
      {"measure_seconds", record.measure_seconds},
      {"kld", kld},
  };
  write_file_atomic(path, j.dump(1) + "\n");
}

}  // namespace piquant
