#pragma once
// safetensors: u64 header length N, N bytes of JSON {"name": {"dtype", "shape",
// "data_offsets": [begin, end]}, "__metadata__": {str: str}}, then the data
// (offsets relative to the byte after the header). Sharded checkpoints list their
// shards in "<base>.safetensors.index.json" ({"metadata": {"total_size"}, "weight_map":
// {name: file}}).
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/atomic_file.h"
#include "core/mapped_file.h"

namespace piquant {

enum class SafeDtype { F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL };

const char* safe_dtype_name(SafeDtype dtype);  // "F32", "BF16", ...
std::optional<SafeDtype> safe_dtype_from_name(std::string_view name);
std::size_t safe_dtype_bytes(SafeDtype dtype);

struct SafeTensor {
  std::string name;
  SafeDtype dtype = SafeDtype::F32;
  std::vector<std::int64_t> shape;  // row-major (PyTorch order): shape.back() is contiguous
  std::span<const std::uint8_t> data;
  std::string file;  // the shard it lives in
  std::uint64_t file_offset = 0;  // absolute offset of data in that file

  std::int64_t n_elements() const;
};

// One .safetensors file, mapped. The constructor validates: header length within
// the file, JSON well-formed, every entry's dtype known, shape non-negative, offsets
// ordered, inside the data section, and equal to shape × dtype size; no overlaps.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  const std::string& path() const { return file_.path(); }
  const std::vector<SafeTensor>& tensors() const { return tensors_; }
  const SafeTensor* find(std::string_view name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const MappedFile& file() const { return file_; }

 private:
  MappedFile file_;
  std::vector<SafeTensor> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A whole checkpoint: a folder with model.safetensors.index.json (sharded), a folder
// with one model.safetensors, or a single .safetensors file.
class SafetensorsFiles {
 public:
  explicit SafetensorsFiles(const std::string& path);
  const std::vector<std::string>& names() const { return names_; }  // in file order
  const SafeTensor* find(std::string_view name) const;
  const SafeTensor& tensor(std::string_view name) const;  // throws FormatError naming the checkpoint
  const MappedFile& file_of(const SafeTensor& tensor) const;
  const std::string& path() const { return path_; }
  std::uint64_t total_bytes() const;

 private:
  std::string path_;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::vector<std::string> names_;
  std::map<std::string, std::pair<std::size_t, std::size_t>, std::less<>> index_;  // name -> (shard, tensor)
};

// Streams a checkpoint out, sharded. Usage: add() every tensor (name, dtype, shape),
// then write() their bytes in the order added (in one call or in chunks; a tensor is
// complete when its size is reached), then finish(). Shards are filled in order up to
// max_shard_bytes; with more than one shard, files are named
// "<base>-00001-of-0000N.safetensors" plus "<base>.safetensors.index.json", else
// "<base>.safetensors". Every file is written to a temporary name first.
class SafetensorsWriter {
 public:
  SafetensorsWriter(std::string dir, std::uint64_t max_shard_bytes = 5ull << 30, std::string base = "model");
  ~SafetensorsWriter();
  void set_metadata(const std::string& key, const std::string& value);
  void add(const std::string& name, SafeDtype dtype, std::vector<std::int64_t> shape);
  void write(std::span<const std::uint8_t> bytes);
  void finish();
  std::vector<std::string> files() const;  // final file names (after finish)

 private:
  struct Planned {
    std::string name;
    SafeDtype dtype;
    std::vector<std::int64_t> shape;
    std::uint64_t bytes;
    std::size_t shard;
    std::uint64_t offset;  // within its shard's data section
  };
  void plan();
  void open_shard(std::size_t shard);

  std::string dir_;
  std::uint64_t max_shard_bytes_;
  std::string base_;
  std::map<std::string, std::string> metadata_;
  std::vector<Planned> tensors_;
  std::vector<std::string> shard_names_;
  bool planned_ = false;
  std::size_t current_ = 0;       // tensor being written
  std::uint64_t written_ = 0;     // bytes of it written so far
  std::size_t open_shard_ = static_cast<std::size_t>(-1);
  std::unique_ptr<AtomicFileWriter> out_;
  std::vector<std::unique_ptr<AtomicFileWriter>> complete_shards_;  // committed only by finish()
  bool finished_ = false;
};

}  // namespace piquant
