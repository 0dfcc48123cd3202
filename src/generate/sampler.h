#pragma once
// Picks the next token from logits: greedy, or temperature with top-k, top-p and
// min-p filtering, after a repetition penalty over the recent tokens. Seeded, so a
// run can be repeated exactly.
#include <cstdint>
#include <deque>
#include <random>
#include <span>
#include <vector>

namespace piquant {

struct SamplerOptions {
  float temperature = 0.8f;  // <= 0: greedy
  std::int32_t top_k = 40;   // <= 0: off
  float top_p = 0.95f;       // >= 1: off
  float min_p = 0.05f;       // <= 0: off
  float repeat_penalty = 1.0f;  // 1: off (llama.cpp's rule: divide positive logits, multiply negative)
  std::int32_t repeat_last_n = 64;
  std::uint64_t seed = 0xC0FFEE;
};

class Sampler {
 public:
  explicit Sampler(const SamplerOptions& options);
  std::int32_t sample(std::span<const float> logits);
  void accept(std::int32_t token);  // remember for the repetition penalty
  void reset();

 private:
  SamplerOptions options_;
  std::mt19937_64 rng_;
  std::deque<std::int32_t> recent_;
  std::vector<std::pair<float, std::int32_t>> candidates_;
};

}  // namespace piquant
