#include "train/lora_test_support.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>

#include "core/thread_pool.h"
#include "engine/forward_blocks.h"
#include "kernels/attention.h"
#include "kernels/rope.h"
#include "train/lora_files.h"

namespace piquant::testing {

std::vector<WeightKind> all_block_kinds() {
  return {WeightKind::AttnQ, WeightKind::AttnK, WeightKind::AttnV, WeightKind::AttnOutput,
          WeightKind::FfnGate, WeightKind::FfnUp, WeightKind::FfnDown};
}

LoraAdapter random_lora(const LlamaParams& base, const std::vector<WeightKind>& kinds, std::int64_t rank, float alpha,
                        RopePairing layout, float scale, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-scale, scale);
  LoraAdapter adapter(rank, alpha, layout);
  for (std::int64_t layer = 0; layer < base.n_layer; ++layer) {
    for (const WeightKind kind : kinds) {
      const WeightId id{kind, kind == WeightKind::Output ? -1 : layer};
      if (kind == WeightKind::Output && layer > 0) continue;
      const auto shape = lora_weight_shape(base, id);
      if (!shape) throw std::runtime_error("random_lora: weight cannot be adapted");
      LoraMatrix& m = adapter.add(id, shape->first, shape->second);
      for (float& v : m.a) v = dist(rng);
      for (float& v : m.b) v = dist(rng);
    }
  }
  return adapter;
}

std::vector<float> forward_logits(const LlamaModel& model, std::span<const std::int32_t> tokens, const LoraAdapter* lora) {
  const LlamaParams& p = model.params();
  const auto T = static_cast<std::int64_t>(tokens.size());
  const std::int64_t E = p.n_embd, D = p.head_dim, q_dim = p.n_head * D, kv_dim = p.n_head_kv * D;
  const std::int64_t F = *std::max_element(p.n_ff.begin(), p.n_ff.end());
  ThreadPool pool(1);
  const RopeTable rope(D, p.rope_theta, model.rope_factors(), model.rope_pairing());
  const ForwardEnv env{p, pool, rope, nullptr, lora};
  const auto n = [](std::int64_t count) { return static_cast<std::size_t>(count); };
  std::vector<float> x(n(T * E)), xn(n(T * E)), q(n(T * q_dim)), k(n(T * kv_dim)), v(n(T * kv_dim)), attn(n(T * q_dim)),
      proj(n(T * E)), gate(n(mlp_step_tokens(T) * F)), up(gate.size());
  const std::size_t scratch_per_thread = attend_scratch_floats(1, T, D);
  std::vector<float> scratch(scratch_per_thread);
  std::vector<float> k_cache(n(p.n_layer * T * kv_dim)), v_cache(k_cache.size());
  const AttentionBuffers attention{xn, q, k, v, attn, proj, scratch, scratch_per_thread, {}, {}};
  const MlpBuffers mlp{xn, gate, up, proj};

  embed(model.token_embedding(), tokens, x);
  for (std::int64_t l = 0; l < p.n_layer; ++l) {
    const KvLayerView kv{reinterpret_cast<std::uint8_t*>(k_cache.data() + l * T * kv_dim),
                         reinterpret_cast<std::uint8_t*>(v_cache.data() + l * T * kv_dim), n(kv_dim) * 4, T, GgmlType::F32};
    attention_block(env, l, model.layer(l), kv, 0, T, x, attention);
    mlp_block(env, l, model.layer(l), T, x, mlp);
  }
  std::vector<float> logits(n(T * p.n_vocab));
  output_head(env, model.output_norm(), model.output(), x, 0, T, xn, logits.data());
  return logits;
}

double max_abs_diff(std::span<const float> x, std::span<const float> y) {
  if (x.size() != y.size()) throw std::runtime_error("max_abs_diff: sizes differ");
  double worst = 0;
  for (std::size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::fabs(static_cast<double>(x[i]) - y[i]));
  return worst;
}

double max_abs(std::span<const float> x) {
  double worst = 0;
  for (const float v : x) worst = std::max(worst, std::fabs(static_cast<double>(v)));
  return worst;
}

}  // namespace piquant::testing
