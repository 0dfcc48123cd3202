// The reader against broken files: a table of corruptions, every truncation, and
// thousands of random mutations that must each parse or throw, never crash.
#include <cstdint>
#include <filesystem>
#include <limits>
#include <random>

#include "core/error.h"
#include "formats/gguf.h"
#include "formats/gguf_test_bytes.h"
#include "support/test_support.h"

namespace piquant {
namespace {

using testing::contains;
using testing::GgufBytes;
using testing::TempDir;
namespace id = testing::gguf_id;

constexpr std::uint64_t kHuge = std::uint64_t{1} << 62;

// A valid file built by hand: two keys, tensor "a" F32 [4] at 0 and "b" Q4_0 [32, 2]
// at 32, ending with b's last byte (no trailing padding), so every prefix is invalid.
GgufBytes valid_small_file() {
  GgufBytes b;
  b.header(3, 2, 2)
      .kv_string("general.architecture", "llama")
      .kv_u32("llama.block_count", 5)
      .tensor_info("a", {4}, id::kGgmlF32, 0)
      .tensor_info("b", {32, 2}, id::kGgmlQ4_0, 32)
      .pad_to(32)
      .fill(16, '\x11')
      .pad_to(32)
      .fill(36, '\x22');
  return b;
}

// One tensor "w" with the given info fields and `data_bytes` of data after the header.
GgufBytes one_tensor(std::uint32_t n_dims, const std::vector<std::uint64_t>& dims, std::uint32_t type,
                     std::uint64_t offset, std::size_t data_bytes) {
  GgufBytes b;
  b.header(3, 1, 0).str("w").u32(n_dims);
  for (const auto d : dims) b.u64(d);
  b.u32(type).u64(offset).pad_to(32).zeros(data_bytes);
  return b;
}

GgufBytes with_alignment_value(std::uint32_t type, std::uint64_t value, std::size_t value_bytes) {
  GgufBytes b;
  b.header(3, 0, 1).str("general.alignment").u32(type);
  if (value_bytes == 4) b.u32(static_cast<std::uint32_t>(value));
  if (value_bytes == 8) b.u64(value);
  return b;
}

GgufBytes nested_arrays(int depth) {
  GgufBytes b;
  b.header(3, 0, 1).str("deep").u32(id::kArray);
  for (int i = 0; i < depth; ++i) b.u32(id::kArray).u64(1);
  b.u32(id::kUint8).u64(0);
  return b;
}

struct CorruptCase {
  std::string name;
  std::string bytes;
  std::string field;    // words the FormatError's field must contain
  std::string problem;  // words its message must contain
};

std::vector<CorruptCase> corrupt_cases() {
  const std::string valid = valid_small_file().bytes();
  std::vector<CorruptCase> cases;
  const auto add = [&](std::string name, const GgufBytes& b, std::string field, std::string problem) {
    cases.push_back({std::move(name), b.bytes(), std::move(field), std::move(problem)});
  };
  add("empty", GgufBytes(), "header magic", "truncated");
  add("three_bytes", GgufBytes().text("GGU"), "header magic", "truncated");
  add("bad_magic", GgufBytes().text("GGML").u32(3).u64(0).u64(0), "header magic", "not a GGUF file");
  add("version_1", GgufBytes().header(1, 0, 0), "header version", "version 1");
  add("version_99", GgufBytes().header(99, 0, 0), "header version", "unsupported version 99");
  add("big_endian", GgufBytes().text("GGUF").u32(0x03000000).u64(0).u64(0), "header version", "big-endian");
  add("truncated_counts", GgufBytes().text("GGUF").u32(3).u64(0).u32(0), "header kv_count", "truncated");
  add("absurd_tensor_count", GgufBytes().header(3, kHuge, 0), "header tensor_count", "cannot fit");
  add("absurd_kv_count", GgufBytes().header(3, 0, std::numeric_limits<std::uint64_t>::max()), "header kv_count",
      "cannot fit");
  add("kv_count_one_too_many", GgufBytes().header(3, 0, 2).kv_string("k", std::string(30, 'v')), "key #1 name",
      "truncated");
  add("key_length_past_end", GgufBytes().header(3, 0, 1).u64(1000).text("general"), "key #0 name", "past the end");
  add("string_length_past_end",
      GgufBytes().header(3, 0, 1).str("general.name").u32(id::kString).u64(100).text("llama"), "key 'general.name'",
      "length 100");
  add("string_length_absurd",
      GgufBytes().header(3, 0, 1).str("general.name").u32(id::kString).u64(std::numeric_limits<std::uint64_t>::max()),
      "key 'general.name'", "past the end");
  add("array_length_absurd",
      GgufBytes().header(3, 0, 1).str("tokenizer.ggml.tokens").u32(id::kArray).u32(id::kString).u64(kHuge),
      "key 'tokenizer.ggml.tokens'", "array length");
  add("array_one_element_short",
      GgufBytes().header(3, 0, 1).str("a").u32(id::kArray).u32(id::kUint32).u64(3).u32(1).u32(2),
      "key 'a'", "array length 3");
  add("array_string_element_past_end",
      GgufBytes().header(3, 0, 1).str("a").u32(id::kArray).u32(id::kString).u64(2).str("x").u64(50).text("yz"),
      "key 'a'", "past the end");
  add("unknown_value_type", GgufBytes().header(3, 0, 1).str("general.name").u32(13).u32(0), "key 'general.name' type",
      "unknown value type 13");
  add("unknown_array_element_type", GgufBytes().header(3, 0, 1).str("a").u32(id::kArray).u32(99).u64(0), "key 'a'",
      "array element type 99");
  add("bool_not_0_or_1", GgufBytes().header(3, 0, 1).str("flag").u32(id::kBool).u8(2), "key 'flag'", "neither 0 nor 1");
  add("truncated_u64_value", GgufBytes().header(3, 0, 1).str("n").u32(id::kUint64).u32(1), "key 'n'", "truncated");
  add("arrays_nested_too_deep", nested_arrays(20), "key 'deep'", "nested deeper");
  add("duplicate_key",
      GgufBytes().header(3, 0, 2).kv_string("general.name", "a").kv_string("general.name", "b"),
      "key 'general.name'", "duplicate key");
  add("alignment_zero", with_alignment_value(id::kUint32, 0, 4), "key 'general.alignment'", "power of two");
  add("alignment_three", with_alignment_value(id::kUint32, 3, 4), "key 'general.alignment'", "alignment 3");
  add("alignment_uint64", with_alignment_value(id::kUint64, 32, 8), "key 'general.alignment'", "must be UINT32");
  add("alignment_string", GgufBytes().header(3, 0, 1).kv_string("general.alignment", "32"), "key 'general.alignment'",
      "found STRING");
  add("tensor_name_past_end", GgufBytes().header(3, 1, 0).u64(500).zeros(30), "tensor #0 name", "past the end");
  add("n_dims_0", one_tensor(0, {}, id::kGgmlF32, 0, 64), "tensor 'w' n_dims", "n_dims 0");
  add("n_dims_5", one_tensor(5, {1, 1, 1, 1, 1}, id::kGgmlF32, 0, 64), "tensor 'w' n_dims", "n_dims 5");
  add("zero_dim", one_tensor(2, {4, 0}, id::kGgmlF32, 0, 64), "tensor 'w' shape", "dimension 1 is 0");
  add("dims_product_overflows", one_tensor(2, {std::uint64_t{1} << 32, std::uint64_t{1} << 32}, id::kGgmlF32, 0, 64),
      "tensor 'w' shape", "element count overflows");
  add("dim_above_int64", one_tensor(1, {std::uint64_t{1} << 63}, id::kGgmlF32, 0, 64), "tensor 'w' shape",
      "overflows");
  add("byte_size_overflows", one_tensor(2, {kHuge, 1}, id::kGgmlF32, 0, 64), "tensor 'w' shape", "byte size");
  add("unknown_ggml_type", one_tensor(1, {32}, 99, 0, 128), "tensor 'w' type", "unknown ggml type id 99");
  add("removed_ggml_type_q4_2", one_tensor(1, {32}, 4, 0, 128), "tensor 'w' type", "unknown ggml type id 4");
  add("q4_0_with_33_columns", one_tensor(2, {33, 2}, id::kGgmlQ4_0, 0, 128), "tensor 'w' shape", "row length 33");
  add("unaligned_offset", one_tensor(1, {4}, id::kGgmlF32, 16, 64), "tensor 'w' offset", "not a multiple");
  add("offset_past_end", one_tensor(1, {4}, id::kGgmlF32, 1024, 64), "tensor 'w' offset", "past the end");
  add("offset_huge", one_tensor(1, {4}, id::kGgmlF32, ~std::uint64_t{31}, 64), "tensor 'w' offset", "past the end");
  add("data_past_end", one_tensor(1, {4}, id::kGgmlF32, 0, 8), "tensor 'w' data", "past the end");
  add("no_data_section", one_tensor(1, {4}, id::kGgmlF32, 0, 0), "tensor 'w' offset", "past the end");
  {
    GgufBytes b;
    b.header(3, 2, 0).tensor_info("w", {4}, id::kGgmlF32, 0).tensor_info("w", {4}, id::kGgmlF32, 32).pad_to(32).zeros(64);
    add("duplicate_tensor_name", b, "tensor 'w'", "duplicate tensor name");
  }
  {
    GgufBytes b;
    b.header(3, 2, 0).tensor_info("w", {16}, id::kGgmlF32, 0).tensor_info("v", {4}, id::kGgmlF32, 32).pad_to(32).zeros(64);
    add("overlapping_tensors", b, "tensor 'v' offset", "overlaps tensor 'w'");
  }
  {
    // Alignment 64 makes an offset of 32 unaligned.
    GgufBytes b;
    b.header(3, 2, 1).kv_u32("general.alignment", 64).tensor_info("w", {4}, id::kGgmlF32, 0)
        .tensor_info("v", {4}, id::kGgmlF32, 32).pad_to(64).zeros(128);
    add("offset_unaligned_for_key", b, "tensor 'v' offset", "alignment 64");
  }
  {
    GgufBytes b;
    b.text(valid.substr(0, valid.size() - 1));
    add("last_byte_missing", b, "tensor 'b' data", "past the end");
  }
  return cases;
}

TEST(GgufCorrupt, HandBuiltValidFileParses) {
  TempDir dir;
  const std::string path = dir / "valid.gguf";
  testing::write_file(path, valid_small_file().bytes());
  const GgufFile file(path);
  EXPECT_EQ(file.get_string("general.architecture"), "llama");
  EXPECT_EQ(file.get_int("llama.block_count"), 5);
  EXPECT_EQ(file.tensor("b").size_bytes, 36u);
  EXPECT_EQ(file.tensor_data(file.tensor("b"))[35], 0x22);
  EXPECT_EQ(file.tensor_data(file.tensor("a"))[0], 0x11);
}

TEST(GgufCorrupt, EachCorruptionThrowsFormatErrorNamingFileAndField) {
  TempDir dir;
  for (const CorruptCase& c : corrupt_cases()) {
    SCOPED_TRACE(c.name);
    const std::string path = dir / (c.name + ".gguf");
    testing::write_file(path, c.bytes);
    try {
      GgufFile file(path);
      ADD_FAILURE() << c.name << ": parsed without error";
    } catch (const FormatError& e) {
      EXPECT_EQ(e.path(), path);
      EXPECT_TRUE(contains(e.what(), path));
      EXPECT_TRUE(contains(e.field(), c.field));
      EXPECT_TRUE(contains(e.what(), c.problem));
    }
  }
}

TEST(GgufCorrupt, EveryTruncationThrows) {
  TempDir dir;
  const std::string valid = valid_small_file().bytes();
  const std::string path = dir / "truncated.gguf";
  for (std::size_t length = 0; length < valid.size(); ++length) {
    SCOPED_TRACE("length " + std::to_string(length));
    std::filesystem::remove(path);  // a fresh file: rewriting one in place makes ext4 flush it
    testing::write_file(path, valid.substr(0, length));
    try {
      GgufFile file(path);
      ADD_FAILURE() << "a " << length << "-byte prefix parsed";
    } catch (const FormatError& e) {
      EXPECT_TRUE(contains(e.what(), path));
      EXPECT_FALSE(e.field().empty());
    }
  }
}

// A richer valid file for mutation: many value types, nested arrays, tensors.
std::string mutation_base(const std::string& path) {
  {
    GgufWriter writer(path);
    writer.set("general.architecture", GgufValue("llama"));
    writer.set("u8", GgufValue(std::uint8_t{1}));
    writer.set("i64", GgufValue(std::int64_t{-9}));
    writer.set("f64", GgufValue(0.5));
    writer.set("flag", GgufValue(true));
    writer.set("tokens", GgufValue::string_array({"<s>", "</s>", "a", "bc"}));
    writer.set("scores", GgufValue::float32_array({0.0f, -1.0f, -2.0f, -3.0f}));
    writer.set("nested", GgufValue::array(GgufType::ARRAY, {GgufValue::int32_array({1, 2}),
                                                             GgufValue::array(GgufType::BOOL, {GgufValue(false)})}));
    writer.add_tensor("w", GgmlType::F32, {4, 2});
    writer.add_tensor("q", GgmlType::Q8_0, {32});
    writer.write_header();
    writer.write_tensor("w", std::vector<std::uint8_t>(32, 7));
    writer.write_tensor("q", std::vector<std::uint8_t>(34, 9));
    writer.finish();
  }
  return testing::read_file(path);
}

TEST(GgufCorrupt, RandomMutationsParseOrThrowNeverCrash) {
  TempDir dir;
  const std::string base = mutation_base(dir / "base.gguf");
  const std::string path = dir / "mutant.gguf";
  const std::uint64_t interesting[] = {0, 1, 31, 32, 0x7fffffffffffffffull, 0x8000000000000000ull,
                                       0xffffffffffffffffull, 0xffffffffull, base.size(), base.size() / 2};
  std::mt19937_64 rng(20240607);
  int parsed = 0, rejected = 0;
  for (int round = 0; round < 3000; ++round) {
    std::string bytes = base;
    const int edits = 1 + static_cast<int>(rng() % 3);
    std::string how;
    for (int e = 0; e < edits; ++e) {
      const std::size_t at = rng() % bytes.size();
      switch (rng() % 5) {
        case 0:  // flip one bit
          bytes[at] = static_cast<char>(bytes[at] ^ (1 << (rng() % 8)));
          break;
        case 1:  // a random byte
          bytes[at] = static_cast<char>(rng());
          break;
        case 2: {  // an interesting 64- or 32-bit value over a length, count or offset
          const std::uint64_t v = interesting[rng() % std::size(interesting)];
          const std::size_t width = rng() % 2 ? 8 : 4;
          for (std::size_t i = 0; i < width && at + i < bytes.size(); ++i) bytes[at + i] = static_cast<char>(v >> (8 * i));
          break;
        }
        case 3:  // truncate
          bytes.resize(at);
          break;
        default:  // delete a byte, shifting everything after it
          bytes.erase(at, 1);
      }
      how += ' ';
      how += std::to_string(at);
      if (bytes.empty()) break;
    }
    std::filesystem::remove(path);  // a fresh file: rewriting one in place makes ext4 flush it
    testing::write_file(path, bytes);
    try {
      const GgufFile file(path);
      // Whatever parses must be safe to use.
      std::size_t sink = 0;
      for (const auto& [key, value] : file.metadata()) sink += key.size() + value.to_string().size();
      for (const GgufTensorInfo& t : file.tensors()) {
        const auto data = file.tensor_data(t);
        sink += data.empty() ? 0 : data.back();
      }
      volatile std::size_t keep = sink;
      (void)keep;
      ++parsed;
    } catch (const Error&) {
      ++rejected;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "round " << round << " (edits at" << how << "): not a piquant::Error: " << e.what();
    }
  }
  // Both outcomes happen, so the mutations reach data bytes and header bytes alike.
  EXPECT_GT(parsed, 100);
  EXPECT_GT(rejected, 1000);
}

}  // namespace
}  // namespace piquant
