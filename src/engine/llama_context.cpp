#include "engine/llama_context.h"

#include <algorithm>
#include <string>

#include "core/error.h"
#include "kernels/rope.h"

namespace piquant {

// Scratch space for one batch of up to n_batch tokens, and the KV cache: exactly what the
// plan says (context_plan.h describes each buffer; forward_blocks.h how the blocks use them).
struct LlamaContext::Buffers {
  ContextPlan plan;
  std::vector<float> x, xn, q, k, v, attn, proj;
  std::vector<float> work;  // the MLP's gate and up, or attention's per-thread scratch
  // Per layer: n_ctx × kv_dim elements of kv_type. Left uninitialised (every position is
  // written before attention reads it), so the pages are only committed as the context
  // fills: a 4096-position cache of an 8B model is 512 MiB nobody has to zero.
  std::unique_ptr<std::uint8_t[]> k_cache, v_cache;
  std::size_t cache_bytes = 0;  // each of k_cache, v_cache
  std::unique_ptr<RopeTable> rope;
};

LlamaContext::LlamaContext(const LlamaModel& model, const ContextOptions& options)
    : model_(model), options_(options), pool_(options.n_threads), buffers_(std::make_unique<Buffers>()) {
  const LlamaParams& p = model.params();
  if (options_.n_ctx <= 0) throw Error("context length must be positive");
  if (options_.n_batch <= 0) throw Error("batch size must be positive");
  if (options_.kv_type != GgmlType::F16 && options_.kv_type != GgmlType::F32 && options_.kv_type != GgmlType::BF16) {
    throw Error("KV cache type must be f16, f32 or bf16");
  }
  options_.n_batch = std::min(options_.n_batch, options_.n_ctx);
  Buffers& b = *buffers_;
  b.plan = plan_context(p, options_, pool_.size());
  const ContextPlan& plan = b.plan;
  if (plan.context_scratch_bytes() == UINT64_MAX || plan.kv_cache_bytes == UINT64_MAX) {
    throw Error("a context of " + std::to_string(options_.n_ctx) + " positions is too large to allocate");
  }
  const auto allocate = [](std::vector<float>& buffer, std::uint64_t floats) { buffer.resize(static_cast<std::size_t>(floats)); };
  allocate(b.x, plan.x);
  allocate(b.xn, plan.xn);
  allocate(b.q, plan.q);
  allocate(b.k, plan.k);
  allocate(b.v, plan.v);
  allocate(b.attn, plan.attn);
  allocate(b.proj, plan.proj);
  allocate(b.work, plan.work);
  logits_.reserve(static_cast<std::size_t>(plan.logits));  // so a decode step's resize never reallocates
  b.cache_bytes = static_cast<std::size_t>(plan.kv_cache_bytes / 2);  // K, then the same again for V
  b.k_cache = std::make_unique_for_overwrite<std::uint8_t[]>(b.cache_bytes);
  b.v_cache = std::make_unique_for_overwrite<std::uint8_t[]>(b.cache_bytes);
  b.rope = std::make_unique<RopeTable>(p.head_dim, p.rope_theta, model.rope_factors(), model.rope_pairing());
}

LlamaContext::~LlamaContext() = default;

std::uint64_t LlamaContext::kv_cache_bytes() const { return 2 * static_cast<std::uint64_t>(buffers_->cache_bytes); }

const ContextPlan& LlamaContext::plan() const { return buffers_->plan; }

std::uint64_t LlamaContext::allocated_scratch_bytes() const {
  const Buffers& b = *buffers_;
  std::uint64_t floats = logits_.capacity();
  for (const std::vector<float>* buffer : {&b.x, &b.xn, &b.q, &b.k, &b.v, &b.attn, &b.proj, &b.work}) floats += buffer->capacity();
  return floats * sizeof(float);
}

std::uint64_t LlamaContext::kv_cache_bytes(const LlamaParams& p, const ContextOptions& options) {
  return plan_context(p, options, 1).kv_cache_bytes;  // the thread count does not change the cache
}

std::uint64_t LlamaContext::scratch_bytes(const LlamaParams& p, const ContextOptions& options) {
  return plan_context(p, options, options.n_threads > 0 ? options.n_threads : ThreadPool::physical_cores()).scratch_bytes();
}

void LlamaContext::truncate(std::int64_t n_keep) {
  if (n_keep < 0 || n_keep > n_past_) throw Error("truncate: " + std::to_string(n_keep) + " is outside the cache");
  n_past_ = n_keep;
}

std::span<const float> LlamaContext::eval(std::span<const std::int32_t> tokens, bool all_logits) {
  const std::int64_t n = static_cast<std::int64_t>(tokens.size());
  if (n == 0) throw Error("eval: no tokens");
  if (n_past_ + n > options_.n_ctx) {
    throw Error("context full: " + std::to_string(n_past_) + " + " + std::to_string(n) + " tokens exceed the context length " +
                std::to_string(options_.n_ctx));
  }
  const std::int64_t n_vocab = model_.params().n_vocab;
  for (const std::int32_t t : tokens) {
    if (t < 0 || t >= n_vocab) throw Error("eval: token id " + std::to_string(t) + " outside the vocabulary of " + std::to_string(n_vocab));
  }
  logits_.resize(static_cast<std::size_t>((all_logits ? n : 1) * n_vocab));
  for (std::int64_t start = 0; start < n; start += options_.n_batch) {
    const std::int64_t count = std::min(options_.n_batch, n - start);
    const bool last_batch = start + count == n;
    float* out = all_logits ? logits_.data() + start * n_vocab : (last_batch ? logits_.data() : nullptr);
    forward_batch(tokens.subspan(static_cast<std::size_t>(start), static_cast<std::size_t>(count)), all_logits, out);
  }
  return logits_;
}

KvLayerView LlamaContext::kv_layer(std::int64_t layer) const {
  const Buffers& b = *buffers_;
  const auto row_bytes = static_cast<std::size_t>(b.plan.kv_row_bytes);
  const std::size_t offset = static_cast<std::size_t>(layer) * static_cast<std::size_t>(options_.n_ctx) * row_bytes;
  return {b.k_cache.get() + offset, b.v_cache.get() + offset, row_bytes, options_.n_ctx, options_.kv_type};
}

void LlamaContext::forward_batch(std::span<const std::int32_t> tokens, bool all_logits, float* logits_out) {
  Buffers& b = *buffers_;
  const std::int64_t T = static_cast<std::int64_t>(tokens.size());
  const ForwardEnv env{model_.params(), pool_, *b.rope, observer_};
  // The MLP and attention take turns with the work region (context_plan.h).
  const auto work = std::span(b.work);
  const AttentionBuffers attention{b.xn, b.q, b.k, b.v, b.attn, b.proj, work, static_cast<std::size_t>(b.plan.attend_per_thread), {}, {}};
  const auto gate_floats = static_cast<std::size_t>(b.plan.mlp_gate);
  const MlpBuffers mlp{b.xn, work.first(gate_floats), work.subspan(gate_floats, gate_floats), b.proj};
  const std::span<float> x(b.x);

  embed(model_.token_embedding(), tokens, x);
  for (std::int64_t l = 0; l < model_.params().n_layer; ++l) {
    const LayerWeights& w = model_.layer(l);
    attention_block(env, l, w, kv_layer(l), n_past_, T, x, attention);
    mlp_block(env, l, w, T, x, mlp);
  }
  n_past_ += T;

  if (logits_out == nullptr) return;
  const std::int64_t first = all_logits ? 0 : T - 1;
  output_head(env, model_.output_norm(), model_.output(), x, first, T, b.xn, logits_out);
}

}  // namespace piquant
