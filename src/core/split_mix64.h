#pragma once
// A fully specified random number generator for everything a training run must
// repeat exactly on any machine (std::shuffle and the std:: distributions are
// implementation-defined, so their results differ between standard libraries).
//
// SplitMix64 (Steele, Lea, Flood 2014), as published:
//   state += 0x9E3779B97F4A7C15;  z = state;
//   z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;  z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
//   return z ^ (z >> 31);
// Its whole state is one u64 (state()), so a checkpoint saves it as an integer.
#include <cstdint>
#include <span>

namespace piquant {

// The SplitMix64 output function (a bijection on u64), applied to x.
std::uint64_t mix64(std::uint64_t x);

class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t state) : state_(state) {}
  std::uint64_t next();
  // Uniform in [0, n) for n >= 1, without modulo bias: with t = 2^64 mod n, draws r =
  // next() until r >= t, then returns r mod n. Throws Error for n == 0.
  std::uint64_t below(std::uint64_t n);
  std::uint64_t state() const { return state_; }

 private:
  std::uint64_t state_;
};

// The starting state of stream `index` of purpose `purpose` under a run's seed:
// mix64(mix64(seed ^ mix64(purpose)) + index). Distinct (purpose, index) pairs give
// unrelated streams (consecutive SplitMix64 seeds would give shifted copies of one stream).
std::uint64_t stream_seed(std::uint64_t seed, std::uint64_t purpose, std::uint64_t index);

// Fisher-Yates, from the back: for i = n-1 down to 1, swap values[i] with
// values[rng.below(i + 1)].
void shuffle(std::span<std::int64_t> values, SplitMix64& rng);

}  // namespace piquant
