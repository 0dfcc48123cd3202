#pragma once
// Rotary position embedding. Each head's vector is rotated pair by pair: pair i turns
// by angle pos · base^(-2i/head_dim) / factor_i (factor_i from llama3 scaling, else 1).
// Which elements form pair i depends on the weight layout: GGUF interleaves them
// (2i, 2i+1); Hugging Face checkpoints keep halves (i, i + head_dim/2) — so HF weights
// run without permuting Q and K.
#include <cstdint>
#include <vector>

namespace piquant {

enum class RopePairing { Interleaved, HalfSplit };

class RopeTable {
 public:
  // factors: empty, or head_dim/2 llama3 frequency factors (the rope_freqs tensor).
  RopeTable(std::int64_t head_dim, double base, const std::vector<float>& factors, RopePairing pairing);

  // Rotates n_heads consecutive head vectors of x (each head_dim floats) for position pos.
  void apply(float* x, std::int64_t n_heads, std::int64_t pos) const;

  // Rotates by the negative angles: the transpose of apply() (the same float cos and sin,
  // the sine's sign flipped), so apply_inverse(apply(x)) = x up to roundoff, and on a
  // gradient dy of apply()'s output it gives apply()'s backward dx = Rᵀ·dy.
  void apply_inverse(float* x, std::int64_t n_heads, std::int64_t pos) const;

  std::int64_t head_dim() const { return head_dim_; }
  RopePairing pairing() const { return pairing_; }
  const std::vector<double>& inv_freq() const { return inv_freq_; }

 private:
  void rotate(float* x, std::int64_t n_heads, std::int64_t pos, float sign) const;

  std::int64_t head_dim_;
  RopePairing pairing_;
  std::vector<double> inv_freq_;  // per pair
};

namespace reference {
// Straight from the definition, in double.
void rope(float* x, std::int64_t n_heads, std::int64_t head_dim, std::int64_t pos, double base,
          const std::vector<float>& factors, RopePairing pairing);
// The same rotation in double throughout (for the gradient tests), and its transpose
// (rotation by −angle), which is also its backward.
void rope(double* x, std::int64_t n_heads, std::int64_t head_dim, std::int64_t pos, double base,
          const std::vector<float>& factors, RopePairing pairing);
void rope_inverse(double* x, std::int64_t n_heads, std::int64_t head_dim, std::int64_t pos, double base,
                  const std::vector<float>& factors, RopePairing pairing);
}  // namespace reference

}  // namespace piquant
