// GGUF round trips, data layout, the writer's rules and the reader's getters.
#include <cstdint>
#include <cstring>
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

std::vector<std::uint8_t> random_bytes(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::uint8_t> out(n);
  for (auto& b : out) b = static_cast<std::uint8_t>(rng());
  return out;
}

template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

std::vector<std::pair<std::string, GgufValue>> every_value_type() {
  using A = GgufValue::Array;
  return {
      {"t.u8", GgufValue(std::uint8_t{200})},
      {"t.i8", GgufValue(std::int8_t{-100})},
      {"t.u16", GgufValue(std::uint16_t{60000})},
      {"t.i16", GgufValue(std::int16_t{-30000})},
      {"t.u32", GgufValue(std::uint32_t{4000000000u})},
      {"t.i32", GgufValue(std::int32_t{-2000000000})},
      {"t.f32", GgufValue(1.5e-7f)},
      {"t.bool_true", GgufValue(true)},
      {"t.bool_false", GgufValue(false)},
      {"t.string", GgufValue(std::string("h\xc3\xa9llo \0 w\xe2\x96\x81rld", 17))},  // UTF-8 and an embedded NUL
      {"t.empty_string", GgufValue("")},
      {"t.u64", GgufValue(std::numeric_limits<std::uint64_t>::max() - 5)},
      {"t.i64", GgufValue(std::numeric_limits<std::int64_t>::min() + 1)},
      {"t.f64", GgufValue(3.141592653589793)},
      {"a.strings", GgufValue::string_array({"<s>", "", "Ġthe", std::string("\0\x01", 2)})},
      {"a.i32", GgufValue::int32_array({1, -2, std::numeric_limits<std::int32_t>::max()})},
      {"a.f32", GgufValue::float32_array({0.25f, -1e30f, 0.0f})},
      {"a.u8", GgufValue::array(GgufType::UINT8, A{GgufValue(std::uint8_t{0}), GgufValue(std::uint8_t{255})})},
      {"a.i8", GgufValue::array(GgufType::INT8, A{GgufValue(std::int8_t{-1})})},
      {"a.u16", GgufValue::array(GgufType::UINT16, A{GgufValue(std::uint16_t{65535})})},
      {"a.i16", GgufValue::array(GgufType::INT16, A{GgufValue(std::int16_t{-32768})})},
      {"a.u32", GgufValue::array(GgufType::UINT32, A{GgufValue(std::uint32_t{7})})},
      {"a.bool", GgufValue::array(GgufType::BOOL, A{GgufValue(true), GgufValue(false), GgufValue(true)})},
      {"a.u64", GgufValue::array(GgufType::UINT64, A{GgufValue(std::numeric_limits<std::uint64_t>::max())})},
      {"a.i64", GgufValue::array(GgufType::INT64, A{GgufValue(std::int64_t{-5}), GgufValue(std::int64_t{5})})},
      {"a.f64", GgufValue::array(GgufType::FLOAT64, A{GgufValue(-0.0), GgufValue(1e300)})},
      {"a.empty", GgufValue::array(GgufType::STRING, {})},
      {"a.nested",
       GgufValue::array(GgufType::ARRAY, A{GgufValue::int32_array({1, 2}), GgufValue::string_array({"x", "yz"}),
                                           GgufValue::array(GgufType::FLOAT64, {}),
                                           GgufValue::array(GgufType::ARRAY, A{GgufValue::float32_array({9.0f})})})},
  };
}

TEST(Gguf, EveryValueTypeRoundTrips) {
  TempDir dir;
  const std::string path = dir / "values.gguf";
  const auto values = every_value_type();
  {
    GgufWriter writer(path);
    for (const auto& [key, value] : values) writer.set(key, value);
    writer.finish();  // no tensors: finish() writes the header itself
  }
  const GgufFile file(path);
  EXPECT_EQ(file.version(), 3u);
  EXPECT_EQ(file.alignment(), 32u);
  EXPECT_TRUE(file.tensors().empty());
  ASSERT_EQ(file.metadata().size(), values.size());  // no general.alignment at the default
  for (std::size_t i = 0; i < values.size(); ++i) {
    EXPECT_EQ(file.metadata()[i].first, values[i].first);
    EXPECT_EQ(file.metadata()[i].second, values[i].second) << values[i].first << ": " << file.metadata()[i].second.to_string();
  }
  EXPECT_EQ(file.at("t.string").as_string().size(), 17u);
  EXPECT_EQ(file.at("a.nested").as_array()[3].as_array()[0].as_float_array(), std::vector<float>{9.0f});
  EXPECT_EQ(file.data_offset() % 32, 0u);
}

TEST(Gguf, SetReplacesInPlaceAndRemoveDeletes) {
  TempDir dir;
  const std::string path = dir / "set.gguf";
  {
    GgufWriter writer(path);
    writer.set("a", GgufValue(std::uint32_t{1}));
    writer.set("b", GgufValue("two"));
    writer.set("c", GgufValue(3.0f));
    writer.set("a", GgufValue("replaced"));
    writer.remove("c");
    writer.remove("not there");
    writer.finish();
  }
  const GgufFile file(path);
  ASSERT_EQ(file.metadata().size(), 2u);
  EXPECT_EQ(file.metadata()[0].first, "a");
  EXPECT_EQ(file.metadata()[0].second, GgufValue("replaced"));
  EXPECT_EQ(file.metadata()[1].first, "b");
}

TEST(Gguf, WriterBytesMatchTheSpecLayout) {
  TempDir dir;
  const std::string path = dir / "exact.gguf";
  const auto w = random_bytes(12, 1);
  const auto v = random_bytes(34, 2);
  {
    GgufWriter writer(path);
    writer.set("general.architecture", GgufValue("llama"));
    writer.set("x.count", GgufValue(std::uint32_t{7}));
    writer.add_tensor("w", GgmlType::F32, {3});
    writer.add_tensor("v", GgmlType::Q8_0, {32});
    writer.write_header();
    writer.write_tensor("w", w);
    writer.write_tensor("v", v);
    writer.finish();
  }
  GgufBytes expected;
  expected.header(3, 2, 2)
      .kv_string("general.architecture", "llama")
      .kv_u32("x.count", 7)
      .tensor_info("w", {3}, id::kGgmlF32, 0)
      .tensor_info("v", {32}, id::kGgmlQ8_0, 32)
      .pad_to(32)
      .text(std::string(w.begin(), w.end()))
      .pad_to(32)
      .text(std::string(v.begin(), v.end()))
      .pad_to(32);
  EXPECT_EQ(testing::read_file(path), expected.bytes());
}

struct TensorCase {
  std::string name;
  GgmlType type;
  std::vector<std::int64_t> shape;
  std::uint64_t bytes;  // worked out by hand from ggml's block layouts
};

const std::vector<TensorCase> kTensorCases = {
    {"token_embd.weight", GgmlType::F32, {7, 3}, 7 * 3 * 4},
    {"blk.0.attn_q.weight", GgmlType::F16, {16, 2}, 16 * 2 * 2},
    {"blk.0.attn_norm.weight", GgmlType::BF16, {5}, 5 * 2},
    {"blk.0.ffn_up.weight", GgmlType::Q4_0, {64, 3}, 2 * 18 * 3},
    {"blk.0.ffn_down.weight", GgmlType::Q8_0, {32, 1, 2}, 34 * 2},
    {"blk.0.attn_k.weight", GgmlType::Q4_K, {256, 2}, 144 * 2},
    {"output.weight", GgmlType::Q6_K, {512, 1, 1, 2}, 2 * 210 * 2},
};

void write_tensor_cases(const std::string& path, std::uint64_t alignment,
                        std::vector<std::vector<std::uint8_t>>& data) {
  GgufWriter writer(path, alignment);
  writer.set("general.architecture", GgufValue("llama"));
  std::uint64_t planned = 0;
  for (const auto& t : kTensorCases) {
    writer.add_tensor(t.name, t.type, t.shape);
    planned += (t.bytes + alignment - 1) / alignment * alignment;
  }
  EXPECT_EQ(writer.total_data_bytes(), planned);
  writer.write_header();
  std::mt19937 rng(7);
  for (std::size_t i = 0; i < kTensorCases.size(); ++i) {
    data.push_back(random_bytes(kTensorCases[i].bytes, 100 + static_cast<std::uint32_t>(i)));
    const auto& bytes = data.back();
    if (i % 2 == 0) {
      writer.write_tensor(kTensorCases[i].name, bytes);
      continue;
    }
    // Chunks of random sizes, empty ones included.
    writer.begin_tensor(kTensorCases[i].name);
    std::size_t done = 0;
    while (done < bytes.size()) {
      const std::size_t n = std::min<std::size_t>(rng() % 40, bytes.size() - done);
      writer.write_tensor_bytes(std::span(bytes).subspan(done, n));
      done += n;
    }
    writer.end_tensor();
  }
  writer.finish();
}

void check_tensor_layout(const std::string& path, std::uint64_t alignment) {
  std::vector<std::vector<std::uint8_t>> data;
  write_tensor_cases(path, alignment, data);

  const GgufFile file(path);
  EXPECT_EQ(file.alignment(), alignment);
  EXPECT_EQ(file.data_offset() % alignment, 0u);
  ASSERT_EQ(file.tensors().size(), kTensorCases.size());
  const std::string raw = testing::read_file(path);
  std::uint64_t expected_offset = 0;
  for (std::size_t i = 0; i < kTensorCases.size(); ++i) {
    const TensorCase& want = kTensorCases[i];
    const GgufTensorInfo& got = file.tensors()[i];
    SCOPED_TRACE(want.name);
    EXPECT_EQ(got.name, want.name);
    EXPECT_EQ(got.type, want.type);
    EXPECT_EQ(got.shape, want.shape);
    EXPECT_EQ(got.size_bytes, want.bytes);
    // Data in info order, each tensor at the next multiple of the alignment.
    EXPECT_EQ(got.offset, expected_offset);
    EXPECT_EQ(got.offset % alignment, 0u);
    const auto span = file.tensor_data(got);
    EXPECT_EQ(std::vector<std::uint8_t>(span.begin(), span.end()), data[i]);
    EXPECT_EQ(span.data(), file.file().data() + file.data_offset() + got.offset);  // zero-copy view
    // The padding after each tensor is zeros.
    const std::uint64_t end = file.data_offset() + got.offset + got.size_bytes;
    const std::uint64_t padded = file.data_offset() + expected_offset + (want.bytes + alignment - 1) / alignment * alignment;
    EXPECT_EQ(raw.substr(end, padded - end), std::string(padded - end, '\0'));
    expected_offset += (want.bytes + alignment - 1) / alignment * alignment;
    EXPECT_EQ(&file.tensor(want.name), &got);
  }
  EXPECT_EQ(raw.size(), file.data_offset() + expected_offset);
  EXPECT_EQ(file.tensors()[1].n_elements(), 32);
  EXPECT_EQ(file.tensors()[6].n_rows(), 2);
  EXPECT_EQ(file.tensors()[4].n_rows(), 2);
}

TEST(Gguf, TensorsRoundTripInInfoOrderAt32ByteAlignment) {
  TempDir dir;
  const std::string path = dir / "tensors.gguf";
  check_tensor_layout(path, 32);
  const GgufFile file(path);
  EXPECT_EQ(file.find("general.alignment"), nullptr);  // the default is not written
}

TEST(Gguf, NonDefaultAlignmentIsWrittenAndHonoured) {
  TempDir dir;
  for (const std::uint64_t alignment : {64u, 256u}) {
    const std::string path = dir / ("tensors" + std::to_string(alignment) + ".gguf");
    check_tensor_layout(path, alignment);
    const GgufFile file(path);
    EXPECT_EQ(file.at("general.alignment"), GgufValue(static_cast<std::uint32_t>(alignment)));
  }
}

TEST(Gguf, ExplicitAlignmentKeyDecidesTheLayout) {
  TempDir dir;
  const std::string path = dir / "explicit.gguf";
  {
    GgufWriter writer(path);
    writer.set("general.alignment", GgufValue(std::uint32_t{128}));
    writer.add_tensor("a", GgmlType::F32, {3});
    writer.add_tensor("b", GgmlType::F32, {3});
    writer.write_header();
    writer.write_tensor("a", random_bytes(12, 1));
    writer.write_tensor("b", random_bytes(12, 2));
    writer.finish();
  }
  const GgufFile file(path);
  EXPECT_EQ(file.alignment(), 128u);
  EXPECT_EQ(file.data_offset() % 128, 0u);
  EXPECT_EQ(file.tensor("b").offset, 128u);
  ASSERT_EQ(file.metadata().size(), 1u);

  // Set explicitly to the default, the key is still written.
  const std::string path32 = dir / "explicit32.gguf";
  {
    GgufWriter writer(path32);
    writer.set("general.alignment", GgufValue(std::uint32_t{32}));
    writer.finish();
  }
  EXPECT_EQ(GgufFile(path32).get_int("general.alignment"), 32);

  GgufWriter writer(dir / "bad.gguf");
  EXPECT_THROW(writer.set("general.alignment", GgufValue(std::uint64_t{32})), Error);
  EXPECT_THROW(writer.set("general.alignment", GgufValue(std::uint32_t{48})), Error);
  EXPECT_THROW(writer.set("general.alignment", GgufValue(std::uint32_t{0})), Error);
}

TEST(Gguf, ReadsVersion2) {
  TempDir dir;
  const std::string path = dir / "v2.gguf";
  GgufBytes b;
  b.header(2, 1, 1).kv_string("general.architecture", "llama").tensor_info("w", {2, 2}, id::kGgmlF16, 0).pad_to(32);
  b.fill(8, '\x3c');
  testing::write_file(path, b.bytes());
  const GgufFile file(path);
  EXPECT_EQ(file.version(), 2u);
  EXPECT_EQ(file.get_string("general.architecture"), "llama");
  EXPECT_EQ(file.tensor("w").size_bytes, 8u);
  EXPECT_EQ(file.tensor_data(file.tensor("w"))[7], 0x3c);
}

TEST(Gguf, GettersCheckTypesAndNameFileAndKey) {
  TempDir dir;
  const std::string path = dir / "get.gguf";
  {
    GgufWriter writer(path);
    writer.set("s", GgufValue("text"));
    writer.set("u", GgufValue(std::uint32_t{42}));
    writer.set("f", GgufValue(0.5f));
    writer.set("b", GgufValue(true));
    writer.set("big", GgufValue(std::numeric_limits<std::uint64_t>::max()));
    writer.finish();
  }
  const GgufFile file(path);
  EXPECT_EQ(file.get_string("s"), "text");
  EXPECT_EQ(file.get_int("u"), 42);
  EXPECT_DOUBLE_EQ(file.get_float("f"), 0.5);
  EXPECT_DOUBLE_EQ(file.get_float("u"), 42.0);
  EXPECT_TRUE(file.get_bool("b"));
  EXPECT_EQ(file.get_string("missing", "dflt"), "dflt");
  EXPECT_EQ(file.get_int("missing", -1), -1);
  EXPECT_DOUBLE_EQ(file.get_float("missing", 2.5), 2.5);
  EXPECT_FALSE(file.get_bool("missing", false));
  EXPECT_EQ(file.get_int("u", 0), 42);

  const auto expect_format_error = [&](auto f, const std::string& field, const std::string& problem) {
    try {
      f();
      ADD_FAILURE() << "no error for " << field;
    } catch (const FormatError& e) {
      EXPECT_EQ(e.path(), path);
      EXPECT_TRUE(contains(e.field(), field));
      EXPECT_TRUE(contains(e.what(), problem));
    }
  };
  expect_format_error([&] { file.get_string("u"); }, "key 'u'", "expected STRING, found UINT32");
  expect_format_error([&] { file.get_string("u", "x"); }, "key 'u'", "STRING");
  expect_format_error([&] { file.get_int("s"); }, "key 's'", "found STRING");
  expect_format_error([&] { file.get_int("big"); }, "key 'big'", "18446744073709551615");
  expect_format_error([&] { file.get_bool("u", true); }, "key 'u'", "BOOL");
  expect_format_error([&] { file.get_float("b"); }, "key 'b'", "BOOL");
  expect_format_error([&] { file.at("nope"); }, "key 'nope'", "missing");
  expect_format_error([&] { file.get_int("nope"); }, "key 'nope'", "missing");
  expect_format_error([&] { file.tensor("t"); }, "tensor 't'", "no such tensor");
  EXPECT_EQ(file.find_tensor("t"), nullptr);
}

TEST(Gguf, WriterDestroyedBeforeFinishLeavesNoFile) {
  TempDir dir;
  const auto path = dir / "abandoned.gguf";
  const std::filesystem::path partial = path.string() + ".partial";
  {
    GgufWriter writer(path);
    writer.set("general.architecture", GgufValue("llama"));
    writer.add_tensor("a", GgmlType::F32, {4});
    writer.add_tensor("b", GgmlType::F32, {4});
    writer.write_header();
    writer.write_tensor("a", random_bytes(16, 1));
    EXPECT_FALSE(std::filesystem::exists(path));  // never under the final name before finish()
    EXPECT_TRUE(std::filesystem::exists(partial));
    EXPECT_THROW(writer.finish(), Error);  // "b" is missing
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(partial));
  {
    GgufWriter writer(path);
    writer.set("general.architecture", GgufValue("llama"));
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(partial));
}

TEST(Gguf, WriterRejectsMisuseNamingTheFile) {
  TempDir dir;
  const std::string path = dir / "misuse.gguf";
  const auto expect_error = [&](auto f, const std::string& words) {
    const std::string msg = error_of(f);
    EXPECT_TRUE(contains(msg, path));
    EXPECT_TRUE(contains(msg, words));
  };
  expect_error([&] { GgufWriter w(path, 0); }, "alignment 0");
  expect_error([&] { GgufWriter w(path, 48); }, "alignment 48");

  GgufWriter writer(path);
  writer.add_tensor("a", GgmlType::F32, {4});
  writer.add_tensor("b", GgmlType::Q4_0, {32, 2});
  writer.add_tensor("c", GgmlType::F16, {2});
  expect_error([&] { writer.add_tensor("a", GgmlType::F32, {1}); }, "added twice");
  expect_error([&] { writer.add_tensor("q", GgmlType::Q4_0, {33}); }, "row length 33");
  expect_error([&] { writer.add_tensor("z", GgmlType::F32, {4, 0}); }, "dimension 0");
  expect_error([&] { writer.add_tensor("z", GgmlType::F32, {}); }, "0 dimensions");
  expect_error([&] { writer.add_tensor("z", GgmlType::F32, {1, 1, 1, 1, 1}); }, "5 dimensions");
  expect_error([&] { writer.add_tensor("z", GgmlType::F32, {1LL << 40, 1LL << 40}); }, "overflows");
  expect_error([&] { writer.add_tensor("z", static_cast<GgmlType>(4), {32}); }, "unknown ggml type id 4");
  expect_error([&] { writer.add_tensor(std::string(64, 'n'), GgmlType::F32, {1}); }, "longer than");
  expect_error([&] { writer.write_tensor("a", random_bytes(16, 1)); }, "before write_header");
  EXPECT_EQ(writer.total_data_bytes(), 32u + 64u + 32u);

  writer.write_header();
  expect_error([&] { writer.write_header(); }, "written twice");
  expect_error([&] { writer.set("k", GgufValue("v")); }, "after the header");
  expect_error([&] { writer.remove("k"); }, "after the header");
  expect_error([&] { writer.add_tensor("d", GgmlType::F32, {1}); }, "after the header");
  expect_error([&] { writer.write_tensor("b", random_bytes(36, 1)); }, "out of order");
  expect_error([&] { writer.write_tensor("nope", random_bytes(16, 1)); }, "never added");
  expect_error([&] { writer.write_tensor("a", random_bytes(15, 1)); }, "is 16 bytes, got 15");
  expect_error([&] { writer.write_tensor_bytes(random_bytes(1, 1)); }, "without begin_tensor");
  expect_error([&] { writer.end_tensor(); }, "without begin_tensor");
  writer.write_tensor("a", random_bytes(16, 1));
  expect_error([&] { writer.write_tensor("a", random_bytes(16, 1)); }, "written twice");

  writer.begin_tensor("b");
  expect_error([&] { writer.begin_tensor("c"); }, "still open");
  writer.write_tensor_bytes(random_bytes(20, 2));
  expect_error([&] { writer.write_tensor_bytes(random_bytes(17, 3)); }, "more than its size of 36");
  expect_error([&] { writer.end_tensor(); }, "20 of its 36 bytes");
  expect_error([&] { writer.finish(); }, "still open");
  writer.write_tensor_bytes(random_bytes(16, 4));
  writer.end_tensor();
  expect_error([&] { writer.finish(); }, "'c'");
  writer.write_tensor("c", random_bytes(4, 5));
  writer.finish();
  expect_error([&] { writer.finish(); }, "twice");
  expect_error([&] { writer.write_tensor("c", random_bytes(4, 5)); }, "after finish");
  EXPECT_EQ(GgufFile(path).tensors().size(), 3u);
}

}  // namespace
}  // namespace piquant
