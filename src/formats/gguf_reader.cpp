// GgufFile: maps a GGUF file and validates its whole header before anything is used.
#include <algorithm>
#include <cstring>
#include <limits>
#include <numeric>
#include <unordered_set>

#include "core/error.h"
#include "formats/gguf.h"
#include "formats/gguf_wire.h"

namespace piquant {
namespace {

using gguf_wire::printable;

constexpr std::uint64_t kMaxSigned = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
// The smallest possible encodings: a key-value pair is an empty key, a type and a
// one-byte value; a tensor info is an empty name, n_dims, one dim, a type and an offset.
constexpr std::uint64_t kMinKvBytes = 8 + 4 + 1;
constexpr std::uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;

std::string key_field(std::string_view key) { return "key '" + printable(key) + "'"; }
std::string tensor_field(std::string_view name) { return "tensor '" + printable(name) + "'"; }

// Reads little-endian values from the mapped header, checking every length against
// the bytes that are left before touching them.
class Cursor {
 public:
  explicit Cursor(const MappedFile& file) : path_(file.path()), data_(file.data()), size_(file.size()) {}

  std::uint64_t pos() const { return pos_; }
  std::uint64_t remaining() const { return size_ - pos_; }

  [[noreturn]] void fail(const std::string& field, const std::string& problem) const {
    throw FormatError(path_, field, problem);
  }

  const std::uint8_t* take(std::uint64_t n, const std::string& field, std::string_view what) {
    if (n > remaining()) {
      fail(field, "file truncated: " + std::string(what) + " needs " + std::to_string(n) + " bytes at offset " +
                      std::to_string(pos_) + ", but the file has " + std::to_string(size_) + " bytes");
    }
    const std::uint8_t* p = data_ + pos_;
    pos_ += n;
    return p;
  }

  template <class T>
  T read(const std::string& field, std::string_view what) {
    T v;
    std::memcpy(&v, take(sizeof v, field, what), sizeof v);
    return v;
  }

  std::string_view read_string(const std::string& field, std::string_view what) {
    if (remaining() < 8) take(8, field, std::string(what) + " length");  // throws: truncated
    std::uint64_t length;
    std::memcpy(&length, data_ + pos_, sizeof length);
    pos_ += 8;
    if (length > remaining()) {
      fail(field, std::string(what) + " length " + std::to_string(length) + " at offset " + std::to_string(pos_ - 8) +
                      " runs past the end of the file (" + std::to_string(remaining()) + " bytes left)");
    }
    const auto* p = reinterpret_cast<const char*>(data_ + pos_);
    pos_ += length;
    return {p, static_cast<std::size_t>(length)};
  }

 private:
  const std::string& path_;
  const std::uint8_t* data_;
  std::uint64_t size_;
  std::uint64_t pos_ = 0;
};

GgufType read_value_type(Cursor& c, const std::string& field, std::string_view what) {
  const auto raw = c.read<std::uint32_t>(field, what);
  if (!gguf_wire::is_valid_type(raw)) c.fail(field, "unknown " + std::string(what) + " " + std::to_string(raw));
  return static_cast<GgufType>(raw);
}

template <class T>
void read_scalars(Cursor& c, std::uint64_t count, GgufValue::Array& out, const std::string& field) {
  const std::uint8_t* p = c.take(count * sizeof(T), field, "array elements");
  for (std::uint64_t i = 0; i < count; ++i, p += sizeof(T)) {
    T v;
    std::memcpy(&v, p, sizeof v);
    out.emplace_back(v);
  }
}

bool read_bool(Cursor& c, const std::string& field) {
  const auto b = c.read<std::uint8_t>(field, "a BOOL");
  if (b > 1) c.fail(field, "BOOL byte " + std::to_string(b) + " at offset " + std::to_string(c.pos() - 1) + " is neither 0 nor 1");
  return b == 1;
}

GgufValue read_value(Cursor& c, GgufType type, const std::string& field, int depth);

GgufValue read_array(Cursor& c, const std::string& field, int depth) {
  if (depth >= gguf_wire::kMaxArrayDepth) {
    c.fail(field, "arrays nested deeper than " + std::to_string(gguf_wire::kMaxArrayDepth) + " levels");
  }
  const GgufType element = read_value_type(c, field, "array element type");
  const auto count = c.read<std::uint64_t>(field, "the array length");
  // Checked before allocating: every element takes at least this many bytes.
  if (count > c.remaining() / gguf_wire::min_encoded_size(element)) {
    c.fail(field, "array length " + std::to_string(count) + " of " + gguf_type_name(element) +
                      " cannot fit in the " + std::to_string(c.remaining()) + " bytes left in the file");
  }
  GgufValue::Array items;
  items.reserve(static_cast<std::size_t>(count));
  switch (element) {
    case GgufType::UINT8: read_scalars<std::uint8_t>(c, count, items, field); break;
    case GgufType::INT8: read_scalars<std::int8_t>(c, count, items, field); break;
    case GgufType::UINT16: read_scalars<std::uint16_t>(c, count, items, field); break;
    case GgufType::INT16: read_scalars<std::int16_t>(c, count, items, field); break;
    case GgufType::UINT32: read_scalars<std::uint32_t>(c, count, items, field); break;
    case GgufType::INT32: read_scalars<std::int32_t>(c, count, items, field); break;
    case GgufType::FLOAT32: read_scalars<float>(c, count, items, field); break;
    case GgufType::UINT64: read_scalars<std::uint64_t>(c, count, items, field); break;
    case GgufType::INT64: read_scalars<std::int64_t>(c, count, items, field); break;
    case GgufType::FLOAT64: read_scalars<double>(c, count, items, field); break;
    case GgufType::BOOL:
      for (std::uint64_t i = 0; i < count; ++i) items.emplace_back(read_bool(c, field));
      break;
    case GgufType::STRING:
      for (std::uint64_t i = 0; i < count; ++i) items.emplace_back(std::string(c.read_string(field, "string")));
      break;
    case GgufType::ARRAY:
      for (std::uint64_t i = 0; i < count; ++i) items.push_back(read_array(c, field, depth + 1));
      break;
  }
  return GgufValue::array(element, std::move(items));
}

GgufValue read_value(Cursor& c, GgufType type, const std::string& field, int depth) {
  switch (type) {
    case GgufType::UINT8: return c.read<std::uint8_t>(field, "a UINT8");
    case GgufType::INT8: return c.read<std::int8_t>(field, "an INT8");
    case GgufType::UINT16: return c.read<std::uint16_t>(field, "a UINT16");
    case GgufType::INT16: return c.read<std::int16_t>(field, "an INT16");
    case GgufType::UINT32: return c.read<std::uint32_t>(field, "a UINT32");
    case GgufType::INT32: return c.read<std::int32_t>(field, "an INT32");
    case GgufType::FLOAT32: return c.read<float>(field, "a FLOAT32");
    case GgufType::BOOL: return read_bool(c, field);
    case GgufType::STRING: return std::string(c.read_string(field, "string"));
    case GgufType::ARRAY: return read_array(c, field, depth);
    case GgufType::UINT64: return c.read<std::uint64_t>(field, "a UINT64");
    case GgufType::INT64: return c.read<std::int64_t>(field, "an INT64");
    case GgufType::FLOAT64: return c.read<double>(field, "a FLOAT64");
  }
  c.fail(field, "unknown value type");
}

std::uint32_t check_version(Cursor& c) {
  const auto version = c.read<std::uint32_t>("header version", "the version");
  if (version == 2 || version == 3) return version;
  if (version == 1) {
    c.fail("header version", "GGUF version 1 (32-bit counts) is not supported; only versions 2 and 3 are read");
  }
  const std::uint32_t swapped = __builtin_bswap32(version);
  if (swapped == 2 || swapped == 3) c.fail("header version", "big-endian GGUF files are not supported");
  c.fail("header version", "unsupported version " + std::to_string(version) + "; only versions 2 and 3 are read");
}

std::uint64_t check_alignment(const std::string& path, const GgufValue& value) {
  const std::string field = key_field(gguf_wire::kAlignmentKey);
  if (value.type() != GgufType::UINT32) {
    throw FormatError(path, field, std::string("must be UINT32, found ") + gguf_type_name(value.type()));
  }
  const auto alignment = static_cast<std::uint64_t>(value.as_int());
  if (!gguf_wire::is_power_of_two(alignment)) {
    throw FormatError(path, field, "alignment " + std::to_string(alignment) + " is not a non-zero power of two");
  }
  return alignment;
}

// One tensor info as stored; offsets are checked once the data section is known.
GgufTensorInfo read_tensor_info(Cursor& c, std::string_view name) {
  const std::string field = tensor_field(name);
  GgufTensorInfo info;
  info.name = std::string(name);

  const auto n_dims = c.read<std::uint32_t>(field + " n_dims", "n_dims");
  if (n_dims < 1 || n_dims > gguf_wire::kMaxDims) {
    c.fail(field + " n_dims", "n_dims " + std::to_string(n_dims) + " is outside 1.." + std::to_string(gguf_wire::kMaxDims));
  }
  const std::uint8_t* dims = c.take(std::uint64_t{n_dims} * 8, field + " shape", "the dimensions");
  std::uint64_t n_elements = 1;
  for (std::uint32_t d = 0; d < n_dims; ++d) {
    std::uint64_t dim;
    std::memcpy(&dim, dims + 8 * d, sizeof dim);
    if (dim == 0) c.fail(field + " shape", "dimension " + std::to_string(d) + " is 0");
    if (dim > kMaxSigned / n_elements) {
      c.fail(field + " shape", "element count overflows (dimension " + std::to_string(d) + " is " + std::to_string(dim) + ")");
    }
    n_elements *= dim;
    info.shape.push_back(static_cast<std::int64_t>(dim));
  }

  const auto type_id = c.read<std::uint32_t>(field + " type", "the ggml type");
  const GgmlTypeInfo* type = ggml_type_info(type_id);
  if (type == nullptr) c.fail(field + " type", "unknown ggml type id " + std::to_string(type_id));
  info.type = type->type;

  const auto row = static_cast<std::uint64_t>(info.shape[0]);
  if (row % type->block_size != 0) {
    c.fail(field + " shape", "row length " + std::to_string(row) + " is not a whole number of " + type->name +
                                 " blocks of " + std::to_string(type->block_size));
  }
  const std::uint64_t blocks = n_elements / type->block_size;
  if (blocks > std::numeric_limits<std::uint64_t>::max() / type->block_bytes) {
    c.fail(field + " shape", "byte size of " + std::to_string(n_elements) + " " + type->name + " elements overflows");
  }
  info.size_bytes = blocks * type->block_bytes;
  info.offset = c.read<std::uint64_t>(field + " offset", "the offset");
  return info;
}

}  // namespace

std::int64_t GgufTensorInfo::n_elements() const {
  return std::accumulate(shape.begin(), shape.end(), std::int64_t{1}, std::multiplies<>());
}

std::int64_t GgufTensorInfo::n_rows() const {
  if (shape.empty()) return 1;
  return std::accumulate(shape.begin() + 1, shape.end(), std::int64_t{1}, std::multiplies<>());
}

GgufFile::GgufFile(const std::string& path, FileLoad how) : file_(path, how) {
  const std::string& file_path = file_.path();
  Cursor c(file_);

  const auto magic = c.read<std::uint32_t>("header magic", "the magic");
  if (magic != gguf_wire::kMagic) {
    const std::string_view shown(reinterpret_cast<const char*>(file_.data()), 4);
    c.fail("header magic", "not a GGUF file: starts with \"" + printable(shown) + "\", not \"GGUF\"");
  }
  version_ = check_version(c);
  const auto tensor_count = c.read<std::uint64_t>("header tensor_count", "tensor_count");
  const auto kv_count = c.read<std::uint64_t>("header kv_count", "kv_count");
  // Counts are checked against the bytes that could hold them before any allocation.
  if (tensor_count > c.remaining() / kMinTensorInfoBytes) {
    c.fail("header tensor_count", std::to_string(tensor_count) + " tensor infos cannot fit in the " +
                                      std::to_string(c.remaining()) + " bytes left in the file");
  }
  if (kv_count > (c.remaining() - tensor_count * kMinTensorInfoBytes) / kMinKvBytes) {
    c.fail("header kv_count", std::to_string(kv_count) + " key-value pairs cannot fit in the " +
                                  std::to_string(c.remaining()) + " bytes left in the file");
  }

  metadata_.reserve(static_cast<std::size_t>(kv_count));
  std::unordered_set<std::string_view> keys;  // views into the map, which outlives the parse
  keys.reserve(static_cast<std::size_t>(kv_count));
  for (std::uint64_t i = 0; i < kv_count; ++i) {
    const std::string_view key = c.read_string("key #" + std::to_string(i) + " name", "the key");
    const std::string field = key_field(key);
    if (!keys.insert(key).second) c.fail(field, "duplicate key");
    const GgufType type = read_value_type(c, field + " type", "value type");
    metadata_.emplace_back(std::string(key), read_value(c, type, field, 0));
  }
  if (const GgufValue* value = find(gguf_wire::kAlignmentKey)) alignment_ = check_alignment(file_path, *value);

  tensors_.reserve(static_cast<std::size_t>(tensor_count));
  std::unordered_set<std::string_view> names;
  names.reserve(static_cast<std::size_t>(tensor_count));
  for (std::uint64_t i = 0; i < tensor_count; ++i) {
    const std::string_view name = c.read_string("tensor #" + std::to_string(i) + " name", "the tensor name");
    if (!names.insert(name).second) c.fail(tensor_field(name), "duplicate tensor name");
    tensors_.push_back(read_tensor_info(c, name));
  }

  // The header end is inside the file, far below 2^64, so rounding up cannot overflow.
  data_offset_ = gguf_wire::align_up(c.pos(), alignment_);
  const std::uint64_t data_size = file_.size() > data_offset_ ? file_.size() - data_offset_ : 0;
  for (const GgufTensorInfo& t : tensors_) {
    const std::string field = tensor_field(t.name);
    if (t.offset % alignment_ != 0) {
      c.fail(field + " offset", "offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
                                    std::to_string(alignment_));
    }
    if (t.offset >= data_size) {
      c.fail(field + " offset", "offset " + std::to_string(t.offset) + " lies past the end of the " +
                                    std::to_string(data_size) + "-byte data section at file offset " +
                                    std::to_string(data_offset_));
    }
    if (t.size_bytes > data_size - t.offset) {
      c.fail(field + " data", std::to_string(t.size_bytes) + " bytes at data offset " + std::to_string(t.offset) +
                                  " run past the end of the file (data section has " + std::to_string(data_size) +
                                  " bytes)");
    }
  }

  // Two tensors sharing bytes means a corrupt table of offsets.
  std::vector<const GgufTensorInfo*> by_offset;
  by_offset.reserve(tensors_.size());
  for (const GgufTensorInfo& t : tensors_) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
  for (std::size_t i = 1; i < by_offset.size(); ++i) {
    const GgufTensorInfo& prev = *by_offset[i - 1];
    if (by_offset[i]->offset < prev.offset + prev.size_bytes) {
      c.fail(tensor_field(by_offset[i]->name) + " offset", "data overlaps tensor '" + printable(prev.name) + "'");
    }
  }
}

const GgufValue* GgufFile::find(std::string_view key) const {
  for (const auto& [k, v] : metadata_) {
    if (k == key) return &v;
  }
  return nullptr;
}

const GgufValue& GgufFile::at(std::string_view key) const {
  const GgufValue* value = find(key);
  if (value == nullptr) throw FormatError(path(), key_field(key), "missing");
  return *value;
}

namespace {

// Runs a typed accessor, turning a type mismatch into an error naming the file and key.
template <class F>
auto typed(const std::string& path, std::string_view key, const GgufValue& value, F get) {
  try {
    return get(value);
  } catch (const FormatError&) {
    throw;
  } catch (const Error& e) {
    throw FormatError(path, key_field(key), e.what());
  }
}

}  // namespace

std::string GgufFile::get_string(std::string_view key) const {
  return typed(path(), key, at(key), [](const GgufValue& v) { return v.as_string(); });
}
std::int64_t GgufFile::get_int(std::string_view key) const {
  return typed(path(), key, at(key), [](const GgufValue& v) { return v.as_int(); });
}
double GgufFile::get_float(std::string_view key) const {
  return typed(path(), key, at(key), [](const GgufValue& v) { return v.as_float(); });
}
bool GgufFile::get_bool(std::string_view key) const {
  return typed(path(), key, at(key), [](const GgufValue& v) { return v.as_bool(); });
}

std::string GgufFile::get_string(std::string_view key, const std::string& fallback) const {
  return find(key) ? get_string(key) : fallback;
}
std::int64_t GgufFile::get_int(std::string_view key, std::int64_t fallback) const {
  return find(key) ? get_int(key) : fallback;
}
double GgufFile::get_float(std::string_view key, double fallback) const {
  return find(key) ? get_float(key) : fallback;
}
bool GgufFile::get_bool(std::string_view key, bool fallback) const { return find(key) ? get_bool(key) : fallback; }

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  for (const GgufTensorInfo& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

const GgufTensorInfo& GgufFile::tensor(std::string_view name) const {
  const GgufTensorInfo* info = find_tensor(name);
  if (info == nullptr) throw FormatError(path(), tensor_field(name), "no such tensor");
  return *info;
}

std::span<const std::uint8_t> GgufFile::tensor_data(const GgufTensorInfo& info) const {
  const std::string what = tensor_field(info.name) + " data";
  if (info.offset > file_.size()) {
    throw FormatError(path(), what, "offset " + std::to_string(info.offset) + " lies past the end of the file");
  }
  return file_.bytes(data_offset_ + info.offset, info.size_bytes, what);
}

}  // namespace piquant
