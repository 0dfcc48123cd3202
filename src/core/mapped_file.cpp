#include "core/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <utility>

#include "core/error.h"

namespace piquant {
namespace {

std::uintptr_t page_size() {
  static const std::uintptr_t size = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
  return size;
}

// The page-aligned range covering [offset, offset + length) inside a map of `size` bytes.
bool page_range(std::uint8_t* base, std::size_t size, std::uint64_t offset, std::uint64_t length,
                void** start, std::size_t* bytes) {
  if (base == nullptr || offset >= size) return false;
  if (length > size - offset) length = size - offset;
  const std::uintptr_t begin = reinterpret_cast<std::uintptr_t>(base + offset) & ~(page_size() - 1);
  const std::uintptr_t end = reinterpret_cast<std::uintptr_t>(base + offset + length);
  *start = reinterpret_cast<void*>(begin);
  *bytes = end - begin;
  return *bytes > 0;
}

}  // namespace

MappedFile::MappedFile(std::string path) : path_(std::move(path)) {
  const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw_system_error(path_, "open");
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw_system_error(path_, "stat");
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(path_ + ": not a regular file");
  }
  size_ = static_cast<std::size_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      throw_system_error(path_, "mmap");
    }
    data_ = static_cast<std::uint8_t*>(p);
  }
  ::close(fd);
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(data_, size_);
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)), data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) ::munmap(data_, size_);
    path_ = std::move(other.path_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

std::span<const std::uint8_t> MappedFile::bytes(std::uint64_t offset, std::uint64_t length, std::string_view what) const {
  if (offset > size_ || length > size_ - offset) {
    throw FormatError(path_, std::string(what),
                      "range [" + std::to_string(offset) + ", +" + std::to_string(length) + ") lies past the end of the " +
                          std::to_string(size_) + "-byte file");
  }
  return {data_ + offset, static_cast<std::size_t>(length)};
}

void MappedFile::release(std::uint64_t offset, std::uint64_t length) const {
  void* start = nullptr;
  std::size_t bytes = 0;
  if (page_range(data_, size_, offset, length, &start, &bytes)) ::madvise(start, bytes, MADV_DONTNEED);
}

void MappedFile::advise_sequential() const {
  if (data_ != nullptr) ::madvise(data_, size_, MADV_SEQUENTIAL);
}

void MappedFile::advise_willneed(std::uint64_t offset, std::uint64_t length) const {
  void* start = nullptr;
  std::size_t bytes = 0;
  if (page_range(data_, size_, offset, length, &start, &bytes)) ::madvise(start, bytes, MADV_WILLNEED);
}

}  // namespace piquant
