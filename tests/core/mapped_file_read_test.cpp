// MappedFile's read-into-memory mode against its map mode: same bytes, same errors.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>

#include "core/error.h"
#include "core/mapped_file.h"
#include "support/test_support.h"

namespace piquant {
namespace {

// Bytes that differ at every position of a chunk, so a chunk read to the wrong
// offset cannot go unnoticed.
std::string patterned_bytes(std::size_t n) {
  std::string s(n, '\0');
  std::uint32_t x = 12345;
  for (std::size_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    s[i] = static_cast<char>(x >> 24);
  }
  return s;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(MappedFileRead, SameBytesAsTheMapAcrossManyChunks) {
  testing::TempDir dir;
  const auto path = (dir / "data.bin").string();
  // 3 chunks of 4096 and a partial one; and a chunk size that is not a page multiple.
  const std::string content = patterned_bytes(3 * 4096 + 1234);
  testing::write_file(path, content);
  const MappedFile mapped(path);
  ASSERT_FALSE(mapped.in_memory());
  ASSERT_EQ(mapped.size(), content.size());
  for (const std::size_t chunk : {std::size_t{4096}, std::size_t{1000}, MappedFile::kReadChunkBytes}) {
    const MappedFile read = MappedFile::read_into_memory(path, chunk);
    EXPECT_TRUE(read.in_memory());
    EXPECT_EQ(read.path(), path);
    ASSERT_EQ(read.size(), content.size()) << "chunk " << chunk;
    EXPECT_EQ(std::memcmp(read.data(), mapped.data(), content.size()), 0) << "chunk " << chunk;
    EXPECT_EQ(std::memcmp(read.data(), content.data(), content.size()), 0) << "chunk " << chunk;
    // Page-aligned, as a map is: tensors keep the file's alignment in memory.
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(read.data()) % static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE)), 0u);
  }
  // The constructor's mode reads with the default chunk.
  const MappedFile by_flag(path, FileLoad::ReadIntoMemory);
  EXPECT_TRUE(by_flag.in_memory());
  EXPECT_EQ(std::memcmp(by_flag.data(), content.data(), content.size()), 0);
}

TEST(MappedFileRead, AdviceKeepsTheBytesOfAReadInCopy) {
  testing::TempDir dir;
  const auto path = (dir / "data.bin").string();
  const std::string content = patterned_bytes(5 * 4096);
  testing::write_file(path, content);
  const MappedFile read = MappedFile::read_into_memory(path, 4096);
  // MADV_DONTNEED on anonymous memory would turn these pages into zeros.
  read.release(0, read.size());
  read.advise_sequential();
  read.advise_willneed(4096, 2 * 4096);
  EXPECT_EQ(std::memcmp(read.data(), content.data(), content.size()), 0);
  // bytes() checks ranges the same way in both modes.
  EXPECT_EQ(read.bytes(4096, 10, "x").data(), read.data() + 4096);
  EXPECT_THROW(read.bytes(read.size() - 1, 2, "tail"), FormatError);
}

TEST(MappedFileRead, MovesKeepTheMemory) {
  testing::TempDir dir;
  const auto path = (dir / "data.bin").string();
  testing::write_file(path, "abcdef");
  MappedFile a = MappedFile::read_into_memory(path);
  const std::uint8_t* data = a.data();
  MappedFile b(std::move(a));
  EXPECT_EQ(b.data(), data);
  EXPECT_TRUE(b.in_memory());
  EXPECT_FALSE(a.in_memory());  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
  MappedFile c(path);
  c = std::move(b);
  EXPECT_TRUE(c.in_memory());
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(c.data()), c.size()), "abcdef");
}

TEST(MappedFileRead, EmptyFile) {
  testing::TempDir dir;
  const auto path = (dir / "empty.bin").string();
  testing::write_file(path, "");
  const MappedFile read = MappedFile::read_into_memory(path);
  EXPECT_EQ(read.size(), 0u);
  EXPECT_TRUE(read.bytes(0, 0, "nothing").empty());
  read.release(0, 10);
  read.advise_willneed(0, 10);
}

TEST(MappedFileRead, ErrorsNameTheFile) {
  testing::TempDir dir;
  const auto missing = (dir / "missing.gguf").string();
  EXPECT_NE(error_of([&] { MappedFile::read_into_memory(missing); }).find(missing + ": cannot open"), std::string::npos);
  EXPECT_NE(error_of([&] { MappedFile::read_into_memory(dir.path().string()); }).find("not a regular file"),
            std::string::npos);
  testing::write_file(dir / "x", "x");
  EXPECT_NE(error_of([&] { MappedFile::read_into_memory((dir / "x").string(), 0); }).find("chunk size"), std::string::npos);
}

// A file that ends before the size it had when opened (truncated while being read)
// must be an error naming the offset, never a copy with a zero-filled tail. sysfs
// attributes are regular files that say they hold 4096 bytes but hold a few: the
// same situation, reproducible.
TEST(MappedFileRead, FileShorterThanItsSizeIsAnError) {
  const std::string path = "/sys/kernel/mm/transparent_hugepage/enabled";
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size != 4096 || ::access(path.c_str(), R_OK) != 0) {
    GTEST_SKIP() << path << " is not a readable 4096-byte sysfs file here";
  }
  const std::string message = error_of([&] { MappedFile::read_into_memory(path, 16); });
  EXPECT_NE(message.find(path + ": file ended at offset "), std::string::npos) << message;
  EXPECT_NE(message.find("of the 4096 bytes"), std::string::npos) << message;
}

}  // namespace
}  // namespace piquant
