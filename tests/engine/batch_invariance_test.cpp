// Batch invariance of the forward pass with float weights: a prompt's logits are the same
// bits whether the prompt is evaluated in one batch, in two (32 + 32, 1 + 63), token by
// token, or split by n_batch inside eval, and whatever the thread count; on every SIMD
// target (in sanitizer builds, the level in force). Each kernel on the way promises it (matmul.h for F32/F16/BF16 weights,
// attention.h, and the element-wise and per-token operations), so perplexity and KL
// divergence, which evaluate chunks in pieces, see the logits any other split would.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/kernel_test_support.h"
#include "engine/llama_context.h"
#include "engine/llama_model.h"
#include "support/test_support.h"

namespace piquant {
namespace {

constexpr std::int64_t kPromptTokens = 64;

std::vector<std::int32_t> prompt(std::int64_t n_vocab) {
  std::vector<std::int32_t> tokens;
  for (std::int64_t i = 0; i < kPromptTokens; ++i) tokens.push_back(static_cast<std::int32_t>((i * 7919 + 13) % n_vocab));
  return tokens;
}

struct Split {
  std::string name;
  std::vector<std::int64_t> pieces;  // tokens per eval call, summing to kPromptTokens
  unsigned threads;
  std::int64_t n_batch = 512;
  GgmlType kv_type = GgmlType::F32;
};

// The logits of every prompt token, evaluated in `split.pieces` calls of eval.
std::vector<float> prompt_logits(const LlamaModel& model, const Split& split) {
  ContextOptions options;
  options.n_ctx = kPromptTokens;
  options.kv_type = split.kv_type;
  options.n_threads = split.threads;
  options.n_batch = split.n_batch;
  LlamaContext context(model, options);
  const std::vector<std::int32_t> tokens = prompt(model.params().n_vocab);
  std::vector<float> logits;
  std::size_t first = 0;
  for (const std::int64_t n : split.pieces) {
    const auto piece = context.eval(std::span(tokens).subspan(first, static_cast<std::size_t>(n)), true);
    logits.insert(logits.end(), piece.begin(), piece.end());
    first += static_cast<std::size_t>(n);
  }
  EXPECT_EQ(first, tokens.size());
  return logits;
}

// Bit for bit, reporting the first difference (position, vocabulary entry, both values).
void expect_same_bits(const std::vector<float>& got, const std::vector<float>& whole, std::int64_t n_vocab,
                      const std::string& what) {
  ASSERT_EQ(got.size(), whole.size()) << what;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (std::bit_cast<std::uint32_t>(got[i]) != std::bit_cast<std::uint32_t>(whole[i])) {
      FAIL() << what << ": position " << static_cast<std::int64_t>(i) / n_vocab << ", token "
             << static_cast<std::int64_t>(i) % n_vocab << ": " << got[i] << " vs " << whole[i] << " in one batch";
    }
  }
}

class BatchInvariance : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    // The HF folder holds BF16 weights; its GGUF conversions F32 and F16.
    const auto synth = testing::run_cli("synth --preset tiny --mlp-widths 96,128,64,160 --seed 5 -o " + (*dir_ / "hf").string());
    ASSERT_EQ(synth.exit_code, 0) << synth.output;
    for (const char* type : {"f32", "f16"}) {
      const auto convert = testing::run_cli("convert " + (*dir_ / "hf").string() + " --type " + type + " -o " +
                                            (*dir_ / (std::string(type) + ".gguf")).string());
      ASSERT_EQ(convert.exit_code, 0) << convert.output;
    }
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  static void expect_split_invariant(const std::string& model_name) {
    const auto model = LlamaModel::load((*dir_ / model_name).string());
    const std::int64_t n_vocab = model->params().n_vocab;
    const std::vector<Split> splits = {
        {"32 + 32", {32, 32}, 2},
        {"1 + 63", {1, 63}, 3},
        {"token by token", std::vector<std::int64_t>(kPromptTokens, 1), 1},
        {"n_batch 7 inside eval", {kPromptTokens}, 2, 7},
        {"one batch, 1 thread", {kPromptTokens}, 1},
    };
    kernel_test::for_each_simd_target_unless_sanitized([&] {
      const std::vector<float> whole = prompt_logits(*model, {"whole", {kPromptTokens}, 2});
      float spread = 0;
      for (const float v : whole) spread = std::max(spread, std::abs(v));
      ASSERT_GT(spread, 1e-3f) << "the logits must not be all zeros";
      for (const Split& split : splits)
        expect_same_bits(prompt_logits(*model, split), whole, n_vocab, model_name + ", " + split.name);
      // An F16 cache stores the same rounded keys and values whatever the split.
      expect_same_bits(prompt_logits(*model, {"F16 cache, 32 + 32", {32, 32}, 2, 512, GgmlType::F16}),
                       prompt_logits(*model, {"F16 cache, whole", {kPromptTokens}, 2, 512, GgmlType::F16}), n_vocab,
                       model_name + ", F16 cache, 32 + 32");
    });
  }

  static testing::TempDir* dir_;
};
testing::TempDir* BatchInvariance::dir_ = nullptr;

TEST_F(BatchInvariance, F32LogitsDoNotDependOnHowThePromptIsSplit) { expect_split_invariant("f32.gguf"); }
TEST_F(BatchInvariance, F16LogitsDoNotDependOnHowThePromptIsSplit) { expect_split_invariant("f16.gguf"); }
TEST_F(BatchInvariance, BF16LogitsDoNotDependOnHowThePromptIsSplit) { expect_split_invariant("hf"); }

}  // namespace
}  // namespace piquant
