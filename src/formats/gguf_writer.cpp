// GgufWriter: lays out every tensor up front, then streams tensor data in add order.
#include <algorithm>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "formats/gguf.h"
#include "formats/gguf_wire.h"

namespace piquant {
namespace {

using Bytes = std::vector<std::uint8_t>;

template <class T>
void put(Bytes& out, T v) {
  const std::size_t at = out.size();
  out.resize(at + sizeof v);
  std::memcpy(out.data() + at, &v, sizeof v);
}

void put_string(Bytes& out, std::string_view s) {
  put<std::uint64_t>(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}

void put_value(Bytes& out, const GgufValue& v) {
  switch (v.type()) {
    case GgufType::UINT8: put(out, static_cast<std::uint8_t>(v.as_int())); break;
    case GgufType::INT8: put(out, static_cast<std::int8_t>(v.as_int())); break;
    case GgufType::UINT16: put(out, static_cast<std::uint16_t>(v.as_int())); break;
    case GgufType::INT16: put(out, static_cast<std::int16_t>(v.as_int())); break;
    case GgufType::UINT32: put(out, static_cast<std::uint32_t>(v.as_int())); break;
    case GgufType::INT32: put(out, static_cast<std::int32_t>(v.as_int())); break;
    case GgufType::FLOAT32: put(out, static_cast<float>(v.as_float())); break;
    case GgufType::BOOL: put<std::uint8_t>(out, v.as_bool() ? 1 : 0); break;
    case GgufType::STRING: put_string(out, v.as_string()); break;
    case GgufType::UINT64: put(out, v.as_uint()); break;
    case GgufType::INT64: put(out, v.as_int()); break;
    case GgufType::FLOAT64: put(out, v.as_float()); break;
    case GgufType::ARRAY: {
      const GgufValue::Array& items = v.as_array();
      put(out, static_cast<std::uint32_t>(v.element_type()));
      put<std::uint64_t>(out, items.size());
      for (const GgufValue& item : items) put_value(out, item);
      break;
    }
  }
}

}  // namespace

GgufWriter::GgufWriter(std::string path, std::uint64_t alignment) : path_(std::move(path)), alignment_(alignment) {
  if (!gguf_wire::is_power_of_two(alignment) || alignment > std::numeric_limits<std::uint32_t>::max()) {
    throw Error(path_ + ": GGUF alignment " + std::to_string(alignment) + " is not a power of two that fits UINT32");
  }
}

void GgufWriter::set(const std::string& key, GgufValue value) {
  if (header_written_) throw Error(path_ + ": cannot set key '" + key + "' after the header is written");
  if (key == gguf_wire::kAlignmentKey) {
    // The key decides the file's alignment, so it must be one the reader accepts.
    if (value.type() != GgufType::UINT32 || !gguf_wire::is_power_of_two(value.as_uint())) {
      throw Error(path_ + ": key '" + key + "' must be a UINT32 power of two, got " +
                  gguf_type_name(value.type()) + " " + value.to_string());
    }
    alignment_ = value.as_uint();
  }
  for (auto& [k, v] : metadata_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  metadata_.emplace_back(key, std::move(value));
}

void GgufWriter::remove(const std::string& key) {
  if (header_written_) throw Error(path_ + ": cannot remove key '" + key + "' after the header is written");
  std::erase_if(metadata_, [&](const auto& kv) { return kv.first == key; });
}

void GgufWriter::add_tensor(const std::string& name, GgmlType type, std::vector<std::int64_t> shape) {
  const std::string what = path_ + ": tensor '" + name + "'";
  if (header_written_) throw Error(what + ": cannot add a tensor after the header is written");
  if (name.size() > gguf_wire::kMaxTensorNameBytes) {
    throw Error(what + ": name is longer than ggml's limit of " + std::to_string(gguf_wire::kMaxTensorNameBytes) +
                " bytes");
  }
  if (std::any_of(tensors_.begin(), tensors_.end(), [&](const GgufTensorInfo& t) { return t.name == name; })) {
    throw Error(what + ": added twice");
  }
  if (shape.empty() || shape.size() > gguf_wire::kMaxDims) {
    throw Error(what + ": " + std::to_string(shape.size()) + " dimensions, GGUF allows 1.." +
                std::to_string(gguf_wire::kMaxDims));
  }
  const GgmlTypeInfo* info = ggml_type_info(static_cast<std::uint32_t>(type));
  if (info == nullptr) throw Error(what + ": unknown ggml type id " + std::to_string(static_cast<std::uint32_t>(type)));
  std::int64_t n_elements = 1;
  for (const std::int64_t dim : shape) {
    if (dim < 1) throw Error(what + ": dimension " + std::to_string(dim) + " is not positive");
    if (dim > std::numeric_limits<std::int64_t>::max() / n_elements) throw Error(what + ": element count overflows");
    n_elements *= dim;
  }
  if (shape[0] % info->block_size != 0) {
    throw Error(what + ": row length " + std::to_string(shape[0]) + " is not a whole number of " + info->name +
                " blocks of " + std::to_string(info->block_size));
  }
  GgufTensorInfo t;
  t.name = name;
  t.type = type;
  t.shape = std::move(shape);
  try {
    t.size_bytes = ggml_nbytes(type, static_cast<std::uint64_t>(n_elements));
  } catch (const Error& e) {
    throw Error(what + ": " + e.what());
  }
  tensors_.push_back(std::move(t));
}

std::uint64_t GgufWriter::total_data_bytes() const {
  std::uint64_t total = 0;
  for (const GgufTensorInfo& t : tensors_) {
    const std::uint64_t limit = std::numeric_limits<std::uint64_t>::max() - alignment_;
    if (t.size_bytes > limit || total > limit - t.size_bytes) throw Error(path_ + ": data section size overflows");
    total += gguf_wire::align_up(t.size_bytes, alignment_);
  }
  return total;
}

std::vector<std::uint8_t> GgufWriter::header_bytes() const {
  // Offsets are u64 and types u32 whatever their values: the header's size depends only on
  // the metadata and on the tensors' names and dimension counts.
  std::vector<std::pair<std::string, GgufValue>> metadata = metadata_;
  const bool alignment_set = std::any_of(metadata.begin(), metadata.end(),
                                         [](const auto& kv) { return kv.first == gguf_wire::kAlignmentKey; });
  if (!alignment_set && alignment_ != gguf_wire::kDefaultAlignment) {
    metadata.emplace_back(std::string(gguf_wire::kAlignmentKey), static_cast<std::uint32_t>(alignment_));
  }

  Bytes header;
  put(header, gguf_wire::kMagic);
  put(header, gguf_wire::kVersion);
  put<std::uint64_t>(header, tensors_.size());
  put<std::uint64_t>(header, metadata.size());
  for (const auto& [key, value] : metadata) {
    put_string(header, key);
    put(header, static_cast<std::uint32_t>(value.type()));
    put_value(header, value);
  }
  std::uint64_t offset = 0;
  for (const GgufTensorInfo& t : tensors_) {
    put_string(header, t.name);
    put(header, static_cast<std::uint32_t>(t.shape.size()));
    for (const std::int64_t dim : t.shape) put(header, static_cast<std::uint64_t>(dim));
    put(header, static_cast<std::uint32_t>(t.type));
    put(header, offset);
    offset += gguf_wire::align_up(t.size_bytes, alignment_);
  }
  return header;
}

std::uint64_t GgufWriter::data_offset() const {
  total_data_bytes();  // throws if the layout does not fit 64 bits
  return gguf_wire::align_up(header_bytes().size(), alignment_);
}

std::uint64_t GgufWriter::file_size() const { return data_offset() + total_data_bytes(); }

void GgufWriter::write_header() {
  if (header_written_) throw Error(path_ + ": GGUF header written twice");
  total_data_bytes();  // throws if the layout does not fit 64 bits
  const Bytes header = header_bytes();
  std::uint64_t offset = 0;
  for (GgufTensorInfo& t : tensors_) {
    t.offset = offset;
    offset += gguf_wire::align_up(t.size_bytes, alignment_);
  }

  out_ = std::make_unique<AtomicFileWriter>(path_);
  header_written_ = true;
  out_->write(header);
  out_->pad_to(alignment_);
  data_start_ = out_->position();
}

void GgufWriter::write_tensor(const std::string& name, std::span<const std::uint8_t> bytes) {
  begin_tensor(name);
  const GgufTensorInfo& t = tensors_[next_tensor_];
  if (bytes.size() != t.size_bytes) {
    in_tensor_ = false;
    throw Error(path_ + ": tensor '" + name + "' is " + std::to_string(t.size_bytes) + " bytes, got " +
                std::to_string(bytes.size()));
  }
  write_tensor_bytes(bytes);
  end_tensor();
}

void GgufWriter::begin_tensor(const std::string& name) {
  const std::string what = path_ + ": tensor '" + name + "'";
  if (!header_written_) throw Error(what + ": written before write_header()");
  if (!out_) throw Error(what + ": written after finish()");
  if (in_tensor_) throw Error(what + ": begun while tensor '" + tensors_[next_tensor_].name + "' is still open");
  if (next_tensor_ < tensors_.size() && tensors_[next_tensor_].name == name) {
    if (out_->position() != data_start_ + tensors_[next_tensor_].offset) {
      throw Error(what + ": file position does not match its planned offset");  // a bug, not bad input
    }
    in_tensor_ = true;
    tensor_written_ = 0;
    return;
  }
  const auto it = std::find_if(tensors_.begin(), tensors_.end(), [&](const auto& t) { return t.name == name; });
  if (it == tensors_.end()) throw Error(what + ": was never added");
  if (static_cast<std::size_t>(it - tensors_.begin()) < next_tensor_) throw Error(what + ": written twice");
  throw Error(what + ": written out of order; tensors are written in the order added and '" +
              tensors_[next_tensor_].name + "' comes next");
}

void GgufWriter::write_tensor_bytes(std::span<const std::uint8_t> bytes) {
  if (!in_tensor_) throw Error(path_ + ": write_tensor_bytes() without begin_tensor()");
  const GgufTensorInfo& t = tensors_[next_tensor_];
  if (bytes.size() > t.size_bytes - tensor_written_) {
    throw Error(path_ + ": tensor '" + t.name + "': " + std::to_string(tensor_written_ + bytes.size()) +
                " bytes written, more than its size of " + std::to_string(t.size_bytes));
  }
  out_->write(bytes);
  tensor_written_ += bytes.size();
}

void GgufWriter::end_tensor() {
  if (!in_tensor_) throw Error(path_ + ": end_tensor() without begin_tensor()");
  const GgufTensorInfo& t = tensors_[next_tensor_];
  if (tensor_written_ != t.size_bytes) {
    throw Error(path_ + ": tensor '" + t.name + "': " + std::to_string(tensor_written_) + " of its " +
                std::to_string(t.size_bytes) + " bytes written");
  }
  out_->pad_to(alignment_);  // the data section starts aligned, so file-relative padding aligns it too
  in_tensor_ = false;
  ++next_tensor_;
}

void GgufWriter::finish() {
  if (!header_written_) write_header();
  if (!out_) throw Error(path_ + ": finish() called twice");
  if (in_tensor_) throw Error(path_ + ": finish() while tensor '" + tensors_[next_tensor_].name + "' is still open");
  if (next_tensor_ < tensors_.size()) {
    throw Error(path_ + ": finish() with " + std::to_string(tensors_.size() - next_tensor_) +
                " tensor(s) not written, the first being '" + tensors_[next_tensor_].name + "'");
  }
  out_->commit();
  out_.reset();
}

}  // namespace piquant
