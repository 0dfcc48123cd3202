#pragma once
// A read-only memory map of a whole file. Readers build zero-copy views on it and
// check every offset against size() first: bytes() does that check for them.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace piquant {

class MappedFile {
 public:
  explicit MappedFile(std::string path);  // throws Error naming the path
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  const std::uint8_t* data() const { return data_; }
  std::size_t size() const { return size_; }

  // [offset, offset + length) of the file; throws FormatError(path, what, ...) if it
  // does not lie inside the file (overflow-safe).
  std::span<const std::uint8_t> bytes(std::uint64_t offset, std::uint64_t length, std::string_view what) const;

  // Tell the kernel we are done with these pages, so a streaming job's resident
  // set stays small (the pages stay in the page cache).
  void release(std::uint64_t offset, std::uint64_t length) const;
  void advise_sequential() const;
  void advise_willneed(std::uint64_t offset, std::uint64_t length) const;

 private:
  std::string path_;
  std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace piquant
