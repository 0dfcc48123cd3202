// compute_perplexity against the same recipe spelled out here another way: every
// chunk decoded one token at a time (the engine's matrix-vector path, not the batch
// path the library uses), NLL summed by hand.
#include <cmath>
#include <vector>

#include "core/error.h"
#include "support/eval_test_support.h"
#include "eval/perplexity.h"
#include "engine/llama_model.h"

namespace piquant {
namespace {

using testing::TempDir;

struct Stories {
  TempDir dir;
  std::unique_ptr<LlamaModel> model;
  std::string text;
};

// nullptr (test skipped) when the shared data is missing.
void load_stories(Stories& s) {
  const auto checkpoint = PIQUANT_SHARED_FILE("models/stories260K/stories260K.bin");
  const auto tokenizer = PIQUANT_SHARED_FILE("models/stories260K/tok512.bin");
  const auto corpus = PIQUANT_SHARED_FILE("corpora/austen.txt");
  s.model = LlamaModel::load(testing::convert_stories260k(s.dir, checkpoint, tokenizer, "f32").string());
  s.text = testing::text_head(corpus, 3000);
}

ContextOptions f32_context(std::int64_t n_ctx) {
  ContextOptions options;
  options.n_ctx = n_ctx;
  options.kv_type = GgmlType::F32;
  options.n_threads = 2;
  return options;
}

TEST(Perplexity, MatchesTokenByTokenEvaluationOfTheSameChunks) {
  Stories s;
  load_stories(s);
  if (!s.model) return;
  constexpr std::int64_t kCtx = 64;
  LlamaContext context(*s.model, f32_context(kCtx));
  PerplexityOptions options;
  options.n_ctx = kCtx;
  options.max_chunks = 4;
  options.keep_token_log_probs = true;
  int calls = 0;
  options.on_chunk = [&](std::int64_t done, std::int64_t total, double ppl) {
    ++calls;
    EXPECT_EQ(done, calls);
    EXPECT_EQ(total, 4);
    EXPECT_GT(ppl, 1.0);
  };
  const PerplexityResult result = compute_perplexity(context, s.text, options);
  EXPECT_EQ(calls, 4);
  EXPECT_EQ(result.n_chunks, 4);
  EXPECT_EQ(result.n_scored, 4 * (kCtx - 1 - kCtx / 2));
  EXPECT_EQ(result.n_evaluated, 4 * kCtx);
  ASSERT_EQ(result.token_log_probs.size(), static_cast<std::size_t>(result.n_scored));

  // By hand: BOS + tokens; chunk c = tokens[c·kCtx ..], first set to BOS; decode one
  // token at a time; score positions kCtx/2 .. kCtx-2.
  const std::vector<std::int32_t> tokens = s.model->tokenizer().encode(s.text, true, false);
  LlamaContext stepper(*s.model, f32_context(kCtx));
  double sum = 0, sum_sq = 0;
  std::size_t index = 0;
  for (std::int64_t c = 0; c < 4; ++c) {
    stepper.reset();
    for (std::int64_t pos = 0; pos < kCtx - 1; ++pos) {
      const std::int32_t token[1] = {pos == 0 ? 1 : tokens[static_cast<std::size_t>(c * kCtx + pos)]};
      const auto logits = stepper.eval(token);
      if (pos < kCtx / 2) continue;
      double z = 0;
      for (const float x : logits) z += std::exp(static_cast<double>(x));
      const double lp = logits[static_cast<std::size_t>(tokens[static_cast<std::size_t>(c * kCtx + pos + 1)])] - std::log(z);
      EXPECT_NEAR(result.token_log_probs[index++], lp, 1e-3) << "chunk " << c << " position " << pos;
      sum += -lp;
      sum_sq += lp * lp;
    }
  }
  const double n = static_cast<double>(index);
  const double mean = sum / n;
  EXPECT_NEAR(result.mean_nll, mean, 1e-4);
  EXPECT_NEAR(result.ppl, std::exp(mean), 1e-4 * std::exp(mean));
  EXPECT_NEAR(result.ppl_stderr, std::exp(mean) * std::sqrt((sum_sq / n - mean * mean) / (n - 1)), 1e-3 * result.ppl_stderr);
  EXPECT_GT(result.tokens_per_second, 0.0);
}

TEST(Perplexity, IndependentOfThreadCount) {
  Stories s;
  load_stories(s);
  if (!s.model) return;
  PerplexityOptions options;
  options.n_ctx = 32;
  options.max_chunks = 3;
  ContextOptions one = f32_context(32);
  one.n_threads = 1;
  LlamaContext single(*s.model, one);
  LlamaContext dual(*s.model, f32_context(32));
  EXPECT_NEAR(compute_perplexity(single, s.text, options).ppl, compute_perplexity(dual, s.text, options).ppl, 1e-9);
}

TEST(Perplexity, RejectsAContextShorterThanTheChunks) {
  Stories s;
  load_stories(s);
  if (!s.model) return;
  LlamaContext context(*s.model, f32_context(32));
  PerplexityOptions options;
  options.n_ctx = 64;
  EXPECT_THROW(compute_perplexity(context, s.text, options), Error);
  options.n_ctx = 32;
  EXPECT_THROW(compute_perplexity(context, std::string_view("Too short."), options), Error);
}

}  // namespace
}  // namespace piquant
