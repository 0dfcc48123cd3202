// Dropping a file from the page cache and reading its residency (what the cold-load
// timing of `piquant bench` relies on).
#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "core/error.h"
#include "speed/page_cache.h"
#include "support/test_support.h"

namespace piquant {
namespace {

// Written, flushed to disk (dirty pages cannot be dropped) and read back whole.
std::string synced_file(const testing::TempDir& dir, std::size_t bytes) {
  const auto path = (dir / "data.bin").string();
  testing::write_file(path, std::string(bytes, 'x'));
  const int fd = ::open(path.c_str(), O_RDONLY);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(::fsync(fd), 0);
  ::close(fd);
  EXPECT_EQ(testing::read_file(path).size(), bytes);
  return path;
}

TEST(PageCache, EvictionDropsAFileThatWasFullyCached) {
  testing::TempDir dir;
  const std::string path = synced_file(dir, 1 << 20);
  EXPECT_DOUBLE_EQ(cached_fraction({path}), 1.0);  // just read in full
  evict_from_page_cache({path});
  // The tests run on a disk (ext4 and the like), whose clean unmapped pages drop.
  EXPECT_LT(cached_fraction({path}), 0.1);
  EXPECT_EQ(testing::read_file(path).size(), std::size_t{1} << 20);
  EXPECT_DOUBLE_EQ(cached_fraction({path}), 1.0);
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
