#include "train/reference_llama.h"

#include <cmath>

#include "kernels/matmul.h"
#include "train/model_checkpoint.h"

namespace piquant::testing {

namespace {
using Vec = std::vector<double>;

// y = W x for W rows × cols.
Vec product(const Vec& W, std::int64_t rows, std::int64_t cols, const Vec& x) {
  Vec y(static_cast<std::size_t>(rows), 0.0);
  for (std::int64_t r = 0; r < rows; ++r) {
    double s = 0.0;
    for (std::int64_t c = 0; c < cols; ++c) s += W[static_cast<std::size_t>(r * cols + c)] * x[static_cast<std::size_t>(c)];
    y[static_cast<std::size_t>(r)] = s;
  }
  return y;
}

Vec rms_norm(const Vec& x, const Vec& weight, double eps) {
  double ss = 0.0;
  for (double v : x) ss += v * v;
  const double r = 1.0 / std::sqrt(ss / static_cast<double>(x.size()) + eps);
  Vec y(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) y[i] = x[i] * r * weight[i];
  return y;
}

void rope(Vec& v, std::int64_t offset, std::int64_t D, std::int64_t pos, const LlamaParams& p, const Vec& factors,
          RopePairing pairing) {
  for (std::int64_t i = 0; i < D / 2; ++i) {
    double freq = std::pow(p.rope_theta, -2.0 * static_cast<double>(i) / static_cast<double>(D));
    if (!factors.empty()) freq /= factors[static_cast<std::size_t>(i)];
    const double a = static_cast<double>(pos) * freq;
    const std::int64_t i0 = pairing == RopePairing::Interleaved ? 2 * i : i;
    const std::int64_t i1 = pairing == RopePairing::Interleaved ? 2 * i + 1 : i + D / 2;
    double& x0 = v[static_cast<std::size_t>(offset + i0)];
    double& x1 = v[static_cast<std::size_t>(offset + i1)];
    const double y0 = x0 * std::cos(a) - x1 * std::sin(a);
    const double y1 = x0 * std::sin(a) + x1 * std::cos(a);
    x0 = y0;
    x1 = y1;
  }
}
}  // namespace

ReferenceLlama ReferenceLlama::of(const LlamaModel& model, const LoraAdapter* lora, const LoraDropout& dropout) {
  ReferenceLlama r;
  if (lora != nullptr && dropout.p > 0.0f) {
    r.lora = *lora;
    r.dropout = dropout;
    lora = nullptr;  // not merged
  }
  r.params = model.params();
  r.pairing = model.rope_pairing();
  for (float f : model.rope_factors()) r.rope_factors.push_back(f);
  const LlamaParams& p = r.params;
  const auto put_norm = [&](WeightId id, const float* v) { r.w[{static_cast<int>(id.kind), id.layer}] = Vec(v, v + p.n_embd); };
  const auto put_matrix = [&](WeightId id) {
    const MatrixView& m = model_matrix(model, id);
    Vec& dst = r.w[{static_cast<int>(id.kind), id.layer}];
    dst.assign(static_cast<std::size_t>(m.rows * m.cols), 0.0);
    std::vector<float> row(static_cast<std::size_t>(m.cols));
    for (std::int64_t i = 0; i < m.rows; ++i) {
      matrix_row_to_floats(m, i, row.data());
      for (std::int64_t c = 0; c < m.cols; ++c) dst[static_cast<std::size_t>(i * m.cols + c)] = row[static_cast<std::size_t>(c)];
    }
    const LoraMatrix* a = lora != nullptr ? lora->find(id) : nullptr;
    if (a == nullptr) return;
    for (std::int64_t i = 0; i < m.rows; ++i) {
      for (std::int64_t c = 0; c < m.cols; ++c) {
        double s = 0.0;
        for (std::int64_t k = 0; k < a->rank; ++k) {
          s += static_cast<double>(a->b[static_cast<std::size_t>(i * a->rank + k)]) * a->a[static_cast<std::size_t>(k * m.cols + c)];
        }
        dst[static_cast<std::size_t>(i * m.cols + c)] += static_cast<double>(lora->scale()) * s;
      }
    }
  };
  put_matrix({WeightKind::TokenEmbedding, -1});
  for (std::int64_t l = 0; l < p.n_layer; ++l) {
    put_norm({WeightKind::AttnNorm, l}, model.layer(l).attn_norm);
    put_norm({WeightKind::FfnNorm, l}, model.layer(l).ffn_norm);
    for (WeightKind k : {WeightKind::AttnQ, WeightKind::AttnK, WeightKind::AttnV, WeightKind::AttnOutput, WeightKind::FfnGate,
                         WeightKind::FfnUp, WeightKind::FfnDown}) {
      put_matrix({k, l});
    }
    if (model.layer(l).ffn_down_bias != nullptr) put_norm({WeightKind::FfnDownBias, l}, model.layer(l).ffn_down_bias);
  }
  put_norm({WeightKind::OutputNorm, -1}, model.output_norm());
  put_matrix({WeightKind::Output, -1});
  return r;
}

std::vector<double> ReferenceLlama::linear(WeightKind kind, std::int64_t layer, std::int64_t rows, std::int64_t cols,
                                           const std::vector<double>& x, std::int64_t t) const {
  Vec y = product(w.at({static_cast<int>(kind), layer}), rows, cols, x);
  const LoraMatrix* m = lora ? lora->find({kind, layer}) : nullptr;
  if (m == nullptr) return y;
  Vec dropped(x.size());
  for (std::int64_t c = 0; c < cols; ++c) {
    dropped[static_cast<std::size_t>(c)] =
        lora_dropout_keeps(dropout, {kind, layer}, t, c) ? x[static_cast<std::size_t>(c)] / (1.0 - static_cast<double>(dropout.p)) : 0.0;
  }
  Vec a(m->a.begin(), m->a.end()), b(m->b.begin(), m->b.end());
  const Vec u = product(a, m->rank, cols, dropped);
  const Vec update = product(b, rows, m->rank, u);
  for (std::int64_t r = 0; r < rows; ++r) y[static_cast<std::size_t>(r)] += static_cast<double>(lora->scale()) * update[static_cast<std::size_t>(r)];
  return y;
}

std::vector<std::vector<double>> ReferenceLlama::hidden(const std::vector<std::int32_t>& inputs) const {
  const LlamaParams& p = params;
  const std::int64_t E = p.n_embd, D = p.head_dim, H = p.n_head, KV = p.n_head_kv;
  const auto T = static_cast<std::int64_t>(inputs.size());
  const auto W = [&](WeightKind k, std::int64_t l) -> const Vec& { return w.at({static_cast<int>(k), l}); };
  std::vector<Vec> x(static_cast<std::size_t>(T));
  for (std::int64_t t = 0; t < T; ++t) {
    const Vec& emb = W(WeightKind::TokenEmbedding, -1);
    x[static_cast<std::size_t>(t)].assign(emb.begin() + inputs[static_cast<std::size_t>(t)] * E,
                                          emb.begin() + (inputs[static_cast<std::size_t>(t)] + 1) * E);
  }
  for (std::int64_t l = 0; l < p.n_layer; ++l) {
    const std::int64_t F = p.n_ff[static_cast<std::size_t>(l)];
    std::vector<Vec> q(x.size()), k(x.size()), v(x.size());
    for (std::int64_t t = 0; t < T; ++t) {
      const Vec n = rms_norm(x[static_cast<std::size_t>(t)], W(WeightKind::AttnNorm, l), p.rms_norm_eps);
      q[static_cast<std::size_t>(t)] = linear(WeightKind::AttnQ, l, H * D, E, n, t);
      k[static_cast<std::size_t>(t)] = linear(WeightKind::AttnK, l, KV * D, E, n, t);
      v[static_cast<std::size_t>(t)] = linear(WeightKind::AttnV, l, KV * D, E, n, t);
      for (std::int64_t h = 0; h < H; ++h) rope(q[static_cast<std::size_t>(t)], h * D, D, t, p, rope_factors, pairing);
      for (std::int64_t h = 0; h < KV; ++h) rope(k[static_cast<std::size_t>(t)], h * D, D, t, p, rope_factors, pairing);
    }
    for (std::int64_t t = 0; t < T; ++t) {
      Vec att(static_cast<std::size_t>(H * D), 0.0);
      for (std::int64_t h = 0; h < H; ++h) {
        const std::int64_t g = h / (H / KV);
        std::vector<double> s(static_cast<std::size_t>(t + 1));
        double max = -INFINITY;
        for (std::int64_t j = 0; j <= t; ++j) {
          double d = 0.0;
          for (std::int64_t i = 0; i < D; ++i) {
            d += q[static_cast<std::size_t>(t)][static_cast<std::size_t>(h * D + i)] * k[static_cast<std::size_t>(j)][static_cast<std::size_t>(g * D + i)];
          }
          s[static_cast<std::size_t>(j)] = d / std::sqrt(static_cast<double>(D));
          max = std::max(max, s[static_cast<std::size_t>(j)]);
        }
        double sum = 0.0;
        for (double& e : s) sum += (e = std::exp(e - max));
        for (std::int64_t j = 0; j <= t; ++j) {
          for (std::int64_t i = 0; i < D; ++i) {
            att[static_cast<std::size_t>(h * D + i)] += s[static_cast<std::size_t>(j)] / sum * v[static_cast<std::size_t>(j)][static_cast<std::size_t>(g * D + i)];
          }
        }
      }
      const Vec o = linear(WeightKind::AttnOutput, l, E, H * D, att, t);
      for (std::int64_t i = 0; i < E; ++i) x[static_cast<std::size_t>(t)][static_cast<std::size_t>(i)] += o[static_cast<std::size_t>(i)];
    }
    for (std::int64_t t = 0; t < T; ++t) {
      const Vec n = rms_norm(x[static_cast<std::size_t>(t)], W(WeightKind::FfnNorm, l), p.rms_norm_eps);
      Vec g = linear(WeightKind::FfnGate, l, F, E, n, t);
      const Vec u = linear(WeightKind::FfnUp, l, F, E, n, t);
      for (std::int64_t i = 0; i < F; ++i) g[static_cast<std::size_t>(i)] = g[static_cast<std::size_t>(i)] / (1.0 + std::exp(-g[static_cast<std::size_t>(i)])) * u[static_cast<std::size_t>(i)];
      Vec d = linear(WeightKind::FfnDown, l, E, F, g, t);
      if (const auto bias = w.find({static_cast<int>(WeightKind::FfnDownBias), l}); bias != w.end()) {
        for (std::int64_t i = 0; i < E; ++i) d[static_cast<std::size_t>(i)] += bias->second[static_cast<std::size_t>(i)];
      }
      for (std::int64_t i = 0; i < E; ++i) x[static_cast<std::size_t>(t)][static_cast<std::size_t>(i)] += d[static_cast<std::size_t>(i)];
    }
  }
  return x;
}

std::vector<std::vector<double>> ReferenceLlama::logits(const std::vector<std::int32_t>& inputs) const {
  std::vector<Vec> x = hidden(inputs);
  std::vector<Vec> out;
  for (const Vec& row : x) {
    const Vec n = rms_norm(row, w.at({static_cast<int>(WeightKind::OutputNorm), -1}), params.rms_norm_eps);
    out.push_back(product(w.at({static_cast<int>(WeightKind::Output), -1}), params.n_vocab, params.n_embd, n));
  }
  return out;
}

double ReferenceLlama::loss(const std::vector<std::int32_t>& inputs, const std::vector<std::int32_t>& targets,
                            const std::vector<float>& weights) const {
  const LlamaParams& p = params;
  const std::int64_t E = p.n_embd, V = p.n_vocab;
  const auto T = static_cast<std::int64_t>(inputs.size());
  const auto W = [&](WeightKind k, std::int64_t l) -> const Vec& { return w.at({static_cast<int>(k), l}); };
  const std::vector<Vec> x = hidden(inputs);
  double total = 0.0;
  for (std::int64_t t = 0; t < T; ++t) {
    if (weights[static_cast<std::size_t>(t)] == 0.0f || targets[static_cast<std::size_t>(t)] < 0) continue;
    const Vec n = rms_norm(x[static_cast<std::size_t>(t)], W(WeightKind::OutputNorm, -1), p.rms_norm_eps);
    const Vec z = product(W(WeightKind::Output, -1), V, E, n);
    double max = -INFINITY;
    for (double e : z) max = std::max(max, e);
    double sum = 0.0;
    for (double e : z) sum += std::exp(e - max);
    total += static_cast<double>(weights[static_cast<std::size_t>(t)]) * (max + std::log(sum) - z[static_cast<std::size_t>(targets[static_cast<std::size_t>(t)])]);
  }
  return total;
}

}  // namespace piquant::testing
