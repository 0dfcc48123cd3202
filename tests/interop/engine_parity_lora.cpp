// Acceptance: stock llama.cpp loads piquant's GGUF LoRA adapter with its base model and
// gives the next-token distributions that piquant's merged model gives. stories260K
// (converted to F32 GGUF), a random non-zero rank-4 adapter on q, k, v, o, gate, up and
// down of every layer. Both sides keep attention in f32 (llama.cpp: F32 KV cache, no
// flash attention).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "engine/llama_context.h"
#include "engine/llama_model.h"
#include "interop/engine_parity_support.h"
#include "interop/llama_cpp_runner.h"
#include "train/lora_files.h"

namespace piquant::testing {
namespace {

using nlohmann::json;

constexpr std::size_t kSequence = 48;

std::vector<float> row_of(std::span<const float> all, std::size_t pos, std::int64_t n_vocab) {
  const auto n = static_cast<std::size_t>(n_vocab);
  return {all.begin() + static_cast<std::ptrdiff_t>(pos * n), all.begin() + static_cast<std::ptrdiff_t>((pos + 1) * n)};
}

TEST(EngineParity, LlamaCppWithPiquantLoraAdapterMatchesPiquantMergedModel) {
  const TempDir dir;
  const auto checkpoint = PIQUANT_SHARED_FILE("models/stories260K/stories260K.bin");
  const auto tokenizer = PIQUANT_SHARED_FILE("models/stories260K/tok512.bin");
  const auto base_path = convert_stories260k(dir, checkpoint, tokenizer, "f32");
  const auto base = LlamaModel::load(base_path.string());
  const LlamaParams& p = base->params();

  // Uniform in ±0.1, alpha 8 over rank 4: moves the distributions well beyond the
  // comparison's tolerance (checked below) without drowning the base model.
  LoraAdapter adapter(4, 8.0f, RopePairing::Interleaved);
  std::mt19937 rng(31);
  std::uniform_real_distribution<float> dist(-0.1f, 0.1f);
  for (std::int64_t layer = 0; layer < p.n_layer; ++layer) {
    for (const WeightKind kind : {WeightKind::AttnQ, WeightKind::AttnK, WeightKind::AttnV, WeightKind::AttnOutput,
                                  WeightKind::FfnGate, WeightKind::FfnUp, WeightKind::FfnDown}) {
      const auto shape = *lora_weight_shape(p, WeightId{kind, layer});
      LoraMatrix& m = adapter.add(WeightId{kind, layer}, shape.first, shape.second);
      for (float& v : m.a) v = dist(rng);
      for (float& v : m.b) v = dist(rng);
    }
  }
  const auto adapter_path = dir / "adapter.gguf";
  write_gguf_lora(adapter, p, adapter_path.string());
  const auto merged_path = dir / "merged-f32.gguf";
  run_piquant("merge -m " + shell_quote(base_path.string()) + " --lora " + shell_quote(adapter_path.string()) + " -o " +
              shell_quote(merged_path.string()) + " --type f32");
  const auto merged = LlamaModel::load(merged_path.string());

  std::string text;
  while (text.size() < 1000) text += "Once upon a time, there was a little girl named Lily. She loved to play outside. ";
  std::vector<std::int32_t> tokens = base->tokenizer().encode(text, /*add_special=*/true, /*parse_special=*/false);
  ASSERT_GE(tokens.size(), kSequence);
  tokens.resize(kSequence);

  const auto answer = run_llama_cpp({"logits", base_path.string(), json(tokens).dump(), "--lora", adapter_path.string(),
                                     "--kv-type", "F32", "--flash-attention", "off"});
  const std::int64_t n_vocab = p.n_vocab;
  ASSERT_EQ(answer.at("n_vocab"), n_vocab);
  const auto& theirs = answer.at("logits");
  ASSERT_EQ(theirs.size(), kSequence);

  ContextOptions options;
  options.n_ctx = static_cast<std::int64_t>(kSequence);
  options.kv_type = GgmlType::F32;
  LlamaContext merged_context(*merged, options);
  const std::span<const float> ours = merged_context.eval(tokens, /*all_logits=*/true);
  LlamaContext base_context(*base, options);
  const std::span<const float> plain = base_context.eval(tokens, /*all_logits=*/true);

  double max_prob_diff = 0, max_effect = 0;
  for (std::size_t pos = 0; pos < kSequence; ++pos) {
    const std::vector<float> reference = theirs[pos].get<std::vector<float>>();
    ASSERT_EQ(reference.size(), static_cast<std::size_t>(n_vocab));
    const std::vector<double> q = softmax(reference);
    const std::vector<double> mine = softmax(row_of(ours, pos, n_vocab));
    const std::vector<double> unadapted = softmax(row_of(plain, pos, n_vocab));
    for (std::size_t i = 0; i < q.size(); ++i) {
      max_prob_diff = std::max(max_prob_diff, std::fabs(mine[i] - q[i]));
      max_effect = std::max(max_effect, std::fabs(unadapted[i] - q[i]));
    }
  }
  std::cout << "LoRA parity over " << kSequence << " positions: max |Δp| " << max_prob_diff
            << " (llama.cpp with the adapter vs piquant's merged model); the adapter moves probabilities by up to "
            << max_effect << "\n";
  // A llama.cpp that ignored the adapter (or applied it permuted) would differ by this much.
  EXPECT_GT(max_effect, 0.05);
  EXPECT_LE(max_prob_diff, 1e-3);
}

}  // namespace
}  // namespace piquant::testing
