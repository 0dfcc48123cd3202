// Acceptance: piquant's next-token distributions equal stock llama.cpp's on a model
// that exercises the less common paths: a synthesized tiny "deci" model (per-layer
// MLP widths 96,128,64,160), GQA (4 query heads over 2 KV heads) and Llama 3 RoPE
// scaling through the rope_freqs tensor, converted by piquant to F32 GGUF.
// Both sides keep attention in f32 (llama.cpp: F32 KV cache, no flash attention).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <string>
#include <vector>

#include "interop/engine_parity_support.h"
#include "interop/llama_cpp_runner.h"
#include "engine/llama_context.h"
#include "engine/llama_model.h"

namespace piquant::testing {
namespace {

using nlohmann::json;

constexpr std::size_t kSequence = 64;

TEST(EngineParity, DeciModelNextTokenProbabilitiesMatchLlamaCpp) {
  const TempDir dir;
  // stddev 0.25 instead of synth's 0.02: peaked distributions (top probability up to
  // ~0.95 instead of ~0.01) and attention that depends on position, so a wrong
  // rotation or head grouping shows.
  const auto hf = synth_tiny(dir, "synth", "96,128,64,160", 0.25f);
  const auto gguf = dir / "deci-f32.gguf";
  run_piquant("convert " + shell_quote(hf.string()) + " --type f32 -o " + shell_quote(gguf.string()));

  const auto model = LlamaModel::load(gguf.string());
  ASSERT_EQ(model->architecture(), "deci");
  ASSERT_FALSE(model->rope_factors().empty()) << "the tiny preset has llama3 rope scaling";
  ASSERT_LT(model->params().n_head_kv, model->params().n_head);
  std::string text;
  while (text.size() < 2000) text += "It was a bright cold day in April, and the clocks were striking thirteen. ";
  std::vector<std::int32_t> tokens = model->tokenizer().encode(text, /*add_special=*/true, /*parse_special=*/false);
  ASSERT_GE(tokens.size(), kSequence);
  tokens.resize(kSequence);

  const auto answer = run_llama_cpp({"logits", gguf.string(), json(tokens).dump(), "--kv-type", "F32", "--flash-attention", "off"});
  const std::int64_t n_vocab = model->params().n_vocab;
  ASSERT_EQ(answer.at("n_vocab"), n_vocab);
  const auto& theirs = answer.at("logits");
  ASSERT_EQ(theirs.size(), kSequence);

  ContextOptions options;
  options.n_ctx = static_cast<std::int64_t>(kSequence);
  options.kv_type = GgmlType::F32;
  LlamaContext context(*model, options);
  const std::span<const float> ours = context.eval(tokens, /*all_logits=*/true);

  double max_prob_diff = 0, max_logit_rel_diff = 0, max_logit_abs_diff = 0, max_prob = 0, min_top_prob = 1;
  for (std::size_t pos = 0; pos < kSequence; ++pos) {
    const std::vector<float> reference = theirs[pos].get<std::vector<float>>();
    ASSERT_EQ(reference.size(), static_cast<std::size_t>(n_vocab));
    const auto row = ours.subspan(pos * static_cast<std::size_t>(n_vocab), static_cast<std::size_t>(n_vocab));
    float scale = 0;
    for (const float v : reference) scale = std::max(scale, std::fabs(v));
    for (std::size_t i = 0; i < reference.size(); ++i) {
      const double diff = std::fabs(static_cast<double>(row[i]) - reference[i]);
      max_logit_abs_diff = std::max(max_logit_abs_diff, diff);
      max_logit_rel_diff = std::max(max_logit_rel_diff, diff / std::max(scale, 1e-6f));
    }
    const std::vector<double> p = softmax(row);
    const std::vector<double> q = softmax(reference);
    double top = 0;
    for (std::size_t i = 0; i < p.size(); ++i) {
      max_prob_diff = std::max(max_prob_diff, std::fabs(p[i] - q[i]));
      top = std::max(top, q[i]);
    }
    max_prob = std::max(max_prob, top);
    min_top_prob = std::min(min_top_prob, top);
  }
  std::cout << "deci parity over " << kSequence << " positions: max |Δp| " << max_prob_diff << ", max |Δlogit| "
            << max_logit_abs_diff << " (relative to the row's largest |logit|: " << max_logit_rel_diff
            << "), llama.cpp's top probability ranges " << min_top_prob << " .. " << max_prob << "\n";
  // The distributions must be far from uniform (1/512) for the comparison to mean something.
  EXPECT_GT(max_prob, 0.5);
  EXPECT_LE(max_prob_diff, 1e-3);
  EXPECT_LE(max_logit_rel_diff, 1e-3);
}

}  // namespace
}  // namespace piquant::testing
