// Q8Activations' layouts against each other: every token tile must hold exactly the
// quantized values, scales and sums of its tokens (the row layout, itself checked against
// llama.cpp's rounding in q8_matmul_test.cpp), absent tokens as zeros; and the memory
// bound used for planning must cover what the buffers really hold.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernel_test_support.h"
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

// Everything quantize() stores, as bytes, for comparing two quantizations bit for bit.
std::vector<std::uint8_t> stored_bytes(const Q8Activations& q) {
  std::vector<std::uint8_t> bytes;
  const auto append = [&](const void* p, std::size_t n) {
    if (p == nullptr) return;
    const auto* b = static_cast<const std::uint8_t*>(p);
    bytes.insert(bytes.end(), b, b + n);
  };
  const auto cols = static_cast<std::size_t>(q.cols());
  for (std::int64_t t = 0; t < q.n_tokens(); ++t) {
    const Q8Row r = q.token(t);
    append(r.values, cols * sizeof(std::int16_t));
    append(r.values8, cols);
    append(r.values8_interleaved, cols);
    append(r.scales, cols / 32 * sizeof(float));
    append(r.sums16, cols / 16 * sizeof(std::int32_t));
    append(r.sums16_i16, cols / 16 * sizeof(std::int16_t));
    append(r.block_sums, cols / 32 * sizeof(float));
  }
  for (std::int64_t i = 0; i < q.n_token_tiles(); ++i) {
    const Q8TokenTile tile = q.token_tile(i);
    append(tile.values, cols * kQ8TileTokens);
    append(tile.scales, cols / 256 * kQ8TileTokens * sizeof(float));
    append(tile.block_sums, cols / 32 * kQ8TileTokens * sizeof(float));
    append(tile.offsets16, cols / 16 * kQ8TileTokens * sizeof(std::int32_t));
  }
  return bytes;
}

// The quantizer is compiled per SIMD target and follows the forced one (PIQUANT_SIMD),
// but what it stores must not depend on the target: every target gives the bytes of the
// first. Inputs include what vector code could treat differently: exact ties of the
// rounding, NaN, infinities, values that clamp, float subnormals, an all-zero block,
// and the first of two equal extremes of opposite sign.
TEST(Q8Activations, EveryTargetStoresTheSameBits) {
  const std::int64_t cols = 512, tokens = 17;  // 17: a full token tile and a partial one
  std::vector<float> x = random_floats(tokens * cols, 5);
  // Block 0: extreme -127, so both schemes scale by exactly 1 and halves are ties.
  x[0] = -127.0f;
  for (std::int64_t i = 1; i < 32; ++i) x[static_cast<std::size_t>(i)] = static_cast<float>(i) - 15.5f;
  x[40] = std::numeric_limits<float>::quiet_NaN();
  x[300] = std::numeric_limits<float>::infinity();
  x[600] = -std::numeric_limits<float>::infinity();
  x[700] = 3e38f;
  x[701] = -3e38f;
  for (std::int64_t i = 1024; i < 1024 + 256; ++i) x[static_cast<std::size_t>(i)] = 0.0f;
  for (std::int64_t i = 1280; i < 1280 + 64; ++i) x[static_cast<std::size_t>(i)] = 1e-40f * static_cast<float>(i - 1300);
  x[2000] = 7.0f;
  x[2001] = -7.0f;
  for (const Q8Blocks blocks : {Q8Blocks::Q8_0, Q8Blocks::Q8_1, Q8Blocks::Q8_K}) {
    std::vector<std::uint8_t> first;
    kernel_test::for_each_simd_target([&] {
      Q8Activations q;
      q.quantize(x.data(), tokens, cols, blocks);
      const std::vector<std::uint8_t> bytes = stored_bytes(q);
      if (first.empty()) {
        first = bytes;
      } else {
        ASSERT_EQ(bytes.size(), first.size());
        EXPECT_TRUE(bytes == first) << "blocks " << static_cast<int>(blocks) << ": first difference at byte "
                                    << (std::mismatch(bytes.begin(), bytes.end(), first.begin()).first - bytes.begin());
      }
    });
  }
}

}  // namespace
}  // namespace piquant
