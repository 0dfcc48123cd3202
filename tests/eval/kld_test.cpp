// compute_kld on stories260K: a model against itself, F16 against F32 checked
// against KL divergences summed by hand from the two models' logits, and saved base
// distributions standing in for the base model.
#include <cmath>
#include <filesystem>
#include <vector>

#include "core/error.h"
#include "support/eval_test_support.h"
#include "eval/kld.h"
#include "eval/perplexity.h"
#include "engine/llama_model.h"

namespace piquant {
namespace {

using testing::TempDir;

constexpr std::int64_t kCtx = 64;

struct Models {
  TempDir dir;
  std::unique_ptr<LlamaModel> f32, f16;
  std::string text;
};

void load_models(Models& m) {
  const auto checkpoint = PIQUANT_SHARED_FILE("models/stories260K/stories260K.bin");
  const auto tokenizer = PIQUANT_SHARED_FILE("models/stories260K/tok512.bin");
  const auto corpus = PIQUANT_SHARED_FILE("corpora/austen.txt");
  m.f32 = LlamaModel::load(testing::convert_stories260k(m.dir, checkpoint, tokenizer, "f32").string());
  m.f16 = LlamaModel::load(testing::convert_stories260k(m.dir, checkpoint, tokenizer, "f16").string());
  m.text = testing::text_head(corpus, 3000);
}

ContextOptions f32_context() {
  ContextOptions options;
  options.n_ctx = kCtx;
  options.kv_type = GgmlType::F32;
  options.n_threads = 2;
  return options;
}

KldOptions kld_options(std::int64_t chunks) {
  KldOptions options;
  options.n_ctx = kCtx;
  options.max_chunks = chunks;
  return options;
}

TEST(Kld, AModelAgainstItselfHasZeroDivergence) {
  Models m;
  load_models(m);
  if (!m.f32) return;
  LlamaContext base(*m.f32, f32_context());
  LlamaContext model(*m.f32, f32_context());
  const KldResult r = compute_kld(KldBase{&base, nullptr}, model, m.text, kld_options(3));
  EXPECT_EQ(r.n_chunks, 3);
  EXPECT_EQ(r.n_scored, 3 * (kCtx - 1 - kCtx / 2));
  EXPECT_NEAR(r.kld_mean, 0.0, 1e-12);
  EXPECT_NEAR(r.kld_max, 0.0, 1e-12);
  EXPECT_DOUBLE_EQ(r.top1_agreement, 1.0);
  EXPECT_DOUBLE_EQ(r.ppl_base, r.ppl_model);
  EXPECT_DOUBLE_EQ(r.delta_ppl, 0.0);
  PerplexityOptions ppl_options;
  ppl_options.n_ctx = kCtx;
  ppl_options.max_chunks = 3;
  LlamaContext fresh(*m.f32, f32_context());
  EXPECT_NEAR(r.ppl_base, compute_perplexity(fresh, m.text, ppl_options).ppl, 1e-9 * r.ppl_base);

  // One context as both base and model runs each chunk once, with the same results.
  LlamaContext shared(*m.f32, f32_context());
  const KldResult once = compute_kld(KldBase{&shared, nullptr}, shared, m.text, kld_options(3));
  EXPECT_EQ(once.ppl_base, r.ppl_base);
  EXPECT_EQ(once.ppl_model, r.ppl_model);
  EXPECT_EQ(once.kld_max, 0.0);
}

TEST(Kld, F16AgainstF32MatchesKlSummedByHand) {
  Models m;
  load_models(m);
  if (!m.f32) return;
  LlamaContext base(*m.f32, f32_context());
  LlamaContext model(*m.f16, f32_context());
  const KldResult r = compute_kld(KldBase{&base, nullptr}, model, m.text, kld_options(2));

  // By hand: full logits of both models on each chunk, KL per scored position.
  const std::vector<std::int32_t> tokens = m.f32->tokenizer().encode(m.text, true, false);
  std::vector<double> klds;
  double same_top = 0;
  for (std::int64_t c = 0; c < 2; ++c) {
    std::vector<std::int32_t> chunk(tokens.begin() + c * kCtx, tokens.begin() + (c + 1) * kCtx);
    chunk[0] = 1;
    base.reset();
    model.reset();
    const auto p_logits = base.eval(chunk, true);
    const std::vector<float> p_all(p_logits.begin(), p_logits.end());
    const auto q_all = model.eval(chunk, true);
    for (std::int64_t pos = kCtx / 2; pos < kCtx - 1; ++pos) {
      const float* p = p_all.data() + pos * 512;
      const float* q = q_all.data() + pos * 512;
      double zp = 0, zq = 0;
      int top_p = 0, top_q = 0;
      for (int i = 0; i < 512; ++i) {
        zp += std::exp(static_cast<double>(p[i]));
        zq += std::exp(static_cast<double>(q[i]));
        if (p[i] > p[top_p]) top_p = i;
        if (q[i] > q[top_q]) top_q = i;
      }
      double kl = 0;
      for (int i = 0; i < 512; ++i) {
        const double pi = std::exp(static_cast<double>(p[i])) / zp;
        kl += pi * (std::log(pi) - std::log(std::exp(static_cast<double>(q[i])) / zq));
      }
      klds.push_back(kl);
      same_top += top_p == top_q ? 1 : 0;
    }
  }
  double mean = 0, max = 0;
  for (const double k : klds) {
    mean += k;
    max = std::max(max, k);
  }
  mean /= static_cast<double>(klds.size());
  EXPECT_EQ(r.n_scored, static_cast<std::int64_t>(klds.size()));
  EXPECT_GT(r.kld_mean, 0.0);  // F16 weights do change the model a little
  EXPECT_LT(r.kld_mean, 1e-3);
  // Both sides see the same float logits (matmul is batch-invariant: the 32 + 32 token
  // evaluation of compute_kld and the 64 tokens at once above give the same bits) and
  // differ only in double rounding: each log-sum-exp over 512 terms is off by at most
  // 512·2^-53 relative in its sum (< 6e-14 in the log) plus 2^-53·|lse|, and each formula
  // subtracts two, so every KL, and their mean, agree within 3e-13 (measured: ≤ 2e-16,
  // against KL ≈ 2e-6; logits that differ in the last bits, as with a batch-dependent
  // matmul, moved the mean by 4e-8). kld_max is kept as a float: 2^-24 relative more.
  constexpr double kDoubleSums = 3e-13;
  EXPECT_NEAR(r.kld_mean, mean, kDoubleSums);
  EXPECT_NEAR(r.kld_max, max, kDoubleSums + 0x1p-24 * max);
  EXPECT_LE(r.kld_median, r.kld_p90);
  EXPECT_LE(r.kld_p90, r.kld_p99);
  EXPECT_LE(r.kld_p99, r.kld_max);
  EXPECT_DOUBLE_EQ(r.top1_agreement, same_top / static_cast<double>(klds.size()));
  EXPECT_NEAR(r.delta_ppl, r.ppl_model - r.ppl_base, 1e-12);
  EXPECT_NEAR(r.ln_ppl_ratio, std::log(r.ppl_model / r.ppl_base), 1e-9);
}

TEST(Kld, SavedBaseLogitsStandInForTheBaseModel) {
  Models m;
  load_models(m);
  if (!m.f32) return;
  const auto saved_path = (m.dir / "base.logits").string();
  LlamaContext base(*m.f32, f32_context());
  LlamaContext model(*m.f16, f32_context());
  KldOptions options = kld_options(3);
  options.save_base_logits = saved_path;
  const KldResult direct = compute_kld(KldBase{&base, nullptr}, model, m.text, options);
  ASSERT_TRUE(std::filesystem::exists(saved_path));

  const BaseLogitsFile saved(saved_path);
  EXPECT_EQ(saved.n_ctx(), kCtx);
  EXPECT_EQ(saved.n_chunks(), 3);
  EXPECT_EQ(saved.n_vocab(), 512);
  const KldResult reused = compute_kld(KldBase{nullptr, &saved}, model, m.text, kld_options(3));
  EXPECT_NEAR(reused.ppl_base, direct.ppl_base, 1e-6 * direct.ppl_base);
  EXPECT_DOUBLE_EQ(reused.ppl_model, direct.ppl_model);
  EXPECT_DOUBLE_EQ(reused.top1_agreement, direct.top1_agreement);
  // Quantized base log-probabilities (step/2 <= 4e-4) move KL by far less than itself.
  EXPECT_NEAR(reused.kld_mean, direct.kld_mean, 0.05 * direct.kld_mean);
  EXPECT_NEAR(reused.kld_p99, direct.kld_p99, 0.05 * direct.kld_p99);
  // Fewer chunks than saved: the file's prefix serves.
  EXPECT_EQ(compute_kld(KldBase{nullptr, &saved}, model, m.text, kld_options(2)).n_chunks, 2);
}

TEST(Kld, SavedBaseLogitsMustMatchTheRun) {
  Models m;
  load_models(m);
  if (!m.f32) return;
  const auto saved_path = (m.dir / "base.logits").string();
  LlamaContext base(*m.f32, f32_context());
  LlamaContext model(*m.f16, f32_context());
  KldOptions options = kld_options(2);
  options.save_base_logits = saved_path;
  compute_kld(KldBase{&base, nullptr}, model, m.text, options);
  const BaseLogitsFile saved(saved_path);

  const auto expect_error = [&](const std::string& text, std::int64_t n_ctx, std::int64_t chunks, const std::string& needle) {
    KldOptions o = kld_options(chunks);
    o.n_ctx = n_ctx;
    ContextOptions c = f32_context();
    c.n_ctx = n_ctx;
    LlamaContext ctx(*m.f16, c);
    try {
      compute_kld(KldBase{nullptr, &saved}, ctx, text, o);
      ADD_FAILURE() << "expected an error mentioning '" << needle << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(saved_path), std::string::npos) << e.what();
    }
  };
  expect_error(m.text, 32, 2, "n_ctx 64");
  expect_error(m.text, kCtx, 3, "holds 2 chunks");
  expect_error(m.text, kCtx, 0, "holds 2 chunks");
  expect_error("Sense and Sensibility. " + m.text, kCtx, 2, "another text");
  // A base run and saved logits at once, or neither, is a usage error.
  EXPECT_THROW(compute_kld(KldBase{&base, &saved}, model, m.text, kld_options(2)), Error);
  EXPECT_THROW(compute_kld(KldBase{}, model, m.text, kld_options(2)), Error);
}

}  // namespace
}  // namespace piquant
