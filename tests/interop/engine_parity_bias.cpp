// Acceptance: stock llama.cpp adds blk.N.ffn_down.bias, as piquant writes it, in both
// graphs piquant's files use, and gives the same next-token distributions as piquant's
// engine: a tiny "deci" model (per-layer MLP widths) with biases on some layers, and a
// uniform-width "llama" model with a bias on every layer. Both F32 GGUF, attention in
// f32 on both sides, the tolerances of engine_parity_logits.cpp. Each case also checks
// that llama.cpp's distributions are far from those of the same model without the
// biases, so the comparison would fail if llama.cpp ignored the tensor.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "checkpoint/gguf_export.h"
#include "engine/llama_context.h"
#include "engine/llama_model.h"
#include "interop/engine_parity_support.h"
#include "interop/llama_cpp_runner.h"
#include "support/model_fixtures.h"
#include "support/test_support.h"

namespace piquant::testing {
namespace {

using nlohmann::json;

constexpr std::size_t kSequence = 64;

std::vector<float> piquant_logits(const LlamaModel& model, const std::vector<std::int32_t>& tokens) {
  ContextOptions options;
  options.n_ctx = static_cast<std::int64_t>(tokens.size());
  options.kv_type = GgmlType::F32;
  LlamaContext context(model, options);
  const std::span<const float> logits = context.eval(tokens, /*all_logits=*/true);
  return {logits.begin(), logits.end()};
}

struct Comparison {
  double max_prob_diff = 0, max_logit_rel_diff = 0, max_top_prob = 0;
};

// theirs: llama.cpp's JSON rows; ours: n_vocab floats per position.
Comparison compare(const json& theirs, const std::vector<float>& ours, std::size_t n_vocab) {
  Comparison c;
  for (std::size_t pos = 0; pos < kSequence; ++pos) {
    const std::vector<float> reference = theirs[pos].get<std::vector<float>>();
    const std::span<const float> row(ours.data() + pos * n_vocab, n_vocab);
    float scale = 0;
    for (const float v : reference) scale = std::max(scale, std::fabs(v));
    for (std::size_t i = 0; i < n_vocab; ++i) {
      c.max_logit_rel_diff =
          std::max(c.max_logit_rel_diff, std::fabs(static_cast<double>(row[i]) - reference[i]) / std::max(scale, 1e-6f));
    }
    const std::vector<double> p = softmax(row), q = softmax(reference);
    for (std::size_t i = 0; i < p.size(); ++i) {
      c.max_prob_diff = std::max(c.max_prob_diff, std::fabs(p[i] - q[i]));
      c.max_top_prob = std::max(c.max_top_prob, q[i]);
    }
  }
  return c;
}

std::vector<std::int32_t> parity_tokens(const LlamaModel& model) {
  std::string text;
  while (text.size() < 2000) text += "It was a bright cold day in April, and the clocks were striking thirteen. ";
  std::vector<std::int32_t> tokens = model.tokenizer().encode(text, /*add_special=*/true, /*parse_special=*/false);
  tokens.resize(kSequence);
  return tokens;
}

void check_bias_parity(const std::string& widths, const std::vector<std::int64_t>& biased_layers, const std::string& arch) {
  const TempDir dir;
  // stddev 0.25 as in engine_parity_logits.cpp: peaked distributions that depend on position.
  const auto hf = write_tiny_hf(dir, "hf", widths, 0.25f);
  std::map<std::int64_t, std::vector<float>> biases;
  for (const std::int64_t l : biased_layers) biases[l] = random_values(256, 1.0f, 100 + static_cast<std::uint64_t>(l));
  GgufExportOptions options;
  options.type = GgmlType::F32;
  const auto gguf = dir / "biased.gguf";
  export_gguf(*with_ffn_down_bias(open_checkpoint(hf.string()), biases), gguf.string(), options);
  const auto plain_gguf = dir / "plain.gguf";
  export_gguf(*open_checkpoint(hf.string()), plain_gguf.string(), options);

  const auto model = LlamaModel::load(gguf.string());
  ASSERT_EQ(model->architecture(), arch);
  for (const std::int64_t l : biased_layers) ASSERT_NE(model->layer(l).ffn_down_bias, nullptr) << l;
  std::string text;
  while (text.size() < 2000) text += "It was a bright cold day in April, and the clocks were striking thirteen. ";
  std::vector<std::int32_t> tokens = model->tokenizer().encode(text, /*add_special=*/true, /*parse_special=*/false);
  ASSERT_GE(tokens.size(), kSequence);
  tokens.resize(kSequence);

  const json answer = run_llama_cpp({"logits", gguf.string(), json(tokens).dump(), "--kv-type", "F32", "--flash-attention", "off"});
  const auto n_vocab = static_cast<std::size_t>(model->params().n_vocab);
  ASSERT_EQ(answer.at("n_vocab"), n_vocab);
  const json& theirs = answer.at("logits");
  ASSERT_EQ(theirs.size(), kSequence);

  const Comparison same = compare(theirs, piquant_logits(*model, tokens), n_vocab);
  const Comparison without = compare(theirs, piquant_logits(*LlamaModel::load(plain_gguf.string()), tokens), n_vocab);
  std::cout << arch << " with ffn_down biases, parity over " << kSequence << " positions: max |Δp| " << same.max_prob_diff
            << ", max |Δlogit| / max |logit| " << same.max_logit_rel_diff << "; llama.cpp's top probability up to "
            << same.max_top_prob << "; against the same model without biases: max |Δp| " << without.max_prob_diff << "\n";
  EXPECT_GT(same.max_top_prob, 0.5);  // far from uniform (1/512)
  EXPECT_LE(same.max_prob_diff, 1e-3);
  EXPECT_LE(same.max_logit_rel_diff, 1e-3);
  // llama.cpp really added the biases: without them the distributions are far apart.
  EXPECT_GT(without.max_prob_diff, 0.05);
}

// Files written by `piquant prune` itself: FLAP with bias compensation (deci, biases on
// the pruned layers) and magnitude without (deci, no bias).
void check_pruned_parity(const std::string& criterion, const std::string& bias) {
  const TempDir dir;
  const auto hf = write_tiny_hf(dir, "hf", "96,128,64,160", 0.25f);
  const auto calib = dir / "calib.txt";
  std::string text;
  for (int i = 0; text.size() < 6000; ++i) text += "The " + std::to_string(i) + " clocks in April were striking thirteen, and it was cold. ";
  write_file(calib, text);
  const auto pruned = dir / "pruned.gguf";
  run_piquant("prune -m " + shell_quote(hf.string()) + " --layers 1-3 --ratio 0.25 --align 32 --criterion " + criterion +
              " --bias-compensation " + bias + " --calib " + shell_quote(calib.string()) +
              " --calib-seq 64 --type f32 -o " + shell_quote(pruned.string()));
  const auto model = LlamaModel::load(pruned.string());
  ASSERT_EQ(model->architecture(), "deci");
  ASSERT_NE(model->params().n_ff, (std::vector<std::int64_t>{96, 128, 64, 160}));
  const std::vector<std::int64_t> full = {96, 128, 64, 160};
  int with_bias = 0;
  for (std::int64_t l = 0; l < 4; ++l) {
    const bool pruned_layer = model->params().n_ff[static_cast<std::size_t>(l)] < full[static_cast<std::size_t>(l)];
    ASSERT_EQ(model->layer(l).ffn_down_bias != nullptr, bias == "on" && pruned_layer) << l;
    with_bias += model->layer(l).ffn_down_bias != nullptr;
  }
  if (bias == "on") {
    ASSERT_GE(with_bias, 2);
  }
  const std::vector<std::int32_t> tokens = parity_tokens(*model);
  const json answer = run_llama_cpp({"logits", pruned.string(), json(tokens).dump(), "--kv-type", "F32", "--flash-attention", "off"});
  const auto n_vocab = static_cast<std::size_t>(model->params().n_vocab);
  const Comparison same = compare(answer.at("logits"), piquant_logits(*model, tokens), n_vocab);
  std::cout << "pruned by " << criterion << " (bias " << bias << "), parity over " << kSequence << " positions: max |Δp| "
            << same.max_prob_diff << ", max |Δlogit| / max |logit| " << same.max_logit_rel_diff << "\n";
  EXPECT_GT(same.max_top_prob, 0.5);
  EXPECT_LE(same.max_prob_diff, 1e-3);
  EXPECT_LE(same.max_logit_rel_diff, 1e-3);
}

TEST(EngineParity, PrunedWithBiasCompensationMatchesLlamaCpp) { check_pruned_parity("flap", "on"); }

TEST(EngineParity, PrunedWithoutBiasMatchesLlamaCpp) { check_pruned_parity("magnitude", "off"); }

TEST(EngineParity, DeciModelWithFfnDownBiasesMatchesLlamaCpp) {
  check_bias_parity("96,128,64,160", {1, 2}, "deci");
}

TEST(EngineParity, LlamaModelWithFfnDownBiasesMatchesLlamaCpp) {
  check_bias_parity("128,128,128,128", {0, 1, 2, 3}, "llama");
}

}  // namespace
}  // namespace piquant::testing
