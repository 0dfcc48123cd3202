#pragma once
// A read-only view of a whole file's bytes. Readers build zero-copy views on it and
// check every offset against size() first: bytes() does that check for them.
//
// Two ways to get the bytes, same interface above: map the file (the default: lazy,
// pages come in on first touch and stay shared in the page cache), or read it whole
// into anonymous memory with large sequential reads (for slow storage such as an SD
// card, which serves 32 MiB reads far faster than mmap's page-sized faults).
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace piquant {

enum class FileLoad {
  Map,             // mmap the file read-only
  ReadIntoMemory,  // pread it whole into page-aligned anonymous memory
};

class MappedFile {
 public:
  static constexpr std::size_t kReadChunkBytes = std::size_t{32} << 20;

  // Throws Error naming the path (and for a read, the offset that failed).
  explicit MappedFile(std::string path, FileLoad how = FileLoad::Map);
  // FileLoad::ReadIntoMemory with reads of at most chunk_bytes (> 0) each.
  static MappedFile read_into_memory(std::string path, std::size_t chunk_bytes = kReadChunkBytes);
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  const std::uint8_t* data() const { return data_; }  // page-aligned either way
  std::size_t size() const { return size_; }
  bool in_memory() const { return in_memory_; }  // true: a read-in copy, not a map

  // [offset, offset + length) of the file; throws FormatError(path, what, ...) if it
  // does not lie inside the file (overflow-safe).
  std::span<const std::uint8_t> bytes(std::uint64_t offset, std::uint64_t length, std::string_view what) const;

  // Tell the kernel we are done with these pages, so a streaming job's resident
  // set stays small (the pages stay in the page cache). A no-op for a read-in copy:
  // dropping anonymous pages would lose the bytes.
  void release(std::uint64_t offset, std::uint64_t length) const;
  // Read-ahead hints for a map; no-ops (sequential) or harmless (willneed) for a
  // read-in copy, whose bytes are all resident already.
  void advise_sequential() const;
  void advise_willneed(std::uint64_t offset, std::uint64_t length) const;

 private:
  MappedFile() = default;
  void read_whole_file(std::size_t chunk_bytes);

  std::string path_;
  std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
  bool in_memory_ = false;
};

}  // namespace piquant
