#include "formats/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <random>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "support/test_support.h"

namespace piquant {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using piquant::testing::TempDir;

constexpr SafeDtype kAllDtypes[] = {SafeDtype::F32, SafeDtype::F16, SafeDtype::BF16, SafeDtype::F64, SafeDtype::I64,
                                    SafeDtype::I32, SafeDtype::I16, SafeDtype::I8,  SafeDtype::U8,  SafeDtype::BOOL};

std::vector<std::uint8_t> random_bytes(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::uint8_t> bytes(n);
  for (auto& b : bytes) b = static_cast<std::uint8_t>(rng());
  return bytes;
}

// A safetensors file assembled by hand as the format's spec describes it: u64
// little-endian header length, the JSON header, then the raw data.
std::string assemble(const std::string& header, const std::string& data) {
  std::string file(8, '\0');
  const std::uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) file[static_cast<std::size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  return file + header + data;
}

std::vector<fs::path> listing(const fs::path& dir) {
  std::vector<fs::path> files;
  if (!fs::exists(dir)) return files;
  for (const auto& entry : fs::directory_iterator(dir)) files.push_back(entry.path().filename());
  std::sort(files.begin(), files.end());
  return files;
}

struct TestTensor {
  std::string name;
  SafeDtype dtype;
  std::vector<std::int64_t> shape;
  std::vector<std::uint8_t> bytes;
};

std::vector<TestTensor> make_tensors(std::size_t count, std::uint32_t seed) {
  std::vector<TestTensor> tensors;
  for (std::size_t i = 0; i < count; ++i) {
    TestTensor t;
    t.name = "layers." + std::to_string(i) + ".weight";
    t.dtype = kAllDtypes[i % std::size(kAllDtypes)];
    t.shape = {static_cast<std::int64_t>(3 + i % 5), static_cast<std::int64_t>(7 + i % 3)};
    t.bytes = random_bytes(static_cast<std::size_t>(t.shape[0] * t.shape[1]) * safe_dtype_bytes(t.dtype),
                           seed + static_cast<std::uint32_t>(i));
    tensors.push_back(std::move(t));
  }
  return tensors;
}

void expect_same(const SafeTensor& read, const TestTensor& written) {
  EXPECT_EQ(read.name, written.name);
  EXPECT_EQ(read.dtype, written.dtype) << read.name;
  EXPECT_EQ(read.shape, written.shape) << read.name;
  ASSERT_EQ(read.data.size(), written.bytes.size()) << read.name;
  EXPECT_TRUE(std::equal(read.data.begin(), read.data.end(), written.bytes.begin())) << read.name;
}

TEST(Safetensors, DtypeNamesAndSizes) {
  EXPECT_STREQ(safe_dtype_name(SafeDtype::BF16), "BF16");
  EXPECT_EQ(safe_dtype_from_name("F16"), SafeDtype::F16);
  EXPECT_EQ(safe_dtype_from_name("bf16"), std::nullopt);  // names are case-sensitive in the spec
  EXPECT_EQ(safe_dtype_bytes(SafeDtype::F64), 8u);
  EXPECT_EQ(safe_dtype_bytes(SafeDtype::BOOL), 1u);
  for (const auto dtype : kAllDtypes) EXPECT_EQ(safe_dtype_from_name(safe_dtype_name(dtype)), dtype);
}

// Independent of our writer: a file built from the spec by hand.
TEST(Safetensors, ReadsHandAssembledFile) {
  TempDir dir;
  const float values[4] = {1.0f, -2.5f, 3.25f, 0.0f};
  std::string data(reinterpret_cast<const char*>(values), sizeof values);
  data += std::string("\x80\x3f\x00\x40\x40\x40", 6);  // BF16 1.0, 2.0, 3.0
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"b":{"dtype":"BF16","shape":[3],"data_offsets":[16,22]},)"
      R"("a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})";
  testing::write_file(dir / "x.safetensors", assemble(header, data));

  const SafetensorsFile file((dir / "x.safetensors").string());
  ASSERT_EQ(file.tensors().size(), 2u);
  EXPECT_EQ(file.tensors()[0].name, "a");  // file order, not JSON order
  EXPECT_EQ(file.metadata().at("format"), "pt");
  const SafeTensor* a = file.find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->shape, (std::vector<std::int64_t>{2, 2}));
  EXPECT_EQ(a->n_elements(), 4);
  EXPECT_EQ(a->file_offset, 8 + header.size());
  float read[4];
  std::memcpy(read, a->data.data(), sizeof read);
  EXPECT_EQ(read[1], -2.5f);
  EXPECT_EQ(read[2], 3.25f);
  const SafeTensor* b = file.find("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->dtype, SafeDtype::BF16);
  EXPECT_EQ(b->data[4], 0x40);
  EXPECT_EQ(file.find("c"), nullptr);

  const SafetensorsFiles checkpoint((dir / "x.safetensors").string());
  EXPECT_EQ(checkpoint.names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(checkpoint.total_bytes(), 22u);
  EXPECT_EQ(&checkpoint.file_of(checkpoint.tensor("b")).path(), &checkpoint.file_of(checkpoint.tensor("a")).path());
}

TEST(Safetensors, ScalarAndEmptyTensors) {
  TempDir dir;
  const std::string header =
      R"({"s":{"dtype":"I64","shape":[],"data_offsets":[0,8]},"e":{"dtype":"F32","shape":[4,0],"data_offsets":[8,8]}})";
  testing::write_file(dir / "x.safetensors", assemble(header, std::string("\x2a\0\0\0\0\0\0\0", 8)));
  const SafetensorsFile file((dir / "x.safetensors").string());
  EXPECT_EQ(file.find("s")->n_elements(), 1);
  EXPECT_EQ(file.find("s")->data[0], 42);
  EXPECT_EQ(file.find("e")->n_elements(), 0);
  EXPECT_TRUE(file.find("e")->data.empty());
}

TEST(Safetensors, SingleFileRoundTripEveryDtype) {
  TempDir dir;
  const auto tensors = make_tensors(std::size(kAllDtypes), 1);
  {
    SafetensorsWriter writer(dir.path().string());
    writer.set_metadata("format", "pt");
    for (const auto& t : tensors) writer.add(t.name, t.dtype, t.shape);
    for (const auto& t : tensors) writer.write(t.bytes);
    writer.finish();
    EXPECT_EQ(writer.files(), std::vector<std::string>{(dir / "model.safetensors").string()});
  }
  EXPECT_EQ(listing(dir.path()), std::vector<fs::path>{"model.safetensors"});

  // The header as the spec lays it out, parsed here without our reader.
  const std::string raw = testing::read_file(dir / "model.safetensors");
  std::uint64_t header_length = 0;
  std::memcpy(&header_length, raw.data(), 8);
  EXPECT_EQ(header_length % 8, 0u) << "header must be space-padded to a multiple of 8";
  const json header = json::parse(raw.substr(8, header_length));
  EXPECT_EQ(header["__metadata__"]["format"], "pt");
  std::uint64_t data_bytes = 0;
  for (const auto& t : tensors) {
    const auto& entry = header.at(t.name);
    EXPECT_EQ(entry["dtype"], safe_dtype_name(t.dtype));
    const auto begin = entry["data_offsets"][0].get<std::uint64_t>();
    EXPECT_EQ(raw.compare(8 + header_length + begin, t.bytes.size(),
                          std::string(t.bytes.begin(), t.bytes.end())), 0) << t.name;
    data_bytes += t.bytes.size();
  }
  EXPECT_EQ(raw.size(), 8 + header_length + data_bytes);

  const SafetensorsFiles checkpoint(dir.path().string());
  ASSERT_EQ(checkpoint.names().size(), tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    EXPECT_EQ(checkpoint.names()[i], tensors[i].name);
    expect_same(checkpoint.tensor(tensors[i].name), tensors[i]);
  }
  EXPECT_EQ(checkpoint.total_bytes(), data_bytes);
}

TEST(Safetensors, ShardedRoundTripWithChunkedWrites) {
  TempDir dir;
  const auto tensors = make_tensors(23, 100);
  std::vector<std::uint8_t> stream;
  std::uint64_t total = 0;
  for (const auto& t : tensors) {
    stream.insert(stream.end(), t.bytes.begin(), t.bytes.end());
    total += t.bytes.size();
  }
  constexpr std::uint64_t kMaxShard = 600;
  std::vector<std::string> files;
  {
    SafetensorsWriter writer((dir / "out").string(), kMaxShard, "model");
    for (const auto& t : tensors) writer.add(t.name, t.dtype, t.shape);
    // Odd chunk sizes so that chunks straddle tensor and shard boundaries.
    std::size_t pos = 0;
    std::size_t chunk = 1;
    while (pos < stream.size()) {
      const std::size_t n = std::min(chunk, stream.size() - pos);
      writer.write(std::span<const std::uint8_t>(stream.data() + pos, n));
      pos += n;
      chunk = chunk * 3 % 97 + 1;
    }
    writer.finish();
    files = writer.files();
  }
  ASSERT_GE(files.size(), 4u) << "expected 3+ shards and an index";
  const std::size_t shards = files.size() - 1;
  char first[64];
  std::snprintf(first, sizeof first, "model-00001-of-%05zu.safetensors", shards);
  EXPECT_EQ(fs::path(files.front()).filename(), first);
  EXPECT_EQ(fs::path(files.back()).filename(), "model.safetensors.index.json");
  EXPECT_EQ(listing(dir / "out").size(), files.size()) << "no temporary files left";

  const json index = json::parse(testing::read_file(files.back()));
  EXPECT_EQ(index["metadata"]["total_size"].get<std::uint64_t>(), total);
  EXPECT_EQ(index["weight_map"].size(), tensors.size());
  for (std::size_t s = 0; s < shards; ++s) {
    const SafetensorsFile shard(files[s]);
    std::uint64_t bytes = 0;
    for (const auto& t : shard.tensors()) {
      bytes += t.data.size();
      EXPECT_EQ(index["weight_map"][t.name], fs::path(files[s]).filename().string());
    }
    EXPECT_LE(bytes, kMaxShard);
    EXPECT_GT(bytes, 0u);
  }

  const SafetensorsFiles checkpoint((dir / "out").string());
  ASSERT_EQ(checkpoint.names().size(), tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    EXPECT_EQ(checkpoint.names()[i], tensors[i].name);
    const SafeTensor& t = checkpoint.tensor(tensors[i].name);
    expect_same(t, tensors[i]);
    EXPECT_EQ(checkpoint.file_of(t).path(), t.file);
  }
  EXPECT_EQ(checkpoint.total_bytes(), total);
  // The index file itself names the same checkpoint.
  EXPECT_EQ(SafetensorsFiles(files.back()).names(), checkpoint.names());
  try {
    checkpoint.tensor("lm_head.weight");
    ADD_FAILURE() << "no error";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("lm_head.weight"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find((dir / "out").string()), std::string::npos);
  }
}

TEST(Safetensors, TensorLargerThanShardLimitGetsItsOwnShard) {
  TempDir dir;
  const auto big = random_bytes(400, 7);
  const auto small = random_bytes(8, 8);
  SafetensorsWriter writer(dir.path().string(), 100);
  writer.add("small0", SafeDtype::U8, {8});
  writer.add("big", SafeDtype::F32, {100});
  writer.add("small1", SafeDtype::U8, {8});
  writer.write(small);
  writer.write(big);
  writer.write(small);
  writer.finish();
  EXPECT_EQ(writer.files().size(), 4u);
  const SafetensorsFiles checkpoint(dir.path().string());
  EXPECT_EQ(checkpoint.names(), (std::vector<std::string>{"small0", "big", "small1"}));
}

TEST(Safetensors, UnfinishedWriterLeavesNoFiles) {
  TempDir dir;
  const auto tensors = make_tensors(12, 5);
  for (const std::uint64_t max_shard : {std::uint64_t{1} << 30, std::uint64_t{300}}) {
    const fs::path out = dir / ("out" + std::to_string(max_shard));
    {
      SafetensorsWriter writer(out.string(), max_shard);
      for (const auto& t : tensors) writer.add(t.name, t.dtype, t.shape);
      for (std::size_t i = 0; i + 1 < tensors.size(); ++i) writer.write(tensors[i].bytes);
      EXPECT_FALSE(listing(out).empty()) << "temporary files exist while writing";
    }
    EXPECT_TRUE(listing(out).empty()) << "files left behind in " << out;
    EXPECT_THROW(SafetensorsFiles{out.string()}, Error);
  }
}

TEST(Safetensors, WriterMisuseIsAnError) {
  TempDir dir;
  {
    SafetensorsWriter writer(dir.path().string());
    writer.add("a", SafeDtype::F32, {2});
    EXPECT_THROW(writer.add("a", SafeDtype::F32, {2}), Error);
    EXPECT_THROW(writer.add("b", SafeDtype::F32, {-2}), Error);
    writer.write(random_bytes(4, 1));
    EXPECT_THROW(writer.add("c", SafeDtype::F32, {2}), Error);
    EXPECT_THROW(writer.finish(), Error);  // 4 of 8 bytes
    EXPECT_THROW(writer.write(random_bytes(5, 1)), Error);  // one byte too many
  }
  EXPECT_TRUE(listing(dir.path()).empty());
}

// Every corrupt file must give a FormatError naming the file and the field.
TEST(Safetensors, CorruptFilesAreRejected) {
  TempDir dir;
  const std::string f32_2x2 = R"("dtype":"F32","shape":[2,2])";
  const std::string data16(16, '\x01');
  struct Case {
    const char* what;
    std::string bytes;
    std::vector<std::string> words;  // expected in the message besides the path
  };
  const std::vector<Case> cases = {
      {"truncated header length", std::string("\x10\0\0", 3), {"header length"}},
      {"header length past EOF", std::string("\xe8\x03\0\0\0\0\0\0", 8) + "{}", {"header length", "past"}},
      {"huge header length", std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8) + "{}", {"header length"}},
      {"bad JSON", assemble(R"({"a":{"dtype":)", ""), {"header JSON"}},
      {"JSON not an object", assemble("[1,2]", ""), {"header JSON"}},
      {"duplicate tensor", assemble(R"({"a":{)" + f32_2x2 + R"(,"data_offsets":[0,16]},"a":{)" + f32_2x2 +
                                        R"(,"data_offsets":[0,16]}})", data16), {"header JSON", "'a'"}},
      {"unknown dtype", assemble(R"({"w":{"dtype":"Q7","shape":[2],"data_offsets":[0,2]}})", "ab"), {"'w'", "dtype", "Q7"}},
      {"dtype not a string", assemble(R"({"w":{"dtype":4,"shape":[2],"data_offsets":[0,2]}})", "ab"), {"'w'", "dtype"}},
      {"offsets mismatch shape", assemble(R"({"w":{)" + f32_2x2 + R"(,"data_offsets":[0,12]}})", data16),
       {"'w'", "data_offsets", "16"}},
      {"offsets past end", assemble(R"({"w":{)" + f32_2x2 + R"(,"data_offsets":[8,24]}})", data16),
       {"'w'", "data_offsets", "past"}},
      {"offsets reversed", assemble(R"({"w":{)" + f32_2x2 + R"(,"data_offsets":[16,0]}})", data16),
       {"'w'", "data_offsets"}},
      {"offsets not a pair", assemble(R"({"w":{)" + f32_2x2 + R"(,"data_offsets":[0]}})", data16),
       {"'w'", "data_offsets"}},
      {"offsets missing", assemble(R"({"w":{)" + f32_2x2 + R"(}})", data16), {"'w'", "data_offsets"}},
      {"overlapping tensors",
       assemble(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                data16),
       {"'b'", "data_offsets", "overlaps", "'a'"}},
      {"negative shape", assemble(R"({"w":{"dtype":"U8","shape":[-2],"data_offsets":[0,0]}})", ""), {"'w'", "shape", "negative"}},
      {"fractional shape", assemble(R"({"w":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}})", "a"), {"'w'", "shape"}},
      {"shape not an array", assemble(R"({"w":{"dtype":"U8","shape":2,"data_offsets":[0,2]}})", "ab"), {"'w'", "shape"}},
      {"shape overflows", assemble(R"({"w":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", data16),
       {"'w'", "shape"}},
      {"entry not an object", assemble(R"({"w":[1]})", ""), {"'w'"}},
      {"metadata not strings", assemble(R"({"__metadata__":{"format":1}})", ""), {"__metadata__", "format"}},
  };
  for (const auto& c : cases) {
    const fs::path path = dir / "bad.safetensors";
    testing::write_file(path, c.bytes);
    try {
      SafetensorsFile file(path.string());
      ADD_FAILURE() << c.what << ": no error";
    } catch (const FormatError& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find(path.string()), std::string::npos) << c.what << ": " << message;
      for (const auto& word : c.words) EXPECT_NE(message.find(word), std::string::npos) << c.what << ": " << message;
    } catch (const std::exception& e) {
      ADD_FAILURE() << c.what << ": not a FormatError: " << e.what();
    }
  }
}

// A valid two-shard checkpoint, then one fault at a time in the index or shards.
TEST(Safetensors, InconsistentIndexIsRejected) {
  TempDir dir;
  const auto shard = [](const std::string& name) {
    return assemble(R"({")" + name + R"(":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", "abcd");
  };
  const auto index = [](const std::string& weight_map) {
    return R"({"metadata":{"total_size":8},"weight_map":)" + weight_map + "}";
  };
  struct Case {
    const char* what;
    std::string index;
    std::string shard2;
    std::vector<std::string> words;
  };
  const std::vector<Case> cases = {
      {"valid", index(R"({"a":"s1.safetensors","b":"s2.safetensors"})"), shard("b"), {}},
      {"missing shard file", index(R"({"a":"s1.safetensors","b":"s3.safetensors"})"), shard("b"),
       {"'b'", "s3.safetensors"}},
      {"tensor missing from shard", index(R"({"a":"s1.safetensors","b":"s2.safetensors","c":"s2.safetensors"})"),
       shard("b"), {"'c'", "s2.safetensors"}},
      {"shard tensor not in index", index(R"({"a":"s1.safetensors","c":"s2.safetensors"})"), shard("b"),
       {"'b'", "not listed"}},
      {"tensor listed under the wrong shard", index(R"({"a":"s2.safetensors","b":"s2.safetensors"})"), shard("b"),
       {"'a'"}},
      {"shard outside the folder", index(R"({"a":"s1.safetensors","b":"../s2.safetensors"})"), shard("b"), {"'b'"}},
      {"weight_map missing", R"({"metadata":{}})", shard("b"), {"weight_map"}},
      {"shard name not a string", index(R"({"a":"s1.safetensors","b":2})"), shard("b"), {"'b'"}},
      {"index not JSON", "{", shard("b"), {"JSON"}},
  };
  for (const auto& c : cases) {
    const fs::path folder = dir / "ckpt";
    fs::remove_all(folder);
    fs::create_directories(folder);
    testing::write_file(folder / "s1.safetensors", shard("a"));
    testing::write_file(folder / "s2.safetensors", c.shard2);
    const fs::path index_path = folder / "model.safetensors.index.json";
    testing::write_file(index_path, c.index);
    if (c.words.empty()) {
      const SafetensorsFiles checkpoint(folder.string());
      EXPECT_EQ(checkpoint.names(), (std::vector<std::string>{"a", "b"})) << c.what;
      continue;
    }
    try {
      SafetensorsFiles checkpoint(folder.string());
      ADD_FAILURE() << c.what << ": no error";
    } catch (const FormatError& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find(index_path.string()), std::string::npos) << c.what << ": " << message;
      for (const auto& word : c.words) EXPECT_NE(message.find(word), std::string::npos) << c.what << ": " << message;
    } catch (const std::exception& e) {
      ADD_FAILURE() << c.what << ": not a FormatError: " << e.what();
    }
  }
}

TEST(Safetensors, CheckpointFolderWithoutModelFilesIsAnError) {
  TempDir dir;
  try {
    SafetensorsFiles checkpoint(dir.path().string());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir.path().string()), std::string::npos) << e.what();
  }
  EXPECT_THROW(SafetensorsFiles{(dir / "nope.safetensors").string()}, Error);
}

}  // namespace
}  // namespace piquant
