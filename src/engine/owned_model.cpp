#include "engine/owned_model.h"

#include <cmath>
#include <numbers>
#include <random>
#include <string>

#include "core/error.h"
#include "kernels/matmul.h"

namespace piquant {

namespace {

bool is_norm(WeightKind kind) {
  return kind == WeightKind::AttnNorm || kind == WeightKind::FfnNorm || kind == WeightKind::OutputNorm;
}

bool is_vector(WeightKind kind) { return is_norm(kind) || kind == WeightKind::FfnDownBias; }

MatrixView f32_view(const std::vector<float>& v, std::int64_t rows, std::int64_t cols) {
  return {GgmlType::F32, reinterpret_cast<const std::uint8_t*>(v.data()), rows, cols, 4u * static_cast<std::size_t>(cols)};
}

// Standard normal values from 64-bit Mersenne Twister words by Box-Muller, written out
// so that every standard library gives the same numbers (std::normal_distribution's
// algorithm is unspecified).
class PortableNormal {
 public:
  explicit PortableNormal(std::uint64_t seed) : rng_(seed) {}
  double next() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double u1 = (static_cast<double>(rng_() >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
    const double u2 = static_cast<double>(rng_() >> 11) * 0x1.0p-53;          // [0, 1)
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = r * std::sin(2.0 * std::numbers::pi * u2);
    has_spare_ = true;
    return r * std::cos(2.0 * std::numbers::pi * u2);
  }

 private:
  std::mt19937_64 rng_;
  double spare_ = 0.0;
  bool has_spare_ = false;
};

}  // namespace

std::pair<std::int64_t, std::int64_t> weight_shape(const LlamaParams& p, WeightId id) {
  const std::int64_t q = p.n_head * p.head_dim;
  const std::int64_t kv = p.n_head_kv * p.head_dim;
  const std::int64_t ff = id.layer >= 0 && id.layer < static_cast<std::int64_t>(p.n_ff.size()) ? p.n_ff[static_cast<std::size_t>(id.layer)] : 0;
  switch (id.kind) {
    case WeightKind::TokenEmbedding:
    case WeightKind::Output: return {p.n_vocab, p.n_embd};
    case WeightKind::AttnNorm:
    case WeightKind::FfnNorm:
    case WeightKind::OutputNorm:
    case WeightKind::FfnDownBias: return {1, p.n_embd};
    case WeightKind::AttnQ: return {q, p.n_embd};
    case WeightKind::AttnK:
    case WeightKind::AttnV: return {kv, p.n_embd};
    case WeightKind::AttnOutput: return {p.n_embd, q};
    case WeightKind::FfnGate:
    case WeightKind::FfnUp: return {ff, p.n_embd};
    case WeightKind::FfnDown: return {p.n_embd, ff};
    case WeightKind::RopeFreqs: break;
  }
  throw Error("weight_shape: " + gguf_tensor_name(id) + " is not a trainable weight");
}

OwnedLlamaModel::OwnedLlamaModel(const LlamaParams& params, const Vocab& vocab, RopePairing pairing,
                                 std::vector<float> rope_factors) {
  params.validate("in-memory model");
  path_ = "(in memory)";
  params_ = params;
  tokenizer_ = Tokenizer::create(Vocab(vocab));
  rope_pairing_ = pairing;
  rope_factors_ = std::move(rope_factors);
  ids_.push_back({WeightKind::TokenEmbedding, -1});
  for (std::int64_t l = 0; l < params.n_layer; ++l) {
    for (WeightKind k : {WeightKind::AttnNorm, WeightKind::AttnQ, WeightKind::AttnK, WeightKind::AttnV, WeightKind::AttnOutput,
                         WeightKind::FfnNorm, WeightKind::FfnGate, WeightKind::FfnUp, WeightKind::FfnDown}) {
      ids_.push_back({k, l});
    }
    if (params.has_ffn_down_bias(l)) ids_.push_back({WeightKind::FfnDownBias, l});
  }
  ids_.push_back({WeightKind::OutputNorm, -1});
  if (!params.tie_word_embeddings) ids_.push_back({WeightKind::Output, -1});
  tensors_.resize(ids_.size());
  for (std::size_t i = 0; i < ids_.size(); ++i) {
    const auto [rows, cols] = weight_shape(params, ids_[i]);
    tensors_[i].assign(static_cast<std::size_t>(rows * cols), 0.0f);
    weight_bytes_ += 4u * static_cast<std::uint64_t>(rows * cols);
  }
  // The views every forward block reads.
  bind_weights(
      path_,
      [this](WeightId id) {
        const auto [rows, cols] = weight_shape(params_, id);
        return f32_view(storage(id), rows, cols);
      },
      [this](WeightId id, std::int64_t) -> const float* { return storage(id).data(); }, !params.tie_word_embeddings);
}

std::vector<float>& OwnedLlamaModel::storage(WeightId id) {
  for (std::size_t i = 0; i < ids_.size(); ++i) {
    if (ids_[i] == id) return tensors_[i];
  }
  throw Error("in-memory model: no weight " + gguf_tensor_name(id));
}

std::vector<WeightId> OwnedLlamaModel::weight_ids() const { return ids_; }

std::span<float> OwnedLlamaModel::weight(WeightId id) { return storage(id); }

std::span<const float> OwnedLlamaModel::weight(WeightId id) const {
  return const_cast<OwnedLlamaModel*>(this)->storage(id);
}

std::unique_ptr<OwnedLlamaModel> OwnedLlamaModel::random(const LlamaParams& params, const Vocab& vocab, RopePairing pairing,
                                                         std::uint64_t seed, float stddev) {
  std::unique_ptr<OwnedLlamaModel> m(new OwnedLlamaModel(params, vocab, pairing, params.rope_freq_factors()));
  PortableNormal normal(seed);
  for (std::size_t i = 0; i < m->ids_.size(); ++i) {
    std::vector<float>& t = m->tensors_[i];
    if (m->ids_[i].kind == WeightKind::FfnDownBias) {
      continue;  // zeros, drawing nothing: the other weights are those of the same shape without biases
    } else if (is_norm(m->ids_[i].kind)) {
      std::fill(t.begin(), t.end(), 1.0f);
    } else {
      for (float& v : t) v = static_cast<float>(normal.next() * stddev);
    }
  }
  return m;
}

std::unique_ptr<OwnedLlamaModel> OwnedLlamaModel::copy_of(const LlamaModel& model) {
  LlamaParams params = model.params();
  params.tie_word_embeddings = model.output().data == model.token_embedding().data;
  std::unique_ptr<OwnedLlamaModel> m(new OwnedLlamaModel(params, model.vocab(), model.rope_pairing(), model.rope_factors()));
  for (std::size_t i = 0; i < m->ids_.size(); ++i) {
    const WeightId id = m->ids_[i];
    std::vector<float>& t = m->tensors_[i];
    const auto [rows, cols] = weight_shape(params, id);
    if (is_vector(id.kind)) {
      const float* src = id.kind == WeightKind::OutputNorm    ? model.output_norm()
                         : id.kind == WeightKind::AttnNorm    ? model.layer(id.layer).attn_norm
                         : id.kind == WeightKind::FfnDownBias ? model.layer(id.layer).ffn_down_bias
                                                              : model.layer(id.layer).ffn_norm;
      std::copy(src, src + cols, t.begin());
      continue;
    }
    const MatrixView* w = nullptr;
    if (id.kind == WeightKind::TokenEmbedding) w = &model.token_embedding();
    if (id.kind == WeightKind::Output) w = &model.output();
    if (id.layer >= 0) {
      const LayerWeights& lw = model.layer(id.layer);
      switch (id.kind) {
        case WeightKind::AttnQ: w = &lw.wq; break;
        case WeightKind::AttnK: w = &lw.wk; break;
        case WeightKind::AttnV: w = &lw.wv; break;
        case WeightKind::AttnOutput: w = &lw.wo; break;
        case WeightKind::FfnGate: w = &lw.w_gate; break;
        case WeightKind::FfnUp: w = &lw.w_up; break;
        case WeightKind::FfnDown: w = &lw.w_down; break;
        default: break;
      }
    }
    for (std::int64_t r = 0; r < rows; ++r) matrix_row_to_floats(*w, r, t.data() + r * cols);
  }
  return m;
}

}  // namespace piquant
