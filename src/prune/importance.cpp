#include "prune/importance.h"

#include <algorithm>
#include <cmath>
#include <span>
#include <string>

#include "core/error.h"
#include "engine/backward_blocks.h"
#include "engine/forward_blocks.h"
#include "kernels/attention.h"
#include "kernels/matmul.h"
#include "kernels/rope.h"
#include "train/training_pass.h"

namespace piquant {
namespace {

// Per-feature sums are split over threads in ranges of this many features (whole cache
// lines of doubles); every feature's own sum runs over tokens ascending on one thread,
// so no result depends on the thread count.
constexpr std::int64_t kFeatureGrain = 64;
// Attention scratch per thread: room for this many queries at once (as training has).
constexpr std::int64_t kAttendQueriesPerThread = 16;
// ffn_down's column sums: partial sums over blocks of this many rows, added block by block.
constexpr std::int64_t kRowsPerBlock = 64;
constexpr std::int64_t kLossChunk = 32;

struct LayerRange {
  std::int64_t first = 0, last = -1;
  bool contains(std::int64_t l) const { return l >= first && l <= last; }
};

LayerRange layer_range(const LlamaParams& p, std::int64_t first, std::int64_t last, const char* what) {
  const std::int64_t end = last == -1 ? p.n_layer - 1 : last;
  if (first < 0 || end < first || end >= p.n_layer) {
    throw Error(std::string(what) + ": layers " + std::to_string(first) + " .. " + std::to_string(last) +
                " do not lie in the model's " + std::to_string(p.n_layer));
  }
  return {first, end};
}

std::int64_t ff_of(const LlamaParams& p, std::int64_t layer) { return p.n_ff[static_cast<std::size_t>(layer)]; }

// fn(begin, end) over [0, n): over the pool in ranges of `grain`, or inline without one.
template <class Fn>
void for_range(ThreadPool* pool, std::int64_t n, std::int64_t grain, const Fn& fn) {
  if (pool == nullptr || pool->size() == 1 || n <= grain) {
    fn(std::int64_t{0}, n);
  } else {
    pool->parallel_for(n, grain, [&fn](std::int64_t b, std::int64_t e) { fn(b, e); });
  }
}

// ---------------------------------------------------------------------------------------
// The forward pass's statistics: ffn_gate's input is x, ffn_down's is h.

class MlpInputObserver final : public MatmulObserver {
 public:
  explicit MlpInputObserver(ThreadPool& pool) : pool_(pool) {}

  void begin_layer(std::int64_t layer, MlpLayerStatistics& stats) {
    layer_ = layer;
    stats_ = &stats;
    seq_abs_.assign(stats.act_sum.size(), 0.0);
  }

  // After a sequence of T tokens went through the layer's MLP.
  void end_sequence(std::int64_t T) {
    MlpLayerStatistics& s = *stats_;
    for (std::size_t i = 0; i < seq_abs_.size(); ++i) {
      const double mean = seq_abs_[i] / static_cast<double>(T);
      s.act_abs_seq[i] += mean * mean;
      seq_abs_[i] = 0.0;
    }
    s.n_tokens += T;
    s.n_sequences += 1;
  }

  void observe(WeightId id, const float* x, std::int64_t n_tokens, std::int64_t cols) override {
    if (id.layer != layer_) return;
    MlpLayerStatistics& s = *stats_;
    if (id.kind == WeightKind::FfnGate) {
      double* sq = s.input_sq_sum.data();
      for_range(&pool_, cols, kFeatureGrain, [&](std::int64_t j0, std::int64_t j1) {
        for (std::int64_t t = 0; t < n_tokens; ++t) {
          const float* row = x + t * cols;
          for (std::int64_t j = j0; j < j1; ++j) {
            const double v = row[j];
            sq[j] += v * v;
          }
        }
      });
    } else if (id.kind == WeightKind::FfnDown) {
      double* sum = s.act_sum.data();
      double* sq = s.act_sq_sum.data();
      double* abs = seq_abs_.data();
      for_range(&pool_, cols, kFeatureGrain, [&](std::int64_t i0, std::int64_t i1) {
        for (std::int64_t t = 0; t < n_tokens; ++t) {
          const float* row = x + t * cols;
          for (std::int64_t i = i0; i < i1; ++i) {
            const double h = row[i];
            sum[i] += h;
            sq[i] += h * h;
            abs[i] += std::fabs(h);
          }
        }
      });
    }
  }

 private:
  ThreadPool& pool_;
  std::int64_t layer_ = -1;
  MlpLayerStatistics* stats_ = nullptr;
  std::vector<double> seq_abs_;  // Σ |h_i| over the current sequence's tokens so far
};

// Layer by layer over every sequence's residual stream, as LlamaContext's forward does
// it for one sequence (the same blocks, an F32 KV view of the sequence's own length).
void forward_statistics(const LlamaModel& model, const std::vector<std::vector<std::int32_t>>& sequences, LayerRange range,
                        std::vector<MlpLayerStatistics>& stats, const CalibrationOptions& options, std::int64_t total_steps,
                        ThreadPool& pool) {
  const LlamaParams& p = model.params();
  const std::int64_t E = p.n_embd;
  const std::int64_t q_dim = p.n_head * p.head_dim;
  const std::int64_t kv_dim = p.n_head_kv * p.head_dim;
  std::int64_t T_max = 0;
  for (const auto& s : sequences) T_max = std::max<std::int64_t>(T_max, static_cast<std::int64_t>(s.size()));
  std::int64_t F_max = 0;
  for (std::int64_t l = 0; l <= range.last; ++l) F_max = std::max(F_max, ff_of(p, l));
  const auto floats = [](std::int64_t n) { return std::vector<float>(static_cast<std::size_t>(n)); };
  std::vector<float> xn = floats(T_max * E), q = floats(T_max * q_dim), k = floats(T_max * kv_dim),
                     v = floats(T_max * kv_dim), attn = floats(T_max * q_dim), proj = floats(T_max * E),
                     kv_k = floats(T_max * kv_dim), kv_v = floats(T_max * kv_dim);
  const std::size_t per_thread = attend_scratch_floats(kAttendQueriesPerThread, T_max, p.head_dim);
  std::vector<float> scratch(per_thread * pool.size());
  const std::int64_t step = mlp_step_tokens(T_max);
  std::vector<float> gate = floats(step * F_max), up = floats(step * F_max);
  const AttentionBuffers attention{xn, q, k, v, attn, proj, scratch, per_thread, {}, {}};
  const MlpBuffers mlp{xn, gate, up, proj};

  std::vector<std::vector<float>> residual(sequences.size());
  for (std::size_t s = 0; s < sequences.size(); ++s) {
    residual[s] = floats(static_cast<std::int64_t>(sequences[s].size()) * E);
    embed(model.token_embedding(), sequences[s], residual[s]);
  }

  const RopeTable rope(p.head_dim, p.rope_theta, model.rope_factors(), model.rope_pairing());
  MlpInputObserver observer(pool);
  const ForwardEnv plain{p, pool, rope};
  const ForwardEnv observed{p, pool, rope, &observer};
  for (std::int64_t l = 0; l <= range.last; ++l) {
    const bool measured = range.contains(l);
    if (measured) observer.begin_layer(l, stats[static_cast<std::size_t>(l)]);
    const LayerWeights& w = model.layer(l);
    for (std::size_t s = 0; s < sequences.size(); ++s) {
      const auto T = static_cast<std::int64_t>(sequences[s].size());
      const KvLayerView kv{reinterpret_cast<std::uint8_t*>(kv_k.data()), reinterpret_cast<std::uint8_t*>(kv_v.data()),
                           sizeof(float) * static_cast<std::size_t>(kv_dim), T, GgmlType::F32};
      attention_block(plain, l, w, kv, 0, T, residual[s], attention);
      mlp_block(measured ? observed : plain, l, w, T, residual[s], mlp);
      if (measured) observer.end_sequence(T);
    }
    model.release_layer(l);
    if (options.progress) options.progress(l + 1, total_steps);
  }
}

// ---------------------------------------------------------------------------------------
// Taylor: Σ_t gate·dgate + up·dup + h·dh per neuron, from the training pass's backward.

class TaylorObserver final : public MlpBackwardObserver {
 public:
  TaylorObserver(ThreadPool& pool, LayerRange range, std::vector<MlpLayerStatistics>& stats)
      : pool_(pool), range_(range), stats_(stats) {}

  // Folds the sequence just differentiated into the totals: its signed sums into taylor,
  // their squares into taylor_sq_seq; then clears the per-sequence sums.
  void end_sequence() {
    for (std::int64_t l = range_.first; l <= range_.last; ++l) {
      auto& st = stats_[static_cast<std::size_t>(l)];
      auto& seq = sequence_[static_cast<std::size_t>(l - range_.first)];
      for (std::size_t i = 0; i < seq.size(); ++i) {
        st.taylor[i] += seq[i];
        st.taylor_sq_seq[i] += seq[i] * seq[i];
        seq[i] = 0.0;
      }
    }
  }

  void observe(const MlpStepValues& v) override {
    if (!range_.contains(v.layer)) return;
    auto& seq = sequence_[static_cast<std::size_t>(v.layer - range_.first)];
    seq.resize(static_cast<std::size_t>(v.n_ff), 0.0);
    double* acc = seq.data();
    const std::int64_t F = v.n_ff;
    for_range(&pool_, F, kFeatureGrain, [&](std::int64_t i0, std::int64_t i1) {
      for (std::int64_t t = 0; t < v.n_tokens; ++t) {
        const std::int64_t o = t * F;
        for (std::int64_t i = o + i0; i < o + i1; ++i) {
          acc[i - o] += static_cast<double>(v.gate[i]) * v.dgate[i] + static_cast<double>(v.up[i]) * v.dup[i] +
                        static_cast<double>(v.h[i]) * v.dh[i];
        }
      }
    });
  }

 private:
  ThreadPool& pool_;
  LayerRange range_;
  std::vector<MlpLayerStatistics>& stats_;
  std::vector<std::vector<double>> sequence_ = std::vector<std::vector<double>>(static_cast<std::size_t>(range_.last - range_.first + 1));
};

void taylor_statistics(const LlamaModel& model, const std::vector<std::vector<std::int32_t>>& sequences, LayerRange range,
                       std::vector<MlpLayerStatistics>& stats, const CalibrationOptions& options, std::int64_t done,
                       std::int64_t total_steps, ThreadPool& pool) {
  std::int64_t positions = 0;
  for (const auto& s : sequences) positions = std::max<std::int64_t>(positions, static_cast<std::int64_t>(s.size()) - 1);
  if (positions <= 0) throw Error("taylor scores need a calibration sequence of at least two tokens (a next token to predict)");
  for (std::int64_t l = range.first; l <= range.last; ++l) {
    stats[static_cast<std::size_t>(l)].taylor.assign(static_cast<std::size_t>(ff_of(model.params(), l)), 0.0);
    stats[static_cast<std::size_t>(l)].taylor_sq_seq.assign(static_cast<std::size_t>(ff_of(model.params(), l)), 0.0);
  }
  TaylorObserver observer(pool, range, stats);
  TrainingPass pass(model, nullptr, pool, positions, kLossChunk);
  TrainingGradients grads;  // every weight frozen: only the activations' gradients are computed
  grads.mlp_observer = &observer;
  for (const auto& s : sequences) {
    const auto T = static_cast<std::int64_t>(s.size()) - 1;
    if (T > 0) {
      const std::span<const std::int32_t> ids(s);
      const std::vector<float> weights(static_cast<std::size_t>(T), 1.0f);
      TrainingTokens tokens{ids.first(static_cast<std::size_t>(T)), ids.subspan(1), weights, {}};
      pass.forward_backward(tokens, TokenLossWeights{}, grads);
      observer.end_sequence();
    }
    if (options.progress) options.progress(++done, total_steps);
  }
}

// ---------------------------------------------------------------------------------------
// Weight sums.

// Per row r of m: Σ_c f(w_rc, c) in double, c ascending; rows over the pool.
template <class Fn>
std::vector<double> row_sums(const MatrixView& m, ThreadPool* pool, const Fn& f) {
  std::vector<double> out(static_cast<std::size_t>(m.rows), 0.0);
  for_range(pool, m.rows, 1, [&](std::int64_t r0, std::int64_t r1) {
    std::vector<float> row(static_cast<std::size_t>(m.cols));
    for (std::int64_t r = r0; r < r1; ++r) {
      matrix_row_to_floats(m, r, row.data());
      double s = 0.0;
      for (std::int64_t c = 0; c < m.cols; ++c) s += f(static_cast<double>(row[static_cast<std::size_t>(c)]), c);
      out[static_cast<std::size_t>(r)] = s;
    }
  });
  return out;
}

// Per column c of m (ffn_down: column i is neuron i): Σ_r |w_rc| and Σ_r w_rc². Blocks of
// kRowsPerBlock rows sum in parallel; their partial sums are then added in block order.
struct ColumnSums {
  std::vector<double> abs, sq;
};
ColumnSums column_sums(const MatrixView& m, ThreadPool* pool) {
  const std::int64_t n_blocks = (m.rows + kRowsPerBlock - 1) / kRowsPerBlock;
  const auto C = static_cast<std::size_t>(m.cols);
  std::vector<std::vector<double>> partial(static_cast<std::size_t>(n_blocks));
  for_range(pool, n_blocks, 1, [&](std::int64_t b0, std::int64_t b1) {
    std::vector<float> row(C);
    for (std::int64_t b = b0; b < b1; ++b) {
      std::vector<double>& part = partial[static_cast<std::size_t>(b)];
      part.assign(2 * C, 0.0);
      for (std::int64_t r = b * kRowsPerBlock; r < std::min(m.rows, (b + 1) * kRowsPerBlock); ++r) {
        matrix_row_to_floats(m, r, row.data());
        for (std::size_t c = 0; c < C; ++c) {
          const double w = row[c];
          part[c] += std::fabs(w);
          part[C + c] += w * w;
        }
      }
    }
  });
  ColumnSums out{std::vector<double>(C, 0.0), std::vector<double>(C, 0.0)};
  for (const auto& part : partial) {
    for (std::size_t c = 0; c < C; ++c) {
      out.abs[c] += part[c];
      out.sq[c] += part[C + c];
    }
  }
  return out;
}

void check_statistics(PruneCriterion criterion, const LlamaParams& p, const std::vector<MlpLayerStatistics>& statistics,
                      LayerRange range) {
  const std::string name = prune_criterion_name(criterion);
  if (static_cast<std::int64_t>(statistics.size()) != p.n_layer) {
    throw Error("pruning criterion " + name + " needs calibration statistics for the model's " + std::to_string(p.n_layer) +
                " layers, got " + std::to_string(statistics.size()));
  }
  for (std::int64_t l = range.first; l <= range.last; ++l) {
    const MlpLayerStatistics& s = statistics[static_cast<std::size_t>(l)];
    const auto F = static_cast<std::size_t>(ff_of(p, l));
    const bool ok = s.n_tokens > 0 && s.n_sequences > 0 && s.act_sum.size() == F && s.act_sq_sum.size() == F &&
                    s.act_abs_seq.size() == F && s.input_sq_sum.size() == static_cast<std::size_t>(p.n_embd) &&
                    (criterion != PruneCriterion::Taylor || s.taylor.size() == F);
    if (!ok) {
      throw Error("pruning criterion " + name + ": layer " + std::to_string(l) + " has no calibration statistics" +
                  (criterion == PruneCriterion::Taylor ? " with taylor sums" : "") + " for its " + std::to_string(F) +
                  " neurons");
    }
  }
}

std::vector<double> layer_importance(PruneCriterion criterion, const LlamaModel& model, const MlpLayerStatistics* s,
                                     std::int64_t l, ThreadPool* pool) {
  const LayerWeights& w = model.layer(l);
  const auto F = static_cast<std::size_t>(ff_of(model.params(), l));
  std::vector<double> score(F, 0.0);
  switch (criterion) {
    case PruneCriterion::Magnitude: {
      const auto square = [](double v, std::int64_t) { return v * v; };
      const std::vector<double> gate = row_sums(w.w_gate, pool, square);
      const std::vector<double> up = row_sums(w.w_up, pool, square);
      const ColumnSums down = column_sums(w.w_down, pool);
      for (std::size_t i = 0; i < F; ++i) score[i] = gate[i] + up[i] + down.sq[i];
      break;
    }
    case PruneCriterion::Wanda: {
      std::vector<double> x_norm(s->input_sq_sum.size());
      for (std::size_t j = 0; j < x_norm.size(); ++j) x_norm[j] = std::sqrt(s->input_sq_sum[j]);
      const auto weighted = [&](double v, std::int64_t j) { return std::fabs(v) * x_norm[static_cast<std::size_t>(j)]; };
      const std::vector<double> gate = row_sums(w.w_gate, pool, weighted);
      const std::vector<double> up = row_sums(w.w_up, pool, weighted);
      const ColumnSums down = column_sums(w.w_down, pool);
      for (std::size_t i = 0; i < F; ++i) score[i] = gate[i] + up[i] + down.abs[i] * std::sqrt(s->act_sq_sum[i]);
      break;
    }
    case PruneCriterion::Activation:
      for (std::size_t i = 0; i < F; ++i) score[i] = std::sqrt(s->act_abs_seq[i]);
      break;
    case PruneCriterion::Flap: {
      const ColumnSums down = column_sums(w.w_down, pool);
      const double n = static_cast<double>(s->n_tokens);
      for (std::size_t i = 0; i < F; ++i) {
        const double mean = s->act_sum[i] / n;
        const double variance = std::max(0.0, s->act_sq_sum[i] / n - mean * mean);
        score[i] = variance * down.sq[i];
      }
      break;
    }
    case PruneCriterion::Taylor:
      for (std::size_t i = 0; i < F; ++i) score[i] = std::sqrt(s->taylor_sq_seq[i]);
      break;
  }
  return score;
}

}  // namespace

std::vector<MlpLayerStatistics> collect_mlp_statistics(const LlamaModel& model,
                                                       const std::vector<std::vector<std::int32_t>>& sequences,
                                                       const CalibrationOptions& options, ThreadPool& pool) {
  const LlamaParams& p = model.params();
  const LayerRange range = layer_range(p, options.first_layer, options.last_layer, "calibration");
  if (sequences.empty()) throw Error("calibration: no sequences");
  for (std::size_t s = 0; s < sequences.size(); ++s) {
    if (sequences[s].empty()) throw Error("calibration: sequence " + std::to_string(s) + " is empty");
    for (const std::int32_t id : sequences[s]) {
      if (id < 0 || id >= p.n_vocab) {
        throw Error("calibration: sequence " + std::to_string(s) + " has token id " + std::to_string(id) +
                    " outside the vocabulary of " + std::to_string(p.n_vocab));
      }
    }
  }
  std::vector<MlpLayerStatistics> stats(static_cast<std::size_t>(p.n_layer));
  for (std::int64_t l = range.first; l <= range.last; ++l) {
    MlpLayerStatistics& s = stats[static_cast<std::size_t>(l)];
    const auto F = static_cast<std::size_t>(ff_of(p, l));
    s.input_sq_sum.assign(static_cast<std::size_t>(p.n_embd), 0.0);
    s.act_sum.assign(F, 0.0);
    s.act_sq_sum.assign(F, 0.0);
    s.act_abs_seq.assign(F, 0.0);
  }
  const std::int64_t total = range.last + 1 + (options.taylor ? static_cast<std::int64_t>(sequences.size()) : 0);
  forward_statistics(model, sequences, range, stats, options, total, pool);
  if (options.taylor) taylor_statistics(model, sequences, range, stats, options, range.last + 1, total, pool);
  return stats;
}

std::vector<std::vector<double>> neuron_importance(PruneCriterion criterion, const LlamaModel& model,
                                                   const std::vector<MlpLayerStatistics>& statistics,
                                                   std::int64_t first_layer, std::int64_t last_layer, ThreadPool* pool) {
  const LlamaParams& p = model.params();
  const LayerRange range = layer_range(p, first_layer, last_layer, "neuron importance");
  const bool calibrated = prune_criterion_needs_calibration(criterion);
  if (calibrated) check_statistics(criterion, p, statistics, range);
  const bool reads_weights = criterion == PruneCriterion::Magnitude || criterion == PruneCriterion::Wanda ||
                             criterion == PruneCriterion::Flap;
  std::vector<std::vector<double>> scores(static_cast<std::size_t>(p.n_layer));
  for (std::int64_t l = range.first; l <= range.last; ++l) {
    const MlpLayerStatistics* s = calibrated ? &statistics[static_cast<std::size_t>(l)] : nullptr;
    scores[static_cast<std::size_t>(l)] = layer_importance(criterion, model, s, l, pool);
    if (reads_weights) model.release_layer(l);
  }
  return scores;
}

std::vector<float> mlp_bias_compensation(const LlamaModel& model, std::int64_t layer, const MlpLayerStatistics& statistics,
                                         const std::vector<std::int64_t>& removed_neurons) {
  const LlamaParams& p = model.params();
  if (layer < 0 || layer >= p.n_layer) {
    throw Error("bias compensation: layer " + std::to_string(layer) + " of " + std::to_string(p.n_layer));
  }
  const std::int64_t F = ff_of(p, layer);
  if (statistics.n_tokens <= 0 || statistics.act_sum.size() != static_cast<std::size_t>(F)) {
    throw Error("bias compensation: layer " + std::to_string(layer) + " has no calibration statistics for its " +
                std::to_string(F) + " neurons");
  }
  std::vector<std::int64_t> removed = removed_neurons;
  std::sort(removed.begin(), removed.end());
  for (std::size_t k = 0; k < removed.size(); ++k) {
    if (removed[k] < 0 || removed[k] >= F) {
      throw Error("bias compensation: neuron " + std::to_string(removed[k]) + " outside layer " + std::to_string(layer) +
                  "'s " + std::to_string(F));
    }
    if (k > 0 && removed[k] == removed[k - 1]) {
      throw Error("bias compensation: neuron " + std::to_string(removed[k]) + " of layer " + std::to_string(layer) +
                  " removed twice");
    }
  }
  std::vector<double> mean(removed.size());
  for (std::size_t k = 0; k < removed.size(); ++k) {
    mean[k] = statistics.act_sum[static_cast<std::size_t>(removed[k])] / static_cast<double>(statistics.n_tokens);
  }
  const MatrixView& down = model.layer(layer).w_down;
  std::vector<float> row(static_cast<std::size_t>(F));
  std::vector<float> bias(static_cast<std::size_t>(p.n_embd), 0.0f);
  for (std::int64_t r = 0; r < down.rows; ++r) {
    matrix_row_to_floats(down, r, row.data());
    double b = 0.0;
    for (std::size_t k = 0; k < removed.size(); ++k) b += mean[k] * row[static_cast<std::size_t>(removed[k])];
    bias[static_cast<std::size_t>(r)] = static_cast<float>(b);
  }
  return bias;
}

}  // namespace piquant
