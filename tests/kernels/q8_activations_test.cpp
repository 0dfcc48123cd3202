// Q8Activations' layouts against each other: every token tile must hold exactly the
// quantized values, scales and sums of its tokens (the row layout, itself checked against
// llama.cpp's rounding in q8_matmul_test.cpp), absent tokens as zeros; and the memory
// bound used for planning must cover what the buffers really hold.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "kernels/q8_activations.h"

namespace piquant {
namespace {

std::vector<float> random_floats(std::int64_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<std::size_t>(n));
  for (float& v : x) v = normal(rng);
  return x;
}

TEST(Q8TokenTiles, HoldEachTokensValuesScalesAndSums) {
  const std::int64_t cols = 512;
  for (const std::int64_t tokens : {15, 16, 17, 40}) {
    SCOPED_TRACE("tokens " + std::to_string(tokens));
    const std::vector<float> x = random_floats(tokens * cols, static_cast<unsigned>(tokens));
    Q8Activations q;
    // A larger batch first, so stale data would show in the reused buffers.
    const std::vector<float> big = random_floats(48 * cols, 99);
    q.quantize(big.data(), 48, cols, Q8Blocks::Q8_K);
    q.quantize(x.data(), tokens, cols, Q8Blocks::Q8_K);
#if defined(__x86_64__)
    ASSERT_EQ(q.n_token_tiles(), tokens < kQ8TileTokens ? 0 : (tokens + kQ8TileTokens - 1) / kQ8TileTokens);
#else
    ASSERT_EQ(q.n_token_tiles(), 0);  // only x86's kernels read tiles
#endif
    for (std::int64_t i = 0; i < q.n_token_tiles(); ++i) {
      const Q8TokenTile tile = q.token_tile(i);
      ASSERT_EQ(tile.n_tokens, std::min(kQ8TileTokens, tokens - i * kQ8TileTokens));
      for (std::int64_t lane = 0; lane < kQ8TileTokens; ++lane) {
        const std::int64_t t = i * kQ8TileTokens + lane;
        const bool present = t < tokens;
        const Q8Row row = q.token(present ? t : 0);
        for (std::int64_t c = 0; c < cols; ++c) {
          const std::int8_t v = tile.values[(c / 4) * 4 * kQ8TileTokens + 4 * lane + c % 4];
          ASSERT_EQ(v, present ? row.values8[c] : 0) << "token " << t << " column " << c;
        }
        for (std::int64_t s = 0; s < cols / 256; ++s)
          ASSERT_EQ(tile.scales[s * kQ8TileTokens + lane], present ? row.scales[8 * s] : 0.0f);
        for (std::int64_t b = 0; b < cols / 32; ++b)
          ASSERT_EQ(tile.block_sums[b * kQ8TileTokens + lane], present ? row.block_sums[b] : 0.0f);
        for (std::int64_t g = 0; g < cols / 16; ++g)
          ASSERT_EQ(tile.offsets16[g * kQ8TileTokens + lane], present ? -32 * row.sums16[g] : 0);
      }
    }
  }
}

TEST(Q8TokenTiles, NoneForOtherBlocksOrFewTokens) {
  const std::vector<float> x = random_floats(32 * 256, 3);
  Q8Activations q;
  q.quantize(x.data(), 32, 256, Q8Blocks::Q8_0);
  EXPECT_EQ(q.n_token_tiles(), 0);
  q.quantize(x.data(), 8, 256, Q8Blocks::Q8_K);
  EXPECT_EQ(q.n_token_tiles(), 0);
}

TEST(Q8Activations, StorageBoundCoversWhatIsHeld) {
  for (const std::int64_t tokens : {1, 5, 16, 33, 128}) {
    for (const std::int64_t cols : {256, 4096}) {
      for (const Q8Blocks blocks : {Q8Blocks::Q8_0, Q8Blocks::Q8_1, Q8Blocks::Q8_K}) {
        Q8Activations q;
        q.prepare(tokens, cols, blocks);
        const std::uint64_t bound = Q8Activations::storage_bytes(tokens, cols);
        EXPECT_GE(bound, q.held_bytes()) << tokens << " × " << cols;
        // A bound, not a guess: within 10% of what the largest layout holds (+ one tile's padding).
        if (blocks == Q8Blocks::Q8_K && q.n_token_tiles() > 0) {
          EXPECT_LE(bound, q.held_bytes() + q.held_bytes() / 10 + 2 * kQ8TileTokens * cols) << tokens << " × " << cols;
        }
      }
    }
  }
  EXPECT_EQ(Q8Activations::storage_bytes(UINT64_MAX / 2, 4096), UINT64_MAX);
}

}  // namespace
}  // namespace piquant
