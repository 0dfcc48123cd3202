#include "core/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "core/error.h"
#include "core/open_file.h"

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

// The size of a regular file; throws Error for anything else (a folder, a device).
std::size_t regular_file_size(const OpenFile& file, const std::string& path) {
  struct stat st {};
  if (::fstat(file.fd(), &st) != 0) throw_system_error(path, "stat");
  if (!S_ISREG(st.st_mode)) throw Error(path + ": not a regular file");
  return static_cast<std::size_t>(st.st_size);
}

// Anonymous memory unmapped unless handed over with release().
class AnonymousMemory {
 public:
  AnonymousMemory(std::size_t size, const std::string& path) : size_(size) {
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw_system_error(path, "allocate " + std::to_string(size) + " bytes of memory to read it into");
    data_ = static_cast<std::uint8_t*>(p);
    // 2 MiB pages where the kernel allows them (THP in "madvise" mode): decode streams the
    // whole model every token, and 4 KiB pages cost a TLB miss every 4 KiB of it.
    ::madvise(data_, size_, MADV_HUGEPAGE);
  }
  ~AnonymousMemory() {
    if (data_ != nullptr) ::munmap(data_, size_);
  }
  AnonymousMemory(const AnonymousMemory&) = delete;
  AnonymousMemory& operator=(const AnonymousMemory&) = delete;
  std::uint8_t* data() const { return data_; }
  std::uint8_t* release() { return std::exchange(data_, nullptr); }

 private:
  std::uint8_t* data_ = nullptr;
  std::size_t size_;
};

}  // namespace

MappedFile::MappedFile(std::string path, FileLoad how) : path_(std::move(path)) {
  if (how == FileLoad::ReadIntoMemory) {
    read_whole_file(kReadChunkBytes);
    return;
  }
  const OpenFile file(path_);
  size_ = regular_file_size(file, path_);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, file.fd(), 0);
    if (p == MAP_FAILED) throw_system_error(path_, "mmap");
    data_ = static_cast<std::uint8_t*>(p);
  }
}

MappedFile MappedFile::read_into_memory(std::string path, std::size_t chunk_bytes) {
  if (chunk_bytes == 0) throw Error(path + ": read chunk size must be positive");
  MappedFile file;
  file.path_ = std::move(path);
  file.read_whole_file(chunk_bytes);
  return file;
}

void MappedFile::read_whole_file(std::size_t chunk_bytes) {
  // Linux transfers at most about 2 GiB per read call; stay well below.
  chunk_bytes = std::min(chunk_bytes, std::size_t{1} << 30);
  const OpenFile file(path_);
  const std::size_t size = regular_file_size(file, path_);
  in_memory_ = true;
  if (size == 0) return;
  AnonymousMemory memory(size, path_);
  // Linux doubles its read-ahead window for a file marked sequential.
  ::posix_fadvise(file.fd(), 0, 0, POSIX_FADV_SEQUENTIAL);
  std::size_t done = 0;
  while (done < size) {
    const std::size_t want = std::min(chunk_bytes, size - done);
    const ssize_t got = ::pread(file.fd(), memory.data() + done, want, static_cast<off_t>(done));
    if (got < 0) {
      if (errno == EINTR) continue;
      throw_system_error(path_, "read " + std::to_string(want) + " bytes at offset " + std::to_string(done));
    }
    if (got == 0) {
      throw Error(path_ + ": file ended at offset " + std::to_string(done) + " of the " + std::to_string(size) +
                  " bytes it had when opened (was it truncated while being read?)");
    }
    done += static_cast<std::size_t>(got);  // a short read just continues where it stopped
  }
  // Read-only from here on, like a map: a stray write faults instead of corrupting weights.
  ::mprotect(memory.data(), size, PROT_READ);
  data_ = memory.release();
  size_ = size;
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(data_, size_);
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      in_memory_(std::exchange(other.in_memory_, false)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) ::munmap(data_, size_);
    path_ = std::move(other.path_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    in_memory_ = std::exchange(other.in_memory_, false);
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
  if (in_memory_) return;  // MADV_DONTNEED would zero anonymous pages
  void* start = nullptr;
  std::size_t bytes = 0;
  if (page_range(data_, size_, offset, length, &start, &bytes)) ::madvise(start, bytes, MADV_DONTNEED);
}

void MappedFile::advise_sequential() const {
  if (in_memory_) return;  // nothing left to read ahead
  if (data_ != nullptr) ::madvise(data_, size_, MADV_SEQUENTIAL);
}

void MappedFile::advise_willneed(std::uint64_t offset, std::uint64_t length) const {
  // On a read-in copy this only brings back pages that went to swap.
  void* start = nullptr;
  std::size_t bytes = 0;
  if (page_range(data_, size_, offset, length, &start, &bytes)) ::madvise(start, bytes, MADV_WILLNEED);
}

}  // namespace piquant
