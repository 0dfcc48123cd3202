// GgufValue: typed access, construction of arrays, rendering; plus the wire-size facts.
#include <charconv>
#include <cstdio>
#include <limits>

#include "core/error.h"
#include "formats/gguf.h"
#include "formats/gguf_wire.h"

namespace piquant {

const char* gguf_type_name(GgufType type) {
  switch (type) {
    case GgufType::UINT8: return "UINT8";
    case GgufType::INT8: return "INT8";
    case GgufType::UINT16: return "UINT16";
    case GgufType::INT16: return "INT16";
    case GgufType::UINT32: return "UINT32";
    case GgufType::INT32: return "INT32";
    case GgufType::FLOAT32: return "FLOAT32";
    case GgufType::BOOL: return "BOOL";
    case GgufType::STRING: return "STRING";
    case GgufType::ARRAY: return "ARRAY";
    case GgufType::UINT64: return "UINT64";
    case GgufType::INT64: return "INT64";
    case GgufType::FLOAT64: return "FLOAT64";
  }
  return "UNKNOWN";
}

namespace gguf_wire {

std::size_t scalar_size(GgufType type) {
  switch (type) {
    case GgufType::UINT8:
    case GgufType::INT8:
    case GgufType::BOOL: return 1;
    case GgufType::UINT16:
    case GgufType::INT16: return 2;
    case GgufType::UINT32:
    case GgufType::INT32:
    case GgufType::FLOAT32: return 4;
    case GgufType::UINT64:
    case GgufType::INT64:
    case GgufType::FLOAT64: return 8;
    case GgufType::STRING:
    case GgufType::ARRAY: return 0;
  }
  return 0;
}

std::size_t min_encoded_size(GgufType type) {
  if (type == GgufType::STRING) return 8;   // u64 length
  if (type == GgufType::ARRAY) return 12;   // u32 element type + u64 count
  return scalar_size(type);
}

std::string printable(std::string_view name) {
  constexpr std::size_t kMaxShown = 96;
  std::string out;
  for (std::size_t i = 0; i < name.size() && i < kMaxShown; ++i) {
    const auto c = static_cast<unsigned char>(name[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  if (name.size() > kMaxShown) out += "...";
  return out;
}

}  // namespace gguf_wire

namespace {

bool is_integer_type(GgufType type) {
  switch (type) {
    case GgufType::UINT8:
    case GgufType::INT8:
    case GgufType::UINT16:
    case GgufType::INT16:
    case GgufType::UINT32:
    case GgufType::INT32:
    case GgufType::UINT64:
    case GgufType::INT64: return true;
    default: return false;
  }
}

std::string type_mismatch(const char* expected, const GgufValue& v) {
  std::string actual = gguf_type_name(v.type());
  if (v.is_array()) actual += std::string(" of ") + gguf_type_name(v.element_type());
  return std::string("expected ") + expected + ", found " + actual;
}

std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\x%02x", c);
          out += buf;
        } else {
          out += ch;  // UTF-8 passes through so token text stays readable
        }
    }
  }
  return out + "\"";
}

template <class F>
std::string shortest(F v) {
  char buf[64];
  const auto result = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, result.ptr);
}

}  // namespace

GgufValue GgufValue::array(GgufType element_type, Array elements) {
  if (!gguf_wire::is_valid_type(static_cast<std::uint32_t>(element_type))) {
    throw Error("GGUF array: invalid element type " + std::to_string(static_cast<std::uint32_t>(element_type)));
  }
  for (std::size_t i = 0; i < elements.size(); ++i) {
    if (elements[i].type() != element_type) {
      throw Error("GGUF array of " + std::string(gguf_type_name(element_type)) + ": element " + std::to_string(i) +
                  " is " + gguf_type_name(elements[i].type()));
    }
  }
  GgufValue v;
  v.type_ = GgufType::ARRAY;
  v.element_type_ = element_type;
  v.value_ = std::move(elements);
  return v;
}

GgufValue GgufValue::string_array(const std::vector<std::string>& items) {
  Array elements;
  elements.reserve(items.size());
  for (const auto& s : items) elements.emplace_back(s);
  return array(GgufType::STRING, std::move(elements));
}

GgufValue GgufValue::int32_array(const std::vector<std::int32_t>& items) {
  Array elements(items.begin(), items.end());
  return array(GgufType::INT32, std::move(elements));
}

GgufValue GgufValue::float32_array(const std::vector<float>& items) {
  Array elements(items.begin(), items.end());
  return array(GgufType::FLOAT32, std::move(elements));
}

bool GgufValue::is_integer() const { return is_integer_type(type_); }

bool GgufValue::is_float() const { return type_ == GgufType::FLOAT32 || type_ == GgufType::FLOAT64; }

std::int64_t GgufValue::as_int() const {
  switch (type_) {
    case GgufType::UINT8: return std::get<std::uint8_t>(value_);
    case GgufType::INT8: return std::get<std::int8_t>(value_);
    case GgufType::UINT16: return std::get<std::uint16_t>(value_);
    case GgufType::INT16: return std::get<std::int16_t>(value_);
    case GgufType::UINT32: return std::get<std::uint32_t>(value_);
    case GgufType::INT32: return std::get<std::int32_t>(value_);
    case GgufType::INT64: return std::get<std::int64_t>(value_);
    case GgufType::UINT64: {
      const std::uint64_t v = std::get<std::uint64_t>(value_);
      if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        throw Error("GGUF value: UINT64 " + std::to_string(v) + " does not fit a signed 64-bit integer");
      }
      return static_cast<std::int64_t>(v);
    }
    default: throw Error("GGUF value: " + type_mismatch("an integer", *this));
  }
}

std::uint64_t GgufValue::as_uint() const {
  if (type_ == GgufType::UINT64) return std::get<std::uint64_t>(value_);
  if (!is_integer()) throw Error("GGUF value: " + type_mismatch("an integer", *this));
  const std::int64_t v = as_int();
  if (v < 0) throw Error("GGUF value: " + std::string(gguf_type_name(type_)) + " " + std::to_string(v) + " is negative");
  return static_cast<std::uint64_t>(v);
}

double GgufValue::as_float() const {
  if (type_ == GgufType::FLOAT32) return std::get<float>(value_);
  if (type_ == GgufType::FLOAT64) return std::get<double>(value_);
  if (type_ == GgufType::UINT64) return static_cast<double>(std::get<std::uint64_t>(value_));
  if (is_integer()) return static_cast<double>(as_int());
  throw Error("GGUF value: " + type_mismatch("a number", *this));
}

bool GgufValue::as_bool() const {
  if (type_ != GgufType::BOOL) throw Error("GGUF value: " + type_mismatch("BOOL", *this));
  return std::get<bool>(value_);
}

const std::string& GgufValue::as_string() const {
  if (type_ != GgufType::STRING) throw Error("GGUF value: " + type_mismatch("STRING", *this));
  return std::get<std::string>(value_);
}

const GgufValue::Array& GgufValue::as_array() const {
  if (type_ != GgufType::ARRAY) throw Error("GGUF value: " + type_mismatch("ARRAY", *this));
  return std::get<Array>(value_);
}

std::vector<std::string> GgufValue::as_string_array() const {
  const Array& items = as_array();
  if (element_type_ != GgufType::STRING) throw Error("GGUF value: " + type_mismatch("ARRAY of STRING", *this));
  std::vector<std::string> out;
  out.reserve(items.size());
  for (const auto& item : items) out.push_back(std::get<std::string>(item.value_));
  return out;
}

std::vector<std::int64_t> GgufValue::as_int_array() const {
  const Array& items = as_array();
  if (!is_integer_type(element_type_)) throw Error("GGUF value: " + type_mismatch("ARRAY of integers", *this));
  std::vector<std::int64_t> out;
  out.reserve(items.size());
  for (const auto& item : items) out.push_back(item.as_int());
  return out;
}

std::vector<float> GgufValue::as_float_array() const {
  const Array& items = as_array();
  if (element_type_ != GgufType::FLOAT32 && element_type_ != GgufType::FLOAT64) {
    throw Error("GGUF value: " + type_mismatch("ARRAY of FLOAT32 or FLOAT64", *this));
  }
  std::vector<float> out;
  out.reserve(items.size());
  for (const auto& item : items) out.push_back(static_cast<float>(item.as_float()));
  return out;
}

std::string GgufValue::to_string(std::size_t max_items) const {
  switch (type_) {
    case GgufType::BOOL: return std::get<bool>(value_) ? "true" : "false";
    case GgufType::FLOAT32: return shortest(std::get<float>(value_));
    case GgufType::FLOAT64: return shortest(std::get<double>(value_));
    case GgufType::STRING: return quoted(std::get<std::string>(value_));
    case GgufType::UINT64: return std::to_string(std::get<std::uint64_t>(value_));
    case GgufType::ARRAY: {
      const Array& items = std::get<Array>(value_);
      std::string out = "[";
      const std::size_t shown = std::min(items.size(), max_items);
      for (std::size_t i = 0; i < shown; ++i) {
        if (i > 0) out += ", ";
        out += items[i].to_string(max_items);
      }
      if (shown < items.size()) {
        out += (shown > 0 ? ", ... " : "... ") + std::to_string(items.size() - shown) + " more";
      }
      return out + "]";
    }
    default: return std::to_string(as_int());
  }
}

}  // namespace piquant
