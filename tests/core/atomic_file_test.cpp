#include <gtest/gtest.h>

#include <filesystem>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "support/test_support.h"

namespace piquant {
namespace {

TEST(AtomicFileWriter, FileAppearsOnlyAtCommit) {
  testing::TempDir dir;
  const auto path = dir / "out.bin";
  AtomicFileWriter writer(path.string());
  writer.write("abc", 3);
  writer.pad_to(8);
  EXPECT_EQ(writer.position(), 8u);
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_TRUE(std::filesystem::exists(writer.temp_path()));
  writer.commit();
  EXPECT_EQ(testing::read_file(path), std::string("abc\0\0\0\0\0", 8));
  EXPECT_FALSE(std::filesystem::exists(path.string() + ".partial"));
}

TEST(AtomicFileWriter, AbandonedWriterLeavesNothing) {
  testing::TempDir dir;
  const auto path = dir / "out.bin";
  {
    AtomicFileWriter writer(path.string());
    writer.write_zeros(10 << 20);  // more than the buffer
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path.string() + ".partial"));
}

TEST(AtomicFileWriter, UnwritableFolderNamesThePath) {
  try {
    AtomicFileWriter writer("/nonexistent-folder/x.bin");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent-folder/x.bin"), std::string::npos) << e.what();
  }
}

TEST(MappedFile, BoundsCheckedViews) {
  testing::TempDir dir;
  testing::write_file(dir / "f", "0123456789");
  const MappedFile file((dir / "f").string());
  EXPECT_EQ(file.size(), 10u);
  EXPECT_EQ(file.bytes(2, 3, "x")[0], '2');
  EXPECT_THROW(file.bytes(8, 3, "field"), FormatError);
  EXPECT_THROW(file.bytes(~0ull, 2, "field"), FormatError);  // offset + length overflows
  try {
    file.bytes(11, 0, "thing");
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("thing"), std::string::npos);
  }
  EXPECT_THROW(MappedFile((dir / "missing").string()), Error);
  EXPECT_THROW(MappedFile(dir.path().string()), Error);  // a folder
}

}  // namespace
}  // namespace piquant
