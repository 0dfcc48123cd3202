#include "model/llama_context.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "kernels/matmul.h"
#include "kernels/rope.h"
#include "kernels/vector_ops.h"

namespace piquant {

// Scratch space for one batch of up to n_batch tokens, and the KV cache.
struct LlamaContext::Buffers {
  std::int64_t n_batch = 0;
  std::vector<float> x;       // residual stream: n_batch × n_embd
  std::vector<float> xn;      // normalised input of a sub-layer
  std::vector<float> q, k, v; // n_batch × (heads · head_dim)
  std::vector<float> attn;    // attention output before wo
  std::vector<float> proj;    // wo / w_down output
  std::vector<float> gate, up;  // n_batch × max n_ff
  std::vector<float> scores;  // per thread: n_ctx attention scores
  // Per layer: n_ctx × kv_dim elements of kv_type. Left uninitialised (every position is
  // written before attention reads it), so the pages are only committed as the context
  // fills: a 4096-position cache of an 8B model is 512 MiB nobody has to zero.
  std::unique_ptr<std::uint8_t[]> k_cache, v_cache;
  std::size_t cache_bytes = 0;  // each of k_cache, v_cache
  std::size_t kv_row_bytes = 0;  // one position of one layer
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
  const std::int64_t nb = options_.n_batch;
  const std::int64_t q_dim = p.n_head * p.head_dim;
  const std::int64_t kv_dim = p.n_head_kv * p.head_dim;
  const std::int64_t max_ff = *std::max_element(p.n_ff.begin(), p.n_ff.end());
  const auto size = [](std::int64_t n) { return static_cast<std::size_t>(n); };
  b.n_batch = nb;
  b.x.resize(size(nb * p.n_embd));
  b.xn.resize(size(nb * p.n_embd));
  b.q.resize(size(nb * q_dim));
  b.k.resize(size(nb * kv_dim));
  b.v.resize(size(nb * kv_dim));
  b.attn.resize(size(nb * q_dim));
  b.proj.resize(size(nb * p.n_embd));
  b.gate.resize(size(nb * max_ff));
  b.up.resize(size(nb * max_ff));
  b.scores.resize(size(options_.n_ctx) * pool_.size());
  b.kv_row_bytes = static_cast<std::size_t>(ggml_nbytes(options_.kv_type, static_cast<std::uint64_t>(kv_dim)));
  const std::size_t cache_bytes = b.kv_row_bytes * size(options_.n_ctx) * size(p.n_layer);
  b.k_cache = std::make_unique_for_overwrite<std::uint8_t[]>(cache_bytes);
  b.v_cache = std::make_unique_for_overwrite<std::uint8_t[]>(cache_bytes);
  b.cache_bytes = cache_bytes;
  b.rope = std::make_unique<RopeTable>(p.head_dim, p.rope_theta, model.rope_factors(), model.rope_pairing());
}

LlamaContext::~LlamaContext() = default;

std::uint64_t LlamaContext::kv_cache_bytes() const { return 2 * static_cast<std::uint64_t>(buffers_->cache_bytes); }

namespace {
std::uint64_t saturating_product(std::initializer_list<std::uint64_t> factors) {
  std::uint64_t out = 1;
  for (const std::uint64_t f : factors) {
    if (__builtin_mul_overflow(out, f, &out)) return UINT64_MAX;
  }
  return out;
}
std::uint64_t count(std::int64_t n) { return n > 0 ? static_cast<std::uint64_t>(n) : 0; }
}  // namespace

// Mirrors the constructor's sizes: K and V, n_ctx rows of kv_dim per layer.
std::uint64_t LlamaContext::kv_cache_bytes(const LlamaParams& p, const ContextOptions& options) {
  const std::uint64_t row = ggml_nbytes(options.kv_type, count(p.n_head_kv * p.head_dim));
  return saturating_product({2, row, count(options.n_ctx), count(p.n_layer)});
}

// Mirrors the constructor's float buffers, plus the last token's logits.
std::uint64_t LlamaContext::scratch_bytes(const LlamaParams& p, const ContextOptions& options) {
  const std::uint64_t nb = count(std::min(options.n_batch, options.n_ctx));
  const std::uint64_t max_ff = p.n_ff.empty() ? 0 : count(*std::max_element(p.n_ff.begin(), p.n_ff.end()));
  const std::uint64_t per_token = count(3 * p.n_embd + 2 * p.n_head * p.head_dim + 2 * p.n_head_kv * p.head_dim) + 2 * max_ff;
  const std::uint64_t threads = options.n_threads > 0 ? options.n_threads : ThreadPool::physical_cores();
  const std::uint64_t floats[] = {saturating_product({nb, per_token}), saturating_product({count(options.n_ctx), threads}),
                                  count(p.n_vocab)};
  std::uint64_t total = 0;
  for (const std::uint64_t n : floats) {
    if (__builtin_add_overflow(total, n, &total)) return UINT64_MAX;
  }
  return saturating_product({total, sizeof(float)});
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

void LlamaContext::forward_batch(std::span<const std::int32_t> tokens, bool all_logits, float* logits_out) {
  const LlamaParams& p = model_.params();
  Buffers& b = *buffers_;
  const std::int64_t T = static_cast<std::int64_t>(tokens.size());
  const std::int64_t E = p.n_embd;
  const std::int64_t D = p.head_dim;
  const std::int64_t H = p.n_head;
  const std::int64_t KV = p.n_head_kv;
  const std::int64_t q_dim = H * D;
  const std::int64_t kv_dim = KV * D;
  const std::int64_t group = H / KV;
  const std::int64_t p0 = n_past_;
  const float eps = static_cast<float>(p.rms_norm_eps);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const GgmlType kv_type = options_.kv_type;
  const std::size_t elem = b.kv_row_bytes / static_cast<std::size_t>(kv_dim);
  // Shows the observer (if any) the input of a weight product just before it runs.
  const auto observe = [this](WeightKind kind, std::int64_t layer, const MatrixView& w, const float* x, std::int64_t rows) {
    if (observer_ != nullptr) observer_->observe(WeightId{kind, layer}, x, rows, w.cols);
  };

  for (std::int64_t t = 0; t < T; ++t) dequantize_row(model_.token_embedding(), tokens[static_cast<std::size_t>(t)], b.x.data() + t * E);

  for (std::int64_t l = 0; l < p.n_layer; ++l) {
    const LayerWeights& w = model_.layer(l);
    // Attention block.
    for (std::int64_t t = 0; t < T; ++t) rms_norm(b.x.data() + t * E, w.attn_norm, E, eps, b.xn.data() + t * E);
    observe(WeightKind::AttnQ, l, w.wq, b.xn.data(), T);
    matmul(w.wq, b.xn.data(), T, b.q.data(), pool_);
    observe(WeightKind::AttnK, l, w.wk, b.xn.data(), T);
    matmul(w.wk, b.xn.data(), T, b.k.data(), pool_);
    observe(WeightKind::AttnV, l, w.wv, b.xn.data(), T);
    matmul(w.wv, b.xn.data(), T, b.v.data(), pool_);
    std::uint8_t* k_layer = b.k_cache.get() + static_cast<std::size_t>(l) * static_cast<std::size_t>(options_.n_ctx) * b.kv_row_bytes;
    std::uint8_t* v_layer = b.v_cache.get() + static_cast<std::size_t>(l) * static_cast<std::size_t>(options_.n_ctx) * b.kv_row_bytes;
    for (std::int64_t t = 0; t < T; ++t) {
      b.rope->apply(b.q.data() + t * q_dim, H, p0 + t);
      b.rope->apply(b.k.data() + t * kv_dim, KV, p0 + t);
      store_row(b.k.data() + t * kv_dim, kv_dim, kv_type, k_layer + static_cast<std::size_t>(p0 + t) * b.kv_row_bytes);
      store_row(b.v.data() + t * kv_dim, kv_dim, kv_type, v_layer + static_cast<std::size_t>(p0 + t) * b.kv_row_bytes);
    }
    // Causal attention: token t sees positions 0 .. p0 + t. One (token, head) task at a time per thread.
    pool_.run([&](unsigned thread, unsigned n_threads) {
      float* scores = b.scores.data() + static_cast<std::size_t>(thread) * static_cast<std::size_t>(options_.n_ctx);
      for (std::int64_t task = thread; task < T * H; task += n_threads) {
        const std::int64_t t = task / H;
        const std::int64_t h = task % H;
        const std::int64_t g = h / group;
        const std::int64_t n_kv = p0 + t + 1;
        const float* q = b.q.data() + t * q_dim + h * D;
        for (std::int64_t j = 0; j < n_kv; ++j) {
          const std::uint8_t* k = k_layer + static_cast<std::size_t>(j) * b.kv_row_bytes + static_cast<std::size_t>(g * D) * elem;
          scores[j] = dot(q, k, kv_type, D) * scale;
        }
        softmax(scores, n_kv);
        float* out = b.attn.data() + t * q_dim + h * D;
        std::fill(out, out + D, 0.0f);
        for (std::int64_t j = 0; j < n_kv; ++j) {
          const std::uint8_t* v = v_layer + static_cast<std::size_t>(j) * b.kv_row_bytes + static_cast<std::size_t>(g * D) * elem;
          axpy(scores[j], v, kv_type, D, out);
        }
      }
    });
    observe(WeightKind::AttnOutput, l, w.wo, b.attn.data(), T);
    matmul(w.wo, b.attn.data(), T, b.proj.data(), pool_);
    for (std::int64_t i = 0; i < T * E; ++i) b.x[static_cast<std::size_t>(i)] += b.proj[static_cast<std::size_t>(i)];

    // MLP block: SwiGLU with this layer's own width.
    const std::int64_t F = p.n_ff[static_cast<std::size_t>(l)];
    for (std::int64_t t = 0; t < T; ++t) rms_norm(b.x.data() + t * E, w.ffn_norm, E, eps, b.xn.data() + t * E);
    observe(WeightKind::FfnGate, l, w.w_gate, b.xn.data(), T);
    matmul(w.w_gate, b.xn.data(), T, b.gate.data(), pool_);
    observe(WeightKind::FfnUp, l, w.w_up, b.xn.data(), T);
    matmul(w.w_up, b.xn.data(), T, b.up.data(), pool_);
    swiglu(b.gate.data(), b.up.data(), T * F, b.gate.data());
    observe(WeightKind::FfnDown, l, w.w_down, b.gate.data(), T);
    matmul(w.w_down, b.gate.data(), T, b.proj.data(), pool_);
    for (std::int64_t i = 0; i < T * E; ++i) b.x[static_cast<std::size_t>(i)] += b.proj[static_cast<std::size_t>(i)];
  }
  n_past_ += T;

  if (logits_out == nullptr) return;
  // Only the rows whose logits are wanted go through the output matrix.
  const std::int64_t first = all_logits ? 0 : T - 1;
  const std::int64_t rows = T - first;
  for (std::int64_t t = first; t < T; ++t) {
    rms_norm(b.x.data() + t * E, model_.output_norm(), E, eps, b.xn.data() + (t - first) * E);
  }
  observe(WeightKind::Output, -1, model_.output(), b.xn.data(), rows);
  matmul(model_.output(), b.xn.data(), rows, logits_out, pool_);
}

}  // namespace piquant
