#include "core/split_mix64.h"

#include <gtest/gtest.h>

#include <map>
#include <vector>

namespace piquant {
namespace {

TEST(SplitMix64, MatchesThePublishedReferenceOutputs) {
  // splitmix64.c (Vigna) seeded with 1234567.
  SplitMix64 rng(1234567);
  const std::uint64_t expected[] = {6457827717110365317ull, 3203168211198807973ull, 9817491932198370423ull, 4593380528125082431ull,
                                    16408922859458223821ull};
  for (const auto value : expected) EXPECT_EQ(rng.next(), value);
}

TEST(SplitMix64, ShuffleIsUniformOverPermutations) {
  // All 24 orders of 4 items, 48000 shuffles: each count is Binomial(48000, 1/24),
  // mean 2000, sd ~44; a biased Fisher-Yates (e.g. j drawn from [0, n)) is off by hundreds.
  SplitMix64 rng(99);
  std::map<std::vector<std::int64_t>, int> counts;
  for (int i = 0; i < 48000; ++i) {
    std::vector<std::int64_t> v{0, 1, 2, 3};
    shuffle(v, rng);
    ++counts[v];
  }
  ASSERT_EQ(counts.size(), 24u);
  for (const auto& [order, count] : counts) EXPECT_NEAR(count, 2000, 250);
}

}  // namespace
}  // namespace piquant
