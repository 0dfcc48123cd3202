#pragma once
// GGUF v3: the one reader every tool uses, and a streaming writer.
//
// Layout (little-endian): magic "GGUF", u32 version, u64 tensor_count, u64 kv_count,
// kv_count × (string key, u32 value_type, value), tensor_count × (string name,
// u32 n_dims, n_dims × u64 ne, u32 ggml_type, u64 offset), padding to
// general.alignment (default 32), then the data section; each tensor's offset is
// relative to the data section and a multiple of the alignment. Strings are
// u64 length + bytes; arrays are u32 element type + u64 count + elements.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "core/atomic_file.h"
#include "core/mapped_file.h"
#include "formats/ggml_type.h"

namespace piquant {

enum class GgufType : std::uint32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
};

const char* gguf_type_name(GgufType type);

// One metadata value: a scalar, a string, or an array of values of one element type.
class GgufValue {
 public:
  using Array = std::vector<GgufValue>;

  GgufValue() : type_(GgufType::UINT8), value_(std::uint8_t{0}) {}
  GgufValue(std::uint8_t v) : type_(GgufType::UINT8), value_(v) {}
  GgufValue(std::int8_t v) : type_(GgufType::INT8), value_(v) {}
  GgufValue(std::uint16_t v) : type_(GgufType::UINT16), value_(v) {}
  GgufValue(std::int16_t v) : type_(GgufType::INT16), value_(v) {}
  GgufValue(std::uint32_t v) : type_(GgufType::UINT32), value_(v) {}
  GgufValue(std::int32_t v) : type_(GgufType::INT32), value_(v) {}
  GgufValue(float v) : type_(GgufType::FLOAT32), value_(v) {}
  GgufValue(bool v) : type_(GgufType::BOOL), value_(v) {}
  GgufValue(std::string v) : type_(GgufType::STRING), value_(std::move(v)) {}
  GgufValue(const char* v) : GgufValue(std::string(v)) {}
  GgufValue(std::uint64_t v) : type_(GgufType::UINT64), value_(v) {}
  GgufValue(std::int64_t v) : type_(GgufType::INT64), value_(v) {}
  GgufValue(double v) : type_(GgufType::FLOAT64), value_(v) {}

  // An array whose elements all have type `element_type` (checked; throws Error).
  static GgufValue array(GgufType element_type, Array elements);
  static GgufValue string_array(const std::vector<std::string>& items);
  static GgufValue int32_array(const std::vector<std::int32_t>& items);
  static GgufValue float32_array(const std::vector<float>& items);

  GgufType type() const { return type_; }
  GgufType element_type() const { return element_type_; }  // arrays only
  bool is_array() const { return type_ == GgufType::ARRAY; }
  bool is_integer() const;
  bool is_float() const;

  // Typed access. Each throws Error naming the expected and actual type on mismatch.
  std::int64_t as_int() const;  // any integer type (u64 above INT64_MAX throws)
  std::uint64_t as_uint() const;  // any integer type holding a value >= 0 (all of UINT64's range)
  double as_float() const;      // FLOAT32/FLOAT64, or any integer
  bool as_bool() const;
  const std::string& as_string() const;
  const Array& as_array() const;
  std::vector<std::string> as_string_array() const;
  std::vector<std::int64_t> as_int_array() const;
  std::vector<float> as_float_array() const;

  bool operator==(const GgufValue& other) const = default;

  // Human-readable rendering; arrays longer than `max_items` are shortened with "...".
  std::string to_string(std::size_t max_items = 8) const;

 private:
  GgufType type_;
  GgufType element_type_ = GgufType::UINT8;
  std::variant<std::uint8_t, std::int8_t, std::uint16_t, std::int16_t, std::uint32_t, std::int32_t, float, bool,
               std::string, std::uint64_t, std::int64_t, double, Array>
      value_;
};

struct GgufTensorInfo {
  std::string name;
  GgmlType type = GgmlType::F32;
  std::vector<std::int64_t> shape;  // ggml order: shape[0] is the row length (contiguous)
  std::uint64_t offset = 0;         // relative to the data section
  std::uint64_t size_bytes = 0;     // derived from type and shape

  std::int64_t n_elements() const;
  std::int64_t n_rows() const;  // product of shape[1..]
};

// A GGUF file mapped read-only (or read into memory). The constructor validates the whole header before
// anything is used: magic, version (2 or 3), counts against the file size, string
// lengths, value types, array lengths, n_dims (1..4), every dimension > 0, element
// count and byte size overflow, known tensor type, shape a whole number of blocks,
// offsets aligned and inside the file, duplicate keys and tensor names. Any violation
// throws FormatError(path, field, problem), where field names the key or tensor.
class GgufFile {
 public:
  // how: map the file (default) or read it whole into memory first (see MappedFile).
  explicit GgufFile(const std::string& path, FileLoad how = FileLoad::Map);

  const std::string& path() const { return file_.path(); }
  std::uint32_t version() const { return version_; }
  std::uint64_t alignment() const { return alignment_; }
  std::uint64_t data_offset() const { return data_offset_; }  // absolute offset of the data section

  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }
  const GgufValue* find(std::string_view key) const;
  const GgufValue& at(std::string_view key) const;  // throws FormatError(path, key, "missing")

  // Typed getters: throw FormatError(path, key, ...) when missing or of the wrong type.
  std::string get_string(std::string_view key) const;
  std::int64_t get_int(std::string_view key) const;
  double get_float(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  // With a default for a missing key (a present key of the wrong type still throws).
  std::string get_string(std::string_view key, const std::string& fallback) const;
  std::int64_t get_int(std::string_view key, std::int64_t fallback) const;
  double get_float(std::string_view key, double fallback) const;
  bool get_bool(std::string_view key, bool fallback) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(std::string_view name) const;
  const GgufTensorInfo& tensor(std::string_view name) const;  // throws FormatError(path, name, "no such tensor")
  std::span<const std::uint8_t> tensor_data(const GgufTensorInfo& info) const;  // zero-copy view
  const MappedFile& file() const { return file_; }

 private:
  MappedFile file_;
  std::uint32_t version_ = 0;
  std::uint64_t alignment_ = 32;
  std::uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<GgufTensorInfo> tensors_;
};

// Writes a GGUF v3 file tensor by tensor, so a model never has to be in memory
// whole. Usage: set() metadata and add_tensor() every tensor; write_header(); then
// for each tensor in the order added, either write_tensor(name, bytes) or
// begin_tensor(name) + write_tensor_bytes(...)* + end_tensor(); finally finish().
// Data is laid out in tensor-info order, each tensor aligned to `alignment`. The
// file appears under its name only when finish() succeeds.
class GgufWriter {
 public:
  explicit GgufWriter(std::string path, std::uint64_t alignment = 32);

  void set(const std::string& key, GgufValue value);  // adds, or replaces keeping position
  void remove(const std::string& key);
  void add_tensor(const std::string& name, GgmlType type, std::vector<std::int64_t> shape);
  std::uint64_t alignment() const { return alignment_; }
  std::uint64_t total_data_bytes() const;  // data section size, for progress and planning
  // Where the data section will start (header plus padding to the alignment) and the
  // whole file's size (that plus total_data_bytes(): the last tensor is padded too), as
  // write_header() and finish() would lay the file out now; computed without writing.
  std::uint64_t data_offset() const;
  std::uint64_t file_size() const;

  void write_header();
  void write_tensor(const std::string& name, std::span<const std::uint8_t> bytes);
  void begin_tensor(const std::string& name);
  void write_tensor_bytes(std::span<const std::uint8_t> bytes);
  void end_tensor();  // checks that exactly the tensor's size was written
  void finish();

 private:
  std::vector<std::uint8_t> header_bytes() const;  // what write_header() writes before the padding

  std::string path_;
  std::uint64_t alignment_;
  std::unique_ptr<AtomicFileWriter> out_;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<GgufTensorInfo> tensors_;
  bool header_written_ = false;
  std::size_t next_tensor_ = 0;
  bool in_tensor_ = false;
  std::uint64_t tensor_written_ = 0;
  std::uint64_t data_start_ = 0;
};

}  // namespace piquant
