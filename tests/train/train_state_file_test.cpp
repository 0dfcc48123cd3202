#include "train/train_state_file.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "formats/safetensors.h"
#include "support/test_support.h"

namespace piquant {
namespace {

using nlohmann::json;
using testing::TempDir;

TrainState sample_state() {
  TrainState state;
  state.set_int("step", 1200);
  state.set_int("optimizer_step", -3);
  state.set_u64("rng_state", std::numeric_limits<std::uint64_t>::max());
  state.set_double("loss", 0.1 + 0.2);
  state.set("settings", R"({"lr": 0.0001, "rank": 8, "targets": ["q", "v"]})");
  NamedTensor& a = state.add("lora.layers.0.q.a", {2, 3});
  for (std::size_t i = 0; i < a.data.size(); ++i) a.data[i] = 0.25f * static_cast<float>(i) - 1.0f;
  NamedTensor& m = state.add("adam.m.layers.0.q.a", {2, 3});
  m.data[4] = -std::numeric_limits<float>::denorm_min();
  state.add("scalar", {}).data[0] = 3.5f;
  state.add("empty", {0, 4});
  return state;
}

// The checksum as the header's format comment defines it, computed here from the raw bytes.
std::uint64_t fnv(std::uint64_t h, std::string_view bytes) {
  for (const unsigned char b : bytes) h = (h ^ b) * 0x100000001b3ull;
  return h;
}

struct RawFile {
  json header;
  std::string data;  // the data section
};

RawFile split_file(const std::string& bytes) {
  std::uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  return {json::parse(bytes.substr(8, n)), bytes.substr(8 + n)};
}

std::string join_file(const json& header, const std::string& data) {
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  const std::uint64_t n = text.size();
  return std::string(reinterpret_cast<const char*>(&n), 8) + text + data;
}

std::string checksum_of(const json& header, const std::string& data) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (const auto& [key, value] : header["__metadata__"].items()) {  // nlohmann objects iterate in key order
    if (key == "piquant.checksum") continue;
    h = fnv(h, key);
    h = fnv(h, std::string_view("\0", 1));
    h = fnv(h, value.get<std::string>());
    h = fnv(h, std::string_view("\0", 1));
  }
  h = fnv(h, data);
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(h));
  return text;
}

TEST(TrainStateFile, RoundTripIsBitExactAndTheFileIsPlainSafetensors) {
  const TempDir dir;
  const TrainState state = sample_state();
  const std::string path = (dir / "ckpt" / "step-1200.safetensors").string();
  write_train_state(state, path);
  EXPECT_FALSE(std::filesystem::exists(path + ".partial"));

  const TrainState back = read_train_state(path);
  EXPECT_EQ(back.source, path);
  EXPECT_EQ(back.meta, state.meta);
  ASSERT_EQ(back.tensors.size(), state.tensors.size());
  for (std::size_t i = 0; i < state.tensors.size(); ++i) {
    EXPECT_EQ(back.tensors[i].name, state.tensors[i].name);
    EXPECT_EQ(back.tensors[i].shape, state.tensors[i].shape);
    ASSERT_EQ(back.tensors[i].data.size(), state.tensors[i].data.size());
    if (state.tensors[i].data.empty()) continue;  // memcmp must not see an empty vector's null data()
    EXPECT_EQ(std::memcmp(back.tensors[i].data.data(), state.tensors[i].data.data(), state.tensors[i].data.size() * 4), 0);
  }
  EXPECT_EQ(back.get_int("step"), 1200);
  EXPECT_EQ(back.get_int("optimizer_step"), -3);
  EXPECT_EQ(back.get_u64("rng_state"), std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(back.get_double("loss"), 0.1 + 0.2);  // shortest round-trip text
  EXPECT_EQ(back.tensor("lora.layers.0.q.a", {2, 3}).data[5], 0.25f);
  EXPECT_EQ(back.tensor("scalar", {}).data[0], 3.5f);

  // Any safetensors reader sees the tensors; the format keys and checksum are as documented.
  const SafetensorsFile plain(path);
  EXPECT_EQ(plain.metadata().at("piquant.format"), "train_state");
  EXPECT_EQ(plain.metadata().at("piquant.version"), "1");
  const RawFile raw = split_file(testing::read_file(path));
  EXPECT_EQ(raw.header["__metadata__"]["piquant.checksum"], checksum_of(raw.header, raw.data));
  EXPECT_EQ(raw.data.size(), (6 + 6 + 1) * 4u);
  float first = 0;
  std::memcpy(&first, raw.data.data(), 4);
  EXPECT_EQ(first, -1.0f);  // packed in the order added
}

TEST(TrainStateFile, WriterRefusesBadStatesAndKeepsTheOldFile) {
  const TempDir dir;
  const std::string path = (dir / "state.safetensors").string();
  write_train_state(sample_state(), path);
  const std::string before = testing::read_file(path);

  TrainState bad = sample_state();
  bad.tensors[0].data.pop_back();  // 5 values for a 2 × 3 shape
  EXPECT_THROW(write_train_state(bad, path), Error);
  TrainState reserved = sample_state();
  reserved.meta["piquant.format"] = "x";
  EXPECT_THROW(write_train_state(reserved, path), Error);
  TrainState twice = sample_state();
  twice.tensors.push_back(twice.tensors[0]);
  EXPECT_THROW(write_train_state(twice, path), Error);
  EXPECT_EQ(testing::read_file(path), before);
  EXPECT_FALSE(std::filesystem::exists(path + ".partial"));

  EXPECT_THROW(write_train_state(sample_state(), (dir / "state.bin").string()), Error);
  EXPECT_THROW(write_train_state(sample_state(), (dir / ".safetensors").string()), Error);
  TrainState s;
  EXPECT_THROW(s.set("piquant.version", "2"), Error);
  EXPECT_THROW(s.set("", "x"), Error);
  s.add("t", {1});
  EXPECT_THROW(s.add("t", {2}), Error);
  EXPECT_THROW(s.add("u", {-1}), Error);
}

// Getter errors name the file and the key.
TEST(TrainStateFile, MetadataAndTensorAccessorsValidate) {
  const TempDir dir;
  const std::string path = (dir / "s.safetensors").string();
  TrainState state = sample_state();
  state.set("word", "12a");
  state.set("blank", "");
  state.set("spaced", " 5");
  state.set("plus", "+5");
  state.set("huge", "99999999999999999999");
  write_train_state(state, path);
  const TrainState back = read_train_state(path);
  const auto expect_error = [&](const std::function<void()>& f, const std::string& part) {
    try {
      f();
      ADD_FAILURE() << "no error for " << part;
    } catch (const FormatError& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find(path), std::string::npos) << message;
      EXPECT_NE(message.find(part), std::string::npos) << "'" << part << "' not in: " << message;
    }
  };
  expect_error([&] { back.get("absent"); }, "metadata 'absent': missing");
  expect_error([&] { back.get_int("word"); }, "'12a' is not an integer");
  expect_error([&] { back.get_int("blank"); }, "metadata 'blank'");
  expect_error([&] { back.get_int("spaced"); }, "metadata 'spaced'");
  expect_error([&] { back.get_int("plus"); }, "metadata 'plus'");
  expect_error([&] { back.get_int("huge"); }, "out of range");
  expect_error([&] { back.get_u64("optimizer_step"); }, "'-3' is not a non-negative integer");
  expect_error([&] { back.get_int("loss"); }, "metadata 'loss'");
  expect_error([&] { back.get_double("word"); }, "not a number");
  expect_error([&] { back.tensor("lora.layers.9.q.a", {2, 3}); }, "tensor 'lora.layers.9.q.a': missing");
  expect_error([&] { back.tensor("lora.layers.0.q.a", {3, 2}); }, "shape [2, 3], expected [3, 2]");
  expect_error([&] { back.get_u64("huge"); }, "out of range");
}

TEST(TrainStateFile, SettingsCheckNamesEachDifference) {
  TrainState state;
  state.source = "run/state.safetensors";
  state.set("settings", R"({"lr": 0.0001, "rank": 8, "seed": 1})");
  EXPECT_NO_THROW(state.check_settings("settings", R"({"seed": 1, "rank": 8, "lr": 1e-4})"));  // JSON equality, not text
  try {
    state.check_settings("settings", R"({"lr": 0.0002, "rank": 8, "alpha": 16})");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("run/state.safetensors"), std::string::npos) << message;
    EXPECT_NE(message.find("lr: 0.0001 in the checkpoint, 0.0002 now"), std::string::npos) << message;
    EXPECT_NE(message.find("seed: 1 in the checkpoint, absent now"), std::string::npos) << message;
    EXPECT_NE(message.find("alpha: absent in the checkpoint, 16 now"), std::string::npos) << message;
    EXPECT_EQ(message.find("rank"), std::string::npos) << message;
  }
  EXPECT_THROW(state.check_settings("settings", "{not json"), Error);
  EXPECT_THROW(state.check_settings("absent", "{}"), FormatError);
}

struct CorruptCase {
  const char* name;
  std::function<std::string(const std::string&)> corrupt;  // the good file's bytes -> the bad file's
  std::vector<std::string> expected;                       // substrings of the message
};

// Rewrites the header and recomputes the checksum, so only the intended defect remains.
std::string with_header(const std::string& bytes, const std::function<void(json&)>& edit, bool fix_checksum = true) {
  RawFile raw = split_file(bytes);
  edit(raw.header);
  if (fix_checksum && raw.header.contains("__metadata__") && raw.header["__metadata__"].contains("piquant.checksum")) {
    raw.header["__metadata__"]["piquant.checksum"] = checksum_of(raw.header, raw.data);
  }
  return join_file(raw.header, raw.data);
}

TEST(TrainStateFile, CorruptFilesAreRefusedNamingTheProblem) {
  const TempDir dir;
  const std::string good_path = (dir / "good.safetensors").string();
  write_train_state(sample_state(), good_path);
  const std::string good = testing::read_file(good_path);
  const std::size_t data_start = good.size() - (6 + 6 + 1) * 4;

  const std::vector<CorruptCase> cases = {
      {"empty file", [](const std::string&) { return std::string(); }, {"too short"}},
      {"truncated in the header", [](const std::string& b) { return b.substr(0, 40); }, {"truncated"}},
      {"truncated in the data", [&](const std::string& b) { return b.substr(0, data_start + 10); }, {"truncated", std::to_string(good.size())}},
      {"one byte short", [](const std::string& b) { return b.substr(0, b.size() - 1); }, {"truncated"}},
      {"a data byte flipped", [&](const std::string& b) { std::string c = b; c[data_start + 5] ^= 0x10; return c; }, {"checksum", "corrupt"}},
      {"a byte appended", [](const std::string& b) { return b + '\0'; }, {"checksum"}},
      {"metadata value changed", [](const std::string& b) { return with_header(b, [](json& h) { h["__metadata__"]["step"] = "1201"; }, false); },
       {"checksum"}},
      {"format key missing", [](const std::string& b) { return with_header(b, [](json& h) { h["__metadata__"].erase("piquant.format"); }); },
       {"metadata 'piquant.format'", "missing"}},
      {"checksum key missing", [](const std::string& b) { return with_header(b, [](json& h) { h["__metadata__"].erase("piquant.checksum"); }); },
       {"metadata 'piquant.checksum'", "missing"}},
      {"no metadata at all", [](const std::string& b) { return with_header(b, [](json& h) { h.erase("__metadata__"); }); },
       {"missing: not a piquant train state"}},
      {"another format", [](const std::string& b) { return with_header(b, [](json& h) { h["__metadata__"]["piquant.format"] = "adapter"; }); },
       {"'adapter' is not \"train_state\""}},
      {"another version", [](const std::string& b) { return with_header(b, [](json& h) { h["__metadata__"]["piquant.version"] = "2"; }); },
       {"version '2' is not supported"}},
      {"checksum not hex", [](const std::string& b) { return with_header(b, [](json& h) { h["__metadata__"]["piquant.checksum"] = "zz"; }, false); },
       {"checksum"}},
      {"a BF16 tensor", [](const std::string& b) {
         return with_header(b, [](json& h) {
           auto& t = h["adam.m.layers.0.q.a"];
           t["dtype"] = "BF16";
           t["shape"] = {2, 6};
         });
       },
       {"tensor 'adam.m.layers.0.q.a'", "dtype BF16"}},
      {"shape disagrees with the offsets", [](const std::string& b) { return with_header(b, [](json& h) { h["scalar"]["shape"] = {2}; }); },
       {"tensor 'scalar'"}},
      {"header not JSON", [](const std::string& b) { std::string c = b; c[8] = '#'; return c; }, {"not valid JSON"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = (dir / "bad.safetensors").string();
    testing::write_file(path, c.corrupt(good));
    try {
      read_train_state(path);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find(path), std::string::npos) << message;
      for (const auto& part : c.expected) EXPECT_NE(message.find(part), std::string::npos) << "'" << part << "' not in: " << message;
    }
  }
  // The header edits above keep a valid file when nothing is wrong with them.
  testing::write_file(dir / "same.safetensors", with_header(good, [](json&) {}));
  EXPECT_NO_THROW(read_train_state((dir / "same.safetensors").string()));
}

}  // namespace
}  // namespace piquant
