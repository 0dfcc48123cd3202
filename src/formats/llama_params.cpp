#include "formats/llama_params.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>

#include "core/error.h"

namespace piquant {
namespace {

// Bounds far above any real Llama that keep every tensor size well inside 64 bits.
constexpr std::int64_t kMaxWidth = std::int64_t{1} << 24;   // n_embd, n_ff, n_vocab, head_dim
constexpr std::int64_t kMaxCount = std::int64_t{1} << 16;   // layers, heads
constexpr std::int64_t kMaxContext = std::int64_t{1} << 30;

void check_range(const std::string& source, const char* field, std::int64_t value, std::int64_t max) {
  if (value <= 0) throw FormatError(source, field, "must be positive, got " + std::to_string(value));
  if (value > max) throw FormatError(source, field, std::to_string(value) + " is implausibly large");
}

void check_positive(const std::string& source, const char* field, double value) {
  if (!(value > 0.0) || !std::isfinite(value)) {
    throw FormatError(source, field, "must be a positive finite number, got " + std::to_string(value));
  }
}

// Unsigned 128-bit arithmetic: exact for any validated shape, and never undefined
// behaviour for an absurd one (n_params() then clamps the result).
unsigned __int128 count_params(const LlamaParams& p) {
  using u128 = unsigned __int128;
  const auto u = [](std::int64_t v) { return static_cast<u128>(static_cast<std::uint64_t>(v)); };
  const u128 embd = u(p.n_embd);
  const u128 per_layer = 2 * embd                              // attention and MLP norms
                         + 2 * embd * u(p.n_head) * u(p.head_dim)     // wq, wo
                         + 2 * embd * u(p.n_head_kv) * u(p.head_dim);  // wk, wv
  u128 total = u(p.n_vocab) * embd;                         // token embedding
  if (!p.tie_word_embeddings) total += u(p.n_vocab) * embd;  // output matrix
  total += embd;                                              // final norm
  total += per_layer * u(p.n_layer);
  const auto layers = std::min<std::size_t>(p.n_ff.size(), static_cast<std::size_t>(std::max<std::int64_t>(p.n_layer, 0)));
  for (std::size_t l = 0; l < layers; ++l) total += 3 * embd * u(p.n_ff[l]);  // gate, up, down
  for (std::size_t l = 0; l < std::min(layers, p.ffn_down_bias.size()); ++l) {
    if (p.ffn_down_bias[l]) total += embd;  // ffn_down bias
  }
  return total;
}

}  // namespace

bool LlamaParams::uniform_ff() const {
  return std::all_of(n_ff.begin(), n_ff.end(), [&](std::int64_t ff) { return ff == n_ff.front(); });
}

bool LlamaParams::has_ffn_down_bias(std::int64_t layer) const {
  return layer >= 0 && static_cast<std::size_t>(layer) < ffn_down_bias.size() && ffn_down_bias[static_cast<std::size_t>(layer)];
}

std::int64_t LlamaParams::n_params() const {
  const unsigned __int128 total = count_params(*this);
  constexpr auto kMax = static_cast<unsigned __int128>(std::numeric_limits<std::int64_t>::max());
  return static_cast<std::int64_t>(total > kMax ? kMax : total);
}

void LlamaParams::validate(const std::string& source) const {
  check_range(source, "vocab_size", n_vocab, kMaxWidth);
  check_range(source, "hidden_size", n_embd, kMaxWidth);
  check_range(source, "num_hidden_layers", n_layer, kMaxCount);
  check_range(source, "num_attention_heads", n_head, kMaxCount);
  check_range(source, "num_key_value_heads", n_head_kv, kMaxCount);
  check_range(source, "head_dim", head_dim, kMaxWidth);
  if (n_head % n_head_kv != 0) {
    throw FormatError(source, "num_key_value_heads",
                      std::to_string(n_head_kv) + " does not divide num_attention_heads " + std::to_string(n_head));
  }
  if (head_dim % 2 != 0) throw FormatError(source, "head_dim", std::to_string(head_dim) + " is odd; RoPE rotates pairs");
  if (static_cast<std::int64_t>(n_ff.size()) != n_layer) {
    throw FormatError(source, "intermediate_size",
                      "has " + std::to_string(n_ff.size()) + " widths for " + std::to_string(n_layer) + " layers");
  }
  for (const auto ff : n_ff) check_range(source, "intermediate_size", ff, kMaxWidth);
  if (!ffn_down_bias.empty() && static_cast<std::int64_t>(ffn_down_bias.size()) != n_layer) {
    throw FormatError(source, "ffn_down bias",
                      "flags for " + std::to_string(ffn_down_bias.size()) + " of " + std::to_string(n_layer) + " layers");
  }
  check_range(source, "max_position_embeddings", n_ctx_train, kMaxContext);
  check_positive(source, "rms_norm_eps", rms_norm_eps);
  check_positive(source, "rope_theta", rope_theta);
  if (rope_scaling) {
    if (rope_scaling->type != "llama3") {
      throw FormatError(source, "rope_scaling.rope_type", "'" + rope_scaling->type + "' is not supported (only llama3)");
    }
    check_positive(source, "rope_scaling.factor", rope_scaling->factor);
    check_positive(source, "rope_scaling.low_freq_factor", rope_scaling->low_freq_factor);
    check_positive(source, "rope_scaling.high_freq_factor", rope_scaling->high_freq_factor);
    if (!(rope_scaling->high_freq_factor > rope_scaling->low_freq_factor)) {
      throw FormatError(source, "rope_scaling.high_freq_factor", "must be greater than low_freq_factor");
    }
    check_range(source, "rope_scaling.original_max_position_embeddings",
                rope_scaling->original_max_position_embeddings, kMaxContext);
  }
  if (bos_token_id >= n_vocab) {
    throw FormatError(source, "bos_token_id", std::to_string(bos_token_id) + " is outside the vocabulary");
  }
  for (const auto eos : eos_token_ids) {
    if (eos < 0 || eos >= n_vocab) throw FormatError(source, "eos_token_id", std::to_string(eos) + " is outside the vocabulary");
  }
}

std::vector<float> LlamaParams::rope_freq_factors() const {
  std::vector<float> factors;
  if (!rope_scaling) return factors;
  const RopeScaling& s = *rope_scaling;
  const double original = static_cast<double>(s.original_max_position_embeddings);
  const double high_freq_wavelen = original / s.high_freq_factor;  // shorter waves keep their frequency
  const double low_freq_wavelen = original / s.low_freq_factor;    // longer waves are slowed by `factor`
  const std::int64_t pairs = head_dim / 2;
  for (std::int64_t i = 0; i < pairs; ++i) {
    const double freq = std::pow(rope_theta, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
    const double wavelen = 2.0 * std::numbers::pi / freq;
    double factor = 1.0;
    if (wavelen > low_freq_wavelen) {
      factor = s.factor;
    } else if (wavelen >= high_freq_wavelen) {
      const double smooth = (original / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      factor = 1.0 / ((1.0 - smooth) / s.factor + smooth);
    }
    factors.push_back(static_cast<float>(factor));
  }
  return factors;
}

namespace {

bool same_factors(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!(std::fabs(a[i] - b[i]) <= 1e-6f * std::max(1.0f, std::fabs(b[i])))) return false;
  }
  return true;
}

}  // namespace

std::optional<RopeScaling> llama3_scaling_from_factors(const LlamaParams& params, const std::vector<float>& factors,
                                                       const std::string& source) {
  const std::int64_t pairs = params.head_dim / 2;
  if (static_cast<std::int64_t>(factors.size()) != pairs) {
    throw Error(source + ": rope_freqs has " + std::to_string(factors.size()) + " factors for head_dim " +
                std::to_string(params.head_dim));
  }
  if (std::all_of(factors.begin(), factors.end(), [](float f) { return f == 1.0f; })) return std::nullopt;
  const double factor = *std::max_element(factors.begin(), factors.end());
  std::vector<RopeScaling> candidates;
  for (const std::int64_t original : {std::int64_t{8192}, std::int64_t{4096}, std::int64_t{16384}, std::int64_t{2048},
                                      std::int64_t{32768}, params.n_ctx_train}) {
    candidates.push_back(RopeScaling{"llama3", factor, 1.0, 4.0, original});
  }
  // Between the bands smooth = original / (high - low) · 1/wavelen − low / (high - low):
  // a line through two of those pairs gives the band edges; with low = 1 they name
  // high and original (other (low, high, original) with the same line give the same factors).
  std::vector<std::pair<double, double>> line;  // (1/wavelen, smooth)
  for (std::int64_t i = 0; i < pairs; ++i) {
    const double f = factors[static_cast<std::size_t>(i)];
    if (!(f > 1.0 + 1e-6 && f < factor * (1.0 - 1e-6))) continue;
    const double freq = std::pow(params.rope_theta, -2.0 * static_cast<double>(i) / static_cast<double>(params.head_dim));
    line.emplace_back(freq / (2.0 * std::numbers::pi), (1.0 / f - 1.0 / factor) / (1.0 - 1.0 / factor));
  }
  if (line.size() >= 2 && line.back().first != line.front().first) {
    const double slope = (line.back().second - line.front().second) / (line.back().first - line.front().first);
    const double offset = slope * line.front().first - line.front().second;  // low / (high - low)
    if (slope > 0.0 && offset > 0.0 && std::isfinite(slope / offset) && slope / offset < 1e9) {
      candidates.push_back(RopeScaling{"llama3", factor, 1.0, 1.0 + 1.0 / offset, std::llround(slope / offset)});
    }
  }
  for (const RopeScaling& candidate : candidates) {
    LlamaParams p = params;
    p.rope_scaling = candidate;
    if (same_factors(p.rope_freq_factors(), factors)) return candidate;
  }
  throw Error(source + ": its rope_freqs factors match no llama3 rope_scaling (needed for config.json)");
}

}  // namespace piquant
