// The ffn_down bias in the forward pass: a bias of zeros changes nothing (bit for bit), a
// real one changes the logits, F16-stored biases are read through a float copy, the HF
// folder (DeciLM layout) and its GGUF run the same model, and damaged biases are refused
// by the loader naming the file and the tensor. (The logits against a double-precision
// reference are in tests/train/ffn_down_bias_reference_test.cpp, beside the reference.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "checkpoint/checkpoint.h"
#include "checkpoint/gguf_export.h"
#include "checkpoint/hf_export.h"
#include "core/error.h"
#include "core/half.h"
#include "engine/llama_context.h"
#include "engine/llama_model.h"
#include "engine/owned_model.h"
#include "support/model_fixtures.h"

namespace piquant {
namespace {

using testing::random_values;
using testing::TempDir;
using testing::with_ffn_down_bias;

std::vector<std::int32_t> some_tokens(std::int64_t n, std::int64_t n_vocab) {
  std::vector<std::int32_t> tokens;
  for (std::int64_t i = 0; i < n; ++i) tokens.push_back(static_cast<std::int32_t>((i * 7919 + 13) % n_vocab));
  return tokens;
}

std::vector<float> all_logits(const LlamaModel& model, std::int64_t n_tokens = 24) {
  ContextOptions options;
  options.n_ctx = 64;
  options.kv_type = GgmlType::F32;
  options.n_threads = 2;
  LlamaContext context(model, options);
  const auto logits = context.eval(some_tokens(n_tokens, model.params().n_vocab), true);
  return {logits.begin(), logits.end()};
}

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  float m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

class BiasModels : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    hf_ = new std::filesystem::path(testing::write_tiny_hf(*dir_, "hf", "256,512,768,256", 0.1f, 5));
  }
  static void TearDownTestSuite() {
    delete hf_;
    delete dir_;
  }
  // The tiny model as an F32 GGUF, with `biases` added.
  static std::string gguf(const std::string& name, std::map<std::int64_t, std::vector<float>> biases,
                          const GgufExportOptions& options = f32()) {
    const std::string path = (*dir_ / name).string();
    export_gguf(*with_ffn_down_bias(open_checkpoint(hf_->string()), std::move(biases)), path, options);
    return path;
  }
  static GgufExportOptions f32() {
    GgufExportOptions options;
    options.type = GgmlType::F32;
    return options;
  }
  static TempDir* dir_;
  static std::filesystem::path* hf_;
};
TempDir* BiasModels::dir_ = nullptr;
std::filesystem::path* BiasModels::hf_ = nullptr;

TEST_F(BiasModels, ZeroBiasGivesExactlyTheLogitsWithoutOne) {
  const auto plain = LlamaModel::load(gguf("plain.gguf", {}));
  const auto zeros = LlamaModel::load(gguf("zeros.gguf", {{0, std::vector<float>(256, 0.0f)}, {2, std::vector<float>(256, 0.0f)}}));
  ASSERT_EQ(zeros->params().ffn_down_bias, (std::vector<bool>{true, false, true, false}));
  ASSERT_NE(zeros->layer(0).ffn_down_bias, nullptr);
  EXPECT_EQ(zeros->layer(1).ffn_down_bias, nullptr);
  EXPECT_EQ(plain->layer(0).ffn_down_bias, nullptr);
  const std::vector<float> a = all_logits(*plain), b = all_logits(*zeros);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
}

TEST_F(BiasModels, ABiasChangesTheLogits) {
  const auto plain = LlamaModel::load(gguf("plain.gguf", {}));
  const auto biased = LlamaModel::load(gguf("biased.gguf", {{1, random_values(256, 0.5f, 11)}}));
  const std::vector<float> bias = random_values(256, 0.5f, 11);
  EXPECT_TRUE(std::equal(bias.begin(), bias.end(), biased->layer(1).ffn_down_bias));
  EXPECT_GT(max_abs_diff(all_logits(*plain), all_logits(*biased)), 0.05f);
}

TEST_F(BiasModels, HalfPrecisionBiasIsReadThroughAFloatCopy) {
  std::vector<float> bias = random_values(256, 0.5f, 12);
  GgufExportOptions f16_bias = f32();
  f16_bias.type_for = [](const CheckpointTensor& t) {
    return t.id.kind == WeightKind::FfnDownBias ? GgmlType::F16 : GgmlType::F32;
  };
  f16_bias.file_type = LlamaFileType::AllF32;
  const auto half = LlamaModel::load(gguf("f16-bias.gguf", {{3, bias}}, f16_bias));
  // The same values, rounded to F16 by us, stored as F32.
  for (float& v : bias) v = f16_to_f32(f32_to_f16(v));
  const auto rounded = LlamaModel::load(gguf("rounded-bias.gguf", {{3, bias}}));
  EXPECT_TRUE(std::equal(bias.begin(), bias.end(), half->layer(3).ffn_down_bias));
  const std::vector<float> a = all_logits(*half), b = all_logits(*rounded);
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
}

TEST_F(BiasModels, HfDeciLmFolderRunsLikeItsGguf) {
  const std::string path = gguf("deci.gguf", {{1, random_values(256, 0.5f, 13)}, {3, random_values(256, 0.5f, 14)}});
  const auto checkpoint = open_checkpoint(path);
  HfExportOptions options;
  options.dtype = SafeDtype::F32;
  ASSERT_EQ(export_hf(*checkpoint, (*dir_ / "deci-hf").string(), options).layout, "decilm");
  const auto from_gguf = LlamaModel::load(path);
  const auto from_hf = LlamaModel::load((*dir_ / "deci-hf").string());
  ASSERT_EQ(from_hf->architecture(), "deci");
  ASSERT_EQ(from_hf->params().ffn_down_bias, (std::vector<bool>{false, true, false, true}));
  ASSERT_NE(from_hf->layer(3).ffn_down_bias, nullptr);
  // Same weights; only the RoPE pairing (and so the order of attention's sums) differs.
  const std::vector<float> a = all_logits(*from_gguf), b = all_logits(*from_hf);
  float scale = 0;
  for (float v : a) scale = std::max(scale, std::fabs(v));
  EXPECT_LE(max_abs_diff(a, b), 1e-4f * scale);
}

TEST_F(BiasModels, CopyOfAnOwnedModelCarriesTheBias) {
  const auto biased = LlamaModel::load(gguf("copied.gguf", {{2, random_values(256, 0.5f, 15)}}));
  const auto copy = OwnedLlamaModel::copy_of(*biased);
  EXPECT_EQ(copy->params().ffn_down_bias, biased->params().ffn_down_bias);
  const std::span<const float> bias = copy->weight({WeightKind::FfnDownBias, 2});
  ASSERT_EQ(bias.size(), 256u);
  EXPECT_TRUE(std::equal(bias.begin(), bias.end(), biased->layer(2).ffn_down_bias));
  const std::vector<float> a = all_logits(*biased), b = all_logits(*copy);
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
}

TEST_F(BiasModels, RandomOwnedModelsWithZeroBiasesEqualThoseWithout) {
  LlamaParams params = open_checkpoint(hf_->string())->params();
  const Vocab vocab = open_checkpoint(hf_->string())->vocab();
  const auto plain = OwnedLlamaModel::random(params, vocab, RopePairing::Interleaved, 3, 0.1f);
  params.ffn_down_bias = {false, true, true, false};
  const auto biased = OwnedLlamaModel::random(params, vocab, RopePairing::Interleaved, 3, 0.1f);
  const std::span<const float> zero = biased->weight({WeightKind::FfnDownBias, 1});
  EXPECT_TRUE(std::all_of(zero.begin(), zero.end(), [](float v) { return v == 0.0f; }));
  const std::vector<float> a = all_logits(*plain), b = all_logits(*biased);
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
  std::span<float> bias = biased->weight({WeightKind::FfnDownBias, 2});
  const std::vector<float> values = random_values(256, 0.5f, 16);
  std::copy(values.begin(), values.end(), bias.begin());
  EXPECT_GT(max_abs_diff(a, all_logits(*biased)), 0.05f);
}

TEST_F(BiasModels, DamagedBiasIsRefusedNamingFileAndTensor) {
  struct Case {
    std::string file;
    std::string expected;  // in the message besides the file
  };
  GgufExportOptions quantized_bias = f32();
  quantized_bias.type_for = [](const CheckpointTensor& t) {
    return t.id.kind == WeightKind::FfnDownBias ? GgmlType::Q8_0 : GgmlType::F32;
  };
  quantized_bias.file_type = LlamaFileType::AllF32;
  const std::vector<Case> cases = {
      {gguf("short-bias.gguf", {{1, random_values(255, 0.5f, 1)}}), "blk.1.ffn_down.bias"},
      {gguf("long-bias.gguf", {{2, random_values(512, 0.5f, 1)}}), "blk.2.ffn_down.bias"},
      {gguf("q8-bias.gguf", {{0, random_values(256, 0.5f, 1)}}, quantized_bias), "blk.0.ffn_down.bias' type"},
  };
  for (const Case& c : cases) {
    try {
      LlamaModel::load(c.file);
      ADD_FAILURE() << "no error for " << c.file;
    } catch (const FormatError& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find(c.file), std::string::npos) << message;
      EXPECT_NE(message.find(c.expected), std::string::npos) << message;
    }
  }
  // The same in a Hugging Face folder.
  HfExportOptions options;
  options.dtype = SafeDtype::F32;
  const std::string hf = (*dir_ / "short-bias-hf").string();
  export_hf(*with_ffn_down_bias(open_checkpoint(hf_->string()), {{1, random_values(300, 0.5f, 1)}}), hf, options);
  try {
    LlamaModel::load(hf);
    ADD_FAILURE() << "no error for " << hf;
  } catch (const FormatError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(hf), std::string::npos) << message;
    EXPECT_NE(message.find("model.layers.1.mlp.down_proj.bias"), std::string::npos) << message;
  }
}

}  // namespace
}  // namespace piquant
