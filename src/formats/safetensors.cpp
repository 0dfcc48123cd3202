// safetensors dtypes and the validating single-file reader.
#include "formats/safetensors.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace piquant {
namespace {

struct DtypeInfo {
  SafeDtype dtype;
  const char* name;
  std::size_t bytes;
};

constexpr std::array<DtypeInfo, 10> kDtypes{{
    {SafeDtype::F32, "F32", 4},
    {SafeDtype::F16, "F16", 2},
    {SafeDtype::BF16, "BF16", 2},
    {SafeDtype::F64, "F64", 8},
    {SafeDtype::I64, "I64", 8},
    {SafeDtype::I32, "I32", 4},
    {SafeDtype::I16, "I16", 2},
    {SafeDtype::I8, "I8", 1},
    {SafeDtype::U8, "U8", 1},
    {SafeDtype::BOOL, "BOOL", 1},
}};

const DtypeInfo& dtype_info(SafeDtype dtype) {
  for (const auto& d : kDtypes) {
    if (d.dtype == dtype) return d;
  }
  throw Error("unknown safetensors dtype id " + std::to_string(static_cast<int>(dtype)));
}

// The reference implementation refuses headers above 100 MB; so do we, so that a
// corrupt length cannot make us parse (or allocate for) gigabytes of "JSON".
constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;

using nlohmann::json;

std::string tensor_field(const std::string& name, const char* field) { return "tensor '" + name + "' " + field; }

// Parses the header JSON, refusing duplicate top-level keys: nlohmann would keep
// the last silently, and a file with two entries of one name is ambiguous.
json parse_header(const std::string& path, const std::uint8_t* begin, std::uint64_t length) {
  std::set<std::string> seen;
  std::string duplicate;
  auto on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1 && parsed.is_string()) {
      if (!seen.insert(parsed.get<std::string>()).second && duplicate.empty()) duplicate = parsed.get<std::string>();
    }
    return true;
  };
  json header;
  try {
    header = json::parse(begin, begin + length, on_event);
  } catch (const json::exception& e) {
    throw FormatError(path, "header JSON", std::string("not valid JSON: ") + e.what());
  }
  if (!header.is_object()) throw FormatError(path, "header JSON", "not a JSON object");
  if (!duplicate.empty()) throw FormatError(path, "header JSON", "the key '" + duplicate + "' appears twice");
  return header;
}

std::map<std::string, std::string> parse_metadata(const std::string& path, const json& value) {
  if (!value.is_object()) throw FormatError(path, "__metadata__", "must be an object of strings");
  std::map<std::string, std::string> metadata;
  for (const auto& [key, item] : value.items()) {
    if (!item.is_string()) throw FormatError(path, "__metadata__ '" + key + "'", "value is not a string");
    metadata[key] = item.get<std::string>();
  }
  return metadata;
}

std::vector<std::int64_t> parse_shape(const std::string& path, const std::string& name, const json& entry) {
  const std::string field = tensor_field(name, "shape");
  const auto it = entry.find("shape");
  if (it == entry.end()) throw FormatError(path, field, "missing");
  if (!it->is_array()) throw FormatError(path, field, "not an array");
  std::vector<std::int64_t> shape;
  for (const auto& dim : *it) {
    if (dim.is_number_integer() && !dim.is_number_unsigned()) {
      throw FormatError(path, field, "negative dimension " + dim.dump());
    }
    if (!dim.is_number_unsigned()) throw FormatError(path, field, "dimension " + dim.dump() + " is not an integer");
    const auto value = dim.get<std::uint64_t>();
    if (value > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      throw FormatError(path, field, "dimension " + dim.dump() + " is too large");
    }
    shape.push_back(static_cast<std::int64_t>(value));
  }
  return shape;
}

SafeDtype parse_dtype(const std::string& path, const std::string& name, const json& entry) {
  const std::string field = tensor_field(name, "dtype");
  const auto it = entry.find("dtype");
  if (it == entry.end()) throw FormatError(path, field, "missing");
  if (!it->is_string()) throw FormatError(path, field, "not a string");
  const auto dtype = safe_dtype_from_name(it->get<std::string>());
  if (!dtype) throw FormatError(path, field, "unknown dtype '" + it->get<std::string>() + "'");
  return *dtype;
}

// Byte size of shape × dtype, or nullopt when it does not fit in 64 bits.
std::optional<std::uint64_t> tensor_bytes(const std::vector<std::int64_t>& shape, SafeDtype dtype) {
  std::uint64_t n = safe_dtype_bytes(dtype);
  for (const auto dim : shape) {
    if (__builtin_mul_overflow(n, static_cast<std::uint64_t>(dim), &n)) return std::nullopt;
  }
  return n;
}

}  // namespace

const char* safe_dtype_name(SafeDtype dtype) { return dtype_info(dtype).name; }

std::optional<SafeDtype> safe_dtype_from_name(std::string_view name) {
  for (const auto& d : kDtypes) {
    if (name == d.name) return d.dtype;
  }
  return std::nullopt;
}

std::size_t safe_dtype_bytes(SafeDtype dtype) { return dtype_info(dtype).bytes; }

std::int64_t SafeTensor::n_elements() const {
  std::int64_t n = 1;
  for (const auto dim : shape) n *= dim;
  return n;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(path) {
  static_assert(std::endian::native == std::endian::little, "safetensors is little-endian");
  if (file_.size() < 8) {
    throw FormatError(path, "header length",
                      "file is " + std::to_string(file_.size()) + " bytes, too short for the 8-byte header length");
  }
  std::uint64_t header_length = 0;
  std::memcpy(&header_length, file_.data(), 8);
  if (header_length > file_.size() - 8) {
    throw FormatError(path, "header length",
                      std::to_string(header_length) + " bytes of header past the end of the " +
                          std::to_string(file_.size()) + "-byte file");
  }
  if (header_length > kMaxHeaderBytes) {
    throw FormatError(path, "header length",
                      std::to_string(header_length) + " bytes exceeds the " + std::to_string(kMaxHeaderBytes) +
                          "-byte limit");
  }
  if (header_length < 2) throw FormatError(path, "header length", std::to_string(header_length) + " is too short for JSON");

  const json header = parse_header(path, file_.data() + 8, header_length);
  const std::uint64_t data_start = 8 + header_length;
  const std::uint64_t data_size = file_.size() - data_start;

  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      metadata_ = parse_metadata(path, entry);
      continue;
    }
    if (!entry.is_object()) throw FormatError(path, "tensor '" + name + "'", "entry is not an object");
    SafeTensor tensor;
    tensor.name = name;
    tensor.file = path;
    tensor.dtype = parse_dtype(path, name, entry);
    tensor.shape = parse_shape(path, name, entry);

    const std::string field = tensor_field(name, "data_offsets");
    const auto offsets = entry.find("data_offsets");
    if (offsets == entry.end()) throw FormatError(path, field, "missing");
    if (!offsets->is_array() || offsets->size() != 2 || !(*offsets)[0].is_number_unsigned() ||
        !(*offsets)[1].is_number_unsigned()) {
      throw FormatError(path, field, "must be [begin, end] with non-negative integers, got " + offsets->dump());
    }
    const auto begin = (*offsets)[0].get<std::uint64_t>();
    const auto end = (*offsets)[1].get<std::uint64_t>();
    if (end < begin) throw FormatError(path, field, "end " + std::to_string(end) + " is before begin " + std::to_string(begin));
    if (end > data_size) {
      throw FormatError(path, field,
                        "end " + std::to_string(end) + " lies past the " + std::to_string(data_size) +
                            "-byte data section");
    }
    const auto expected = tensor_bytes(tensor.shape, tensor.dtype);
    if (!expected) throw FormatError(path, tensor_field(name, "shape"), "byte size overflows 64 bits");
    if (end - begin != *expected) {
      throw FormatError(path, field,
                        "[" + std::to_string(begin) + ", " + std::to_string(end) + ") holds " +
                            std::to_string(end - begin) + " bytes but shape × " + safe_dtype_name(tensor.dtype) +
                            " needs " + std::to_string(*expected));
    }
    tensor.file_offset = data_start + begin;
    tensor.data = file_.bytes(tensor.file_offset, end - begin, field);
    tensors_.push_back(std::move(tensor));
  }

  // File order; ties (empty tensors) by name so the order never depends on the JSON.
  std::sort(tensors_.begin(), tensors_.end(), [](const SafeTensor& a, const SafeTensor& b) {
    return a.file_offset != b.file_offset ? a.file_offset < b.file_offset : a.name < b.name;
  });
  const SafeTensor* previous = nullptr;  // the non-empty tensor that ends last so far
  for (const auto& tensor : tensors_) {
    if (tensor.data.empty()) continue;
    if (previous != nullptr && tensor.file_offset < previous->file_offset + previous->data.size()) {
      throw FormatError(path, tensor_field(tensor.name, "data_offsets"),
                        "overlaps tensor '" + previous->name + "'");
    }
    if (previous == nullptr || tensor.file_offset + tensor.data.size() > previous->file_offset + previous->data.size()) {
      previous = &tensor;
    }
  }
}

const SafeTensor* SafetensorsFile::find(std::string_view name) const {
  for (const auto& tensor : tensors_) {
    if (tensor.name == name) return &tensor;
  }
  return nullptr;
}

}  // namespace piquant
