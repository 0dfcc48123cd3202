#include "speed/page_cache.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <vector>

#include "core/error.h"
#include "core/open_file.h"

namespace piquant {
namespace {

struct PageCount {
  std::uint64_t cached = 0;
  std::uint64_t total = 0;
};

PageCount count_cached_pages(const std::string& path) {
  const OpenFile file(path);
  const off_t size = ::lseek(file.fd(), 0, SEEK_END);
  if (size < 0) throw_system_error(path, "seek");
  if (size == 0) return {};
  const auto bytes = static_cast<std::size_t>(size);
  // Mapping without touching brings nothing in; mincore() then reads the page cache.
  void* map = ::mmap(nullptr, bytes, PROT_READ, MAP_SHARED, file.fd(), 0);
  if (map == MAP_FAILED) throw_system_error(path, "mmap");
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> resident((bytes + page - 1) / page);
  const int rc = ::mincore(map, bytes, resident.data());
  ::munmap(map, bytes);
  if (rc != 0) throw_system_error(path, "mincore");
  PageCount count;
  count.total = resident.size();
  count.cached = static_cast<std::uint64_t>(std::count_if(resident.begin(), resident.end(), [](unsigned char r) { return (r & 1) != 0; }));
  return count;
}

}  // namespace

std::vector<std::string> model_files(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    std::vector<std::string> files;
    for (const auto& entry : fs::directory_iterator(path)) {
      if (entry.is_regular_file()) files.push_back(entry.path().string());
    }
    std::sort(files.begin(), files.end());
    return files;
  }
  if (!fs::is_regular_file(path, ec)) throw Error(path + ": no such model file or folder");
  return {path};
}

std::uint64_t total_file_bytes(const std::vector<std::string>& files) {
  std::uint64_t total = 0;
  for (const auto& f : files) total += std::filesystem::file_size(f);
  return total;
}

void evict_from_page_cache(const std::vector<std::string>& files) {
  for (const auto& f : files) {
    const OpenFile file(f);
    // Returns an error number instead of setting errno.
    const int rc = ::posix_fadvise(file.fd(), 0, 0, POSIX_FADV_DONTNEED);
    if (rc != 0) {
      errno = rc;
      throw_system_error(f, "posix_fadvise(DONTNEED)");
    }
  }
}

double cached_fraction(const std::vector<std::string>& files) {
  PageCount sum;
  for (const auto& f : files) {
    const PageCount c = count_cached_pages(f);
    sum.cached += c.cached;
    sum.total += c.total;
  }
  return sum.total == 0 ? 0.0 : static_cast<double>(sum.cached) / static_cast<double>(sum.total);
}

}  // namespace piquant
