#include "kernels/rope.h"

#include <cmath>
#include <string>

#include "core/error.h"

namespace piquant {

namespace {

void check_rope_shape(std::int64_t head_dim, double base, const std::vector<float>& factors, const char* what) {
  const std::string where(what);
  if (head_dim <= 0 || head_dim % 2 != 0)
    throw Error(where + ": head_dim " + std::to_string(head_dim) + " must be positive and even");
  if (!(base > 0) || !std::isfinite(base)) throw Error(where + ": base " + std::to_string(base) + " must be positive");
  if (!factors.empty() && static_cast<std::int64_t>(factors.size()) != head_dim / 2)
    throw Error(where + ": " + std::to_string(factors.size()) + " frequency factors for head_dim " +
                std::to_string(head_dim) + " (need " + std::to_string(head_dim / 2) + ")");
  for (std::size_t i = 0; i < factors.size(); ++i)
    if (!(factors[i] > 0) || !std::isfinite(factors[i]))
      throw Error(where + ": frequency factor " + std::to_string(i) + " is " + std::to_string(factors[i]) +
                  ", must be positive");
}

void check_rope_call(std::int64_t n_heads, std::int64_t pos, const char* what) {
  if (n_heads < 0) throw Error(std::string(what) + ": negative head count " + std::to_string(n_heads));
  if (pos < 0) throw Error(std::string(what) + ": negative position " + std::to_string(pos));
}

// Indices of pair i's two elements within a head.
struct PairIndex {
  std::int64_t first, second;
};

PairIndex pair_index(RopePairing pairing, std::int64_t head_dim, std::int64_t i) {
  return pairing == RopePairing::Interleaved ? PairIndex{2 * i, 2 * i + 1} : PairIndex{i, i + head_dim / 2};
}

}  // namespace

RopeTable::RopeTable(std::int64_t head_dim, double base, const std::vector<float>& factors, RopePairing pairing)
    : head_dim_(head_dim), pairing_(pairing) {
  check_rope_shape(head_dim, base, factors, "RopeTable");
  inv_freq_.resize(static_cast<std::size_t>(head_dim / 2));
  for (std::size_t i = 0; i < inv_freq_.size(); ++i) {
    const double factor = factors.empty() ? 1.0 : factors[i];
    inv_freq_[i] = std::pow(base, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim)) / factor;
  }
}

void RopeTable::apply(float* x, std::int64_t n_heads, std::int64_t pos) const {
  check_rope_call(n_heads, pos, "RopeTable::apply");
  rotate(x, n_heads, pos, 1.0f);
}

void RopeTable::apply_inverse(float* x, std::int64_t n_heads, std::int64_t pos) const {
  check_rope_call(n_heads, pos, "RopeTable::apply_inverse");
  rotate(x, n_heads, pos, -1.0f);
}

// sign = 1: apply(); sign = −1: its transpose (negating a float is exact, so the two
// matrices hold the same numbers).
void RopeTable::rotate(float* x, std::int64_t n_heads, std::int64_t pos, float sign) const {
  // Angle and cos/sin in double (pos · inv_freq reaches ~1e5 rad at long contexts, where
  // float would lose the angle's fraction); one cos/sin per pair serves every head.
  for (std::size_t i = 0; i < inv_freq_.size(); ++i) {
    const double angle = static_cast<double>(pos) * inv_freq_[i];
    const auto c = static_cast<float>(std::cos(angle));
    const auto s = sign * static_cast<float>(std::sin(angle));
    const PairIndex p = pair_index(pairing_, head_dim_, static_cast<std::int64_t>(i));
    for (std::int64_t h = 0; h < n_heads; ++h) {
      float* head = x + h * head_dim_;
      const float a = head[p.first], b = head[p.second];
      head[p.first] = a * c - b * s;
      head[p.second] = a * s + b * c;
    }
  }
}

namespace reference {

namespace {

// Pair i of each head turned by sign · pos · theta_i, in double; T is float (the rounded
// result stored) or double.
template <class T>
void rotate(T* x, std::int64_t n_heads, std::int64_t head_dim, std::int64_t pos, double base,
            const std::vector<float>& factors, RopePairing pairing, double sign, const char* what) {
  check_rope_shape(head_dim, base, factors, what);
  check_rope_call(n_heads, pos, what);
  for (std::int64_t h = 0; h < n_heads; ++h) {
    T* head = x + h * head_dim;
    for (std::int64_t i = 0; i < head_dim / 2; ++i) {
      const double theta = std::pow(base, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim)) /
                           (factors.empty() ? 1.0 : static_cast<double>(factors[static_cast<std::size_t>(i)]));
      const double angle = sign * static_cast<double>(pos) * theta;
      const PairIndex p = pair_index(pairing, head_dim, i);
      const double a = head[p.first], b = head[p.second];
      head[p.first] = static_cast<T>(a * std::cos(angle) - b * std::sin(angle));
      head[p.second] = static_cast<T>(a * std::sin(angle) + b * std::cos(angle));
    }
  }
}

}  // namespace

void rope(float* x, std::int64_t n_heads, std::int64_t head_dim, std::int64_t pos, double base,
          const std::vector<float>& factors, RopePairing pairing) {
  rotate(x, n_heads, head_dim, pos, base, factors, pairing, 1.0, "reference::rope");
}

void rope(double* x, std::int64_t n_heads, std::int64_t head_dim, std::int64_t pos, double base,
          const std::vector<float>& factors, RopePairing pairing) {
  rotate(x, n_heads, head_dim, pos, base, factors, pairing, 1.0, "reference::rope");
}

void rope_inverse(double* x, std::int64_t n_heads, std::int64_t head_dim, std::int64_t pos, double base,
                  const std::vector<float>& factors, RopePairing pairing) {
  rotate(x, n_heads, head_dim, pos, base, factors, pairing, -1.0, "reference::rope_inverse");
}

}  // namespace reference

}  // namespace piquant
