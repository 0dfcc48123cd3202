// llama.cpp's legacy imatrix .dat files: a file laid out byte by byte from the
// format llama-imatrix writes, round trips, and corrupt files.
#include "quantize/imatrix_file.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>

#include "core/error.h"
#include "support/test_support.h"

namespace piquant {
namespace {

using piquant::testing::TempDir;
using piquant::testing::write_file;

// Little-endian builders for hand-made files.
std::string i32(std::int32_t v) {
  std::string s(4, '\0');
  for (int k = 0; k < 4; ++k) s[static_cast<std::size_t>(k)] = static_cast<char>((static_cast<std::uint32_t>(v) >> (8 * k)) & 0xff);
  return s;
}
std::string f32(float v) {
  std::uint32_t bits;
  std::memcpy(&bits, &v, 4);
  return i32(static_cast<std::int32_t>(bits));
}
std::string str(const std::string& s) { return i32(static_cast<std::int32_t>(s.size())) + s; }

// Two entries as llama-imatrix writes them: values are mean(x^2) * ncall.
std::string two_entry_file() {
  return i32(2) +
         str("blk.0.attn_q.weight") + i32(10) + i32(4) + f32(10.0f) + f32(20.0f) + f32(0.0f) + f32(2.5f) +
         str("blk.0.ffn_down.weight") + i32(4) + i32(2) + f32(1.0f) + f32(8.0f) +
         i32(10) + str("wiki.train.raw");
}

TEST(ImatrixFile, ReadsAFileLaidOutByHand) {
  TempDir dir;
  const auto path = dir / "imatrix.dat";
  write_file(path, two_entry_file());
  const ImportanceMatrix m = read_imatrix_file(path.string());
  ASSERT_EQ(m.entries.size(), 2u);
  EXPECT_EQ(m.chunks, 10);
  EXPECT_EQ(m.dataset, "wiki.train.raw");
  const auto& q = m.entries.at("blk.0.attn_q.weight");
  EXPECT_EQ(q.ncall, 10);
  EXPECT_EQ(q.values, (std::vector<float>{10.0f, 20.0f, 0.0f, 2.5f}));
  // llama-quantize divides by ncall to recover the per-column mean of x^2.
  EXPECT_EQ(m.mean_squares("blk.0.attn_q.weight"), (std::vector<float>{1.0f, 2.0f, 0.0f, 0.25f}));
  EXPECT_EQ(m.mean_squares("blk.0.ffn_down.weight"), (std::vector<float>{0.25f, 2.0f}));
  EXPECT_TRUE(m.mean_squares("blk.1.attn_q.weight").empty());
  EXPECT_TRUE(m.contains("blk.0.ffn_down.weight"));
}

TEST(ImatrixFile, OlderFilesWithoutTrailerOrDataset) {
  TempDir dir;
  const std::string entries = i32(1) + str("output.weight") + i32(0) + i32(1) + f32(3.0f);
  write_file(dir / "none.dat", entries);
  const ImportanceMatrix none = read_imatrix_file((dir / "none.dat").string());
  EXPECT_EQ(none.chunks, 0);
  EXPECT_EQ(none.dataset, "");
  // ncall 0: values are taken as they are.
  EXPECT_EQ(none.mean_squares("output.weight"), std::vector<float>{3.0f});

  write_file(dir / "chunks.dat", entries + i32(7));
  const ImportanceMatrix chunks = read_imatrix_file((dir / "chunks.dat").string());
  EXPECT_EQ(chunks.chunks, 7);
}

TEST(ImatrixFile, WriterProducesTheDocumentedBytes) {
  TempDir dir;
  ImportanceMatrix m;
  m.entries["blk.0.ffn_down.weight"] = {4, {1.0f, 8.0f}};
  m.entries["blk.0.attn_q.weight"] = {10, {10.0f, 20.0f, 0.0f, 2.5f}};
  m.chunks = 10;
  m.dataset = "wiki.train.raw";
  const auto path = dir / "out.dat";
  write_imatrix_file(path.string(), m);
  // Entries are written in name order, which is the order of the hand-made file.
  EXPECT_EQ(piquant::testing::read_file(path), two_entry_file());
  EXPECT_FALSE(std::filesystem::exists(path.string() + ".partial"));
}

TEST(ImatrixFile, RoundTrip) {
  TempDir dir;
  ImportanceMatrix m;
  for (int l = 0; l < 3; ++l) {
    ImportanceMatrix::Entry e;
    e.ncall = 100 + l;
    for (int j = 0; j < 300; ++j) e.values.push_back(0.001f * static_cast<float>(j * (l + 1)));
    m.entries["blk." + std::to_string(l) + ".ffn_up.weight"] = e;
  }
  m.entries["empty.weight"] = {0, {}};
  m.chunks = 123;
  m.dataset = "";
  const auto path = dir / "rt.dat";
  write_imatrix_file(path.string(), m);
  const ImportanceMatrix back = read_imatrix_file(path.string());
  EXPECT_EQ(back.chunks, 123);
  EXPECT_EQ(back.dataset, "");
  ASSERT_EQ(back.entries.size(), m.entries.size());
  for (const auto& [name, e] : m.entries) {
    ASSERT_TRUE(back.contains(name)) << name;
    EXPECT_EQ(back.entries.at(name).ncall, e.ncall);
    EXPECT_EQ(back.entries.at(name).values, e.values);
  }
}

TEST(ImatrixFile, WriterRejectsWhatTheFormatCannotHold) {
  TempDir dir;
  const auto path = (dir / "bad.dat").string();
  ImportanceMatrix empty;
  EXPECT_THROW(write_imatrix_file(path, empty), Error);
  ImportanceMatrix nan;
  nan.entries["a.weight"] = {1, {std::numeric_limits<float>::quiet_NaN()}};
  EXPECT_THROW(write_imatrix_file(path, nan), Error);
  ImportanceMatrix unnamed;
  unnamed.entries[""] = {1, {1.0f}};
  EXPECT_THROW(write_imatrix_file(path, unnamed), Error);
  EXPECT_FALSE(std::filesystem::exists(path));
}

struct CorruptCase {
  const char* label;
  std::string bytes;
  const char* expected;  // part of the message
};

TEST(ImatrixFile, CorruptFilesAreFormatErrors) {
  const std::string good = two_entry_file();
  const std::string head = i32(1) + str("a.weight");
  const std::vector<CorruptCase> cases = {
      {"empty file", "", "n_entries"},
      {"zero entries", i32(0), "n_entries"},
      {"negative entries", i32(-3), "n_entries"},
      {"absurd entry count", i32(1000000) + good.substr(4), "cannot fit"},
      {"truncated in a name", i32(1) + i32(19) + "blk.0.attn_q", "entry 0: name"},
      {"values past the end", good.substr(0, 40), "entry 0 (blk.0.attn_q.weight): nval"},
      {"truncated in second entry", good.substr(0, 60), "entry 1"},
      {"negative name length", i32(1) + i32(-5) + std::string(16, 'x'), "name length"},
      {"huge name length", i32(1) + i32(1 << 30) + std::string(16, 'x'), "name length"},
      {"negative ncall", head + i32(-1) + i32(1) + f32(1.0f), "ncall"},
      {"negative nval", head + i32(1) + i32(-1) + f32(1.0f), "nval"},
      {"absurd nval", head + i32(1) + i32(1 << 28) + f32(1.0f), "nval"},
      {"NaN value", head + i32(1) + i32(2) + f32(1.0f) + f32(std::nanf("")), "value 1"},
      {"infinite value", head + i32(1) + i32(1) + f32(INFINITY), "value 0"},
      {"negative value", head + i32(1) + i32(1) + f32(-1.0f), "value 0"},
      {"duplicate tensor", i32(2) + str("a.weight") + i32(1) + i32(0) + str("a.weight") + i32(1) + i32(0), "twice"},
      {"negative chunk count", head + i32(1) + i32(0) + i32(-2), "chunk count"},
      {"dataset longer than file", head + i32(1) + i32(0) + i32(5) + i32(100) + "abc", "dataset name length"},
      {"negative dataset length", head + i32(1) + i32(0) + i32(5) + i32(-1), "dataset name length"},
      {"truncated trailer", head + i32(1) + i32(0) + std::string("\x05\x00", 2), "chunk count"},
      {"bytes after the dataset", good + "junk", "unexpected bytes"},
  };
  TempDir dir;
  for (const auto& c : cases) {
    const auto path = (dir / "corrupt.dat").string();
    write_file(path, c.bytes);
    try {
      read_imatrix_file(path);
      ADD_FAILURE() << c.label << ": no error";
    } catch (const FormatError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(path), std::string::npos) << c.label << ": " << what;
      EXPECT_NE(what.find(c.expected), std::string::npos) << c.label << ": " << what;
    }
  }
}

TEST(ImatrixFile, MissingFileIsAnError) {
  TempDir dir;
  EXPECT_THROW(read_imatrix_file((dir / "nope.dat").string()), Error);
}

}  // namespace
}  // namespace piquant
