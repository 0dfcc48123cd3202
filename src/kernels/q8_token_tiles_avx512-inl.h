// Prompt kernels for Q4_K and Q6_K on the AVX-512 target (with VNNI): a few rows × a tile
// of 16 tokens (Q8TokenTile), the layout that suits a matrix-matrix product. The row-by-
// row kernels (q8_dot_k_bytes_avx512-inl.h) hold one token's sums across the lanes of a
// vector, so every super-block ends in a pack, a scale multiply-add, a conversion and two
// float multiply-adds per row and token: more instructions than its 4 vpdpbusd. Here lane
// l of every vector is token l: 4 codes of one row, broadcast, meet the same 4 columns of
// 16 tokens in one vpdpbusd, and a sub-block's conversion and scale multiply-add serve 16
// tokens. Per row, 16 tokens and super-block: 64 vpdpbusd plus 17 (Q4_K) or 33 (Q6_K)
// other vector instructions, against 16 × 11 before.
//
// The weights are decoded first, kRows rows and up to kPieceSuperBlocks super-blocks at a
// time, into codes as bytes in column order (vpdpbusd takes them unsigned, as they come:
// Q4_K 0..15, Q6_K 0..63) and one float scale per sub-block; the decoded piece stays in
// L1 while every tile of the chunk passes over it.
// Included from q8_dot_k_bytes_x86-inl.h inside namespace k_bytes, on the AVX-512 target only.

namespace k_tiles {

constexpr std::int64_t kPieceSuperBlocks = 16;  // 4096 columns decoded at a time
constexpr std::int64_t kPieceCols = kPieceSuperBlocks * kSuperBlock;
// Rows per tile: 3 accumulators each (sub-block sums, super-block sums, total) fit the 32
// registers next to the activations.
constexpr int kTileRows = 8;
// Tokens are taken in chunks whose tiles' pieces fill about this much of L2; each chunk
// reads the weights once.
constexpr std::int64_t kTileChunkBytes = 1024 * 1024;

// Decoded weights of kTileRows rows. Rows are 64 bytes longer than a piece so that the
// rows' codes at the same column do not all fall into one L1 set.
template <int kScalesPerSuper>
struct DecodedRows {
  static constexpr std::int64_t kScales = kPieceSuperBlocks * kScalesPerSuper;
  alignas(64) std::uint8_t codes[kTileRows][kPieceCols + 64];
  alignas(64) float scale[kTileRows][kScales];  // d · sc of each sub-block
  alignas(64) float min[kTileRows][kScales];    // Q4_K: dmin · m of each sub-block
};

HWY_INLINE __m512i BroadcastCodes(const std::uint8_t* p) {
  std::int32_t v;
  std::memcpy(&v, p, sizeof(v));
  return _mm512_set1_epi32(v);
}

HWY_INLINE __m256i Load256(const std::uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
HWY_INLINE void Store256(std::uint8_t* p, __m256i v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v); }

// ---------------------------------------------------------------------------- Q4_K
struct Q4K {
  static constexpr int kScalesPerSuper = 8;  // sub-blocks of 32
  using Decoded = DecodedRows<kScalesPerSuper>;

  // Super-blocks [s0, s0 + n) of `row` into decoded row i.
  static HWY_INLINE void Decode(const std::uint8_t* row, std::int64_t s0, std::int64_t n, Decoded& out, int i) {
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    for (std::int64_t s = 0; s < n; ++s) {
      const std::uint8_t* block = row + (s0 + s) * static_cast<std::int64_t>(sizeof(BlockQ4_K));
      std::uint64_t scale_bytes, min_bytes;
      unpack_k4_scales_and_mins(block + offsetof(BlockQ4_K, scales), &scale_bytes, &min_bytes);
      const float d = HalfToFloat(block + offsetof(BlockQ4_K, d));
      const float dmin = HalfToFloat(block + offsetof(BlockQ4_K, dmin));
      for (int j = 0; j < 8; ++j) {
        out.scale[i][8 * s + j] = d * static_cast<float>((scale_bytes >> (8 * j)) & 0xff);
        out.min[i][8 * s + j] = dmin * static_cast<float>((min_bytes >> (8 * j)) & 0xff);
      }
      // Byte b of 32-byte chunk c: weight 64c + b (low nibble) and 64c + 32 + b (high).
      const std::uint8_t* qs = block + offsetof(BlockQ4_K, qs);
      std::uint8_t* codes = out.codes[i] + s * kSuperBlock;
      for (int c = 0; c < 4; ++c) {
        const __m256i q = Load256(qs + 32 * c);
        Store256(codes + 64 * c, _mm256_and_si256(q, low4));
        Store256(codes + 64 * c + 32, _mm256_and_si256(_mm256_srli_epi16(q, 4), low4));
      }
    }
  }

  // Decoded rows [i0, i0 + kRows) × tile x over the piece's n super-blocks (x already
  // advanced to the piece): out[r] = lane l holds row i0 + r · token l.
  template <int kRows>
  static HWY_INLINE void Tile(const Decoded& w, int i0, const Q8TokenTile& x, std::int64_t n, __m512* out) {
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
    for (int r = 0; r < kRows; ++r) out[r] = total[r];
  }
};

// ---------------------------------------------------------------------------- Q6_K
struct Q6K {
  static constexpr int kScalesPerSuper = 16;  // sub-blocks of 16
  using Decoded = DecodedRows<kScalesPerSuper>;

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

  // As Q4K::Tile. Each sub-block's sums start from −32·Σq (the codes' offset of 32).
  template <int kRows>
  static HWY_INLINE void Tile(const Decoded& w, int i0, const Q8TokenTile& x, std::int64_t n, __m512* out) {
    __m512 total[kRows];
    for (int r = 0; r < kRows; ++r) total[r] = _mm512_setzero_ps();
    for (std::int64_t s = 0; s < n; ++s) {
      __m512 super[kRows];
      for (int g = 0; g < 16; ++g) {
        const std::int64_t col = s * kSuperBlock + 16 * g;
        const __m512i offset = _mm512_loadu_si512(x.offsets16 + (16 * s + g) * kQ8TileTokens);
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
    for (int r = 0; r < kRows; ++r) out[r] = total[r];
  }
};

// x's tile advanced to super-block s0.
HWY_INLINE Q8TokenTile TileFrom(const Q8TokenTile& x, std::int64_t s0) {
  return {x.values + s0 * kSuperBlock * kQ8TileTokens, x.scales + s0 * kQ8TileTokens,
          x.block_sums + s0 * 8 * kQ8TileTokens, x.offsets16 + s0 * 16 * kQ8TileTokens, x.n_tokens};
}

// Prefetches (into L2) part `part` of `parts` of rows [r0, r0 + kTileRows) ∩ [.., r_end),
// super-blocks [s0, s0 + n): the weights decoded next, fetched while the tiles compute.
HWY_INLINE void PrefetchPart(const MatrixView& w, std::int64_t r0, std::int64_t r_end, std::int64_t s0, std::int64_t n,
                             std::size_t block_bytes, std::int64_t part, std::int64_t parts) {
  if (r0 >= r_end) return;
  const std::int64_t rows = std::min<std::int64_t>(kTileRows, r_end - r0);
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
template <class Format>
HWY_INLINE void TokenTileRows(const MatrixView& w, const Q8Activations& x, float* y, std::int64_t r_begin,
                              std::int64_t r_end) {
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
          PrefetchPart(w, r0 + kTileRows, r_end, s0, n, block_bytes, c - c0, c1 - c0);
          const Q8TokenTile tile = TileFrom(x.token_tile(c), s0);
          __m512 out[kTileRows];
          if (rows == kTileRows) {
            Format::template Tile<kTileRows>(decoded, 0, tile, n, out);
          } else {
            for (int i = 0; i < rows; ++i) Format::template Tile<1>(decoded, i, tile, n, out + i);
          }
          alignas(64) float lanes[kQ8TileTokens];
          for (int i = 0; i < rows; ++i) {
            _mm512_store_ps(lanes, out[i]);
            float* yr = y + c * kQ8TileTokens * w.rows + r0 + i;
            for (std::int64_t l = 0; l < tile.n_tokens; ++l)
              yr[l * w.rows] = s0 == 0 ? lanes[l] : yr[l * w.rows] + lanes[l];
          }
        }
      }
    }
  }
}

}  // namespace k_tiles
