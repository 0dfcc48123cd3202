// Dropping a file from the page cache and reading its residency (what the cold-load
// timing of `piquant bench` relies on).
//
// Whether pages drop at all is the filesystem's choice, not the code's: a disk
// filesystem (ext4, xfs, btrfs) drops a file's clean, unmapped pages on
// posix_fadvise(DONTNEED); tmpfs cannot (its pages are the file), and overlay or
// network filesystems may not. So this test first asks the filesystem directly, with its
// own syscalls, and checks the eviction only where that probe saw pages drop.
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "core/error.h"
#include "speed/page_cache.h"
#include "support/test_support.h"

namespace piquant {
namespace {

// Written, flushed to disk (dirty pages cannot be dropped) and read back whole.
std::string synced_file(const testing::TempDir& dir, const std::string& name, std::size_t bytes) {
  const auto path = (dir / name).string();
  testing::write_file(path, std::string(bytes, 'x'));
  const int fd = ::open(path.c_str(), O_RDONLY);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(::fsync(fd), 0);
  ::close(fd);
  EXPECT_EQ(testing::read_file(path).size(), bytes);
  return path;
}

// This test's own count of a file's resident pages (mmap + mincore), written apart from
// page_cache.cpp so that its cached_fraction() has something to be compared with.
struct Residency {
  std::size_t resident = 0;
  std::size_t pages = 0;
  double fraction() const { return pages == 0 ? 0.0 : static_cast<double>(resident) / static_cast<double>(pages); }
};

Residency residency(const std::string& path) {
  Residency r;
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) {
    ADD_FAILURE() << "cannot open " << path;
    return r;
  }
  const off_t size = ::lseek(fd, 0, SEEK_END);
  void* map = size > 0 ? ::mmap(nullptr, static_cast<std::size_t>(size), PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
  ::close(fd);
  if (map == MAP_FAILED) {
    ADD_FAILURE() << "cannot map " << path;
    return r;
  }
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> vec((static_cast<std::size_t>(size) + page - 1) / page);
  EXPECT_EQ(::mincore(map, static_cast<std::size_t>(size), vec.data()), 0);
  ::munmap(map, static_cast<std::size_t>(size));
  r.pages = vec.size();
  for (const unsigned char v : vec) r.resident += v & 1u;
  return r;
}

std::string filesystem_name(const std::filesystem::path& dir) {
  struct statfs fs {};
  if (::statfs(dir.c_str(), &fs) != 0) return "unknown filesystem";
  switch (static_cast<unsigned long>(fs.f_type)) {
    case TMPFS_MAGIC: return "tmpfs";
    case OVERLAYFS_SUPER_MAGIC: return "overlayfs";
    case EXT4_SUPER_MAGIC: return "ext2/3/4";
    case XFS_SUPER_MAGIC: return "xfs";
    case BTRFS_SUPER_MAGIC: return "btrfs";
    default: break;
  }
  char hex[32];
  std::snprintf(hex, sizeof hex, "0x%lx", static_cast<unsigned long>(fs.f_type));
  return std::string("filesystem type ") + hex;
}

// Empty when the filesystem under `dir` drops a fully cached, synced file's pages on
// posix_fadvise(DONTNEED) (checked with this test's own calls, not page_cache.cpp's);
// otherwise why the eviction cannot be tested there.
std::string why_pages_do_not_drop(const testing::TempDir& dir) {
  const std::string probe = synced_file(dir, "probe.bin", 256 << 10);
  const Residency before = residency(probe);
  if (before.resident != before.pages) {
    return "a file just read is only " + std::to_string(before.resident) + "/" + std::to_string(before.pages) +
           " pages cached on " + filesystem_name(dir.path());
  }
  const int fd = ::open(probe.c_str(), O_RDONLY);
  const int rc = fd < 0 ? -1 : ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  if (fd >= 0) ::close(fd);
  if (rc != 0) return "posix_fadvise(DONTNEED) fails on " + filesystem_name(dir.path());
  const Residency after = residency(probe);
  if (after.fraction() > 0.1) {
    return filesystem_name(dir.path()) + " (" + dir.path().string() + ") kept " + std::to_string(after.resident) +
           "/" + std::to_string(after.pages) + " pages after posix_fadvise(DONTNEED)";
  }
  return {};
}

TEST(PageCache, CachedFractionCountsResidentPages) {
  testing::TempDir dir;
  const std::string path = synced_file(dir, "data.bin", (1 << 20) + 100);  // a partial last page
  const Residency own = residency(path);
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  EXPECT_EQ(own.pages, ((std::size_t{1} << 20) + 100 + page - 1) / page);
  EXPECT_DOUBLE_EQ(cached_fraction({path}), own.fraction());
  EXPECT_DOUBLE_EQ(cached_fraction({path}), 1.0);  // just read in full
}

TEST(PageCache, EvictionDropsAFileThatWasFullyCached) {
  testing::TempDir dir;
  if (const std::string why = why_pages_do_not_drop(dir); !why.empty()) {
    GTEST_SKIP() << "cannot test eviction here: " << why
                 << ". Run the tests from a build folder on a disk filesystem (ext4, xfs, btrfs).";
  }
  const std::string path = synced_file(dir, "data.bin", 1 << 20);
  EXPECT_DOUBLE_EQ(cached_fraction({path}), 1.0);
  evict_from_page_cache({path});
  const Residency own = residency(path);
  EXPECT_LE(own.fraction(), 0.1) << own.resident << "/" << own.pages << " pages still cached";
  EXPECT_DOUBLE_EQ(cached_fraction({path}), own.fraction());
  EXPECT_EQ(testing::read_file(path).size(), std::size_t{1} << 20);
  EXPECT_DOUBLE_EQ(cached_fraction({path}), 1.0);
}

TEST(PageCache, EvictingAMissingFileIsAnError) {
  testing::TempDir dir;
  const std::string missing = (dir / "nope").string();
  try {
    evict_from_page_cache({missing});
    ADD_FAILURE() << "no error for a missing file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
  }
}

TEST(PageCache, ModelFilesOfAFileAFolderAndNothing) {
  testing::TempDir dir;
  testing::write_file(dir / "b.safetensors", "12345");
  testing::write_file(dir / "a.json", "{}");
  std::filesystem::create_directory(dir / "sub");
  const auto files = model_files(dir.path().string());
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(files[0], (dir / "a.json").string());
  EXPECT_EQ(total_file_bytes(files), 7u);
  EXPECT_EQ(model_files((dir / "a.json").string()).size(), 1u);
  EXPECT_THROW((void)model_files((dir / "nope").string()), Error);
  testing::write_file(dir / "empty", "");
  EXPECT_EQ(cached_fraction({(dir / "empty").string()}), 0.0);
}

}  // namespace
}  // namespace piquant
