#include "engine/llama_context.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>

#include "core/error.h"
#include "kernels/attention.h"
#include "kernels/matmul.h"
#include "kernels/q8_activations.h"
#include "kernels/rope.h"
#include "kernels/vector_ops.h"

namespace piquant {

namespace {
// Attention runs in tasks of up to kAttendTokens consecutive tokens × the query heads
// sharing one KV head (at most kMaxAttendQueries queries), all handed to one attend() call
// so each cached K/V row is converted once for all of them.
constexpr std::int64_t kAttendTokens = 4;
constexpr std::int64_t kMaxAttendQueries = 64;
// Below this many tokens the per-token loops run inline: handing them to the pool costs more.
constexpr std::int64_t kParallelTokens = 4;
// The MLP of a long batch runs this many tokens at a time: its two n_ff-wide buffers are
// the largest scratch (2 × 512 × 14336 floats = 59 MB for a 512-token prompt on the 8B
// shape, 15 MB in steps of 128). Speed does not change: the integer kernels take tokens
// in L2-sized chunks of 8-32 anyway, re-reading the weights per chunk.
constexpr std::int64_t kMlpTokensPerStep = 128;

std::int64_t mlp_step_tokens(std::int64_t n_batch) { return std::min(n_batch, kMlpTokensPerStep); }
}  // namespace

// Scratch space for one batch of up to n_batch tokens, and the KV cache.
struct LlamaContext::Buffers {
  std::int64_t n_batch = 0;
  std::vector<float> x;       // residual stream: n_batch × n_embd
  std::vector<float> xn;      // normalised input of a sub-layer
  std::vector<float> q, k, v; // n_batch × (heads · head_dim)
  std::vector<float> attn;    // attention output before wo
  std::vector<float> proj;    // wo / w_down output
  std::vector<float> gate, up;  // min(n_batch, kMlpTokensPerStep) × max n_ff
  // Per thread: attend()'s scratch for one query over n_ctx positions. Blocks of queries
  // use the MLP's gate/up buffers instead, idle while attention runs, when they are larger.
  std::vector<float> scores;
  std::size_t scores_per_thread = 0;
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
  b.gate.resize(size(mlp_step_tokens(nb) * max_ff));
  b.up.resize(size(mlp_step_tokens(nb) * max_ff));
  b.scores_per_thread = attend_scratch_floats(1, options_.n_ctx, p.head_dim);
  b.scores.resize(b.scores_per_thread * pool_.size());
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
  const std::uint64_t per_token = count(3 * p.n_embd + 2 * p.n_head * p.head_dim + 2 * p.n_head_kv * p.head_dim);
  const std::uint64_t mlp_tokens = std::min<std::uint64_t>(nb, kMlpTokensPerStep);
  const std::uint64_t threads = options.n_threads > 0 ? options.n_threads : ThreadPool::physical_cores();
  const std::uint64_t attend_fixed = attend_scratch_floats(1, 0, std::max<std::int64_t>(p.head_dim, 0));
  const std::uint64_t floats[] = {saturating_product({nb, per_token}), saturating_product({mlp_tokens, 2 * max_ff}),
                                  saturating_product({count(options.n_ctx), threads}),
                                  saturating_product({attend_fixed, threads}), count(p.n_vocab)};
  std::uint64_t total = 0;
  for (const std::uint64_t n : floats) {
    if (__builtin_add_overflow(total, n, &total)) return UINT64_MAX;
  }
  // matmul's quantized copy of its input (one, reused), at its largest: the attention
  // block's input or the MLP's down projection input.
  const std::uint64_t widest_input = std::max({count(p.n_embd), count(p.n_head * p.head_dim)});
  const std::uint64_t q8 = std::max(Q8Activations::storage_bytes(nb, widest_input),
                                    Q8Activations::storage_bytes(mlp_tokens, max_ff));
  std::uint64_t bytes = saturating_product({total, sizeof(float)});
  if (__builtin_add_overflow(bytes, q8, &bytes)) return UINT64_MAX;
  return bytes;
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
  // fn(t0, t1) over tokens [0, n): spread over the pool for a prompt, inline for a few
  // tokens. Every token's work is independent and the same wherever it runs.
  const auto for_tokens = [this](std::int64_t n, const std::function<void(std::int64_t, std::int64_t)>& fn) {
    if (n >= kParallelTokens) {
      pool_.parallel_for(n, 1, fn);
    } else {
      fn(0, n);
    }
  };
  const auto add_residual = [&] {
    for_tokens(T, [&](std::int64_t t0, std::int64_t t1) {
      float* x = b.x.data();
      const float* proj = b.proj.data();
      for (std::int64_t i = t0 * E; i < t1 * E; ++i) x[i] += proj[i];
    });
  };

  // Attention tasks: blocks of consecutive tokens × the query heads of one KV head, as
  // large as the scratch allows. Each thread's scratch is its own slice of the gate/up
  // buffers (half the threads in each) or, if larger, of b.scores, which always fits one
  // query. With few tokens (decode) a group is split until every thread has a task.
  // Each query's result is the same however the queries are blocked.
  const unsigned pool_threads = pool_.size();
  const unsigned threads_per_mlp_buffer = (pool_threads + 1) / 2;
  const std::size_t mlp_slice = b.gate.size() / threads_per_mlp_buffer;
  const std::size_t attend_budget = std::max(mlp_slice, b.scores_per_thread);
  std::int64_t tokens_per_task = std::clamp<std::int64_t>(kMaxAttendQueries / group, 1, kAttendTokens);
  std::int64_t heads_per_task = std::min(group, kMaxAttendQueries);
  while (tokens_per_task * heads_per_task > 1 && attend_scratch_floats(tokens_per_task * heads_per_task, p0 + T, D) > attend_budget) {
    if (tokens_per_task > 1) {
      --tokens_per_task;
    } else {
      heads_per_task = (heads_per_task + 1) / 2;  // reaches 1 query, which b.scores fits
    }
  }
  const std::int64_t n_blocks = (T + tokens_per_task - 1) / tokens_per_task;
  const auto parts_of = [&](std::int64_t heads) { return (group + heads - 1) / heads; };
  while (heads_per_task > 1 && n_blocks * KV * parts_of(heads_per_task) < static_cast<std::int64_t>(pool_threads)) {
    heads_per_task = (heads_per_task + 1) / 2;
  }
  const std::int64_t parts = parts_of(heads_per_task);
  const std::int64_t n_attend_tasks = n_blocks * KV * parts;
  const bool attend_in_mlp_buffers = mlp_slice > b.scores_per_thread;
  const std::size_t attend_scratch = attend_in_mlp_buffers ? mlp_slice : b.scores_per_thread;

  for (std::int64_t t = 0; t < T; ++t) dequantize_row(model_.token_embedding(), tokens[static_cast<std::size_t>(t)], b.x.data() + t * E);

  for (std::int64_t l = 0; l < p.n_layer; ++l) {
    const LayerWeights& w = model_.layer(l);
    // Attention block.
    for_tokens(T, [&](std::int64_t t0, std::int64_t t1) {
      for (std::int64_t t = t0; t < t1; ++t) rms_norm(b.x.data() + t * E, w.attn_norm, E, eps, b.xn.data() + t * E);
    });
    observe(WeightKind::AttnQ, l, w.wq, b.xn.data(), T);
    matmul(w.wq, b.xn.data(), T, b.q.data(), pool_);
    observe(WeightKind::AttnK, l, w.wk, b.xn.data(), T);
    matmul(w.wk, b.xn.data(), T, b.k.data(), pool_);
    observe(WeightKind::AttnV, l, w.wv, b.xn.data(), T);
    matmul(w.wv, b.xn.data(), T, b.v.data(), pool_);
    std::uint8_t* k_layer = b.k_cache.get() + static_cast<std::size_t>(l) * static_cast<std::size_t>(options_.n_ctx) * b.kv_row_bytes;
    std::uint8_t* v_layer = b.v_cache.get() + static_cast<std::size_t>(l) * static_cast<std::size_t>(options_.n_ctx) * b.kv_row_bytes;
    for_tokens(T, [&](std::int64_t t0, std::int64_t t1) {
      for (std::int64_t t = t0; t < t1; ++t) {
        b.rope->apply(b.q.data() + t * q_dim, H, p0 + t);
        b.rope->apply(b.k.data() + t * kv_dim, KV, p0 + t);
        store_row(b.k.data() + t * kv_dim, kv_dim, kv_type, k_layer + static_cast<std::size_t>(p0 + t) * b.kv_row_bytes);
        store_row(b.v.data() + t * kv_dim, kv_dim, kv_type, v_layer + static_cast<std::size_t>(p0 + t) * b.kv_row_bytes);
      }
    });
    // Causal attention: token t sees positions 0 .. p0 + t.
    pool_.run([&](unsigned thread, unsigned n_threads) {
      float* scratch = attend_in_mlp_buffers
                           ? (thread < threads_per_mlp_buffer ? b.gate.data() : b.up.data()) + thread % threads_per_mlp_buffer * mlp_slice
                           : b.scores.data() + static_cast<std::size_t>(thread) * b.scores_per_thread;
      const float* q_rows[kMaxAttendQueries];
      float* out_rows[kMaxAttendQueries];
      std::int64_t n_visible[kMaxAttendQueries];
      for (std::int64_t task = thread; task < n_attend_tasks; task += n_threads) {
        const std::int64_t block = task / (KV * parts);
        const std::int64_t g = task / parts % KV;
        const std::int64_t h0 = g * group + task % parts * heads_per_task;
        const std::int64_t h1 = std::min((g + 1) * group, h0 + heads_per_task);
        const std::int64_t t0 = block * tokens_per_task;
        const std::int64_t t1 = std::min(T, t0 + tokens_per_task);
        std::int64_t n_q = 0;
        for (std::int64_t t = t0; t < t1; ++t) {
          for (std::int64_t h = h0; h < h1; ++h, ++n_q) {
            q_rows[n_q] = b.q.data() + t * q_dim + h * D;
            out_rows[n_q] = b.attn.data() + t * q_dim + h * D;
            n_visible[n_q] = p0 + t + 1;
          }
        }
        const std::size_t head_offset = static_cast<std::size_t>(g * D) * elem;
        attend(q_rows, n_visible, n_q, k_layer + head_offset, v_layer + head_offset, b.kv_row_bytes, kv_type, D, scale, scratch,
               attend_scratch, out_rows);
      }
    });
    observe(WeightKind::AttnOutput, l, w.wo, b.attn.data(), T);
    matmul(w.wo, b.attn.data(), T, b.proj.data(), pool_);
    add_residual();

    // MLP block: SwiGLU with this layer's own width.
    const std::int64_t F = p.n_ff[static_cast<std::size_t>(l)];
    for_tokens(T, [&](std::int64_t t0, std::int64_t t1) {
      for (std::int64_t t = t0; t < t1; ++t) rms_norm(b.x.data() + t * E, w.ffn_norm, E, eps, b.xn.data() + t * E);
    });
    for (std::int64_t s0 = 0; s0 < T; s0 += mlp_step_tokens(T)) {
      const std::int64_t n = std::min(T - s0, mlp_step_tokens(T));
      const float* in = b.xn.data() + s0 * E;
      observe(WeightKind::FfnGate, l, w.w_gate, in, n);
      matmul(w.w_gate, in, n, b.gate.data(), pool_);
      observe(WeightKind::FfnUp, l, w.w_up, in, n);
      matmul(w.w_up, in, n, b.up.data(), pool_);
      // Element by element, so splitting by tokens changes nothing.
      for_tokens(n, [&](std::int64_t t0, std::int64_t t1) {
        swiglu(b.gate.data() + t0 * F, b.up.data() + t0 * F, (t1 - t0) * F, b.gate.data() + t0 * F);
      });
      observe(WeightKind::FfnDown, l, w.w_down, b.gate.data(), n);
      matmul(w.w_down, b.gate.data(), n, b.proj.data() + s0 * E, pool_);
    }
    add_residual();
  }
  n_past_ += T;

  if (logits_out == nullptr) return;
  // Only the rows whose logits are wanted go through the output matrix.
  const std::int64_t first = all_logits ? 0 : T - 1;
  const std::int64_t rows = T - first;
  for_tokens(rows, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r)
      rms_norm(b.x.data() + (first + r) * E, model_.output_norm(), E, eps, b.xn.data() + r * E);
  });
  observe(WeightKind::Output, -1, model_.output(), b.xn.data(), rows);
  matmul(model_.output(), b.xn.data(), rows, logits_out, pool_);
}

}  // namespace piquant
