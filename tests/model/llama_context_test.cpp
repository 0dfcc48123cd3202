// The forward pass: consistency between its own paths, and between the two weight
// layouts (HF folder with half-split RoPE vs GGUF with permuted Q/K rows).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "model/checkpoint.h"
#include "model/gguf_export.h"
#include "model/llama_context.h"
#include "model/llama_model.h"
#include "support/test_support.h"

namespace piquant {
namespace {

std::vector<std::int32_t> some_tokens(std::int64_t n, std::int64_t n_vocab) {
  std::vector<std::int32_t> tokens;
  for (std::int64_t i = 0; i < n; ++i) tokens.push_back(static_cast<std::int32_t>((i * 7919 + 13) % n_vocab));
  return tokens;
}

float max_abs_diff(std::span<const float> a, std::span<const float> b) {
  float m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

class TinyModel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    const auto result = testing::run_cli("synth --preset tiny --mlp-widths 96,128,64,160 --seed 3 -o " + (*dir_ / "hf").string());
    ASSERT_EQ(result.exit_code, 0) << result.output;
    const auto convert = testing::run_cli("convert " + (*dir_ / "hf").string() + " --type f32 -o " + (*dir_ / "m.gguf").string());
    ASSERT_EQ(convert.exit_code, 0) << convert.output;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static testing::TempDir* dir_;
};
testing::TempDir* TinyModel::dir_ = nullptr;

TEST_F(TinyModel, BatchedPromptEqualsTokenByToken) {
  const auto model = LlamaModel::load((*dir_ / "m.gguf").string());
  EXPECT_EQ(model->architecture(), "deci");
  ContextOptions options;
  options.n_ctx = 64;
  options.kv_type = GgmlType::F32;
  options.n_threads = 2;
  LlamaContext batched(*model, options);
  const auto tokens = some_tokens(40, model->params().n_vocab);
  const auto span_all = batched.eval(tokens, true);
  const std::vector<float> logits_all(span_all.begin(), span_all.end());
  ASSERT_EQ(logits_all.size(), tokens.size() * static_cast<std::size_t>(model->params().n_vocab));

  options.n_threads = 1;
  LlamaContext stepwise(*model, options);
  const std::size_t V = static_cast<std::size_t>(model->params().n_vocab);
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    const auto logits = stepwise.eval(std::span(&tokens[i], 1));
    // F32 weights: matmul is batch-invariant (matmul.h), so the logits are the same bits.
    ASSERT_EQ(max_abs_diff(logits, std::span(logits_all).subspan(i * V, V)), 0.0f) << "position " << i;
  }
  EXPECT_EQ(stepwise.n_past(), 40);

  // Small batches (split inside eval) agree too.
  options.n_batch = 7;
  LlamaContext split(*model, options);
  const auto last = split.eval(tokens);
  EXPECT_EQ(max_abs_diff(last, std::span(logits_all).subspan((tokens.size() - 1) * V, V)), 0.0f);
}

TEST_F(TinyModel, HfFolderAndConvertedGgufGiveTheSameLogits) {
  // The HF model runs with half-split RoPE on unpermuted Q/K; the GGUF with interleaved
  // RoPE on permuted rows. Equal logits mean the permutation and both RoPE layouts agree.
  const auto hf = LlamaModel::load((*dir_ / "hf").string());
  const auto gguf = LlamaModel::load((*dir_ / "m.gguf").string());
  ContextOptions options;
  options.n_ctx = 32;
  options.kv_type = GgmlType::F32;
  LlamaContext a(*hf, options), b(*gguf, options);
  const auto tokens = some_tokens(20, hf->params().n_vocab);
  const auto la = a.eval(tokens, true);
  const std::vector<float> va(la.begin(), la.end());
  const auto lb = b.eval(tokens, true);
  // HF weights are bf16, the GGUF holds the same values as f32: only summation order differs.
  EXPECT_LT(max_abs_diff(va, lb), 1e-4f);
  float spread = 0;
  for (const float v : va) spread = std::max(spread, std::abs(v));
  EXPECT_GT(spread, 1e-3f);  // not all zeros
}

TEST_F(TinyModel, F16CacheStaysClose) {
  const auto model = LlamaModel::load((*dir_ / "m.gguf").string());
  ContextOptions options;
  options.n_ctx = 32;
  options.kv_type = GgmlType::F32;
  LlamaContext f32(*model, options);
  options.kv_type = GgmlType::F16;
  LlamaContext f16(*model, options);
  const auto tokens = some_tokens(16, model->params().n_vocab);
  const auto a = f32.eval(tokens);
  const std::vector<float> va(a.begin(), a.end());
  EXPECT_LT(max_abs_diff(va, f16.eval(tokens)), 1e-2f);
}

TEST_F(TinyModel, OverflowAndBadTokensAreErrors) {
  const auto model = LlamaModel::load((*dir_ / "m.gguf").string());
  ContextOptions options;
  options.n_ctx = 8;
  LlamaContext ctx(*model, options);
  const auto tokens = some_tokens(9, model->params().n_vocab);
  EXPECT_THROW(ctx.eval(tokens), Error);
  EXPECT_EQ(ctx.n_past(), 0);
  const std::vector<std::int32_t> bad = {1, static_cast<std::int32_t>(model->params().n_vocab)};
  EXPECT_THROW(ctx.eval(bad), Error);
  const std::vector<std::int32_t> negative = {-1};
  EXPECT_THROW(ctx.eval(negative), Error);
  ctx.eval(std::span(tokens).first(5));
  ctx.truncate(2);
  EXPECT_EQ(ctx.n_past(), 2);
  EXPECT_THROW(ctx.truncate(3), Error);
}

TEST(LlamaModel, Stories260KTellsItsStory) {
  const auto model_path = PIQUANT_SHARED_FILE("models/stories260K/stories260K.bin");
  const auto tokenizer = PIQUANT_SHARED_FILE("models/stories260K/tok512.bin");
  testing::TempDir dir;
  CheckpointOptions options;
  options.tokenizer_path = tokenizer.string();
  GgufExportOptions export_options;
  export_options.type = GgmlType::F32;
  export_gguf(*open_checkpoint(model_path.string(), options), (dir / "s.gguf").string(), export_options);
  const auto model = LlamaModel::load((dir / "s.gguf").string());
  ContextOptions ctx_options;
  ctx_options.n_ctx = 128;
  LlamaContext ctx(*model, ctx_options);
  std::vector<std::int32_t> tokens = model->tokenizer().encode("Once upon a time", true, false);
  std::vector<std::int32_t> generated;
  auto logits = ctx.eval(tokens);
  for (int i = 0; i < 40; ++i) {
    const auto next = static_cast<std::int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    generated.push_back(next);
    logits = ctx.eval(std::span(&generated.back(), 1));
  }
  const std::string text = model->tokenizer().decode(generated);
  EXPECT_NE(text.find("Lily"), std::string::npos) << text;
}

}  // namespace
}  // namespace piquant
