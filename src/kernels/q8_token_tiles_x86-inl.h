// Prompt kernels for Q3_K, Q4_K, Q5_K and Q6_K on x86 (AVX2 and AVX-512): a few rows × a
// tile of 16 tokens (Q8TokenTile), the layout that suits a matrix-matrix product. The row-
// by-row kernels hold one token's sums across the lanes of a vector, so every super-block
// ends in horizontal work per row and token. Here lane l of every vector is token l: 4
// codes of one row, broadcast, meet the same 4 columns of 8 or 16 tokens in one multiply-
// add, and a sub-block's conversion and scale multiply-add serve all of them.
//
// This file holds what does not depend on the vector width: the weights are decoded first,
// a few rows and up to kPieceSuperBlocks super-blocks at a time, into codes as bytes in
// column order (the byte multiply-adds take them unsigned, as they come: Q3_K 0..7, Q4_K
// 0..15, Q5_K 0..31, Q6_K 0..63) and one float scale per sub-block; the decoded piece
// stays in L1 while every tile of the chunk passes over it. Each target's file
// (q8_token_tiles_avx512-inl.h, q8_token_tiles_avx2-inl.h) defines the formats
// k_tiles::Q4K, Q5K (on Q4_K's tiles) and Q6K, Q3K (on Q6_K's): these decoders plus its
// rows per tile (kTileRows) and its Tile functions.
// Included from q8_dot_k_bytes_x86-inl.h inside namespace k_bytes, on the AVX2 and AVX-512
// targets.

namespace k_tiles {

constexpr std::int64_t kPieceSuperBlocks = 16;  // 4096 columns decoded at a time
constexpr std::int64_t kPieceCols = kPieceSuperBlocks * kSuperBlock;
// Tokens are taken in chunks whose tiles' pieces fill about this much of L2; each chunk
// reads the weights once.
constexpr std::int64_t kTileChunkBytes = 1024 * 1024;

// Decoded weights of kRows rows. Rows are 64 bytes longer than a piece so that the rows'
// codes at the same column do not all fall into one L1 set.
template <int kScalesPerSuper, int kRows>
struct DecodedRows {
  static constexpr std::int64_t kScales = kPieceSuperBlocks * kScalesPerSuper;
  alignas(64) std::uint8_t codes[kRows][kPieceCols + 64];
  alignas(64) float scale[kRows][kScales];  // d · sc of each sub-block
  alignas(64) float min[kRows][kScales];    // Q4_K, Q5_K: dmin · m of each sub-block
};

HWY_INLINE __m256i Load256(const std::uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
HWY_INLINE void Store256(std::uint8_t* p, __m256i v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v); }

// ---------------------------------------------------------------------------- Q4_K
// d·sc and dmin·m of the 8 sub-blocks of a Q4_K or Q5_K super-block (the same header).
template <class Block>
HWY_INLINE void DecodeScalesAndMins(const std::uint8_t* block, float* scale, float* min) {
  std::uint64_t scale_bytes, min_bytes;
  unpack_k4_scales_and_mins(block + offsetof(Block, scales), &scale_bytes, &min_bytes);
  const float d = HalfToFloat(block + offsetof(Block, d));
  const float dmin = HalfToFloat(block + offsetof(Block, dmin));
  for (int j = 0; j < 8; ++j) {
    scale[j] = d * static_cast<float>((scale_bytes >> (8 * j)) & 0xff);
    min[j] = dmin * static_cast<float>((min_bytes >> (8 * j)) & 0xff);
  }
}

// `value` in the bytes of v whose bit `bit` is set, 0 in the others.
HWY_INLINE __m256i BitToByteValue(__m256i v, int bit, std::uint8_t value) {
  const __m256i mask = _mm256_set1_epi8(static_cast<char>(1 << bit));
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(v, mask), mask),
                          _mm256_set1_epi8(static_cast<char>(value)));
}

// Q4_K (kFifthBit false) and Q5_K: the same scales, mins and nibbles; Q5_K adds a 5th code
// bit. Codes 0..15 or 0..31 in column order, so the same tiles serve both.
template <class Block, bool kFifthBit>
struct K4Decode {
  static constexpr int kScalesPerSuper = 8;  // sub-blocks of 32

  // Super-blocks [s0, s0 + n) of `row` into decoded row i.
  template <class Decoded>
  static HWY_INLINE void Decode(const std::uint8_t* row, std::int64_t s0, std::int64_t n, Decoded& out, int i) {
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    for (std::int64_t s = 0; s < n; ++s) {
      const std::uint8_t* block = row + (s0 + s) * static_cast<std::int64_t>(sizeof(Block));
      DecodeScalesAndMins<Block>(block, out.scale[i] + 8 * s, out.min[i] + 8 * s);
      // Weight 32j + b (sub-block j): nibble j % 2 of qs[32(j / 2) + b]; Q5_K's bit 4 is
      // bit j of qh[b].
      const std::uint8_t* qs = block + offsetof(Block, qs);
      std::uint8_t* codes = out.codes[i] + s * kSuperBlock;
      for (int c = 0; c < 4; ++c) {
        const __m256i q = Load256(qs + 32 * c);
        __m256i low = _mm256_and_si256(q, low4), high = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
        if constexpr (kFifthBit) {
          const __m256i qh = Load256(block + offsetof(Block, qh));
          low = _mm256_or_si256(low, BitToByteValue(qh, 2 * c, 16));
          high = _mm256_or_si256(high, BitToByteValue(qh, 2 * c + 1, 16));
        }
        Store256(codes + 64 * c, low);
        Store256(codes + 64 * c + 32, high);
      }
    }
  }
};

using Q4KDecode = K4Decode<BlockQ4_K, false>;
using Q5KDecode = K4Decode<BlockQ5_K, true>;

// ---------------------------------------------------------------------------- Q6_K
struct Q6KDecode {
  static constexpr int kScalesPerSuper = 16;  // sub-blocks of 16

  template <class Decoded>
  static HWY_INLINE void Decode(const std::uint8_t* row, std::int64_t s0, std::int64_t n, Decoded& out, int i) {
    const __m256i low4 = _mm256_set1_epi8(0x0f), bits45 = _mm256_set1_epi8(0x30);
    for (std::int64_t s = 0; s < n; ++s) {
      const std::uint8_t* block = row + (s0 + s) * static_cast<std::int64_t>(sizeof(BlockQ6_K));
      const float d = HalfToFloat(block + offsetof(BlockQ6_K, d));
      const auto* scales = reinterpret_cast<const std::int8_t*>(block + offsetof(BlockQ6_K, scales));
      for (int g = 0; g < 16; ++g) out.scale[i][16 * s + g] = d * static_cast<float>(scales[g]);
      // Element 128h + 32k + l: low 4 bits from ql[64h + 32(k & 1) + l] (nibble k / 2),
      // high 2 bits from qh[32h + l] (bits 2k, 2k + 1).
      std::uint8_t* codes = out.codes[i] + s * kSuperBlock;
      for (int h = 0; h < 2; ++h) {
        const __m256i a = Load256(block + offsetof(BlockQ6_K, ql) + 64 * h);
        const __m256i b = Load256(block + offsetof(BlockQ6_K, ql) + 64 * h + 32);
        const __m256i hi = Load256(block + offsetof(BlockQ6_K, qh) + 32 * h);
        std::uint8_t* out_h = codes + 128 * h;
        Store256(out_h, _mm256_or_si256(_mm256_and_si256(a, low4),
                                        _mm256_and_si256(_mm256_slli_epi16(hi, 4), bits45)));
        Store256(out_h + 32, _mm256_or_si256(_mm256_and_si256(b, low4),
                                             _mm256_and_si256(_mm256_slli_epi16(hi, 2), bits45)));
        Store256(out_h + 64, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(a, 4), low4),
                                             _mm256_and_si256(hi, bits45)));
        Store256(out_h + 96, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b, 4), low4),
                                             _mm256_and_si256(_mm256_srli_epi16(hi, 2), bits45)));
      }
    }
  }
};

// ---------------------------------------------------------------------------- Q3_K
// Codes 0..7 (the value is code − 4, which the tiles take from the activations' offsets,
// as Q6_K's 32) and the float scale d·(sc − 32) of each sub-block of 16.
struct Q3KDecode {
  static constexpr int kScalesPerSuper = 16;  // sub-blocks of 16

  template <class Decoded>
  static HWY_INLINE void Decode(const std::uint8_t* row, std::int64_t s0, std::int64_t n, Decoded& out, int i) {
    const __m256i low2 = _mm256_set1_epi8(0x03);
    for (std::int64_t s = 0; s < n; ++s) {
      const std::uint8_t* block = row + (s0 + s) * static_cast<std::int64_t>(sizeof(BlockQ3_K));
      const float d = HalfToFloat(block + offsetof(BlockQ3_K, d));
      std::uint64_t low, high;
      unpack_q3_k_scales(block + offsetof(BlockQ3_K, scales), &low, &high);
      for (int g = 0; g < 16; ++g) {
        const int stored = static_cast<int>(((g < 8 ? low : high) >> (8 * (g % 8))) & 0xff);
        out.scale[i][16 * s + g] = d * static_cast<float>(stored - 32);
      }
      // Weight 128h + 32j + b: bits 2j, 2j + 1 of qs[32h + b], bit 2 from hmask[b] bit
      // 4h + j (set: the code is the low bits + 4).
      const __m256i hmask = Load256(block + offsetof(BlockQ3_K, hmask));
      std::uint8_t* codes = out.codes[i] + s * kSuperBlock;
      for (int h = 0; h < 2; ++h) {
        const __m256i q = Load256(block + offsetof(BlockQ3_K, qs) + 32 * h);
        for (int j = 0; j < 4; ++j)
          Store256(codes + 128 * h + 32 * j, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 2 * j), low2),
                                                             BitToByteValue(hmask, 4 * h + j, 4)));
      }
    }
  }
};

// x's tile advanced to super-block s0.
HWY_INLINE Q8TokenTile TileFrom(const Q8TokenTile& x, std::int64_t s0) {
  return {x.values + s0 * kSuperBlock * kQ8TileTokens, x.scales + s0 * kQ8TileTokens,
          x.block_sums + s0 * 8 * kQ8TileTokens, x.offsets16 + s0 * 16 * kQ8TileTokens, x.n_tokens};
}

// Prefetches (into L2) part `part` of `parts` of rows [r0, r0 + tile_rows) ∩ [.., r_end),
// super-blocks [s0, s0 + n): the weights decoded next, fetched while the tiles compute.
HWY_INLINE void PrefetchPart(const MatrixView& w, std::int64_t r0, std::int64_t r_end, std::int64_t tile_rows,
                             std::int64_t s0, std::int64_t n, std::size_t block_bytes, std::int64_t part,
                             std::int64_t parts) {
  if (r0 >= r_end) return;
  const std::int64_t rows = std::min<std::int64_t>(tile_rows, r_end - r0);
  const std::int64_t lines_per_row = (n * static_cast<std::int64_t>(block_bytes) + 63) / 64;
  const std::int64_t lines = rows * lines_per_row;
  for (std::int64_t i = lines * part / parts; i < lines * (part + 1) / parts; ++i)
    _mm_prefetch(reinterpret_cast<const char*>(w.row(r0 + i / lines_per_row) + s0 * static_cast<std::int64_t>(block_bytes) +
                                               64 * (i % lines_per_row)),
                 _MM_HINT_T1);
}

// Rows [r_begin, r_end) of y = x · Wᵀ for every token of x's tiles. Columns go in pieces
// outermost (within a chunk of tiles), so the chunk's activations of one piece stay in L2
// while every row block passes over them, and each weight is read once per chunk.
// Format (a target's k_tiles::Q4K, Q5K, Q6K or Q3K) gives kTileRows, Decoded, Decode and
// Tile<kRows>(decoded, i0, tile, n, out): out[r][l] = decoded row i0 + r · token l.
template <class Format>
HWY_INLINE void TokenTileRows(const MatrixView& w, const Q8Activations& x, float* y, std::int64_t r_begin,
                              std::int64_t r_end) {
  constexpr int kTileRows = Format::kTileRows;
  typename Format::Decoded decoded;
  const std::size_t block_bytes = w.row_bytes / static_cast<std::size_t>(w.cols / kSuperBlock);
  const std::int64_t n_super = w.cols / kSuperBlock;
  const std::int64_t n_tiles = x.n_token_tiles();
  const std::int64_t chunk =
      std::max<std::int64_t>(1, kTileChunkBytes / (kQ8TileTokens * std::min(kPieceCols, std::max<std::int64_t>(1, w.cols))));
  for (std::int64_t c0 = 0; c0 < n_tiles; c0 += chunk) {
    const std::int64_t c1 = std::min(n_tiles, c0 + chunk);
    for (std::int64_t s0 = 0; s0 < n_super; s0 += kPieceSuperBlocks) {
      const std::int64_t n = std::min(kPieceSuperBlocks, n_super - s0);
      for (std::int64_t r0 = r_begin; r0 < r_end; r0 += kTileRows) {
        const int rows = static_cast<int>(std::min<std::int64_t>(kTileRows, r_end - r0));
        for (int i = 0; i < rows; ++i) Format::Decode(w.row(r0 + i), s0, n, decoded, i);
        for (std::int64_t c = c0; c < c1; ++c) {
          PrefetchPart(w, r0 + kTileRows, r_end, kTileRows, s0, n, block_bytes, c - c0, c1 - c0);
          const Q8TokenTile tile = TileFrom(x.token_tile(c), s0);
          alignas(64) float out[kTileRows][kQ8TileTokens];
          if (rows == kTileRows) {
            Format::template Tile<kTileRows>(decoded, 0, tile, n, out);
          } else {
            for (int i = 0; i < rows; ++i) Format::template Tile<1>(decoded, i, tile, n, out + i);
          }
          for (int i = 0; i < rows; ++i) {
            float* yr = y + c * kQ8TileTokens * w.rows + r0 + i;
            for (std::int64_t l = 0; l < tile.n_tokens; ++l)
              yr[l * w.rows] = s0 == 0 ? out[i][l] : yr[l * w.rows] + out[i][l];
          }
        }
      }
    }
  }
}

}  // namespace k_tiles
