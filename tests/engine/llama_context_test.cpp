// The forward pass: consistency between its own paths, and between the two weight
// layouts (HF folder with half-split RoPE vs GGUF with permuted Q/K rows).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "kernels/attention.h"
#include "kernels/q8_activations.h"
#include "checkpoint/checkpoint.h"
#include "checkpoint/gguf_export.h"
#include "engine/llama_context.h"
#include "engine/llama_model.h"
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

TEST_F(TinyModel, ContextAllocatesWhatItsPlanSays) {
  // GQA (4 query heads over 2 KV heads) and per-layer MLP widths 96, 128, 64, 160.
  const auto model = LlamaModel::load((*dir_ / "m.gguf").string());
  struct Shape {
    std::int64_t n_ctx, n_batch;
    GgmlType kv;
  };
  // Tiny and large contexts and batches: the attention share of the MLP region, or one
  // query over a long context, sizes the work region.
  for (const Shape shape : {Shape{8, 512, GgmlType::F32}, Shape{64, 16, GgmlType::F16}, Shape{4096, 1, GgmlType::BF16},
                            Shape{512, 512, GgmlType::F16}, Shape{300, 200, GgmlType::F32}}) {
    for (const unsigned threads : {1u, 2u, 3u}) {
      ContextOptions options;
      options.n_ctx = shape.n_ctx;
      options.n_batch = shape.n_batch;
      options.kv_type = shape.kv;
      options.n_threads = threads;
      LlamaContext context(*model, options);
      const ContextPlan& plan = context.plan();
      EXPECT_EQ(plan.threads, threads);
      EXPECT_EQ(context.allocated_scratch_bytes(), plan.context_scratch_bytes()) << shape.n_ctx << "/" << shape.n_batch << ", " << threads;
      EXPECT_EQ(context.kv_cache_bytes(), plan.kv_cache_bytes);
      // The memory check's numbers, computed without a context, are the same plan's.
      EXPECT_EQ(LlamaContext::scratch_bytes(model->params(), options), plan.scratch_bytes());
      EXPECT_EQ(LlamaContext::kv_cache_bytes(model->params(), options), plan.kv_cache_bytes);
      EXPECT_GE(plan.work, 2 * plan.mlp_gate);
      EXPECT_GE(plan.work, plan.threads * plan.attend_per_thread);
      EXPECT_GE(plan.attend_per_thread, attend_scratch_floats(1, shape.n_ctx, model->params().head_dim));

      // Evaluating within the planned sizes allocates nothing more: a prompt, one token.
      const auto tokens = some_tokens(std::min<std::int64_t>(shape.n_ctx - 1, 40), model->params().n_vocab);
      context.eval(tokens);
      context.eval(std::span(tokens).first(1));
      EXPECT_EQ(context.allocated_scratch_bytes(), plan.context_scratch_bytes());
    }
  }
}

TEST_F(TinyModel, PlanBytesByHand) {
  // n_embd 256, 4 heads of 64 over 2 KV heads, widest MLP 160, 4 layers, 512 tokens.
  const auto model = LlamaModel::load((*dir_ / "m.gguf").string());
  ContextOptions options;
  options.n_ctx = 64;
  options.n_batch = 16;
  options.kv_type = GgmlType::F16;
  options.n_threads = 2;
  {
    const LlamaContext context(*model, options);
    // Per token: x, xn, proj 256 each; q, attn 256 each; k, v 128 each = 1536 floats.
    // MLP: 16 tokens × 160 for gate and up = 5120 floats, shared by the 2 threads'
    // attention scratch (2560 each, more than one query over 64 positions needs).
    ASSERT_LT(attend_scratch_floats(1, 64, 64), 2560u);
    EXPECT_EQ(context.plan().attend_per_thread, 2560u);
    EXPECT_EQ(context.allocated_scratch_bytes(), (16 * 1536 + 5120 + 512) * 4u);
    // K and V: 128 halves (256 bytes) per position, 64 positions, 4 layers.
    EXPECT_EQ(context.kv_cache_bytes(), 2u * 256 * 64 * 4);
    EXPECT_EQ(context.plan().q8_bytes, std::max(Q8Activations::storage_bytes(16, 256), Q8Activations::storage_bytes(16, 160)));
  }
  // A long context decoded one token at a time: one query over 4096 positions outgrows a
  // thread's share of the MLP's 2 × 160 floats, so attention sizes the region.
  options.n_ctx = 4096;
  options.n_batch = 1;
  options.kv_type = GgmlType::F32;
  options.n_threads = 3;
  const LlamaContext context(*model, options);
  const std::size_t one_query = attend_scratch_floats(1, 4096, 64);
  EXPECT_EQ(context.allocated_scratch_bytes(), (1536 + 3 * one_query + 512) * 4u);
  EXPECT_EQ(context.kv_cache_bytes(), 2u * 512 * 4096 * 4);
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
