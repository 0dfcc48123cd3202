// Loading a model by reading it into memory (use_mmap = false) instead of mapping it:
// the same model, bit for bit; and the sizes the memory check relies on. Letting a
// layer's pages go (release_layer): a map's leave the resident set, a read-in copy keeps
// its bytes, and either model computes the same afterwards.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/mapped_file.h"
#include "formats/gguf.h"
#include "engine/llama_context.h"
#include "engine/llama_model.h"
#include "support/model_fixtures.h"
#include "support/test_support.h"

namespace piquant {
namespace {

std::vector<float> logits_of(const LlamaModel& model, std::int64_t n_ctx) {
  ContextOptions options;
  options.n_ctx = n_ctx;
  options.n_threads = 2;
  LlamaContext context(model, options);
  std::vector<std::int32_t> tokens;
  for (std::int32_t i = 0; i < 24; ++i) tokens.push_back((i * 37 + 1) % static_cast<std::int32_t>(model.params().n_vocab));
  const auto logits = context.eval(tokens, true);
  return {logits.begin(), logits.end()};
}

// Bytes of file-backed pages this process has resident (RssFile in /proc/self/status).
std::int64_t resident_file_bytes() {
  std::ifstream status("/proc/self/status");
  std::string key;
  while (status >> key) {
    if (key == "RssFile:") {
      std::int64_t kb = 0;
      status >> kb;
      return kb * 1024;
    }
    status.ignore(1 << 20, '\n');
  }
  ADD_FAILURE() << "no RssFile in /proc/self/status";
  return 0;
}

std::uint64_t layer_matrix_bytes(const LlamaModel& model, std::int64_t layer) {
  const LayerWeights& w = model.layer(layer);
  std::uint64_t bytes = 0;
  for (const MatrixView* m : {&w.wq, &w.wk, &w.wv, &w.wo, &w.w_gate, &w.w_up, &w.w_down}) bytes += m->rows * m->row_bytes;
  return bytes;
}

class StoriesLoadMode : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto checkpoint = PIQUANT_SHARED_FILE("models/stories260K/stories260K.bin");
    const auto tokenizer = PIQUANT_SHARED_FILE("models/stories260K/tok512.bin");
    gguf_ = testing::convert_stories260k(dir_, checkpoint, tokenizer, "f16").string();
  }
  testing::TempDir dir_;
  std::string gguf_;
};

TEST_F(StoriesLoadMode, ReadIntoMemoryGivesBitIdenticalLogits) {
  ModelLoadOptions mapped_options;
  ModelLoadOptions read_options;
  read_options.use_mmap = false;
  read_options.prefetch = true;  // a no-op on a read-in copy, and must stay harmless
  const auto mapped = LlamaModel::load(gguf_, mapped_options);
  const auto read = LlamaModel::load(gguf_, read_options);
  // Really two copies of the weights, not one map seen twice.
  EXPECT_NE(mapped->token_embedding().data, read->token_embedding().data);
  EXPECT_EQ(std::memcmp(mapped->token_embedding().data, read->token_embedding().data,
                        mapped->token_embedding().row_bytes * static_cast<std::size_t>(mapped->token_embedding().rows)),
            0);
  EXPECT_EQ(mapped->weight_bytes(), read->weight_bytes());
  const std::vector<float> a = logits_of(*mapped, 64);
  const std::vector<float> b = logits_of(*read, 64);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
}

// Whether madvise(MADV_DONTNEED) drops a mapped file's resident pages here at all: the
// whole file mapped, touched and released through MappedFile. qemu-user (the aarch64
// tests) accepts the call and ignores it.
bool platform_releases_file_pages(const std::string& path) {
  const MappedFile file(path);
  volatile std::uint8_t sink = 0;
  for (std::size_t i = 0; i < file.size(); i += 4096) sink = sink + file.data()[i];
  const std::int64_t resident = resident_file_bytes();
  file.release(0, file.size());
  return resident - resident_file_bytes() >= static_cast<std::int64_t>(file.size() / 2);
}

TEST_F(StoriesLoadMode, ReleasedLayersLeaveTheResidentSetAndStayUsable) {
  const bool releases = platform_releases_file_pages(gguf_);
  if (!releases) std::printf("madvise(MADV_DONTNEED) leaves file pages resident here: only usability is checked\n");
  for (const bool use_mmap : {true, false}) {
    ModelLoadOptions options;
    options.use_mmap = use_mmap;
    const auto model = LlamaModel::load(gguf_, options);
    const std::vector<float> before = logits_of(*model, 64);  // every weight page touched
    std::uint64_t bytes = 0;
    const std::int64_t resident = resident_file_bytes();
    for (std::int64_t l = 0; l < model->params().n_layer; ++l) {
      model->release_layer(l);
      bytes += layer_matrix_bytes(*model, l);
    }
    const std::int64_t released = resident - resident_file_bytes();
    if (use_mmap && releases) {
      // Whole pages inside each tensor go (its partial first and last pages stay).
      EXPECT_GE(released, static_cast<std::int64_t>(bytes / 2)) << bytes << " bytes of layer matrices";
    } else if (!use_mmap) {
      EXPECT_EQ(released, 0);
    }
    const std::vector<float> after = logits_of(*model, 64);  // pages come back from the file
    ASSERT_EQ(before.size(), after.size());
    EXPECT_EQ(std::memcmp(before.data(), after.data(), before.size() * sizeof(float)), 0) << "mmap " << use_mmap;
    EXPECT_THROW(model->release_layer(-1), Error);
    EXPECT_THROW(model->release_layer(model->params().n_layer), Error);
  }
}

TEST(ModelLoadMode, ReleasedLayersOfAHuggingFaceFolderStayUsable) {
  testing::TempDir dir;
  const auto result = testing::run_cli("synth --preset tiny -o " + (dir / "hf").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto model = LlamaModel::load((dir / "hf").string());
  const std::vector<float> before = logits_of(*model, 64);
  for (std::int64_t l = 0; l < model->params().n_layer; ++l) model->release_layer(l);
  const std::vector<float> after = logits_of(*model, 64);
  ASSERT_EQ(before.size(), after.size());
  EXPECT_EQ(std::memcmp(before.data(), after.data(), before.size() * sizeof(float)), 0);
}

TEST_F(StoriesLoadMode, KvCacheSizeIsKnownBeforeAllocating) {
  const auto model = LlamaModel::load(gguf_);
  // stories260K (llama2.c header): 5 layers, 4 KV heads of 64/8 = 8 dims.
  const std::uint64_t kv_dim = 4 * 8;
  for (const GgmlType type : {GgmlType::F16, GgmlType::F32}) {
    ContextOptions options;
    options.n_ctx = 96;
    options.n_threads = 1;
    options.kv_type = type;
    const std::uint64_t element = type == GgmlType::F16 ? 2 : 4;
    EXPECT_EQ(LlamaContext::kv_cache_bytes(model->params(), options), 2 * 5 * 96 * kv_dim * element);
    const LlamaContext context(*model, options);
    EXPECT_EQ(LlamaContext::kv_cache_bytes(model->params(), options), context.kv_cache_bytes());
  }
  ContextOptions absurd;
  absurd.n_ctx = INT64_MAX;
  EXPECT_EQ(LlamaContext::kv_cache_bytes(model->params(), absurd), UINT64_MAX);
  EXPECT_EQ(LlamaContext::scratch_bytes(model->params(), absurd), UINT64_MAX);
}

TEST_F(StoriesLoadMode, TruncatedFileReadIntoMemoryFailsLikeTheMap) {
  const std::string bytes = testing::read_file(gguf_);
  const auto cut = (dir_ / "cut.gguf").string();
  testing::write_file(cut, bytes.substr(0, bytes.size() - 100));  // the last tensor's data is short
  const auto message_of = [&](FileLoad how) -> std::string {
    try {
      GgufFile file(cut, how);
    } catch (const FormatError& e) {
      return e.what();
    }
    return "(no error)";
  };
  const std::string mapped = message_of(FileLoad::Map);
  EXPECT_NE(mapped.find(cut + ": "), std::string::npos) << mapped;
  EXPECT_EQ(message_of(FileLoad::ReadIntoMemory), mapped);
}

TEST(ModelLoadMode, HuggingFaceFolderCannotBeReadIntoMemory) {
  testing::TempDir dir;
  const auto result = testing::run_cli("synth --preset tiny -o " + (dir / "hf").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  ModelLoadOptions options;
  options.use_mmap = false;
  try {
    LlamaModel::load((dir / "hf").string(), options);
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find((dir / "hf").string() + ": "), std::string::npos) << message;
    EXPECT_NE(message.find("--no-mmap"), std::string::npos) << message;
    EXPECT_NE(message.find("GGUF"), std::string::npos) << message;
  }
  EXPECT_NO_THROW(LlamaModel::load((dir / "hf").string()));  // mapped, it loads
}

}  // namespace
}  // namespace piquant
