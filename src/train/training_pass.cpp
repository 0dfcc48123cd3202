#include "train/training_pass.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "core/error.h"
#include "kernels/attention.h"
#include "kernels/matmul.h"
#include "kernels/matmul_backward.h"
#include "kernels/vector_ops.h"

namespace piquant {

namespace {
constexpr std::int64_t kAttendQueriesPerThread = 16;

std::int64_t widest_ff(const LlamaParams& p) { return *std::max_element(p.n_ff.begin(), p.n_ff.end()); }

std::vector<float> floats(std::uint64_t n) { return std::vector<float>(static_cast<std::size_t>(n)); }
}  // namespace

// Floats one layer keeps with keep_activations: attention's xn, q, K/V rows, attn, rstd
// and lse, the MLP's input, gate and up.
std::uint64_t kept_floats(const LlamaParams& p, std::int64_t layer, std::uint64_t T) {
  const auto E = static_cast<std::uint64_t>(p.n_embd);
  const auto q_dim = static_cast<std::uint64_t>(p.n_head * p.head_dim);
  const auto kv_dim = static_cast<std::uint64_t>(p.n_head_kv * p.head_dim);
  const auto F = static_cast<std::uint64_t>(p.n_ff[static_cast<std::size_t>(layer)]);
  return T * (2 * E + 2 * q_dim + 2 * kv_dim + 1 + static_cast<std::uint64_t>(p.n_head) + 2 * F);
}

TrainingPlan plan_training(const LlamaParams& p, std::int64_t max_tokens, std::int64_t loss_chunk, unsigned threads,
                           bool keep_activations) {
  if (max_tokens <= 0 || loss_chunk <= 0 || threads == 0) {
    throw Error("plan_training: " + std::to_string(max_tokens) + " tokens, loss chunks of " + std::to_string(loss_chunk));
  }
  TrainingPlan plan;
  plan.max_tokens = max_tokens;
  plan.loss_chunk = std::min(loss_chunk, max_tokens);
  plan.threads = threads;
  const auto T = static_cast<std::uint64_t>(max_tokens);
  const auto E = static_cast<std::uint64_t>(p.n_embd);
  const auto q_dim = static_cast<std::uint64_t>(p.n_head * p.head_dim);
  const auto kv_dim = static_cast<std::uint64_t>(p.n_head_kv * p.head_dim);
  const auto H = static_cast<std::uint64_t>(p.n_head);
  const auto F = static_cast<std::uint64_t>(widest_ff(p));
  const auto step = static_cast<std::uint64_t>(mlp_step_tokens(max_tokens));
  const auto C = static_cast<std::uint64_t>(plan.loss_chunk);
  plan.residuals = static_cast<std::uint64_t>(p.n_layer + 1) * T * E;
  plan.x = T * E;
  plan.dx = T * E;
  const std::uint64_t scratch = threads * attend_scratch_floats(kAttendQueriesPerThread, max_tokens, p.head_dim);
  plan.attention = T * E /*xn*/ + 2 * T * q_dim /*q, attn*/ + 4 * T * kv_dim /*k, v, K/V rows*/ + T * E /*proj*/ + T /*rstd*/ +
                   T * H /*lse*/ + scratch;
  plan.attention_grads = 2 * T * q_dim + 2 * T * kv_dim + T * E;
  plan.mlp = 2 * T * E + 2 * step * F;
  plan.mlp_grads = 2 * T * E + T + 6 * step * F;
  plan.loss_head = 2 * C * E + C * static_cast<std::uint64_t>(p.n_vocab);
  if (keep_activations) {
    for (std::int64_t l = 0; l < p.n_layer; ++l) plan.kept += kept_floats(p, l, T);
  }
  return plan;
}

// One layer's values kept by the forward with keep_activations.
struct LayerKept {
  std::vector<float> xn, q, attn, rstd, lse, kv_k, kv_v, mlp_in, gate, up;
};

struct TrainingPass::Buffers {
  std::vector<LayerKept> kept;  // keep_activations: one per layer
  std::vector<float> residuals, x, dx;
  std::vector<float> a_xn, a_q, a_k, a_v, a_attn, a_proj, a_rstd, a_lse, kv_k, kv_v, a_scratch;
  std::vector<float> g_dattn, g_dq, g_dk, g_dv, g_dxn;
  std::vector<float> m_xn, m_proj, m_gate, m_up;
  std::vector<float> mg_xn, mg_rstd, mg_gate, mg_up, mg_h, mg_dh, mg_dgate, mg_dup, mg_dxn;
  std::vector<float> l_xn, l_logits, l_dxn;
  std::size_t scratch_per_thread = 0;
};

TrainingPass::TrainingPass(const LlamaModel& model, const LoraAdapter* lora, ThreadPool& pool, std::int64_t max_tokens,
                           std::int64_t loss_chunk, bool keep_activations)
    : model_(model),
      lora_(lora),
      pool_(pool),
      rope_(model.params().head_dim, model.params().rope_theta, model.rope_factors(), model.rope_pairing()),
      plan_(plan_training(model.params(), max_tokens, loss_chunk, pool.size(), keep_activations)),
      keep_activations_(keep_activations),
      b_(std::make_unique<Buffers>()) {
  const LlamaParams& p = model.params();
  const auto T = static_cast<std::uint64_t>(max_tokens);
  const auto E = static_cast<std::uint64_t>(p.n_embd);
  const auto q_dim = static_cast<std::uint64_t>(p.n_head * p.head_dim);
  const auto kv_dim = static_cast<std::uint64_t>(p.n_head_kv * p.head_dim);
  const auto F = static_cast<std::uint64_t>(widest_ff(p));
  const auto step = static_cast<std::uint64_t>(mlp_step_tokens(max_tokens));
  const auto C = static_cast<std::uint64_t>(plan_.loss_chunk);
  Buffers& b = *b_;
  b.residuals = floats(plan_.residuals);
  b.x = floats(T * E);
  b.dx = floats(T * E);
  b.a_xn = floats(T * E);
  b.a_q = floats(T * q_dim);
  b.a_attn = floats(T * q_dim);
  b.a_k = floats(T * kv_dim);
  b.a_v = floats(T * kv_dim);
  b.kv_k = floats(T * kv_dim);
  b.kv_v = floats(T * kv_dim);
  b.a_proj = floats(T * E);
  b.a_rstd = floats(T);
  b.a_lse = floats(T * static_cast<std::uint64_t>(p.n_head));
  b.scratch_per_thread = attend_scratch_floats(kAttendQueriesPerThread, max_tokens, p.head_dim);
  b.a_scratch = floats(pool.size() * b.scratch_per_thread);
  b.g_dattn = floats(T * q_dim);
  b.g_dq = floats(T * q_dim);
  b.g_dk = floats(T * kv_dim);
  b.g_dv = floats(T * kv_dim);
  b.g_dxn = floats(T * E);
  b.m_xn = floats(T * E);
  b.m_proj = floats(T * E);
  b.m_gate = floats(step * F);
  b.m_up = floats(step * F);
  b.mg_xn = floats(T * E);
  b.mg_rstd = floats(T);
  for (auto* v : {&b.mg_gate, &b.mg_up, &b.mg_h, &b.mg_dh, &b.mg_dgate, &b.mg_dup}) *v = floats(step * F);
  b.mg_dxn = floats(T * E);
  b.l_xn = floats(C * E);
  b.l_dxn = floats(C * E);
  b.l_logits = floats(C * static_cast<std::uint64_t>(p.n_vocab));
  if (keep_activations) {
    b.kept.resize(static_cast<std::size_t>(p.n_layer));
    for (std::int64_t l = 0; l < p.n_layer; ++l) {
      LayerKept& k = b.kept[static_cast<std::size_t>(l)];
      const auto F = static_cast<std::uint64_t>(p.n_ff[static_cast<std::size_t>(l)]);
      k.xn = floats(T * E);
      k.q = floats(T * q_dim);
      k.attn = floats(T * q_dim);
      k.rstd = floats(T);
      k.lse = floats(T * static_cast<std::uint64_t>(p.n_head));
      k.kv_k = floats(T * kv_dim);
      k.kv_v = floats(T * kv_dim);
      k.mlp_in = floats(T * E);
      k.gate = floats(T * F);
      k.up = floats(T * F);
    }
  }
}

TrainingPass::~TrainingPass() = default;

void TrainingPass::set_lora_dropout(float p) {
  if (!(p >= 0.0f && p < 1.0f)) throw Error("LoRA dropout " + std::to_string(p) + ": must be in [0, 1)");
  lora_dropout_ = p;
}

double TrainingPass::forward_backward(const TrainingTokens& tokens, const TokenLossWeights& loss, const TrainingGradients& grads) {
  return run(tokens, loss, &grads);
}

double TrainingPass::forward_loss(const TrainingTokens& tokens, const TokenLossWeights& loss) { return run(tokens, loss, nullptr); }

double TrainingPass::run(const TrainingTokens& tokens, const TokenLossWeights& loss, const TrainingGradients* grads) {
  const LlamaParams& p = model_.params();
  const auto T = static_cast<std::int64_t>(tokens.inputs.size());
  const std::int64_t E = p.n_embd, V = p.n_vocab, L = p.n_layer;
  if (T <= 0 || T > plan_.max_tokens) {
    throw Error("training pass: " + std::to_string(T) + " tokens, at most " + std::to_string(plan_.max_tokens));
  }
  if (tokens.targets.size() != tokens.inputs.size() || tokens.weights.size() != tokens.inputs.size() ||
      (!tokens.teacher.empty() && tokens.teacher.size() != tokens.inputs.size())) {
    throw Error("training pass: inputs, targets, weights (and teacher) must have one entry per position");
  }
  if (loss.distill != 0.0 && tokens.teacher.empty()) throw Error("training pass: distillation needs the teacher's top-k");
  for (std::int64_t t = 0; t < T; ++t) {
    const std::int32_t id = tokens.inputs[static_cast<std::size_t>(t)];
    const std::int32_t target = tokens.targets[static_cast<std::size_t>(t)];
    if (id < 0 || id >= V || target < -1 || target >= V) {
      throw Error("training pass: token " + std::to_string(id) + " → " + std::to_string(target) + " at position " +
                  std::to_string(t) + " outside the vocabulary of " + std::to_string(V));
    }
  }
  if (grads != nullptr && !grads->layers.empty() && static_cast<std::int64_t>(grads->layers.size()) != L) {
    throw Error("training pass: gradients for " + std::to_string(grads->layers.size()) + " of " + std::to_string(L) + " layers");
  }
  Buffers& b = *b_;
  ForwardEnv env{p, pool_, rope_, nullptr, lora_, /*float_activations=*/true};
  if (grads != nullptr && lora_ != nullptr) env.lora_dropout = {lora_dropout_, tokens.dropout_seed};
  const KvLayerView kv{reinterpret_cast<std::uint8_t*>(b.kv_k.data()), reinterpret_cast<std::uint8_t*>(b.kv_v.data()),
                       4u * static_cast<std::size_t>(p.n_head_kv * p.head_dim), T, GgmlType::F32};
  const std::span<float> x(b.x.data(), static_cast<std::size_t>(T * E));
  const auto residual = [&](std::int64_t l) { return std::span<float>(b.residuals.data() + l * T * E, static_cast<std::size_t>(T * E)); };
  AttentionBuffers attention{b.a_xn, b.a_q, b.a_k, b.a_v, b.a_attn, b.a_proj, b.a_scratch, b.scratch_per_thread, {}, {}};
  const MlpBuffers mlp{b.m_xn, b.m_gate, b.m_up, b.m_proj};

  // With keep_activations (training only), layer l's own buffers and K/V rows.
  const bool keep = keep_activations_ && grads != nullptr;
  const auto kept_kv = [&](std::int64_t l) {
    LayerKept& k = b.kept[static_cast<std::size_t>(l)];
    return KvLayerView{reinterpret_cast<std::uint8_t*>(k.kv_k.data()), reinterpret_cast<std::uint8_t*>(k.kv_v.data()), kv.row_bytes, T,
                       GgmlType::F32};
  };
  const auto kept_attention = [&](std::int64_t l) {
    LayerKept& k = b.kept[static_cast<std::size_t>(l)];
    return AttentionBuffers{k.xn, k.q, b.a_k, b.a_v, k.attn, b.a_proj, b.a_scratch, b.scratch_per_thread,
                            std::span<float>(k.rstd.data(), static_cast<std::size_t>(T)),
                            std::span<float>(k.lse.data(), static_cast<std::size_t>(T * p.n_head))};
  };
  const auto kept_rows = [&](std::vector<float>& v, std::int64_t width) { return std::span<float>(v.data(), static_cast<std::size_t>(T * width)); };

  // Forward, keeping each layer's input (and with keep_activations everything its backward reads).
  embed(model_.token_embedding(), tokens.inputs, x);
  for (std::int64_t l = 0; l < L; ++l) {
    std::copy(x.begin(), x.end(), residual(l).begin());
    if (keep) {
      LayerKept& k = b.kept[static_cast<std::size_t>(l)];
      const std::int64_t F = p.n_ff[static_cast<std::size_t>(l)];
      attention_block(env, l, model_.layer(l), kept_kv(l), 0, T, x, kept_attention(l));
      std::copy(x.begin(), x.end(), k.mlp_in.begin());
      MlpBuffers m = mlp;
      m.kept_gate = kept_rows(k.gate, F);
      m.kept_up = kept_rows(k.up, F);
      mlp_block(env, l, model_.layer(l), T, x, m);
    } else {
      attention_block(env, l, model_.layer(l), kv, 0, T, x, attention);
      mlp_block(env, l, model_.layer(l), T, x, mlp);
    }
  }
  std::copy(x.begin(), x.end(), residual(L).begin());

  // The loss head in chunks: logits, each position's loss and dlogits, then (training)
  // back through the output matrix and the final norm into dx.
  const std::span<float> dx(b.dx.data(), static_cast<std::size_t>(T * E));
  std::fill(dx.begin(), dx.end(), 0.0f);
  const float eps = static_cast<float>(p.rms_norm_eps);
  const BackwardEnv benv{env, grads != nullptr ? grads->lora : nullptr, grads != nullptr ? grads->mlp_observer : nullptr};
  std::vector<double> position_loss(static_cast<std::size_t>(T), 0.0);
  std::vector<float> rstd(static_cast<std::size_t>(plan_.loss_chunk));
  for (std::int64_t c0 = 0; c0 < T; c0 += plan_.loss_chunk) {
    const std::int64_t n = std::min(plan_.loss_chunk, T - c0);
    const float* xc = residual(L).data() + c0 * E;
    output_head(env, model_.output_norm(), model_.output(), residual(L), c0, c0 + n, b.l_xn, b.l_logits.data());
    pool_.parallel_for(n, 1, [&](std::int64_t i0, std::int64_t i1) {
      for (std::int64_t i = i0; i < i1; ++i) {
        const auto t = static_cast<std::size_t>(c0 + i);
        float* z = b.l_logits.data() + i * V;
        const float w = tokens.weights[t];
        if (w == 0.0f) {
          std::fill_n(z, V, 0.0f);
          continue;
        }
        const TeacherTopK* teacher = tokens.teacher.empty() ? nullptr : &tokens.teacher[t];
        position_loss[t] = static_cast<double>(w) * token_loss(z, V, tokens.targets[t], teacher, loss, w, z);
      }
    });
    if (grads == nullptr) continue;
    std::fill_n(b.l_dxn.data(), n * E, 0.0f);
    linear_backward(benv, WeightKind::Output, -1, model_.output(), b.l_xn.data(), n, b.l_logits.data(), b.l_dxn.data(),
                    grads->output, c0);
    rms_norm_rows_rstd(pool_, xc, E, eps, n, rstd.data());
    rms_norm_rows_backward(pool_, xc, model_.output_norm(), rstd.data(), b.l_dxn.data(), E, n, dx.data() + c0 * E,
                           grads->output_norm);
  }
  double total = 0.0;
  for (double v : position_loss) total += v;  // positions in order
  if (grads == nullptr) return total;

  // Backward through the layers, recomputing each one's forward from its input.
  AttentionBuffers kept = attention;
  kept.rstd = std::span<float>(b.a_rstd.data(), static_cast<std::size_t>(T));
  kept.lse = std::span<float>(b.a_lse.data(), static_cast<std::size_t>(T * p.n_head));
  const AttentionGradBuffers attention_grads{b.g_dattn, b.g_dq, b.g_dk, b.g_dv, b.g_dxn};
  const MlpGradBuffers mlp_grads{b.mg_xn, b.mg_rstd, b.mg_gate, b.mg_up, b.mg_h, b.mg_dh, b.mg_dgate, b.mg_dup, b.mg_dxn};
  const LayerGrads frozen;
  for (std::int64_t l = L - 1; l >= 0; --l) {
    const LayerWeights& w = model_.layer(l);
    const LayerGrads& g = grads->layers.empty() ? frozen : grads->layers[static_cast<std::size_t>(l)];
    if (keep) {
      LayerKept& k = b.kept[static_cast<std::size_t>(l)];
      const std::int64_t F = p.n_ff[static_cast<std::size_t>(l)];
      MlpGradBuffers m = mlp_grads;
      m.kept_gate = kept_rows(k.gate, F);
      m.kept_up = kept_rows(k.up, F);
      mlp_block_backward(benv, l, w, T, kept_rows(k.mlp_in, E), dx, m, g);
      attention_block_backward(benv, l, w, kept_kv(l), T, residual(l), kept_attention(l), dx, attention_grads, g);
      continue;
    }
    std::copy(residual(l).begin(), residual(l).end(), x.begin());
    attention_block(env, l, w, kv, 0, T, x, kept);  // x is now the MLP's input
    mlp_block_backward(benv, l, w, T, x, dx, mlp_grads, g);
    attention_block_backward(benv, l, w, kv, T, residual(l), kept, dx, attention_grads, g);
  }
  if (grads->token_embedding != nullptr) {
    for (std::int64_t t = 0; t < T; ++t) {  // positions in order: repeated tokens sum the same way every run
      float* row = grads->token_embedding + static_cast<std::int64_t>(tokens.inputs[static_cast<std::size_t>(t)]) * E;
      const float* d = dx.data() + t * E;
      for (std::int64_t i = 0; i < E; ++i) row[i] += d[i];
    }
  }
  return total;
}

}  // namespace piquant
