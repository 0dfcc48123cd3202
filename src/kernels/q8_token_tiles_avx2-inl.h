// Prompt kernels for Q4_K, Q5_K, Q6_K and Q3_K on the AVX2 target: the Tile functions of
// the token tiles (q8_token_tiles_x86-inl.h has the decoders and the row loop). A 256-bit
// vector holds 8 tokens' int32 lanes, so a tile of 16 tokens goes as two halves: bytes
// [0, 32) and [32, 64) of each 64-byte column group, lanes [0, 8) and [8, 16) of the per-
// token scales and sums. Without vpdpbusd, 4 codes of one row, broadcast, meet the same 4
// columns of 8 tokens in vpmaddubsw (unsigned codes × signed activations → two int16 sums
// per token), and the int16 sums are widened by one vpmaddwd with ones:
// - Q4_K (codes ≤ 15): a pair is ≤ 2·15·128 = 3840, so the 8 products of a 32-column
//   sub-block add up in int16 (≤ 30720) before one widening per sub-block.
// - Q5_K (codes ≤ 31): a pair is ≤ 7936, so 4 products add up in int16; a sub-block
//   takes 2 widenings, conversions and scale multiply-adds.
// - Q6_K (codes ≤ 63): a pair is ≤ 16128, so only 2 products add up in int16; a 16-column
//   sub-block takes 2 widenings.
// - Q3_K (codes ≤ 7): the 4 products of a 16-column sub-block add up in int16.
// Rows per tile: each row keeps 3 accumulators per half (sub-block sums, super-block sums,
// total); next to one activation vector, one broadcast code vector and the ones vector,
// 4 rows take 15 of the 16 ymm registers (Q4_K). Q5_K (each row's sub-block scale held
// across its two chains), Q6_K and Q3_K (each row's int16 chain between its products):
// 3 rows. The mins (Q4_K, Q5_K) are applied after a super-block's sub-blocks, when the
// int16 sums no longer hold registers. The halves go one after the other over the whole
// piece (side by side they would double the accumulators and leave 2 rows): the piece's
// decoded rows stay in L1, and each row block reads the activation lines from L2 twice
// for 4 rows instead of once for 2.
// Included from q8_dot_k_bytes_x86-inl.h inside namespace k_bytes, after
// q8_token_tiles_x86-inl.h, on the AVX2 target only.

namespace k_tiles {

constexpr std::int64_t kHalfTokens = kQ8TileTokens / 2;

HWY_INLINE __m256i BroadcastCodes(const std::uint8_t* p) {
  std::int32_t v;
  std::memcpy(&v, p, sizeof(v));
  return _mm256_set1_epi32(v);
}

// Activation bytes of column group `group` (4 columns), tokens [8h, 8h + 8).
HWY_INLINE __m256i HalfValues(const Q8TokenTile& x, std::int64_t group, int h) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.values + group * 4 * kQ8TileTokens + 32 * h));
}

// Keeps a sum in one register through a chain of adds: otherwise GCC re-associates the
// rows' int16 chains into trees of products that outgrow the 16 registers and spill. (Q6_K's
// chains of 2 products need none; there it only made GCC spill the pairs.)
HWY_INLINE void KeepChain(__m256i& v) { asm("" : "+v"(v)); }

// ---------------------------------------------------------------------------- Q4_K, Q5_K
// Decode: Q4KDecode (kChain 8) or Q5KDecode (codes ≤ 31: a pair ≤ 2·31·128 = 7936, so
// kChain 4). kChain products add up in int16; each chain is widened, converted and
// multiplied by the sub-block's scale on its own. Q5_K: 3 rows, as the sub-block's scales
// stay in registers across its 2 chains (4 rows spilled).
template <class Decode, int kChain>
struct Q4KTiles : Decode {
  static_assert(8 % kChain == 0);
  static constexpr int kScalesPerSuper = Decode::kScalesPerSuper;
  static constexpr int kTileRows = kChain == 8 ? 4 : 3;
  using Decoded = DecodedRows<kScalesPerSuper, kTileRows>;

  // Decoded rows [i0, i0 + kRows) × tile x over the piece's n super-blocks (x already
  // advanced to the piece): out[r][l] = row i0 + r · token l (out 32-byte aligned).
  template <int kRows>
  static HWY_INLINE void Tile(const Decoded& w, int i0, const Q8TokenTile& x, std::int64_t n,
                             float (*out)[kQ8TileTokens]) {
    const __m256i ones = _mm256_set1_epi16(1);
    for (int h = 0; h < 2; ++h) {
      __m256 total[kRows];
      for (int r = 0; r < kRows; ++r) total[r] = _mm256_setzero_ps();
      for (std::int64_t s = 0; s < n; ++s) {
        __m256 super[kRows];
        for (int r = 0; r < kRows; ++r) super[r] = _mm256_setzero_ps();
        for (int j = 0; j < 8; ++j) {
          const std::int64_t col = s * kSuperBlock + 32 * j;
          for (int k0 = 0; k0 < 8; k0 += kChain) {
            __m256i sums16[kRows];
            for (int k = k0; k < k0 + kChain; ++k) {
              const __m256i xv = HalfValues(x, col / 4 + k, h);
              for (int r = 0; r < kRows; ++r) {
                const __m256i p = _mm256_maddubs_epi16(BroadcastCodes(w.codes[i0 + r] + col + 4 * k), xv);
                sums16[r] = k == k0 ? p : _mm256_add_epi16(sums16[r], p);
                // (Q5_K: not on the chain's last sum, where it made GCC store the sums.)
                if (kChain == 8 || k != k0 + kChain - 1) KeepChain(sums16[r]);
              }
            }
            for (int r = 0; r < kRows; ++r) {
              const __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(sums16[r], ones));
              const __m256 sc = _mm256_set1_ps(w.scale[i0 + r][8 * s + j]);
              super[r] = _mm256_fmadd_ps(f, sc, super[r]);
            }
          }
        }
        // The mins after the sub-blocks, where their int16 sums no longer need registers.
        for (int j = 0; j < 8; ++j) {
          const __m256 block_sums = _mm256_loadu_ps(x.block_sums + (8 * s + j) * kQ8TileTokens + kHalfTokens * h);
          for (int r = 0; r < kRows; ++r)
            total[r] = _mm256_fnmadd_ps(_mm256_set1_ps(w.min[i0 + r][8 * s + j]), block_sums, total[r]);
        }
        const __m256 dx = _mm256_loadu_ps(x.scales + s * kQ8TileTokens + kHalfTokens * h);
        for (int r = 0; r < kRows; ++r) total[r] = _mm256_fmadd_ps(super[r], dx, total[r]);
      }
      for (int r = 0; r < kRows; ++r) _mm256_store_ps(out[r] + kHalfTokens * h, total[r]);
    }
  }
};

using Q4K = Q4KTiles<Q4KDecode, 8>;
using Q5K = Q4KTiles<Q5KDecode, 4>;

// ---------------------------------------------------------------------------- Q6_K, Q3_K
// Decode: Q6KDecode (codes' offset 32, kOffsetShift 0, kChain 2) or Q3KDecode (offset 4,
// shift 3; codes ≤ 7: 4 products ≤ 4·7·128 = 3584 in int16, kChain 4).
template <class Decode, int kOffsetShift, int kChain>
struct Q6KTiles : Decode {
  static_assert(4 % kChain == 0);
  static constexpr int kScalesPerSuper = Decode::kScalesPerSuper;
  static constexpr int kTileRows = 3;
  using Decoded = DecodedRows<kScalesPerSuper, kTileRows>;

  // As Q4K::Tile. Each sub-block's sums start from −(32 >> kOffsetShift)·Σq, the codes'
  // offset: offsets16 (−32·Σq, a multiple of 8) shifted right exactly.
  template <int kRows>
  static HWY_INLINE void Tile(const Decoded& w, int i0, const Q8TokenTile& x, std::int64_t n,
                             float (*out)[kQ8TileTokens]) {
    const __m256i ones = _mm256_set1_epi16(1);
    for (int h = 0; h < 2; ++h) {
      __m256 total[kRows];
      for (int r = 0; r < kRows; ++r) total[r] = _mm256_setzero_ps();
      for (std::int64_t s = 0; s < n; ++s) {
        __m256 super[kRows];
        for (int r = 0; r < kRows; ++r) super[r] = _mm256_setzero_ps();
        for (int g = 0; g < 16; ++g) {
          const std::int64_t col = s * kSuperBlock + 16 * g;
          __m256i offset = _mm256_loadu_si256(
              reinterpret_cast<const __m256i*>(x.offsets16 + (16 * s + g) * kQ8TileTokens + kHalfTokens * h));
          if constexpr (kOffsetShift != 0) offset = _mm256_srai_epi32(offset, kOffsetShift);
          __m256i sums[kRows];
          for (int r = 0; r < kRows; ++r) sums[r] = offset;
          for (int k = 0; k < 4; k += kChain) {
            __m256i pair[kRows];  // kChain products in int16 (Q6_K: ≤ 2 · 16128)
            for (int k2 = 0; k2 < kChain; ++k2) {
              const __m256i xv = HalfValues(x, col / 4 + k + k2, h);
              for (int r = 0; r < kRows; ++r) {
                const __m256i p = _mm256_maddubs_epi16(BroadcastCodes(w.codes[i0 + r] + col + 4 * (k + k2)), xv);
                pair[r] = k2 == 0 ? p : _mm256_add_epi16(pair[r], p);
                if constexpr (kChain > 2) {
                  if (k2 + 1 < kChain) KeepChain(pair[r]);  // Q3_K: a chain, not a tree
                }
              }
            }
            for (int r = 0; r < kRows; ++r) sums[r] = _mm256_add_epi32(sums[r], _mm256_madd_epi16(pair[r], ones));
          }
          for (int r = 0; r < kRows; ++r) {
            const __m256 f = _mm256_cvtepi32_ps(sums[r]);
            const __m256 sc = _mm256_set1_ps(w.scale[i0 + r][16 * s + g]);
            super[r] = _mm256_fmadd_ps(f, sc, super[r]);
          }
        }
        const __m256 dx = _mm256_loadu_ps(x.scales + s * kQ8TileTokens + kHalfTokens * h);
        for (int r = 0; r < kRows; ++r) total[r] = _mm256_fmadd_ps(super[r], dx, total[r]);
      }
      for (int r = 0; r < kRows; ++r) _mm256_store_ps(out[r] + kHalfTokens * h, total[r]);
    }
  }
};

using Q6K = Q6KTiles<Q6KDecode, 0, 2>;
using Q3K = Q6KTiles<Q3KDecode, 3, 4>;

}  // namespace k_tiles
