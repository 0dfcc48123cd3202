#include "core/split_mix64.h"

#include <utility>

#include "core/error.h"

namespace piquant {

std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::uint64_t SplitMix64::next() {
  state_ += 0x9E3779B97F4A7C15ull;
  return mix64(state_);
}

std::uint64_t SplitMix64::below(std::uint64_t n) {
  if (n == 0) throw Error("SplitMix64::below: the range is empty");
  const std::uint64_t threshold = (0 - n) % n;  // 2^64 mod n: the values below it would bias r mod n
  for (;;) {
    const std::uint64_t r = next();
    if (r >= threshold) return r % n;
  }
}

std::uint64_t stream_seed(std::uint64_t seed, std::uint64_t purpose, std::uint64_t index) {
  return mix64(mix64(seed ^ mix64(purpose)) + index);
}

void shuffle(std::span<std::int64_t> values, SplitMix64& rng) {
  for (std::size_t i = values.size(); i > 1; --i) {
    const auto j = static_cast<std::size_t>(rng.below(i));
    std::swap(values[i - 1], values[j]);
  }
}

}  // namespace piquant
