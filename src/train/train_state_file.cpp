#include "train/train_state_file.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <span>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mapped_file.h"
#include "formats/safetensors.h"
#include "core/fnv1a.h"

namespace piquant {
namespace {

constexpr const char* kFormatKey = "piquant.format";
constexpr const char* kVersionKey = "piquant.version";
constexpr const char* kChecksumKey = "piquant.checksum";
constexpr const char* kFormat = "train_state";
constexpr const char* kVersion = "1";
constexpr const char* kSuffix = ".safetensors";

bool reserved(const std::string& key) { return key.starts_with("piquant."); }

std::string field_of(const std::string& key) { return "metadata '" + key + "'"; }

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string text = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

std::uint64_t n_values(const std::vector<std::int64_t>& shape, const std::string& what) {
  std::uint64_t n = 1;
  for (const auto dim : shape) {
    if (dim < 0) throw Error(what + ": negative dimension in shape " + shape_text(shape));
    if (__builtin_mul_overflow(n, static_cast<std::uint64_t>(dim), &n)) throw Error(what + ": shape " + shape_text(shape) + " is too large");
  }
  return n;
}

// The metadata part of the checksum: every entry but the checksum, in key order.
std::uint64_t hash_metadata(const std::map<std::string, std::string>& metadata) {
  std::uint64_t h = kFnv1aOffset;
  const unsigned char zero = 0;
  for (const auto& [key, value] : metadata) {
    if (key == kChecksumKey) continue;
    h = fnv1a64(h, key.data(), key.size());
    h = fnv1a64(h, &zero, 1);
    h = fnv1a64(h, value.data(), value.size());
    h = fnv1a64(h, &zero, 1);
  }
  return h;
}

std::string hex16(std::uint64_t value) {
  char text[17];
  for (int i = 15; i >= 0; --i, value >>= 4) text[i] = "0123456789abcdef"[value & 15];
  text[16] = '\0';
  return text;
}

template <class T>
T parse_number(const TrainState& state, const std::string& key, const char* kind) {
  const std::string& text = state.get(key);
  T value{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec == std::errc::result_out_of_range) throw FormatError(state.source, field_of(key), "'" + text + "' is out of range for " + kind);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) {
    throw FormatError(state.source, field_of(key), "'" + text + "' is not " + kind);
  }
  return value;
}

template <class T>
std::string number_text(T value) {
  char text[64];
  const auto [end, ec] = std::to_chars(text, text + sizeof text, value);
  return std::string(text, end);
}

// Called when the safetensors reader refused the file: if the file is shorter than its
// own header says, report that plainly ("truncated"); else leave the reader's message.
void diagnose_truncation(const std::string& path) {
  std::uint64_t header_length = 0;
  std::uint64_t data_end = 0;
  std::size_t size = 0;
  try {
    const MappedFile file(path);
    size = file.size();
    if (size < 8) return;
    std::memcpy(&header_length, file.data(), 8);
    if (header_length > size - 8) {
      throw FormatError(path, "header", "truncated or corrupt: the header length " + std::to_string(header_length) +
                                            " runs past the end of the " + std::to_string(size) + "-byte file");
    }
    const auto header = nlohmann::json::parse(file.data() + 8, file.data() + 8 + header_length);
    for (const auto& [name, entry] : header.items()) {
      if (name == "__metadata__" || !entry.is_object()) continue;
      const auto offsets = entry.find("data_offsets");
      if (offsets != entry.end() && offsets->is_array() && offsets->size() == 2 && (*offsets)[1].is_number_unsigned()) {
        data_end = std::max(data_end, (*offsets)[1].get<std::uint64_t>());
      }
    }
  } catch (const nlohmann::json::exception&) {
    return;
  } catch (const FormatError&) {
    throw;
  } catch (const Error&) {
    return;
  }
  if (data_end > size - 8 - header_length) {
    throw FormatError(path, "data", "truncated: the header describes " + std::to_string(8 + header_length + data_end) +
                                        " bytes but the file has " + std::to_string(size));
  }
}

}  // namespace

// ---------------------------------------------------------------- TrainState

void TrainState::set(const std::string& key, std::string value) {
  if (key.empty() || reserved(key)) throw Error("train state: metadata key '" + key + "' is reserved or empty");
  meta[key] = std::move(value);
}
void TrainState::set_int(const std::string& key, std::int64_t value) { set(key, number_text(value)); }
void TrainState::set_u64(const std::string& key, std::uint64_t value) { set(key, number_text(value)); }
void TrainState::set_double(const std::string& key, double value) { set(key, number_text(value)); }

const std::string& TrainState::get(const std::string& key) const {
  const auto it = meta.find(key);
  if (it == meta.end()) throw FormatError(source, field_of(key), "missing");
  return it->second;
}
std::int64_t TrainState::get_int(const std::string& key) const { return parse_number<std::int64_t>(*this, key, "an integer"); }
std::uint64_t TrainState::get_u64(const std::string& key) const {
  const std::string& text = get(key);
  if (text.starts_with('-')) throw FormatError(source, field_of(key), "'" + text + "' is not a non-negative integer");
  return parse_number<std::uint64_t>(*this, key, "a non-negative integer");
}
double TrainState::get_double(const std::string& key) const { return parse_number<double>(*this, key, "a number"); }

NamedTensor& TrainState::add(const std::string& name, std::vector<std::int64_t> shape) {
  if (find(name) != nullptr) throw Error("train state: tensor '" + name + "' added twice");
  const std::uint64_t n = n_values(shape, "train state: tensor '" + name + "'");
  tensors.push_back(NamedTensor{name, std::move(shape), std::vector<float>(n, 0.0f)});
  return tensors.back();
}

const NamedTensor* TrainState::find(const std::string& name) const {
  for (const auto& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

const NamedTensor& TrainState::tensor(const std::string& name, const std::vector<std::int64_t>& shape) const {
  const NamedTensor* t = find(name);
  if (t == nullptr) throw FormatError(source, "tensor '" + name + "'", "missing");
  if (t->shape != shape) throw FormatError(source, "tensor '" + name + "'", "shape " + shape_text(t->shape) + ", expected " + shape_text(shape));
  return *t;
}

void TrainState::check_settings(const std::string& key, const std::string& settings_json) const {
  using nlohmann::json;
  json saved;
  json now;
  try {
    saved = json::parse(get(key));
  } catch (const json::exception& e) {
    throw FormatError(source, field_of(key), std::string("not valid JSON: ") + e.what());
  }
  try {
    now = json::parse(settings_json);
  } catch (const json::exception& e) {
    throw Error(std::string("the run's settings are not valid JSON: ") + e.what());
  }
  if (saved == now) return;
  std::string differences;
  const auto note = [&](const std::string& name, const json* a, const json* b) {
    differences += "\n  " + name + ": " + (a ? a->dump() : "absent") + " in the checkpoint, " + (b ? b->dump() : "absent") + " now";
  };
  if (saved.is_object() && now.is_object()) {
    for (const auto& [k, v] : saved.items()) {
      const auto it = now.find(k);
      if (it == now.end()) {
        note(k, &v, nullptr);
      } else if (*it != v) {
        note(k, &v, &*it);
      }
    }
    for (const auto& [k, v] : now.items()) {
      if (!saved.contains(k)) note(k, nullptr, &v);
    }
  } else {
    note(key, &saved, &now);
  }
  throw Error((source.empty() ? std::string("train state") : source) + ": the run's settings differ from the checkpoint's:" + differences);
}

// ---------------------------------------------------------------- file

void write_train_state(const TrainState& state, const std::string& path) {
  const std::filesystem::path p(path);
  const std::string file_name = p.filename().string();
  if (!file_name.ends_with(kSuffix) || file_name.size() == std::strlen(kSuffix)) {
    throw Error(path + ": a train state file's name must end in \"" + kSuffix + "\"");
  }
  std::map<std::string, std::string> metadata;
  for (const auto& [key, value] : state.meta) {
    if (key.empty() || reserved(key)) throw Error(path + ": metadata key '" + key + "' is reserved or empty");
    metadata[key] = value;
  }
  metadata[kFormatKey] = kFormat;
  metadata[kVersionKey] = kVersion;
  std::uint64_t h = hash_metadata(metadata);
  for (const auto& t : state.tensors) {
    const std::uint64_t n = n_values(t.shape, path + ": tensor '" + t.name + "'");
    if (n != t.data.size()) {
      throw Error(path + ": tensor '" + t.name + "' has " + std::to_string(t.data.size()) + " values but shape " + shape_text(t.shape) +
                  " needs " + std::to_string(n));
    }
    h = fnv1a64(h, t.data.data(), t.data.size() * sizeof(float));
  }
  metadata[kChecksumKey] = hex16(h);

  const std::string dir = p.has_parent_path() ? p.parent_path().string() : std::string(".");
  SafetensorsWriter writer(dir, std::numeric_limits<std::uint64_t>::max(), file_name.substr(0, file_name.size() - std::strlen(kSuffix)));
  for (const auto& [key, value] : metadata) writer.set_metadata(key, value);
  for (const auto& t : state.tensors) writer.add(t.name, SafeDtype::F32, t.shape);
  for (const auto& t : state.tensors) {
    writer.write(std::span(reinterpret_cast<const std::uint8_t*>(t.data.data()), t.data.size() * sizeof(float)));
  }
  writer.finish();
}

TrainState read_train_state(const std::string& path) {
  std::unique_ptr<SafetensorsFile> file;
  try {
    file = std::make_unique<SafetensorsFile>(path);
  } catch (const FormatError&) {
    diagnose_truncation(path);
    throw;
  }
  const auto& metadata = file->metadata();
  const auto require = [&](const char* key) -> const std::string& {
    const auto it = metadata.find(key);
    if (it == metadata.end()) throw FormatError(path, field_of(key), "missing: not a piquant train state");
    return it->second;
  };
  if (require(kFormatKey) != kFormat) throw FormatError(path, field_of(kFormatKey), "'" + require(kFormatKey) + "' is not \"train_state\"");
  if (require(kVersionKey) != kVersion) {
    throw FormatError(path, field_of(kVersionKey), "version '" + require(kVersionKey) + "' is not supported (this piquant reads version 1)");
  }
  const std::string& stored = require(kChecksumKey);

  const MappedFile& mapped = file->file();
  std::uint64_t header_length = 0;
  std::memcpy(&header_length, mapped.data(), 8);
  const std::uint64_t data_start = 8 + header_length;
  const std::uint64_t h = fnv1a64(hash_metadata(metadata), mapped.data() + data_start, mapped.size() - data_start);
  if (hex16(h) != stored) {
    throw FormatError(path, "checksum", "the content hashes to " + hex16(h) + " but the file records " + stored + " (the file is corrupt)");
  }

  TrainState state;
  state.source = path;
  for (const auto& [key, value] : metadata) {
    if (!reserved(key)) state.meta[key] = value;
  }
  for (const auto& t : file->tensors()) {
    if (t.dtype != SafeDtype::F32) {
      throw FormatError(path, "tensor '" + t.name + "'", std::string("dtype ") + safe_dtype_name(t.dtype) + ", a train state holds F32 only");
    }
    NamedTensor tensor{t.name, t.shape, std::vector<float>(t.data.size() / sizeof(float))};
    if (!t.data.empty()) std::memcpy(tensor.data.data(), t.data.data(), t.data.size());  // an empty vector's data() may be null
    state.tensors.push_back(std::move(tensor));
  }
  return state;
}

}  // namespace piquant
