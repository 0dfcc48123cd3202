#include "quantize/awq.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <map>

#include "checkpoint/checkpoint.h"
#include "checkpoint/row_encoder.h"
#include "core/error.h"
#include "kernels/matmul.h"
#include "kernels/matmul_float.h"
#include "quantize/recipe.h"

namespace piquant {
namespace {

constexpr std::array<AwqGroupKind, 4> kGroupKinds = {AwqGroupKind::AttentionInput, AwqGroupKind::MlpInput,
                                                      AwqGroupKind::MlpDown, AwqGroupKind::AttentionOutput};

// The weight whose input a group's channels are: the observer records it there.
WeightKind input_weight(AwqGroupKind kind) {
  switch (kind) {
    case AwqGroupKind::AttentionInput: return WeightKind::AttnQ;
    case AwqGroupKind::MlpInput: return WeightKind::FfnGate;
    case AwqGroupKind::MlpDown: return WeightKind::FfnDown;
    case AwqGroupKind::AttentionOutput: return WeightKind::AttnOutput;
  }
  return WeightKind::AttnQ;
}

// The weights whose columns a group scales (their products make its error).
std::vector<WeightKind> scaled_weights(AwqGroupKind kind) {
  switch (kind) {
    case AwqGroupKind::AttentionInput: return {WeightKind::AttnQ, WeightKind::AttnK, WeightKind::AttnV};
    case AwqGroupKind::MlpInput: return {WeightKind::FfnGate, WeightKind::FfnUp};
    case AwqGroupKind::MlpDown: return {WeightKind::FfnDown};
    case AwqGroupKind::AttentionOutput: return {WeightKind::AttnOutput};
  }
  return {};
}

const MatrixView& layer_matrix(const LayerWeights& w, WeightKind kind) {
  switch (kind) {
    case WeightKind::AttnQ: return w.wq;
    case WeightKind::AttnK: return w.wk;
    case WeightKind::AttnV: return w.wv;
    case WeightKind::AttnOutput: return w.wo;
    case WeightKind::FfnGate: return w.w_gate;
    case WeightKind::FfnUp: return w.w_up;
    case WeightKind::FfnDown: return w.w_down;
    default: break;
  }
  throw Error("awq: no matrix " + gguf_tensor_name(WeightId{kind, -1}));
}

bool float_type(GgmlType t) { return t == GgmlType::F32 || t == GgmlType::F16 || t == GgmlType::BF16; }

// One group's input over the calibration: per-channel sums over every token, and the
// rows of the sampled tokens.
struct ChannelStatistics {
  std::int64_t cols = 0;
  std::int64_t tokens = 0;
  std::vector<double> sum_abs, sum_sq;
  std::vector<float> samples;  // n_samples × cols
  std::int64_t n_samples = 0;
};

// Records the inputs of the groups' weights; every `stride`-th token (counted per weight,
// in the order the forward pass shows them) is kept, at most max_samples.
class AwqInputObserver final : public MatmulObserver {
 public:
  AwqInputObserver(std::int64_t n_layer, bool attention_output, std::int64_t stride, std::int64_t max_samples)
      : stats_(static_cast<std::size_t>(n_layer)), attention_output_(attention_output), stride_(stride),
        max_samples_(max_samples) {}

  void observe(WeightId id, const float* x, std::int64_t n_tokens, std::int64_t cols) override {
    if (id.layer < 0) return;
    int slot = -1;
    for (std::size_t g = 0; g < kGroupKinds.size(); ++g) {
      if (input_weight(kGroupKinds[g]) == id.kind) slot = static_cast<int>(g);
    }
    if (slot < 0) return;
    if (kGroupKinds[static_cast<std::size_t>(slot)] == AwqGroupKind::AttentionOutput && !attention_output_) return;
    ChannelStatistics& s = stats_.at(static_cast<std::size_t>(id.layer))[static_cast<std::size_t>(slot)];
    if (s.cols == 0) {
      s.cols = cols;
      s.sum_abs.assign(static_cast<std::size_t>(cols), 0.0);
      s.sum_sq.assign(static_cast<std::size_t>(cols), 0.0);
    } else if (s.cols != cols) {
      throw Error("awq: " + gguf_tensor_name(id) + ": input of " + std::to_string(cols) + " columns, earlier " +
                  std::to_string(s.cols));
    }
    for (std::int64_t t = 0; t < n_tokens; ++t) {
      const float* row = x + t * cols;
      for (std::int64_t j = 0; j < cols; ++j) {
        const double v = row[j];
        s.sum_abs[static_cast<std::size_t>(j)] += std::fabs(v);
        s.sum_sq[static_cast<std::size_t>(j)] += v * v;
      }
      if (s.tokens % stride_ == 0 && s.n_samples < max_samples_) {
        s.samples.insert(s.samples.end(), row, row + cols);
        ++s.n_samples;
      }
      ++s.tokens;
    }
  }

  ChannelStatistics& at(std::int64_t layer, AwqGroupKind kind) {
    return stats_.at(static_cast<std::size_t>(layer))[static_cast<std::size_t>(kind)];
  }

 private:
  std::vector<std::array<ChannelStatistics, 4>> stats_;
  bool attention_output_;
  std::int64_t stride_;
  std::int64_t max_samples_;
};


// One weight of a group: its float values, its float product on the samples, and the
// type the recipe gives it.
struct GroupWeight {
  std::string name;
  GgmlType type = GgmlType::F32;
  std::int64_t rows = 0, cols = 0;
  std::vector<float> values;     // rows × cols
  std::vector<float> reference;  // n_samples × rows: W·x in float
};

class GroupSearch {
 public:
  GroupSearch(const ChannelStatistics& stats, std::vector<GroupWeight> weights, bool importance, ThreadPool& pool)
      : stats_(stats), weights_(std::move(weights)), importance_(importance), pool_(pool) {
    mean_abs_.resize(static_cast<std::size_t>(stats.cols));
    for (std::int64_t j = 0; j < stats.cols; ++j) {
      mean_abs_[static_cast<std::size_t>(j)] = stats.sum_abs[static_cast<std::size_t>(j)] / static_cast<double>(stats.tokens);
    }
    for (GroupWeight& w : weights_) {
      const MatrixView view{GgmlType::F32, reinterpret_cast<const std::uint8_t*>(w.values.data()), w.rows, w.cols,
                            static_cast<std::size_t>(w.cols) * sizeof(float)};
      w.reference.resize(static_cast<std::size_t>(stats.n_samples * w.rows));
      matmul_float_activations(view, stats.samples.data(), stats.n_samples, w.reference.data(), pool_);
    }
  }

  const std::vector<double>& mean_abs() const { return mean_abs_; }

  // Σ (ŷ − y)² over the group's weights, samples and rows at channel scales s.
  double error(const std::vector<float>& s) {
    const std::int64_t cols = stats_.cols, n = stats_.n_samples;
    std::vector<float> x(stats_.samples.size());
    for (std::int64_t t = 0; t < n; ++t) {
      for (std::int64_t j = 0; j < cols; ++j) {
        x[static_cast<std::size_t>(t * cols + j)] = stats_.samples[static_cast<std::size_t>(t * cols + j)] / s[static_cast<std::size_t>(j)];
      }
    }
    std::vector<float> importance;
    if (importance_) {
      importance.resize(static_cast<std::size_t>(cols));
      for (std::int64_t j = 0; j < cols; ++j) {
        const double sj = s[static_cast<std::size_t>(j)];
        importance[static_cast<std::size_t>(j)] =
            static_cast<float>(stats_.sum_sq[static_cast<std::size_t>(j)] / static_cast<double>(stats_.tokens) / (sj * sj));
      }
    }
    double total = 0.0;
    for (const GroupWeight& w : weights_) {
      std::vector<float> scaled(w.values.size());
      for (std::int64_t r = 0; r < w.rows; ++r) {
        for (std::int64_t j = 0; j < cols; ++j) {
          const std::size_t i = static_cast<std::size_t>(r * cols + j);
          scaled[i] = static_cast<float>(static_cast<double>(w.values[i]) * static_cast<double>(s[static_cast<std::size_t>(j)]));
        }
      }
      const std::size_t row_bytes = ggml_nbytes(w.type, static_cast<std::uint64_t>(cols));
      std::vector<std::uint8_t> encoded(row_bytes * static_cast<std::size_t>(w.rows));
      pool_.parallel_for(w.rows, 1, [&](std::int64_t begin, std::int64_t end) {
        encode_rows(w.type, scaled.data() + begin * cols, end - begin, cols, encoded.data() + begin * row_bytes,
                    importance_ ? importance.data() : nullptr);
      });
      const MatrixView view{w.type, encoded.data(), w.rows, cols, row_bytes};
      std::vector<float> y(w.reference.size());
      matmul(view, x.data(), n, y.data(), pool_);
      for (std::size_t i = 0; i < y.size(); ++i) {
        const double d = static_cast<double>(y[i]) - static_cast<double>(w.reference[i]);
        total += d * d;
      }
    }
    return total;
  }

 private:
  const ChannelStatistics& stats_;
  std::vector<GroupWeight> weights_;
  bool importance_;
  ThreadPool& pool_;
  std::vector<double> mean_abs_;
};

}  // namespace

std::string awq_group_name(AwqGroupKind kind) {
  switch (kind) {
    case AwqGroupKind::AttentionInput: return "attn_input";
    case AwqGroupKind::MlpInput: return "mlp_input";
    case AwqGroupKind::MlpDown: return "mlp_down";
    case AwqGroupKind::AttentionOutput: return "attn_output";
  }
  return "?";
}

std::vector<float> awq_channel_scales(const std::vector<double>& mean_abs, float alpha) {
  std::vector<double> raw(mean_abs.size());
  double lo = std::numeric_limits<double>::infinity(), hi = 0.0;
  for (std::size_t j = 0; j < mean_abs.size(); ++j) {
    raw[j] = std::pow(std::max(mean_abs[j], 1e-6), static_cast<double>(alpha));
    lo = std::min(lo, raw[j]);
    hi = std::max(hi, raw[j]);
  }
  const double norm = std::sqrt(lo * hi);
  std::vector<float> s(mean_abs.size());
  for (std::size_t j = 0; j < s.size(); ++j) s[j] = static_cast<float>(raw[j] / norm);
  return s;
}

AwqResult search_awq_scales(LlamaContext& context, const EvalChunks& chunks, const AwqOptions& options) {
  const LlamaModel& model = context.model();
  const LlamaParams& params = model.params();
  if (options.grid < 1) throw Error("awq: the α grid needs at least one point");
  if (options.error_tokens < 1) throw Error("awq: error tokens must be at least 1");
  for (std::int64_t l = 0; l < params.n_layer; ++l) {
    for (WeightKind k : {WeightKind::AttnQ, WeightKind::AttnK, WeightKind::AttnV, WeightKind::AttnOutput,
                         WeightKind::FfnGate, WeightKind::FfnUp, WeightKind::FfnDown}) {
      const GgmlType t = layer_matrix(model.layer(l), k).type;
      if (!float_type(t)) {
        throw Error(model.path() + ": AWQ needs a float model, " + gguf_tensor_name(WeightId{k, l}) + " is " +
                    ggml_type_name(t) + " (run it before quantizing)");
      }
    }
  }
  PlanOptions plan_options;
  plan_options.has_imatrix = options.importance;
  const QuantPlan plan = plan_quantization(quant_recipe(options.recipe), params, llama_tensor_layout(params), plan_options);

  const bool attention_output = params.n_head == params.n_head_kv;
  const std::int64_t total_tokens = chunks.n_evaluated();
  const std::int64_t stride = std::max<std::int64_t>(1, (total_tokens + options.error_tokens - 1) / options.error_tokens);
  AwqInputObserver observer(params.n_layer, attention_output, stride, options.error_tokens);
  {
    const ScopedMatmulObserver attachment(context, observer);
    for (std::int64_t c = 0; c < chunks.n_chunks(); ++c) {
      context.reset();
      context.eval(chunks.input(c));
    }
  }

  AwqResult result;
  result.calibration_tokens = total_tokens;
  const std::int64_t groups_per_layer = attention_output ? 4 : 3;
  const std::int64_t total_groups = params.n_layer * groups_per_layer;
  std::int64_t done = 0;
  for (std::int64_t l = 0; l < params.n_layer; ++l) {
    for (AwqGroupKind kind : kGroupKinds) {
      if (kind == AwqGroupKind::AttentionOutput && !attention_output) continue;
      ChannelStatistics& stats = observer.at(l, kind);
      if (stats.tokens == 0) throw Error("awq: layer " + std::to_string(l) + " saw no calibration token");
      result.error_tokens = stats.n_samples;
      std::vector<GroupWeight> weights;
      for (WeightKind k : scaled_weights(kind)) {
        const MatrixView& m = layer_matrix(model.layer(l), k);
        GroupWeight w;
        w.name = gguf_tensor_name(WeightId{k, l});
        w.type = plan.find(w.name)->type;
        w.rows = m.rows;
        w.cols = m.cols;
        w.values.resize(static_cast<std::size_t>(m.rows * m.cols));
        for (std::int64_t r = 0; r < m.rows; ++r) matrix_row_to_floats(m, r, w.values.data() + r * m.cols);
        weights.push_back(std::move(w));
      }
      GroupSearch search(stats, std::move(weights), options.importance, context.pool());

      AwqGroup group;
      group.kind = kind;
      group.layer = l;
      group.error_plain = search.error(std::vector<float>(static_cast<std::size_t>(stats.cols), 1.0f));
      group.error_chosen = group.error_plain;
      std::vector<float> alphas;
      if (options.fixed_alpha) {
        alphas.push_back(*options.fixed_alpha);
      } else {
        for (std::int64_t i = 1; i < options.grid; ++i) alphas.push_back(static_cast<float>(i) / static_cast<float>(options.grid));
      }
      for (float alpha : alphas) {
        if (alpha == 0.0f) continue;
        std::vector<float> s = awq_channel_scales(search.mean_abs(), alpha);
        const double e = search.error(s);
        if (options.fixed_alpha || e < group.error_chosen) {
          group.alpha = alpha;
          group.error_chosen = e;
          group.scales = std::move(s);
        }
      }
      result.groups.push_back(std::move(group));
      stats.samples = {};  // this group's samples are no longer needed
      if (options.progress) options.progress(++done, total_groups);
    }
  }
  return result;
}

}  // namespace piquant
