// The forward pass's blocks called directly, as training will call them: each against a
// double-precision computation written out here from the definitions, and the attention
// task split against the properties its contract states.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/error.h"
#include "kernels/attention.h"
#include "engine/forward_blocks.h"

namespace piquant {
namespace {

struct Matrix {
  std::vector<float> values;
  MatrixView view;
  Matrix(std::int64_t rows, std::int64_t cols, std::mt19937& rng, float scale) : values(static_cast<std::size_t>(rows * cols)) {
    std::uniform_real_distribution<float> dist(-scale, scale);
    for (float& v : values) v = dist(rng);
    view = {GgmlType::F32, reinterpret_cast<const std::uint8_t*>(values.data()), rows, cols,
            static_cast<std::size_t>(cols) * sizeof(float)};
  }
  double at(std::int64_t r, std::int64_t c) const { return values[static_cast<std::size_t>(r * view.cols + c)]; }
};

std::vector<float> random_vector(std::size_t n, std::mt19937& rng, float lo, float hi) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& f : v) f = dist(rng);
  return v;
}

// RMSNorm of one row in double: x_i / sqrt(mean(x²) + eps) · w_i.
std::vector<double> rms_norm_double(const float* x, const std::vector<float>& w, std::int64_t n, double eps) {
  double ss = 0;
  for (std::int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const double r = 1.0 / std::sqrt(ss / static_cast<double>(n) + eps);
  std::vector<double> out(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) out[static_cast<std::size_t>(i)] = x[i] * r * w[static_cast<std::size_t>(i)];
  return out;
}

std::vector<double> product_double(const Matrix& w, const std::vector<double>& x) {
  std::vector<double> y(static_cast<std::size_t>(w.view.rows));
  for (std::int64_t r = 0; r < w.view.rows; ++r) {
    for (std::int64_t c = 0; c < w.view.cols; ++c) y[static_cast<std::size_t>(r)] += w.at(r, c) * x[static_cast<std::size_t>(c)];
  }
  return y;
}

LlamaParams small_params() {
  LlamaParams p;
  p.n_vocab = 50;
  p.n_embd = 32;
  p.n_layer = 2;
  p.n_head = 4;
  p.n_head_kv = 2;
  p.head_dim = 8;
  p.n_ff = {40, 48};
  p.rms_norm_eps = 1e-5;
  p.rope_theta = 10000.0;
  return p;
}

TEST(ForwardBlocks, MlpBlockMatchesDoubleReference) {
  const LlamaParams p = small_params();
  const std::int64_t E = p.n_embd, F = p.n_ff[1], T = 130;  // two MLP steps: 128 + 2 tokens
  std::mt19937 rng(5);
  Matrix gate(F, E, rng, 0.3f), up(F, E, rng, 0.3f), down(E, F, rng, 0.3f);
  const std::vector<float> norm = random_vector(static_cast<std::size_t>(E), rng, 0.5f, 1.5f);
  LayerWeights w;
  w.ffn_norm = norm.data();
  w.w_gate = gate.view;
  w.w_up = up.view;
  w.w_down = down.view;
  const std::vector<float> x0 = random_vector(static_cast<std::size_t>(T * E), rng, -1.0f, 1.0f);

  ThreadPool pool(2);
  const RopeTable rope(p.head_dim, p.rope_theta, {}, RopePairing::Interleaved);
  const ForwardEnv env{p, pool, rope, nullptr};
  std::vector<float> x = x0, xn(x.size()), proj(x.size()), g(static_cast<std::size_t>(kMlpTokensPerStep * F)), u(g.size());
  mlp_block(env, 1, w, T, x, {xn, g, u, proj});

  double worst = 0;
  for (std::int64_t t = 0; t < T; ++t) {
    const std::vector<double> n = rms_norm_double(x0.data() + t * E, norm, E, p.rms_norm_eps);
    const std::vector<double> a = product_double(gate, n), b = product_double(up, n);
    std::vector<double> h(static_cast<std::size_t>(F));
    for (std::size_t i = 0; i < h.size(); ++i) h[i] = a[i] / (1.0 + std::exp(-a[i])) * b[i];
    const std::vector<double> d = product_double(down, h);
    for (std::int64_t i = 0; i < E; ++i) {
      const double want = x0[static_cast<std::size_t>(t * E + i)] + d[static_cast<std::size_t>(i)];
      worst = std::max(worst, std::abs(x[static_cast<std::size_t>(t * E + i)] - want));
    }
  }
  // Float sums of 32-48 products of O(1) terms: a few ulp of the largest partial sums
  // (measured: 7e-7).
  EXPECT_LT(worst, 5e-6);

  // A buffer smaller than the call needs is an Error, not a write past its end.
  std::vector<float> small_gate(g.size() - 1);
  EXPECT_THROW(mlp_block(env, 1, w, T, x, {xn, small_gate, u, proj}), Error);
  EXPECT_THROW(mlp_block(env, 2, w, T, x, {xn, g, u, proj}), Error);
}

// Causal attention over a whole sequence, in double, from the definitions: RoPE pair
// (2i, 2i+1) of each head turned by pos · θ^(-2i/D); softmax of q·k/√D over positions
// 0 .. pos; the value rows weighted; wo; the residual.
std::vector<double> attention_reference(const LlamaParams& p, const std::vector<float>& x0, std::int64_t N,
                                        const std::vector<float>& norm, const Matrix& wq, const Matrix& wk, const Matrix& wv,
                                        const Matrix& wo) {
  const std::int64_t E = p.n_embd, D = p.head_dim, H = p.n_head, KV = p.n_head_kv;
  const auto at = [](auto& v, std::int64_t i) -> auto& { return v[static_cast<std::size_t>(i)]; };
  const auto rotate = [&](std::vector<double>& v, std::int64_t heads, std::int64_t pos) {
    for (std::int64_t h = 0; h < heads; ++h) {
      for (std::int64_t i = 0; i < D / 2; ++i) {
        const double angle = static_cast<double>(pos) * std::pow(p.rope_theta, -2.0 * static_cast<double>(i) / static_cast<double>(D));
        const double a = at(v, h * D + 2 * i), b = at(v, h * D + 2 * i + 1);
        at(v, h * D + 2 * i) = a * std::cos(angle) - b * std::sin(angle);
        at(v, h * D + 2 * i + 1) = a * std::sin(angle) + b * std::cos(angle);
      }
    }
  };
  std::vector<std::vector<double>> q(static_cast<std::size_t>(N)), k(q.size()), v(q.size());
  for (std::int64_t t = 0; t < N; ++t) {
    const std::vector<double> n = rms_norm_double(x0.data() + t * E, norm, E, p.rms_norm_eps);
    at(q, t) = product_double(wq, n);
    at(k, t) = product_double(wk, n);
    at(v, t) = product_double(wv, n);
    rotate(at(q, t), H, t);
    rotate(at(k, t), KV, t);
  }
  std::vector<double> out(x0.begin(), x0.end());
  for (std::int64_t t = 0; t < N; ++t) {
    std::vector<double> attn(static_cast<std::size_t>(H * D));
    for (std::int64_t h = 0; h < H; ++h) {
      const std::int64_t g = h / (H / KV);
      std::vector<double> weight(static_cast<std::size_t>(t + 1));
      double max = -1e300, total = 0;
      for (std::int64_t j = 0; j <= t; ++j) {
        double dot = 0;
        for (std::int64_t i = 0; i < D; ++i) dot += at(at(q, t), h * D + i) * at(at(k, j), g * D + i);
        at(weight, j) = dot / std::sqrt(static_cast<double>(D));
        max = std::max(max, at(weight, j));
      }
      for (double& e : weight) total += (e = std::exp(e - max));
      for (std::int64_t j = 0; j <= t; ++j) {
        for (std::int64_t i = 0; i < D; ++i) at(attn, h * D + i) += at(weight, j) / total * at(at(v, j), g * D + i);
      }
    }
    const std::vector<double> proj = product_double(wo, attn);
    for (std::int64_t i = 0; i < E; ++i) at(out, t * E + i) += at(proj, i);
  }
  return out;
}

TEST(ForwardBlocks, AttentionBlockMatchesDoubleReference) {
  const LlamaParams p = small_params();
  const std::int64_t E = p.n_embd, D = p.head_dim, q_dim = p.n_head * D, kv_dim = p.n_head_kv * D;
  const std::int64_t n_ctx = 16, first = 3, N = 8;  // a prompt of 3 tokens, then 5 more at positions 3 .. 7
  std::mt19937 rng(6);
  Matrix wq(q_dim, E, rng, 0.4f), wk(kv_dim, E, rng, 0.4f), wv(kv_dim, E, rng, 0.4f), wo(E, q_dim, rng, 0.4f);
  const std::vector<float> norm = random_vector(static_cast<std::size_t>(E), rng, 0.5f, 1.5f);
  LayerWeights w;
  w.attn_norm = norm.data();
  w.wq = wq.view;
  w.wk = wk.view;
  w.wv = wv.view;
  w.wo = wo.view;
  const std::vector<float> x0 = random_vector(static_cast<std::size_t>(N * E), rng, -1.0f, 1.0f);
  const std::vector<double> want = attention_reference(p, x0, N, norm, wq, wk, wv, wo);

  const RopeTable rope(D, p.rope_theta, {}, RopePairing::Interleaved);
  std::vector<std::vector<float>> results;
  // Scratch for one query per thread (every task one query), and room for whole blocks.
  for (const std::size_t per_thread : {attend_scratch_floats(1, n_ctx, D), attend_scratch_floats(kMaxAttendQueries, n_ctx, D)}) {
    for (const unsigned threads : {1u, 3u}) {
      ThreadPool pool(threads);
      const ForwardEnv env{p, pool, rope, nullptr};
      std::vector<std::uint8_t> k_cache(static_cast<std::size_t>(n_ctx * kv_dim) * 4), v_cache(k_cache.size());
      const KvLayerView kv{k_cache.data(), v_cache.data(), static_cast<std::size_t>(kv_dim) * 4, n_ctx, GgmlType::F32};
      std::vector<float> x = x0, xn(x.size()), q(static_cast<std::size_t>(N * q_dim)), k(static_cast<std::size_t>(N * kv_dim)),
                         v(k.size()), attn(q.size()), proj(x.size()), scratch(per_thread * threads);
      const AttentionBuffers buffers{xn, q, k, v, attn, proj, scratch, per_thread, {}, {}};
      attention_block(env, 0, w, kv, 0, first, std::span(x).first(static_cast<std::size_t>(first * E)), buffers);
      attention_block(env, 0, w, kv, first, N - first, std::span(x).subspan(static_cast<std::size_t>(first * E)), buffers);
      double worst = 0;
      for (std::size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::abs(x[i] - want[i]));
      EXPECT_LT(worst, 5e-6) << per_thread << " floats of scratch, " << threads << " threads";
      results.push_back(x);

      // Past the cache, or scratch that cannot hold one query, is an Error.
      EXPECT_THROW(attention_block(env, 0, w, kv, n_ctx - 2, 3, x, buffers), Error);
      const AttentionBuffers tight{xn, q, k, v, attn, proj, scratch, attend_scratch_floats(1, N, D) - 1, {}, {}};
      EXPECT_THROW(attention_block(env, 0, w, kv, first, N - first, std::span(x).subspan(static_cast<std::size_t>(first * E)), tight),
                   Error);
    }
  }
  // However the queries are blocked and spread, each one's result is the same (attention.h).
  for (const auto& r : results) EXPECT_EQ(std::memcmp(r.data(), results[0].data(), r.size() * sizeof(float)), 0);
}

TEST(ForwardBlocks, AttentionTasksCoverEveryQueryOnceWithinScratch) {
  struct Heads {
    std::int64_t n_head, n_head_kv;
  };
  const std::int64_t D = 64;
  for (const Heads heads : {Heads{4, 2}, Heads{8, 8}, Heads{32, 8}, Heads{6, 2}, Heads{24, 3}, Heads{128, 1}}) {
    for (const std::int64_t T : {1, 2, 3, 5, 17, 64}) {
      for (const std::int64_t p0 : {0, 100}) {
        const std::int64_t visible = p0 + T;
        for (const std::size_t scratch : {attend_scratch_floats(1, visible, D), attend_scratch_floats(3, visible, D),
                                          attend_scratch_floats(20, visible, D), std::size_t{1} << 24}) {
          for (const unsigned threads : {1u, 2u, 3u, 8u}) {
            const AttentionTasks a = plan_attention_tasks(T, p0, heads.n_head, heads.n_head_kv, D, scratch, threads);
            const std::int64_t group = heads.n_head / heads.n_head_kv;
            std::vector<int> seen(static_cast<std::size_t>(T * heads.n_head));
            for (std::int64_t i = 0; i < a.n_tasks; ++i) {
              const AttentionTasks::Task task = a.task(i);
              ASSERT_TRUE(0 <= task.t0 && task.t0 < task.t1 && task.t1 <= T);
              ASSERT_TRUE(task.kv_head * group <= task.h0 && task.h0 < task.h1 && task.h1 <= (task.kv_head + 1) * group);
              const std::int64_t n_q = (task.t1 - task.t0) * (task.h1 - task.h0);
              EXPECT_LE(n_q, kMaxAttendQueries);
              if (n_q > 1) {
                EXPECT_LE(attend_scratch_floats(n_q, visible, D), scratch);
              }
              for (std::int64_t t = task.t0; t < task.t1; ++t) {
                for (std::int64_t h = task.h0; h < task.h1; ++h) ++seen[static_cast<std::size_t>(t * heads.n_head + h)];
              }
            }
            for (const int n : seen) ASSERT_EQ(n, 1) << heads.n_head << "/" << heads.n_head_kv << " heads, " << T << " tokens";
            // Decode keeps every thread busy while a group can still be split.
            if (T == 1) {
              EXPECT_TRUE(a.n_tasks >= static_cast<std::int64_t>(threads) || a.heads_per_task == 1);
            }
          }
        }
      }
    }
  }
  EXPECT_THROW(plan_attention_tasks(1, 0, 6, 4, D, std::size_t{1} << 20, 1), Error);  // 6 heads do not share 4 KV heads
}

}  // namespace
}  // namespace piquant
