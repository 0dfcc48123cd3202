#include "engine/backward_blocks.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/attention.h"
#include "kernels/matmul.h"
#include "kernels/matmul_backward.h"
#include "kernels/vector_ops.h"

namespace piquant {

namespace {

void require(std::span<const float> buffer, std::int64_t floats, const char* what) {
  if (floats < 0 || buffer.size() < static_cast<std::size_t>(floats)) {
    throw Error(std::string(what) + ": buffer of " + std::to_string(buffer.size()) + " floats, " + std::to_string(floats) +
                " needed");
  }
}

// fn(i0, i1) over [0, n) in chunks spread over the pool; each index's work is independent.
template <class Fn>
void for_range(ThreadPool& pool, std::int64_t n, const Fn& fn) {
  if (n >= 4) {
    pool.parallel_for(n, 1, [&fn](std::int64_t i0, std::int64_t i1) { fn(i0, i1); });
  } else {
    fn(0, n);
  }
}

}  // namespace

void rms_norm_rows_rstd(ThreadPool& pool, const float* x, std::int64_t E, float eps, std::int64_t rows, float* rstd) {
  for_range(pool, rows, [&](std::int64_t t0, std::int64_t t1) {
    for (std::int64_t t = t0; t < t1; ++t) rstd[t] = rms_norm_rstd(x + t * E, E, eps);
  });
}

void rms_norm_rows_backward(ThreadPool& pool, const float* x, const float* weight, const float* rstd, const float* dy,
                            std::int64_t E, std::int64_t rows, float* dx, float* dweight) {
  for_range(pool, rows, [&](std::int64_t t0, std::int64_t t1) {
    for (std::int64_t t = t0; t < t1; ++t) rms_norm_backward(x + t * E, weight, rstd[t], dy + t * E, E, dx + t * E, nullptr);
  });
  if (dweight == nullptr) return;
  // ∂L/∂weight[i] = Σ_t dy[t][i] · x[t][i] · rstd[t]: columns split over threads, each
  // summing its tokens in ascending order.
  for_range(pool, E, [&](std::int64_t i0, std::int64_t i1) {
    for (std::int64_t t = 0; t < rows; ++t) {
      const float r = rstd[t];
      const float* xt = x + t * E;
      const float* dyt = dy + t * E;
      for (std::int64_t i = i0; i < i1; ++i) dweight[i] += dyt[i] * (xt[i] * r);
    }
  });
}

void linear_backward(const BackwardEnv& env, WeightKind kind, std::int64_t layer, const MatrixView& w, const float* in,
                     std::int64_t n_tokens, const float* dout, float* din, float* dw, std::int64_t token0) {
  ThreadPool& pool = env.forward.pool;
  if (din != nullptr) matmul_input_grad(w, dout, n_tokens, din, pool);
  if (dw != nullptr) matmul_weight_grad(dout, w.rows, in, w.cols, n_tokens, dw, pool);
  const LoraAdapter* lora = env.forward.lora;
  if (lora == nullptr) return;
  const WeightId id{kind, layer};
  const LoraMatrix* m = lora->find(id);
  if (m == nullptr) return;
  // out += s · B · (A · d), d = drop(in): with u = A · d (recomputed) and g = s · Bᵀ · dout,
  // din += drop(Aᵀ g) (the same mask and scale), dB += s · dout ⊗ u, dA += g ⊗ d.
  const float s = lora->scale();
  const std::int64_t r = m->rank;
  const LoraDropout& dropout = env.forward.lora_dropout;
  std::vector<float> u(static_cast<std::size_t>(n_tokens * r));
  std::vector<float> g(static_cast<std::size_t>(n_tokens * r), 0.0f);
  matmul_input_grad(m->b_view(), dout, n_tokens, g.data(), pool);
  for (float& v : g) v *= s;
  std::vector<float> dropped;
  if (dropout.p > 0.0f) {
    dropped.resize(static_cast<std::size_t>(n_tokens * m->cols));
    if (din != nullptr) {
      std::vector<float> through_a(dropped.size(), 0.0f);
      matmul_input_grad(m->a_view(), g.data(), n_tokens, through_a.data(), pool);
      apply_lora_dropout(dropout, id, token0, through_a.data(), n_tokens, m->cols, dropped.data());
      for (std::size_t i = 0; i < dropped.size(); ++i) din[i] += dropped[i];
    }
    apply_lora_dropout(dropout, id, token0, in, n_tokens, m->cols, dropped.data());
    in = dropped.data();
  } else if (din != nullptr) {
    matmul_input_grad(m->a_view(), g.data(), n_tokens, din, pool);
  }
  LoraMatrix* dm = env.lora_grads != nullptr ? env.lora_grads->find(id) : nullptr;
  if (dm == nullptr) return;
  matmul(m->a_view(), in, n_tokens, u.data(), pool);
  for (float& v : u) v *= s;
  matmul_weight_grad(dout, m->rows, u.data(), r, n_tokens, dm->b.data(), pool);
  matmul_weight_grad(g.data(), r, in, m->cols, n_tokens, dm->a.data(), pool);
}

void attention_block_backward(const BackwardEnv& env, std::int64_t layer, const LayerWeights& w, const KvLayerView& kv,
                              std::int64_t T, std::span<const float> x_in, const AttentionBuffers& kept,
                              std::span<float> dx, const AttentionGradBuffers& b, const LayerGrads& grads) {
  const LlamaParams& p = env.forward.params;
  ThreadPool& pool = env.forward.pool;
  const std::int64_t E = p.n_embd, D = p.head_dim, H = p.n_head, KV = p.n_head_kv;
  const std::int64_t q_dim = H * D, kv_dim = KV * D, group = H / KV;
  if (kv.type != GgmlType::F32 || kv.row_bytes != 4u * static_cast<std::size_t>(kv_dim) || kv.n_ctx < T) {
    throw Error("attention_block_backward: needs an F32 key/value view of at least " + std::to_string(T) + " rows");
  }
  require(x_in, T * E, "attention_block_backward: x_in");
  require(dx, T * E, "attention_block_backward: dx");
  require(kept.rstd, T, "attention_block_backward: kept rstd");
  require(kept.lse, T * H, "attention_block_backward: kept lse");
  require(b.dattn, T * q_dim, "attention_block_backward: dattn");
  require(b.dq, T * q_dim, "attention_block_backward: dq");
  require(b.dk, T * kv_dim, "attention_block_backward: dk");
  require(b.dv, T * kv_dim, "attention_block_backward: dv");
  require(b.dxn, T * E, "attention_block_backward: dxn");

  // Output projection: proj = wo · attn.
  std::fill_n(b.dattn.data(), T * q_dim, 0.0f);
  linear_backward(env, WeightKind::AttnOutput, layer, w.wo, kept.attn.data(), T, dx.data(), b.dattn.data(), grads.wo);

  // Attention, one task per KV head: all its query heads and tokens, so its dK and dV
  // rows are summed in one place.
  std::fill_n(b.dk.data(), T * kv_dim, 0.0f);
  std::fill_n(b.dv.data(), T * kv_dim, 0.0f);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const auto* k_rows = reinterpret_cast<const float*>(kv.k);
  const auto* v_rows = reinterpret_cast<const float*>(kv.v);
  pool.parallel_for(KV, 1, [&](std::int64_t g0, std::int64_t g1) {
    const std::int64_t n_q = T * group;
    std::vector<const float*> q(static_cast<std::size_t>(n_q)), out(q.size()), dout(q.size());
    std::vector<float*> dq(q.size());
    std::vector<std::int64_t> visible(q.size());
    std::vector<float> lse(q.size());
    for (std::int64_t g = g0; g < g1; ++g) {
      std::size_t i = 0;
      for (std::int64_t t = 0; t < T; ++t) {
        for (std::int64_t h = g * group; h < (g + 1) * group; ++h, ++i) {
          const std::int64_t at = t * q_dim + h * D;
          q[i] = kept.q.data() + at;
          out[i] = kept.attn.data() + at;
          dout[i] = b.dattn.data() + at;
          dq[i] = b.dq.data() + at;
          visible[i] = t + 1;
          lse[i] = kept.lse[static_cast<std::size_t>(t * H + h)];
        }
      }
      attend_backward(q.data(), visible.data(), n_q, k_rows + g * D, v_rows + g * D, static_cast<std::size_t>(kv_dim), D,
                      scale, out.data(), dout.data(), lse.data(), dq.data(), b.dk.data() + g * D, b.dv.data() + g * D,
                      static_cast<std::size_t>(kv_dim));
    }
  });

  // RoPE is a rotation: its backward rotates the gradients back.
  const RopeTable& rope = env.forward.rope;
  for_range(pool, T, [&](std::int64_t t0, std::int64_t t1) {
    for (std::int64_t t = t0; t < t1; ++t) {
      rope.apply_inverse(b.dq.data() + t * q_dim, H, t);
      rope.apply_inverse(b.dk.data() + t * kv_dim, KV, t);
    }
  });

  // Q, K, V projections of the normalised input.
  std::fill_n(b.dxn.data(), T * E, 0.0f);
  linear_backward(env, WeightKind::AttnQ, layer, w.wq, kept.xn.data(), T, b.dq.data(), b.dxn.data(), grads.wq);
  linear_backward(env, WeightKind::AttnK, layer, w.wk, kept.xn.data(), T, b.dk.data(), b.dxn.data(), grads.wk);
  linear_backward(env, WeightKind::AttnV, layer, w.wv, kept.xn.data(), T, b.dv.data(), b.dxn.data(), grads.wv);
  rms_norm_rows_backward(pool, x_in.data(), w.attn_norm, kept.rstd.data(), b.dxn.data(), E, T, dx.data(), grads.attn_norm);
}

void mlp_block_backward(const BackwardEnv& env, std::int64_t layer, const LayerWeights& w, std::int64_t T,
                        std::span<const float> x_in, std::span<float> dx, const MlpGradBuffers& b,
                        const LayerGrads& grads) {
  const LlamaParams& p = env.forward.params;
  ThreadPool& pool = env.forward.pool;
  if (layer < 0 || layer >= static_cast<std::int64_t>(p.n_ff.size())) {
    throw Error("mlp_block_backward: layer " + std::to_string(layer) + " of " + std::to_string(p.n_ff.size()));
  }
  const std::int64_t E = p.n_embd;
  const std::int64_t F = p.n_ff[static_cast<std::size_t>(layer)];
  const std::int64_t step = mlp_step_tokens(T);
  require(x_in, T * E, "mlp_block_backward: x_in");
  require(dx, T * E, "mlp_block_backward: dx");
  require(b.xn, T * E, "mlp_block_backward: xn");
  require(b.rstd, T, "mlp_block_backward: rstd");
  for (const auto& [buffer, name] : {std::pair{b.gate, "gate"}, {b.up, "up"}, {b.h, "h"}, {b.dh, "dh"}, {b.dgate, "dgate"}, {b.dup, "dup"}}) {
    require(buffer, step * F, (std::string("mlp_block_backward: ") + name).c_str());
  }
  require(b.dxn, T * E, "mlp_block_backward: dxn");
  const bool kept = !b.kept_gate.empty() || !b.kept_up.empty();
  if (kept) {
    require(b.kept_gate, T * F, "mlp_block_backward: kept gate");
    require(b.kept_up, T * F, "mlp_block_backward: kept up");
  }

  // Recompute the norm (rows as in mlp_block) and keep its rstd.
  const float eps = static_cast<float>(p.rms_norm_eps);
  for_range(pool, T, [&](std::int64_t t0, std::int64_t t1) {
    for (std::int64_t t = t0; t < t1; ++t) rms_norm(x_in.data() + t * E, w.ffn_norm, E, eps, b.xn.data() + t * E);
  });
  rms_norm_rows_rstd(pool, x_in.data(), E, eps, T, b.rstd.data());
  std::fill_n(b.dxn.data(), T * E, 0.0f);
  for (std::int64_t s0 = 0; s0 < T; s0 += step) {
    const std::int64_t n = std::min(T - s0, step);
    const float* xn = b.xn.data() + s0 * E;
    // The step's gate and up products (kept, or the forward again), h = SwiGLU(gate, up).
    const float* gate = b.gate.data();
    const float* up = b.up.data();
    if (kept) {
      gate = b.kept_gate.data() + s0 * F;
      up = b.kept_up.data() + s0 * F;
    } else {
      linear(env.forward, WeightKind::FfnGate, layer, w.w_gate, xn, n, b.gate.data(), s0);
      linear(env.forward, WeightKind::FfnUp, layer, w.w_up, xn, n, b.up.data(), s0);
    }
    for_range(pool, n, [&](std::int64_t t0, std::int64_t t1) {
      swiglu(gate + t0 * F, up + t0 * F, (t1 - t0) * F, b.h.data() + t0 * F);
    });
    // down: out = w_down · h.
    std::fill_n(b.dh.data(), n * F, 0.0f);
    linear_backward(env, WeightKind::FfnDown, layer, w.w_down, b.h.data(), n, dx.data() + s0 * E, b.dh.data(), grads.w_down, s0);
    for_range(pool, n, [&](std::int64_t t0, std::int64_t t1) {
      swiglu_backward(gate + t0 * F, up + t0 * F, b.dh.data() + t0 * F, (t1 - t0) * F,
                      b.dgate.data() + t0 * F, b.dup.data() + t0 * F);
    });
    if (env.mlp_observer != nullptr) {
      env.mlp_observer->observe({layer, s0, n, F, gate, up, b.h.data(), b.dgate.data(), b.dup.data(), b.dh.data()});
    }
    linear_backward(env, WeightKind::FfnGate, layer, w.w_gate, xn, n, b.dgate.data(), b.dxn.data() + s0 * E, grads.w_gate, s0);
    linear_backward(env, WeightKind::FfnUp, layer, w.w_up, xn, n, b.dup.data(), b.dxn.data() + s0 * E, grads.w_up, s0);
  }
  rms_norm_rows_backward(pool, x_in.data(), w.ffn_norm, b.rstd.data(), b.dxn.data(), E, T, dx.data(), grads.ffn_norm);
}

}  // namespace piquant
