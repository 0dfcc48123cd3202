// The inference engine's logits against the independent double-precision forward pass
// (reference_llama.h) on a model with ffn_down biases, in memory and read back from the
// GGUF piquant writes for it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <random>

#include "checkpoint/gguf_export.h"
#include "engine/llama_context.h"
#include "engine/owned_model.h"
#include "support/test_support.h"
#include "train/model_checkpoint.h"
#include "train/reference_llama.h"

namespace piquant {
namespace {

using testing::ReferenceLlama;

LlamaParams biased_params() {
  LlamaParams p;
  p.n_vocab = 512;
  p.n_embd = 64;
  p.n_layer = 3;
  p.n_head = 4;
  p.n_head_kv = 2;
  p.head_dim = 16;
  p.n_ff = {96, 32, 160};  // a pruned model's widths
  p.ffn_down_bias = {true, false, true};
  p.rope_theta = 10000.0;
  p.rope_scaling = RopeScaling{"llama3", 8.0, 1.0, 4.0, 32};
  return p;
}

// Largest |engine − reference| over every logit, relative to the largest |reference logit|.
double relative_difference(std::span<const float> ours, const std::vector<std::vector<double>>& reference) {
  double scale = 0.0, diff = 0.0;
  const std::size_t n_vocab = reference.front().size();
  for (std::size_t t = 0; t < reference.size(); ++t) {
    for (std::size_t i = 0; i < n_vocab; ++i) {
      scale = std::max(scale, std::fabs(reference[t][i]));
      diff = std::max(diff, std::fabs(static_cast<double>(ours[t * n_vocab + i]) - reference[t][i]));
    }
  }
  return diff / scale;
}

TEST(ReferenceForward, LogitsWithFfnDownBiasesMatchTheDoubleReference) {
  const auto tok = PIQUANT_SHARED_FILE("models/stories260K/tok512.bin");
  const Vocab vocab = load_vocab_llama2c(tok.string(), 512);
  auto model = OwnedLlamaModel::random(biased_params(), vocab, RopePairing::Interleaved, 21, 0.2f);
  std::mt19937 rng(2);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (std::int64_t l : {0, 2}) {
    for (float& v : model->weight({WeightKind::FfnDownBias, l})) v = normal(rng);
  }
  std::vector<std::int32_t> tokens;
  for (int t = 0; t < 12; ++t) tokens.push_back(static_cast<std::int32_t>((t * 131 + 7) % 512));

  ReferenceLlama reference = ReferenceLlama::of(*model);
  const std::vector<std::vector<double>> expected = reference.logits(tokens);
  // Without the biases the reference moves far more than the tolerance below: the test sees them.
  reference.w.erase({static_cast<int>(WeightKind::FfnDownBias), 0});
  reference.w.erase({static_cast<int>(WeightKind::FfnDownBias), 2});
  std::vector<float> unbiased;
  for (const auto& row : reference.logits(tokens)) unbiased.insert(unbiased.end(), row.begin(), row.end());
  const double moved = relative_difference(unbiased, expected);
  std::cout << "without the biases the reference moves by " << moved << " of the largest logit\n";
  EXPECT_GT(moved, 1e-2);

  ContextOptions options;
  options.n_ctx = 16;
  options.kv_type = GgmlType::F32;
  options.n_threads = 2;
  {
    LlamaContext context(*model, options);
    const double d = relative_difference(context.eval(tokens, true), expected);
    std::cout << "in memory: max |engine - reference| / max |logit| = " << d << "\n";
    EXPECT_LT(d, 1e-5);
  }
  // The same model written to an F32 GGUF (its bias F32, 1-D) and loaded from the file.
  const testing::TempDir dir;
  GgufExportOptions gguf;
  gguf.type = GgmlType::F32;
  export_gguf(*checkpoint_of(*model, "biased"), (dir / "biased.gguf").string(), gguf);
  const auto loaded = LlamaModel::load((dir / "biased.gguf").string());
  ASSERT_EQ(loaded->params().ffn_down_bias, (std::vector<bool>{true, false, true}));
  LlamaContext context(*loaded, options);
  const double d = relative_difference(context.eval(tokens, true), expected);
  std::cout << "from the GGUF: max |engine - reference| / max |logit| = " << d << "\n";
  EXPECT_LT(d, 1e-5);
}

}  // namespace
}  // namespace piquant
