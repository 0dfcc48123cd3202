// Q4_K and Q6_K rows times Q8_K activations in 512-bit vectors, for the AVX-512 target
// (with VNNI): each multiply-add covers 64 weights, twice the 256-bit kernels of
// q8_dot_k_bytes_x86-inl.h. Q6_K keeps their arithmetic (vpmaddubsw: unsigned codes ×
// signed activation bytes into int16 pairs, then vpdpwssd with the sub-block scale);
// Q4_K multiplies with vpdpbusd and applies its scales once per super-block (below).
// Each 512-bit vector of Q6_K codes meets 64 contiguous activations: the 64 low-nibble
// bytes ql[64h, 64h + 64) and the 32 high-bit bytes qh[32h, …) (in both halves) give
// elements [128h, 128h + 64) from the low nibbles and [128h + 64, 128h + 128) from the
// high ones (see the element map in the 256-bit file).
// Included from q8_dot_k_bytes_x86-inl.h inside its namespace, on the AVX-512 target only.

namespace k_bytes512 {

// int16 lanes of v shifted right, lanes [0, 16) by lo and [16, 32) by hi.
HWY_INLINE __m512i ShiftHalvesRight(__m512i v, int lo, int hi) {
  return _mm512_srlv_epi16(v, _mm512_inserti64x4(_mm512_set1_epi16(static_cast<short>(lo)),
                                                 _mm256_set1_epi16(static_cast<short>(hi)), 1));
}

HWY_INLINE __m512i ShiftHalvesLeft(__m512i v, int lo, int hi) {
  return _mm512_sllv_epi16(v, _mm512_inserti64x4(_mm512_set1_epi16(static_cast<short>(lo)),
                                                 _mm256_set1_epi16(static_cast<short>(hi)), 1));
}

// Indices for vpermw: vector k, lane i = k·(32 / group) + i / group, so that vector k
// spreads scales [32k / group, …) over group consecutive int16 lanes each.
template <int kGroup>
struct ScaleSpread {
  alignas(64) std::int16_t index[4][32];
  constexpr ScaleSpread() : index{} {
    for (int k = 0; k < 4; ++k)
      for (int i = 0; i < 32; ++i) index[k][i] = static_cast<std::int16_t>(k * (32 / kGroup) + i / kGroup);
  }
};
constexpr ScaleSpread<8> kQ6KSpread;        // 4 groups of 16 per vector
constexpr ScaleSpread<4> kQ4KPackedSpread;  // vector 0: the 8 sub-blocks, 4 int16 lanes each

template <int kGroup>
HWY_INLINE __m512i SpreadScales(__m512i scales16, const ScaleSpread<kGroup>& spread, int k) {
  return _mm512_permutexvar_epi16(_mm512_load_si512(spread.index[k]), scales16);
}

HWY_INLINE __m512i Load512(const void* p) { return _mm512_loadu_si512(p); }

HWY_INLINE __m512i Broadcast256(const void* p) {
  return _mm512_broadcast_i64x4(_mm256_loadu_si256(static_cast<const __m256i*>(p)));
}

// ---------------------------------------------------------------------------- Q4_K
// vpdpbusd multiplies 4 code bytes by 4 activation bytes and adds them into one int32
// lane: 64 products per instruction, against 32 for vpmaddubsw (whose int16 pairs then
// need a second multiply-add with the scale). The scale of a sub-block can only be
// applied once each lane holds products of a single sub-block, so the codes are arranged
// for that: P = 16-byte pieces (0, 2, 4, 6) of qs and Q = pieces (1, 3, 5, 7) (one
// vshufi64x2 each). 128-bit lane L of P holds bytes 0-15 of chunk L, of Q bytes 16-31:
// their low nibbles are elements 0-15 and 16-31 of sub-block 2L, their high nibbles of
// sub-block 2L + 1. So
//   even = dpbusd(lo P, x_a) + dpbusd(lo Q, x_b): lane group L holds sub-block 2L only,
//   odd  = dpbusd(hi P, x_c) + dpbusd(hi Q, x_d): sub-block 2L + 1,
// each lane a sum of 8 products (|·| ≤ 8·15·128 = 15360, fits int16). vpackssdw packs
// both into int16 (in 128-bit lane L: 4 values of sub-block 2L, then 4 of 2L + 1, i.e.
// int16 i belongs to sub-block i / 4), and one vpdpwssd with scale i / 4 finishes the
// super-block: 4 + 1 multiply-adds per 256 weights instead of 8. The activations come in
// the matching order, x_a … x_d = Q8Row::values8_interleaved (q8_activations.h).

// One row's super-block, decoded for Q4KBlockTerm.
struct Q4KRowBlock {
  __m512i p_lo, q_lo, p_hi, q_hi;  // codes, arranged as above
  __m512i sc;                      // int16 lane i: scale of sub-block i / 4
  __m512 dmin_mins;                // lanes 0-7: dmin·m_j; 8-15: 0
  float d;
};

// The header (d, dmin, scales and mins; Q5_K's is the same) into b.
HWY_INLINE void LoadQ4KRowHeader(const std::uint8_t* block, Q4KRowBlock& b) {
  std::uint64_t scale_bytes, min_bytes;
  unpack_k4_scales_and_mins(block + 4, &scale_bytes, &min_bytes);
  b.sc = _mm512_permutexvar_epi16(
      _mm512_load_si512(kQ4KPackedSpread.index[0]),
      _mm512_cvtepu8_epi16(_mm256_castsi128_si256(_mm_cvtsi64_si128(static_cast<long long>(scale_bytes)))));
  b.dmin_mins = _mm512_zextps256_ps512(
      _mm256_mul_ps(_mm256_set1_ps(HalfToFloat(block + 2)),
                    _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(min_bytes))))));
  b.d = HalfToFloat(block);
}

// The 128 code bytes qs as P = 16-byte pieces (0, 2, 4, 6) and Q = pieces (1, 3, 5, 7).
HWY_INLINE void ArrangeQ4KCodes(const std::uint8_t* qs, __m512i& p, __m512i& q) {
  const __m512i z0 = Load512(qs), z1 = Load512(qs + 64);
  p = _mm512_shuffle_i64x2(z0, z1, _MM_SHUFFLE(2, 0, 2, 0));
  q = _mm512_shuffle_i64x2(z0, z1, _MM_SHUFFLE(3, 1, 3, 1));
}

HWY_INLINE Q4KRowBlock LoadQ4KRowBlock(const std::uint8_t* block) {
  const __m512i low4 = _mm512_set1_epi8(0x0f);
  Q4KRowBlock b;
  LoadQ4KRowHeader(block, b);
  __m512i p, q;
  ArrangeQ4KCodes(block + offsetof(BlockQ4_K, qs), p, q);
  b.p_lo = _mm512_and_si512(p, low4);
  b.q_lo = _mm512_and_si512(q, low4);
  b.p_hi = _mm512_and_si512(_mm512_srli_epi16(p, 4), low4);
  b.q_hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), low4);
  return b;
}

// acc + the super-block's products with one token: xv = its 4 interleaved activation
// vectors, dx its scale, block_sums its 8 sub-block sums (dx·Σq) in lanes 0-7 (the mins'
// term, subtracted in the same accumulator).
HWY_INLINE __m512 Q4KBlockTerm(const Q4KRowBlock& b, const __m512i* xv, float dx, __m512 block_sums, __m512 acc) {
  const __m512i even = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), b.p_lo, xv[0]), b.q_lo, xv[1]);
  const __m512i odd = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), b.p_hi, xv[2]), b.q_hi, xv[3]);
  const __m512i sums = _mm512_dpwssd_epi32(_mm512_setzero_si512(), _mm512_packs_epi32(even, odd), b.sc);
  acc = _mm512_fmadd_ps(_mm512_set1_ps(b.d * dx), _mm512_cvtepi32_ps(sums), acc);
  return _mm512_fnmadd_ps(b.dmin_mins, block_sums, acc);
}

// kRows consecutive rows (row + r·row_bytes) × kTokens: out[r·kTokens + t]. With 2 rows
// each activation load serves both (prompts measured 1.5× faster than row by row: the
// 8 tokens' activations no longer stream through L1 once per row); more rows would not
// fit the 32 registers.
using Q4KRowLoader = Q4KRowBlock (*)(const std::uint8_t* block);

template <int kRows, int kTokens, std::size_t kBlockBytes = sizeof(BlockQ4_K), Q4KRowLoader Load = LoadQ4KRowBlock>
HWY_INLINE void DotQ4KTile(const std::uint8_t* row, std::size_t row_bytes, const Q8Row* x, std::int64_t cols,
                           float* out) {
  __m512 acc[kRows][kTokens];
  for (int r = 0; r < kRows; ++r)
    for (int t = 0; t < kTokens; ++t) acc[r][t] = _mm512_setzero_ps();
  const std::int64_t n_super = cols / kSuperBlock;
  for (std::int64_t sb = 0; sb < n_super; ++sb) {
    const std::uint8_t* block = row + sb * static_cast<std::int64_t>(kBlockBytes);
    if constexpr (kRows == 1 && kTokens == 1) prefetch_for_decode<kBlockBytes>(block);
    Q4KRowBlock b[kRows];
    for (int r = 0; r < kRows; ++r) b[r] = Load(block + r * row_bytes);
    for (int t = 0; t < kTokens; ++t) {
      const std::int8_t* xs = x[t].values8_interleaved + sb * kSuperBlock;
      const __m512i xv[4] = {Load512(xs), Load512(xs + 64), Load512(xs + 128), Load512(xs + 192)};
      const __m512 block_sums = _mm512_zextps256_ps512(_mm256_loadu_ps(x[t].block_sums + 8 * sb));
      const float dx = x[t].scales[8 * sb];
      for (int r = 0; r < kRows; ++r) acc[r][t] = Q4KBlockTerm(b[r], xv, dx, block_sums, acc[r][t]);
    }
  }
  for (int r = 0; r < kRows; ++r)
    for (int t = 0; t < kTokens; ++t) out[r * kTokens + t] = _mm512_reduce_add_ps(acc[r][t]);
}

template <int kTokens>
HWY_INLINE void DotQ4K(const std::uint8_t* row, const Q8Row* x, std::int64_t cols, float* out) {
  DotQ4KTile<1, kTokens>(row, 0, x, cols, out);
}

// ---------------------------------------------------------------------------- Q6_K
// One row, kTokens tokens. (Two rows at a time, as for Q4_K, measured 1.2× slower: both
// rows' codes and scales do not fit the registers next to the tokens' sums.)
template <int kTokens>
HWY_INLINE void DotQ6K(const std::uint8_t* row, const Q8Row* x, std::int64_t cols, float* out) {
  const __m512i low4 = _mm512_set1_epi8(0x0f), bits45 = _mm512_set1_epi8(0x30);
  __m512 acc[kTokens];
  for (int t = 0; t < kTokens; ++t) acc[t] = _mm512_setzero_ps();
  const std::int64_t n_super = cols / kSuperBlock;
  for (std::int64_t sb = 0; sb < n_super; ++sb) {
    const std::uint8_t* block = row + sb * static_cast<std::int64_t>(sizeof(BlockQ6_K));
    if constexpr (kTokens == 1) prefetch_for_decode<sizeof(BlockQ6_K)>(block);
    const std::uint8_t* ql = block + offsetof(BlockQ6_K, ql);
    const std::uint8_t* qh = block + offsetof(BlockQ6_K, qh);
    const __m128i scale_bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + offsetof(BlockQ6_K, scales)));
    const __m512i scales16 = _mm512_cvtepi8_epi16(_mm256_castsi128_si256(scale_bytes));
    // −32·sc_g: the codes' offset, applied to the activations' sums of 16 (|·| ≤ 4096).
    const __m256i offset_scales = _mm256_mullo_epi16(_mm256_cvtepi8_epi16(scale_bytes), _mm256_set1_epi16(-32));
    const float d = HalfToFloat(block + offsetof(BlockQ6_K, d));
    __m512i sums[kTokens];
    for (int t = 0; t < kTokens; ++t) {
      const __m256i g16 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[t].sums16_i16 + 16 * sb));
      sums[t] = _mm512_zextsi256_si512(_mm256_madd_epi16(g16, offset_scales));
    }
    for (int half = 0; half < 2; ++half) {
      const __m512i l = Load512(ql + 64 * half);
      const __m512i h = Broadcast256(qh + 32 * half);
      const __m512i q[2] = {
          _mm512_or_si512(_mm512_and_si512(l, low4), _mm512_and_si512(ShiftHalvesLeft(h, 4, 2), bits45)),
          _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), low4),
                          _mm512_and_si512(ShiftHalvesRight(h, 0, 2), bits45)),
      };
      for (int m = 0; m < 2; ++m) {
        // 64 weights = groups 8·half + 4m … + 3: 8 int16 lanes (16 weights) per scale.
        const __m512i sc = SpreadScales(scales16, kQ6KSpread, 2 * half + m);
        for (int t = 0; t < kTokens; ++t) {
          const __m512i xv = Load512(x[t].values8 + sb * kSuperBlock + 128 * half + 64 * m);
          sums[t] = _mm512_dpwssd_epi32(sums[t], _mm512_maddubs_epi16(q[m], xv), sc);
        }
      }
    }
    for (int t = 0; t < kTokens; ++t)
      acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(d * x[t].scales[8 * sb]), _mm512_cvtepi32_ps(sums[t]), acc[t]);
  }
  for (int t = 0; t < kTokens; ++t) out[t] = _mm512_reduce_add_ps(acc[t]);
}

}  // namespace k_bytes512
