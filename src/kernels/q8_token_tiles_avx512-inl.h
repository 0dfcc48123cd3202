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

// ---------------------------------------------------------------------------- Q4_K, Q5_K
// Decode: Q4KDecode or Q5KDecode (codes ≤ 31: 4 products ≤ 4·31·128 per vpdpbusd lane).
template <class Decode>
struct Q4KTiles : Decode {
  static constexpr int kScalesPerSuper = Decode::kScalesPerSuper;
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
      for (int j = 0; j < 8; ++j) {
        const std::int64_t col = s * kSuperBlock + 32 * j;
        __m512i sums[kRows];
        for (int r = 0; r < kRows; ++r) sums[r] = _mm512_setzero_si512();
        for (int k = 0; k < 8; ++k) {
          const __m512i xv = _mm512_loadu_si512(x.values + (col + 4 * k) * kQ8TileTokens);
          for (int r = 0; r < kRows; ++r)
            sums[r] = _mm512_dpbusd_epi32(sums[r], BroadcastCodes(w.codes[i0 + r] + col + 4 * k), xv);
        }
        const __m512 block_sums = _mm512_loadu_ps(x.block_sums + (8 * s + j) * kQ8TileTokens);
        for (int r = 0; r < kRows; ++r) {
          const __m512 f = _mm512_cvtepi32_ps(sums[r]);
          const __m512 sc = _mm512_set1_ps(w.scale[i0 + r][8 * s + j]);
          super[r] = j == 0 ? _mm512_mul_ps(f, sc) : _mm512_fmadd_ps(f, sc, super[r]);
          total[r] = _mm512_fnmadd_ps(_mm512_set1_ps(w.min[i0 + r][8 * s + j]), block_sums, total[r]);
        }
      }
      const __m512 dx = _mm512_loadu_ps(x.scales + s * kQ8TileTokens);
      for (int r = 0; r < kRows; ++r) total[r] = _mm512_fmadd_ps(super[r], dx, total[r]);
    }
    for (int r = 0; r < kRows; ++r) _mm512_store_ps(out[r], total[r]);
  }
};

using Q4K = Q4KTiles<Q4KDecode>;
using Q5K = Q4KTiles<Q5KDecode>;

// ---------------------------------------------------------------------------- Q6_K, Q3_K
// Decode: Q6KDecode (codes' offset 32, kOffsetShift 0) or Q3KDecode (offset 4, shift 3).
template <class Decode, int kOffsetShift>
struct Q6KTiles : Decode {
  static constexpr int kScalesPerSuper = Decode::kScalesPerSuper;
  static constexpr int kTileRows = kTileRows512;
  using Decoded = DecodedRows<kScalesPerSuper, kTileRows>;

  // As Q4K::Tile. Each sub-block's sums start from −(32 >> kOffsetShift)·Σq, the codes'
  // offset: offsets16 (−32·Σq, a multiple of 8) shifted right exactly.
  template <int kRows>
  static HWY_INLINE void Tile(const Decoded& w, int i0, const Q8TokenTile& x, std::int64_t n,
                             float (*out)[kQ8TileTokens]) {
    __m512 total[kRows];
    for (int r = 0; r < kRows; ++r) total[r] = _mm512_setzero_ps();
    for (std::int64_t s = 0; s < n; ++s) {
      __m512 super[kRows];
      for (int g = 0; g < 16; ++g) {
        const std::int64_t col = s * kSuperBlock + 16 * g;
        __m512i offset = _mm512_loadu_si512(x.offsets16 + (16 * s + g) * kQ8TileTokens);
        if constexpr (kOffsetShift != 0) offset = _mm512_srai_epi32(offset, kOffsetShift);
        __m512i sums[kRows];
        for (int r = 0; r < kRows; ++r) sums[r] = offset;
        for (int k = 0; k < 4; ++k) {
          const __m512i xv = _mm512_loadu_si512(x.values + (col + 4 * k) * kQ8TileTokens);
          for (int r = 0; r < kRows; ++r)
            sums[r] = _mm512_dpbusd_epi32(sums[r], BroadcastCodes(w.codes[i0 + r] + col + 4 * k), xv);
        }
        for (int r = 0; r < kRows; ++r) {
          const __m512 f = _mm512_cvtepi32_ps(sums[r]);
          const __m512 sc = _mm512_set1_ps(w.scale[i0 + r][16 * s + g]);
          super[r] = g == 0 ? _mm512_mul_ps(f, sc) : _mm512_fmadd_ps(f, sc, super[r]);
        }
      }
      const __m512 dx = _mm512_loadu_ps(x.scales + s * kQ8TileTokens);
      for (int r = 0; r < kRows; ++r) total[r] = _mm512_fmadd_ps(super[r], dx, total[r]);
    }
    for (int r = 0; r < kRows; ++r) _mm512_store_ps(out[r], total[r]);
  }
};

using Q6K = Q6KTiles<Q6KDecode, 0>;
using Q3K = Q6KTiles<Q3KDecode, 3>;

}  // namespace k_tiles
