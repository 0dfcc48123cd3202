#include "engine/forward_blocks.h"

#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/attention.h"
#include "kernels/matmul.h"
#include "kernels/matmul_float.h"
#include "kernels/vector_ops.h"

namespace piquant {

namespace {
// Below this many tokens the per-token loops run inline: handing them to the pool costs more.
constexpr std::int64_t kParallelTokens = 4;

// The pool takes std::function. A lambda capturing one reference fits its inline storage,
// so these hand-offs allocate nothing; a lambda capturing several references would be
// copied to the heap on every call, per layer per decoded token.
//
// fn(t0, t1) over tokens [0, n): spread over the pool for a prompt, inline for a few
// tokens. Every token's work is independent and the same wherever it runs.
template <class Fn>
void for_tokens(ThreadPool& pool, std::int64_t n, const Fn& fn) {
  if (n >= kParallelTokens) {
    pool.parallel_for(n, 1, [&fn](std::int64_t t0, std::int64_t t1) { fn(t0, t1); });
  } else {
    fn(0, n);
  }
}

// fn(thread, n_threads) once on every thread of the pool.
template <class Fn>
void on_every_thread(ThreadPool& pool, const Fn& fn) {
  pool.run([&fn](unsigned thread, unsigned n_threads) { fn(thread, n_threads); });
}

void require(std::span<const float> buffer, std::int64_t floats, const char* what) {
  if (floats < 0 || buffer.size() < static_cast<std::size_t>(floats)) {
    throw Error(std::string(what) + ": buffer of " + std::to_string(buffer.size()) + " floats, " + std::to_string(floats) +
                " needed");
  }
}

// out row t = RMSNorm(x row t) · weight, rows of E floats.
void rms_norm_rows(ThreadPool& pool, const float* x, const float* weight, std::int64_t E, float eps, std::int64_t rows,
                   float* out) {
  for_tokens(pool, rows, [&](std::int64_t t0, std::int64_t t1) {
    for (std::int64_t t = t0; t < t1; ++t) rms_norm(x + t * E, weight, E, eps, out + t * E);
  });
}

// The residual: x += proj over rows of E floats.
void add_rows(ThreadPool& pool, float* x, const float* proj, std::int64_t E, std::int64_t rows) {
  for_tokens(pool, rows, [&](std::int64_t t0, std::int64_t t1) {
    for (std::int64_t i = t0 * E; i < t1 * E; ++i) x[i] += proj[i];
  });
}

// A bias on every row: y[t·E + i] += bias[i].
void add_bias_rows(ThreadPool& pool, float* y, const float* bias, std::int64_t E, std::int64_t rows) {
  for_tokens(pool, rows, [&](std::int64_t t0, std::int64_t t1) {
    for (std::int64_t t = t0; t < t1; ++t) {
      for (std::int64_t i = 0; i < E; ++i) y[t * E + i] += bias[i];
    }
  });
}
}  // namespace

void linear(const ForwardEnv& env, WeightKind kind, std::int64_t layer, const MatrixView& w, const float* in,
            std::int64_t n_tokens, float* out, std::int64_t token0) {
  if (env.observer != nullptr) env.observer->observe(WeightId{kind, layer}, in, n_tokens, w.cols);
  if (env.float_activations) {
    matmul_float_activations(w, in, n_tokens, out, env.pool);
  } else {
    matmul(w, in, n_tokens, out, env.pool);
  }
  if (env.lora == nullptr) return;
  const LoraMatrix* m = env.lora->find(WeightId{kind, layer});
  if (m == nullptr) return;
  if (m->rows != w.rows || m->cols != w.cols) {
    throw Error("LoRA " + gguf_tensor_name(WeightId{kind, layer}) + ": " + std::to_string(m->rows) + " × " +
                std::to_string(m->cols) + " for a " + std::to_string(w.rows) + " × " + std::to_string(w.cols) + " weight");
  }
  std::vector<float> low(static_cast<std::size_t>(n_tokens * m->rank));
  std::vector<float> update(static_cast<std::size_t>(n_tokens * m->rows));
  std::vector<float> dropped;
  if (env.lora_dropout.p > 0.0f) {
    dropped.resize(static_cast<std::size_t>(n_tokens * m->cols));
    apply_lora_dropout(env.lora_dropout, WeightId{kind, layer}, token0, in, n_tokens, m->cols, dropped.data());
    in = dropped.data();
  }
  matmul(m->a_view(), in, n_tokens, low.data(), env.pool);
  matmul(m->b_view(), low.data(), n_tokens, update.data(), env.pool);
  const float scale = env.lora->scale();
  for (std::size_t i = 0; i < update.size(); ++i) out[i] += scale * update[i];
}

void embed(const MatrixView& table, std::span<const std::int32_t> tokens, std::span<float> x) {
  const auto T = static_cast<std::int64_t>(tokens.size());
  const std::int64_t E = table.cols;
  require(x, T * E, "embed: x");
  for (std::int64_t t = 0; t < T; ++t) matrix_row_to_floats(table, tokens[static_cast<std::size_t>(t)], x.data() + t * E);
}

AttentionTasks plan_attention_tasks(std::int64_t T, std::int64_t p0, std::int64_t n_head, std::int64_t n_head_kv,
                                    std::int64_t head_dim, std::size_t scratch_floats, unsigned n_threads) {
  if (T < 0 || p0 < 0 || n_head_kv <= 0 || n_head < n_head_kv || n_head % n_head_kv != 0) {
    throw Error("plan_attention_tasks: " + std::to_string(T) + " tokens at " + std::to_string(p0) + ", " +
                std::to_string(n_head) + " query heads over " + std::to_string(n_head_kv) + " KV heads");
  }
  AttentionTasks a;
  a.n_tokens = T;
  a.n_head_kv = n_head_kv;
  a.group = n_head / n_head_kv;
  const std::int64_t group = a.group;
  // As large as the scratch allows; one query always fits (the caller's guarantee).
  std::int64_t tokens_per_task = std::clamp<std::int64_t>(kMaxAttendQueries / group, 1, kAttendTokens);
  std::int64_t heads_per_task = std::min(group, kMaxAttendQueries);
  while (tokens_per_task * heads_per_task > 1 &&
         attend_scratch_floats(tokens_per_task * heads_per_task, p0 + T, head_dim) > scratch_floats) {
    if (tokens_per_task > 1) {
      --tokens_per_task;
    } else {
      heads_per_task = (heads_per_task + 1) / 2;  // reaches 1 query
    }
  }
  // With few tokens (decode) a KV head's group is split until every thread has a task.
  const std::int64_t n_blocks = (T + tokens_per_task - 1) / tokens_per_task;
  const auto parts_of = [group](std::int64_t heads) { return (group + heads - 1) / heads; };
  while (heads_per_task > 1 && n_blocks * n_head_kv * parts_of(heads_per_task) < static_cast<std::int64_t>(n_threads)) {
    heads_per_task = (heads_per_task + 1) / 2;
  }
  a.tokens_per_task = tokens_per_task;
  a.heads_per_task = heads_per_task;
  a.parts = parts_of(heads_per_task);
  a.n_tasks = n_blocks * n_head_kv * a.parts;
  return a;
}

void attention_block(const ForwardEnv& env, std::int64_t layer, const LayerWeights& w, const KvLayerView& kv, std::int64_t p0,
                     std::int64_t T, std::span<float> x, const AttentionBuffers& b) {
  const LlamaParams& p = env.params;
  const std::int64_t E = p.n_embd;
  const std::int64_t D = p.head_dim;
  const std::int64_t H = p.n_head;
  const std::int64_t KV = p.n_head_kv;
  const std::int64_t q_dim = H * D;
  const std::int64_t kv_dim = KV * D;
  const unsigned n_pool = env.pool.size();
  if (p0 < 0 || T < 0 || p0 + T > kv.n_ctx) {
    throw Error("attention_block: positions " + std::to_string(p0) + " + " + std::to_string(T) + " outside a cache of " +
                std::to_string(kv.n_ctx));
  }
  require(x, T * E, "attention_block: x");
  require(b.xn, T * E, "attention_block: xn");
  require(b.q, T * q_dim, "attention_block: q");
  require(b.k, T * kv_dim, "attention_block: k");
  require(b.v, T * kv_dim, "attention_block: v");
  require(b.attn, T * q_dim, "attention_block: attn");
  require(b.proj, T * E, "attention_block: proj");
  if (b.scratch_per_thread < attend_scratch_floats(1, p0 + T, D) || b.scratch.size() / n_pool < b.scratch_per_thread) {
    throw Error("attention_block: " + std::to_string(b.scratch.size()) + " floats of scratch for " + std::to_string(n_pool) +
                " threads, " + std::to_string(b.scratch_per_thread) + " each, do not hold a query over " +
                std::to_string(p0 + T) + " positions each");
  }
  const bool keep = !b.lse.empty() || !b.rstd.empty();
  if (keep) {
    require(b.rstd, T, "attention_block: rstd");
    require(b.lse, T * H, "attention_block: lse");
  }
  const float eps = static_cast<float>(p.rms_norm_eps);
  float* q = b.q.data();
  float* k = b.k.data();
  const float* v = b.v.data();
  float* attn = b.attn.data();

  rms_norm_rows(env.pool, x.data(), w.attn_norm, E, eps, T, b.xn.data());
  if (keep) {
    for_tokens(env.pool, T, [&](std::int64_t t0, std::int64_t t1) {
      for (std::int64_t t = t0; t < t1; ++t) b.rstd[static_cast<std::size_t>(t)] = rms_norm_rstd(x.data() + t * E, E, eps);
    });
  }
  linear(env, WeightKind::AttnQ, layer, w.wq, b.xn.data(), T, q);
  linear(env, WeightKind::AttnK, layer, w.wk, b.xn.data(), T, k);
  linear(env, WeightKind::AttnV, layer, w.wv, b.xn.data(), T, b.v.data());
  // RoPE on this step's queries and keys; its keys and values into the cache.
  const RopeTable& rope = env.rope;
  for_tokens(env.pool, T, [&](std::int64_t t0, std::int64_t t1) {
    for (std::int64_t t = t0; t < t1; ++t) {
      rope.apply(q + t * q_dim, H, p0 + t);
      rope.apply(k + t * kv_dim, KV, p0 + t);
      store_row(k + t * kv_dim, kv_dim, kv.type, kv.k + static_cast<std::size_t>(p0 + t) * kv.row_bytes);
      store_row(v + t * kv_dim, kv_dim, kv.type, kv.v + static_cast<std::size_t>(p0 + t) * kv.row_bytes);
    }
  });

  // Causal attention: token t sees positions 0 .. p0 + t. Each thread works in its own
  // slice of the scratch.
  const AttentionTasks tasks = plan_attention_tasks(T, p0, H, KV, D, b.scratch_per_thread, n_pool);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const std::size_t element_bytes = kv.row_bytes / static_cast<std::size_t>(kv_dim);
  on_every_thread(env.pool, [&](unsigned thread, unsigned n_threads) {
    float* scratch = b.scratch.data() + static_cast<std::size_t>(thread) * b.scratch_per_thread;
    const float* q_rows[kMaxAttendQueries];
    float* out_rows[kMaxAttendQueries];
    std::int64_t n_visible[kMaxAttendQueries];
    float lse[kMaxAttendQueries];
    for (std::int64_t i = thread; i < tasks.n_tasks; i += n_threads) {
      const AttentionTasks::Task task = tasks.task(i);
      std::int64_t n_q = 0;
      for (std::int64_t t = task.t0; t < task.t1; ++t) {
        for (std::int64_t h = task.h0; h < task.h1; ++h, ++n_q) {
          q_rows[n_q] = q + t * q_dim + h * D;
          out_rows[n_q] = attn + t * q_dim + h * D;
          n_visible[n_q] = p0 + t + 1;
        }
      }
      const std::size_t head_offset = static_cast<std::size_t>(task.kv_head * D) * element_bytes;
      attend(q_rows, n_visible, n_q, kv.k + head_offset, kv.v + head_offset, kv.row_bytes, kv.type, D, scale, scratch,
             b.scratch_per_thread, out_rows, keep ? lse : nullptr);
      if (keep) {
        std::int64_t i_q = 0;
        for (std::int64_t t = task.t0; t < task.t1; ++t) {
          for (std::int64_t h = task.h0; h < task.h1; ++h) b.lse[static_cast<std::size_t>(t * H + h)] = lse[i_q++];
        }
      }
    }
  });
  linear(env, WeightKind::AttnOutput, layer, w.wo, attn, T, b.proj.data());
  add_rows(env.pool, x.data(), b.proj.data(), E, T);
}

void mlp_block(const ForwardEnv& env, std::int64_t layer, const LayerWeights& w, std::int64_t T, std::span<float> x,
               const MlpBuffers& b) {
  const LlamaParams& p = env.params;
  if (layer < 0 || layer >= static_cast<std::int64_t>(p.n_ff.size())) {
    throw Error("mlp_block: layer " + std::to_string(layer) + " of " + std::to_string(p.n_ff.size()));
  }
  const std::int64_t E = p.n_embd;
  const std::int64_t F = p.n_ff[static_cast<std::size_t>(layer)];  // this layer's own width
  const std::int64_t step = mlp_step_tokens(T);
  require(x, T * E, "mlp_block: x");
  require(b.xn, T * E, "mlp_block: xn");
  require(b.gate, step * F, "mlp_block: gate");
  require(b.up, step * F, "mlp_block: up");
  require(b.proj, T * E, "mlp_block: proj");
  const bool keep = !b.kept_gate.empty() || !b.kept_up.empty();
  if (keep) {
    require(b.kept_gate, T * F, "mlp_block: kept gate");
    require(b.kept_up, T * F, "mlp_block: kept up");
  }
  float* gate = b.gate.data();
  const float* up = b.up.data();

  rms_norm_rows(env.pool, x.data(), w.ffn_norm, E, static_cast<float>(p.rms_norm_eps), T, b.xn.data());
  for (std::int64_t s0 = 0; s0 < T; s0 += step) {
    const std::int64_t n = std::min(T - s0, step);
    const float* in = b.xn.data() + s0 * E;
    linear(env, WeightKind::FfnGate, layer, w.w_gate, in, n, gate, s0);
    linear(env, WeightKind::FfnUp, layer, w.w_up, in, n, b.up.data(), s0);
    if (keep) {
      std::copy_n(gate, n * F, b.kept_gate.data() + s0 * F);
      std::copy_n(up, n * F, b.kept_up.data() + s0 * F);
    }
    // Element by element, so splitting by tokens changes nothing.
    for_tokens(env.pool, n, [&](std::int64_t t0, std::int64_t t1) {
      swiglu(gate + t0 * F, up + t0 * F, (t1 - t0) * F, gate + t0 * F);
    });
    linear(env, WeightKind::FfnDown, layer, w.w_down, gate, n, b.proj.data() + s0 * E, s0);
  }
  if (w.ffn_down_bias != nullptr) add_bias_rows(env.pool, b.proj.data(), w.ffn_down_bias, E, T);
  add_rows(env.pool, x.data(), b.proj.data(), E, T);
}

void output_head(const ForwardEnv& env, const float* norm, const MatrixView& output, std::span<const float> x,
                 std::int64_t first, std::int64_t T, std::span<float> xn, float* logits) {
  const std::int64_t E = env.params.n_embd;
  const std::int64_t rows = T - first;
  if (first < 0 || rows < 0) throw Error("output_head: rows " + std::to_string(first) + " .. " + std::to_string(T));
  require(x, T * E, "output_head: x");
  require(xn, rows * E, "output_head: xn");
  rms_norm_rows(env.pool, x.data() + first * E, norm, E, static_cast<float>(env.params.rms_norm_eps), rows, xn.data());
  linear(env, WeightKind::Output, -1, output, xn.data(), rows, logits, first);
}

}  // namespace piquant
