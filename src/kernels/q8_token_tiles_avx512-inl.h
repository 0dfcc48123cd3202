// Prompt kernels for Q4_K, Q5_K, Q6_K and Q3_K on the AVX-512 target (with VNNI): the Tile
// functions of the token tiles (q8_token_tiles_x86-inl.h has the decoders and the row
// loop). The row-by-row kernels (q8_dot_k_bytes_avx512-inl.h) hold one token's sums across
// the lanes of a vector, so every super-block ends in a pack, a scale multiply-add, a
// conversion and two float multiply-adds per row and token: more instructions than its 4
// vpdpbusd. Here lane l of every vector is token l: 4 codes of one row, broadcast, meet
// the same 4 columns of 16 tokens in one vpdpbusd, and a sub-block's conversion and scale
// multiply-add serve 16 tokens. Per row, 16 tokens and super-block: 64 vpdpbusd plus 25
// (Q4_K, Q5_K) or 33 (Q6_K, Q3_K; Q3_K's offset shifts are shared by the tile's rows)
// other vector instructions, against 16 × 11 before.
// Included from q8_dot_k_bytes_x86-inl.h inside namespace k_bytes, after
// q8_token_tiles_x86-inl.h, on the AVX-512 target only.

namespace k_tiles {

// Rows per tile: 3 accumulators each (sub-block sums, super-block sums, total) fit the 32
// registers next to the activations.
constexpr int kTileRows512 = 8;

HWY_INLINE __m512i BroadcastCodes(const std::uint8_t* p) {
  std::int32_t v;
  std::memcpy(&v, p, sizeof(v));
  return _mm512_set1_epi32(v);
}

// ---------------------------------------------------------------------------- Q3_K…Q6_K
// Decode: Q4KDecode or Q5KDecode (sub-blocks of 32 with a min each: kMins; codes ≤ 31, 4
// products ≤ 4·31·128 per vpdpbusd lane), Q6KDecode or Q3KDecode (sub-blocks of 16, codes
// offset by 32 >> kOffsetShift: each sub-block's sums start from the offset times Σq,
// offsets16 = −32·Σq, a multiple of 8, shifted right exactly).
template <class Decode, bool kMins, int kOffsetShift>
struct KTiles : Decode {
  static constexpr int kScalesPerSuper = Decode::kScalesPerSuper;
  static constexpr int kSubCols = static_cast<int>(kSuperBlock) / kScalesPerSuper;
  static constexpr int kTileRows = kTileRows512;
  using Decoded = DecodedRows<kScalesPerSuper, kTileRows>;

  // Decoded rows [i0, i0 + kRows) × tile x over the piece's n super-blocks (x already
  // advanced to the piece): out[r][l] = row i0 + r · token l (out 64-byte aligned).
  template <int kRows>
  static HWY_INLINE void Tile(const Decoded& w, int i0, const Q8TokenTile& x, std::int64_t n,
                             float (*out)[kQ8TileTokens]) {
    __m512 total[kRows];
    for (int r = 0; r < kRows; ++r) total[r] = _mm512_setzero_ps();
    for (std::int64_t s = 0; s < n; ++s) {
      __m512 super[kRows];
      for (int j = 0; j < kScalesPerSuper; ++j) {
        const std::int64_t col = s * kSuperBlock + kSubCols * j;
        const std::int64_t sub = kScalesPerSuper * s + j;
        __m512i sums[kRows];
        if constexpr (kMins) {
          for (int r = 0; r < kRows; ++r) sums[r] = _mm512_setzero_si512();
        } else {
          __m512i offset = _mm512_loadu_si512(x.offsets16 + sub * kQ8TileTokens);
          if constexpr (kOffsetShift != 0) offset = _mm512_srai_epi32(offset, kOffsetShift);
          for (int r = 0; r < kRows; ++r) sums[r] = offset;
        }
        for (int k = 0; k < kSubCols / 4; ++k) {
          const __m512i xv = _mm512_loadu_si512(x.values + (col + 4 * k) * kQ8TileTokens);
          for (int r = 0; r < kRows; ++r)
            sums[r] = _mm512_dpbusd_epi32(sums[r], BroadcastCodes(w.codes[i0 + r] + col + 4 * k), xv);
        }
        for (int r = 0; r < kRows; ++r) {
          const __m512 f = _mm512_cvtepi32_ps(sums[r]);
          const __m512 sc = _mm512_set1_ps(w.scale[i0 + r][sub]);
          super[r] = j == 0 ? _mm512_mul_ps(f, sc) : _mm512_fmadd_ps(f, sc, super[r]);
        }
        if constexpr (kMins) {
          const __m512 block_sums = _mm512_loadu_ps(x.block_sums + sub * kQ8TileTokens);
          for (int r = 0; r < kRows; ++r)
            total[r] = _mm512_fnmadd_ps(_mm512_set1_ps(w.min[i0 + r][sub]), block_sums, total[r]);
        }
      }
      const __m512 dx = _mm512_loadu_ps(x.scales + s * kQ8TileTokens);
      for (int r = 0; r < kRows; ++r) total[r] = _mm512_fmadd_ps(super[r], dx, total[r]);
    }
    for (int r = 0; r < kRows; ++r) _mm512_store_ps(out[r], total[r]);
  }
};

using Q4K = KTiles<Q4KDecode, true, 0>;
using Q5K = KTiles<Q5KDecode, true, 0>;
using Q6K = KTiles<Q6KDecode, false, 0>;
using Q3K = KTiles<Q3KDecode, false, 3>;

}  // namespace k_tiles
