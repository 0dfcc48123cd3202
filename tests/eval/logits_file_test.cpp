// The saved base-logits file: round trip, quantization error, and a table of
// corrupt files that must each be refused with the file's name and the field.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <numeric>
#include <vector>

#include "core/error.h"
#include "eval/logits_file.h"
#include "support/test_support.h"

namespace piquant {
namespace {

using testing::TempDir;

constexpr std::int64_t kVocab = 5;
constexpr std::int64_t kCtx = 8;

EvalChunks small_chunks() {
  std::vector<std::int32_t> tokens(16);
  for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<std::int32_t>(i % kVocab);
  return EvalChunks(tokens, kCtx, 0, 1);  // 2 chunks, 3 rows each
}

// Normalised log-probabilities of a small, row-dependent distribution.
std::vector<double> row_log_probs(int row) {
  std::vector<double> logits{0.1 * row, -1.0, 2.0 - 0.3 * row, 0.5, -3.0};
  double z = 0;
  for (const double x : logits) z += std::exp(x);
  for (double& x : logits) x -= std::log(z);
  return logits;
}

std::string write_small_file(const TempDir& dir, const std::string& name = "base.logits") {
  const EvalChunks chunks = small_chunks();
  const std::string path = (dir / name).string();
  BaseLogitsWriter writer(path, kVocab, chunks);
  std::vector<std::uint8_t> encoded(writer.row_bytes());
  for (int r = 0; r < chunks.n_scored(); ++r) {
    encode_logits_row(row_log_probs(r), r % kVocab, encoded);
    writer.write_rows(encoded);
  }
  writer.commit();
  return path;
}

// FNV-1a 64 from its definition, to re-seal a deliberately edited file so that a
// field check, not the checksum, must catch the edit.
void reseal(std::string& bytes) {
  std::uint64_t hash = 0xcbf29ce484222325ull;
  for (std::size_t i = 0; i + 8 < bytes.size(); ++i) hash = (hash ^ static_cast<std::uint8_t>(bytes[i])) * 0x100000001b3ull;
  std::memcpy(bytes.data() + bytes.size() - 8, &hash, 8);
}

template <class T>
void poke(std::string& bytes, std::size_t offset, T value) {
  std::memcpy(bytes.data() + offset, &value, sizeof value);
}

// Layout of the small file: header 64, tokens 16 × 4 (to 128), rows of 16 + 12 bytes.
constexpr std::size_t kRows = 128;
constexpr std::size_t kRowBytes = 28;

TEST(LogitsFile, RoundTripKeepsTheDistributionsAndTheTokens) {
  const TempDir dir;
  const std::string path = write_small_file(dir);
  EXPECT_EQ(std::filesystem::file_size(path), kRows + 6 * kRowBytes + 8);
  EXPECT_EQ(logits_row_bytes(kVocab), kRowBytes);
  const BaseLogitsFile file(path);
  EXPECT_EQ(file.n_vocab(), kVocab);
  EXPECT_EQ(file.n_ctx(), kCtx);
  EXPECT_EQ(file.n_chunks(), 2);
  EXPECT_EQ(file.rows_per_chunk(), 3);
  EXPECT_EQ(file.bos_id(), 1);
  const EvalChunks chunks = small_chunks();
  EXPECT_TRUE(std::equal(file.tokens().begin(), file.tokens().end(), chunks.tokens().begin(), chunks.tokens().end()));
  EXPECT_NO_THROW(file.check_matches(chunks, kVocab));
  std::vector<double> lp;
  for (int r = 0; r < 6; ++r) {
    const auto row = file.decode(r / 3, r % 3, lp);
    const std::vector<double> want = row_log_probs(r);
    ASSERT_EQ(lp.size(), want.size());
    double sum = 0;
    for (std::size_t i = 0; i < want.size(); ++i) {
      EXPECT_NEAR(lp[i], want[i], 5e-4) << "row " << r << " token " << i;
      sum += std::exp(lp[i]);
    }
    EXPECT_NEAR(sum, 1.0, 1e-12);
    EXPECT_EQ(row.argmax, static_cast<std::int32_t>(std::max_element(want.begin(), want.end()) - want.begin()));
    EXPECT_NEAR(row.target_log_prob, want[static_cast<std::size_t>(r % kVocab)], 1e-6);
  }
  EXPECT_THROW(file.decode(2, 0, lp), Error);
}

TEST(LogitsFile, VeryUnlikelyTokensAreClampedNotWrapped) {
  // A span of 200 nats: the step covers 50, the tail is clamped to the lowest level.
  const std::vector<double> lp{0.0, -10.0, -200.0, -std::numeric_limits<double>::infinity()};
  std::vector<std::uint8_t> row(logits_row_bytes(4));
  encode_logits_row(lp, 1, row);
  std::uint16_t q[4];
  std::memcpy(q, row.data() + 16, sizeof q);
  EXPECT_EQ(q[0], 0);
  EXPECT_NEAR(q[1], 10.0 / (50.0 / 65534.0), 1.0);
  EXPECT_EQ(q[2], 65535);
  EXPECT_EQ(q[3], 65535);
  const std::vector<double> nan_row{0.0, std::nan("")};
  std::vector<std::uint8_t> out(logits_row_bytes(2));
  EXPECT_THROW(encode_logits_row(nan_row, 0, out), Error);
  EXPECT_THROW(encode_logits_row(lp, 4, row), Error);
}

TEST(LogitsFile, WriterLeavesNoFileUnlessComplete) {
  const TempDir dir;
  const std::string path = (dir / "partial.logits").string();
  {
    BaseLogitsWriter writer(path, kVocab, small_chunks());
    std::vector<std::uint8_t> encoded(writer.row_bytes());
    encode_logits_row(row_log_probs(0), 0, encoded);
    writer.write_rows(encoded);
    EXPECT_THROW(writer.commit(), Error);
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

struct Corruption {
  const char* name;
  const char* field;  // expected in the message
  std::function<void(std::string&)> edit;
};

TEST(LogitsFile, CorruptFilesAreRefusedWithTheFieldNamed) {
  const TempDir dir;
  const std::string good = testing::read_file(write_small_file(dir));
  const std::vector<Corruption> table = {
      {"empty", "header", [](std::string& b) { b.clear(); }},
      {"header only", "header", [](std::string& b) { b.resize(40); }},
      {"magic", "magic", [](std::string& b) { b[0] = 'X'; }},
      {"version", "version", [](std::string& b) { poke<std::uint32_t>(b, 8, 2); }},
      {"encoding", "encoding", [](std::string& b) { poke<std::uint32_t>(b, 12, 9); }},
      {"zero vocab", "n_vocab", [](std::string& b) { poke<std::uint64_t>(b, 16, 0); }},
      {"huge vocab", "n_vocab", [](std::string& b) { poke<std::uint64_t>(b, 16, 1ull << 40); }},
      {"vocab size off", "size", [](std::string& b) { poke<std::uint64_t>(b, 16, 7); }},
      {"vocab size off, same row size", "checksum", [](std::string& b) { poke<std::uint64_t>(b, 16, 6); }},
      {"tiny n_ctx", "n_ctx", [](std::string& b) { poke<std::uint64_t>(b, 24, 2); }},
      {"huge n_ctx", "n_ctx", [](std::string& b) { poke<std::uint64_t>(b, 24, ~0ull); }},
      {"zero chunks", "n_chunks", [](std::string& b) { poke<std::uint64_t>(b, 32, 0); }},
      {"more chunks", "size", [](std::string& b) { poke<std::uint64_t>(b, 32, 3); }},
      {"rows per chunk", "rows_per_chunk", [](std::string& b) { poke<std::uint64_t>(b, 40, 4); }},
      {"bos id", "bos_id", [](std::string& b) { poke<std::int64_t>(b, 48, 5); }},
      {"reserved", "reserved", [](std::string& b) { poke<std::uint64_t>(b, 56, 1); }},
      {"truncated", "size", [](std::string& b) { b.pop_back(); }},
      {"trailing byte", "size", [](std::string& b) { b.push_back('\0'); }},
      {"flipped row byte", "checksum", [](std::string& b) { b[kRows + 20] ^= 1; }},
      {"flipped token", "checksum", [](std::string& b) { b[64] ^= 1; }},
      {"token out of range", "tokens[3]", [](std::string& b) { poke<std::int32_t>(b, 64 + 12, 5); reseal(b); }},
      {"negative token", "tokens[0]", [](std::string& b) { poke<std::int32_t>(b, 64, -1); reseal(b); }},
      {"target log-prob", "row 0 of chunk 0", [](std::string& b) { poke<float>(b, kRows, 0.5f); reseal(b); }},
      {"argmax", "row 1 of chunk 0", [](std::string& b) { poke<std::int32_t>(b, kRows + kRowBytes + 4, 5); reseal(b); }},
      {"top", "row 2 of chunk 0", [](std::string& b) { poke<float>(b, kRows + 2 * kRowBytes + 8, std::nanf("")); reseal(b); }},
      {"step", "row 0 of chunk 1", [](std::string& b) { poke<float>(b, kRows + 3 * kRowBytes + 12, -1.0f); reseal(b); }},
      {"argmax level", "row 1 of chunk 1", [](std::string& b) {
         std::int32_t best;
         std::memcpy(&best, b.data() + kRows + 4 * kRowBytes + 4, 4);
         poke<std::uint16_t>(b, kRows + 4 * kRowBytes + 16 + 2 * static_cast<std::size_t>(best), 7);
         reseal(b);
       }},
  };
  for (const Corruption& c : table) {
    SCOPED_TRACE(c.name);
    std::string bytes = good;
    c.edit(bytes);
    const auto path = dir / (std::string("corrupt-") + std::to_string(&c - table.data()) + ".logits");
    testing::write_file(path, bytes);
    try {
      BaseLogitsFile file(path.string());
      ADD_FAILURE() << "accepted a corrupt file";
    } catch (const FormatError& e) {
      EXPECT_EQ(e.path(), path.string());
      EXPECT_NE(std::string(e.what()).find(c.field), std::string::npos) << e.what();
    } catch (const Error& e) {
      // The mapping itself may refuse an empty file; it must still name it.
      EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
    }
  }
}

TEST(LogitsFile, MissingFileNamesThePath) {
  try {
    BaseLogitsFile file("/nonexistent/base.logits");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/base.logits"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace piquant
