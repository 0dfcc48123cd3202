// Q3_K rows times Q8_K activations with x86's byte multiply-add, for decode (1 token) and
// groups of kByteKernelGroup tokens; the arithmetic of DotQ6KBytes above. Q3_K is 3.44
// bits per weight, so keeping up with memory takes fewer instructions per weight than
// Q4_K or Q6_K: per 32 weights the codes cost 3 to 5 bitwise operations (fewer on the
// AVX-512 target, which merges the 3rd bit under a mask), then one vpmaddubsw, one
// in-lane shuffle for the scales and one vpmaddwd + add (vpdpwssd with VNNI) per token.
//
// Super-block (BlockQ3_K): hmask[32], qs[64], 12 bytes of 6-bit scales (offset 32), d
// (f16). Element e = 128h + 32j + b (h < 2, j < 4, b < 32): low bits 2j, 2j + 1 of
// qs[32h + b], 3rd bit = bit 4h + j of hmask[b]; x = d·(sc − 32)·(q − 4), scale e / 16.
// The codes go into vpmaddubsw unsigned (0..7) and the −4 is folded in once per
// super-block from the activations' sums of 16, as Q6_K's −32:
//   Σ sc·(q − 4)·x = Σ sc·q·x − 4·Σ_g sc_g·(Σ x over group g of 16).
// Ranges: 7·128·2 per int16 pair; |sc| ≤ 32: |Σ| < 256·7·128·32 < 2^23.
// Included from q8_dot_k_bytes_x86-inl.h inside its namespace and #if, after the Q6_K
// wrappers (so kByteKernelGroup, AllScalesPer256 and FallbackGroup are visible).

namespace k_bytes {

// The sixteen scales of a Q3_K super-block, offset removed (−32..31), as int8 in
// sub-block order.
HWY_INLINE __m128i Q3KScales(const std::uint8_t* scales) {
  std::uint64_t low, high;
  unpack_q3_k_scales(scales, &low, &high);
  return _mm_sub_epi8(_mm_set_epi64x(static_cast<long long>(high), static_cast<long long>(low)), _mm_set1_epi8(32));
}

// Each byte's bit `from` moved to bit `to` (16-bit shifts: the other bits are garbage,
// masked by the caller). Constants after inlining, so 0 or 1 instruction.
HWY_INLINE __m256i MoveBit(__m256i v, int from, int to) {
  if (from > to) return _mm256_srli_epi16(v, from - to);
  if (from < to) return _mm256_slli_epi16(v, to - from);
  return v;
}

// Codes 0..7 of the 32 weights 128h + 32j + [0, 32): q = qs[32h, 32h + 32), hm = hmask.
HWY_INLINE __m256i Q3KCodes(__m256i q, __m256i hm, int h, int j) {
  const __m256i low = _mm256_and_si256(MoveBit(q, 2 * j, 0), _mm256_set1_epi8(0x03));
  const int bit = 4 * h + j;
#if PIQUANT_BYTE_K_KERNELS_USE_VNNI
  // +4 in the bytes whose hmask bit is set: a mask test and a masked add.
  const __mmask32 high = _mm256_test_epi8_mask(hm, _mm256_set1_epi8(static_cast<char>(1 << bit)));
  return _mm256_mask_add_epi8(low, high, low, _mm256_set1_epi8(4));
#else
  return _mm256_or_si256(low, _mm256_and_si256(MoveBit(hm, bit, 2), _mm256_set1_epi8(0x04)));
#endif
}

// out[t] = row · x[t] for kTokens tokens whose activations have one scale per 256.
template <int kTokens>
HWY_INLINE void DotQ3KBytes(const std::uint8_t* row, const Q8Row* x, std::int64_t cols, float* out) {
  // Byte order that puts the even sub-blocks' scales in bytes 0..7, the odd ones in 8..15.
  const __m128i even_odd = _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
  __m256 acc[kTokens];
  for (int t = 0; t < kTokens; ++t) acc[t] = _mm256_setzero_ps();
  const std::int64_t n_super = cols / kSuperBlock;
  for (std::int64_t sb = 0; sb < n_super; ++sb) {
    const std::uint8_t* block = row + sb * static_cast<std::int64_t>(sizeof(BlockQ3_K));
    if constexpr (kTokens == 1) prefetch_for_decode<sizeof(BlockQ3_K)>(block);
    const __m128i scale_bytes = Q3KScales(block + offsetof(BlockQ3_K, scales));
    // Chunk c = 4h + j covers sub-blocks 2c (low 128 bits) and 2c + 1 (high): with the
    // even scales in the low half and the odd ones in the high half, BroadcastScale(c)
    // gives both in one in-lane shuffle.
    const __m256i chunk_scales = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scale_bytes, even_odd));
    // −4·sc_g in sub-block order (|·| ≤ 128), times the sums of 16 (|·| ≤ 2048).
    const __m256i offset_scales =
        _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(_mm256_cvtepi8_epi16(scale_bytes), 2));
    const float d = HalfToFloat(block + offsetof(BlockQ3_K, d));
    __m256i sums[kTokens];
    for (int t = 0; t < kTokens; ++t) {
      const __m256i g16 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[t].sums16_i16 + 16 * sb));
      sums[t] = _mm256_madd_epi16(g16, offset_scales);
    }
    const __m256i hm = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + offsetof(BlockQ3_K, hmask)));
    for (int h = 0; h < 2; ++h) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + offsetof(BlockQ3_K, qs) + 32 * h));
      for (int j = 0; j < 4; ++j) {
        const __m256i codes = Q3KCodes(q, hm, h, j);
        const __m256i sc = BroadcastScale(chunk_scales, 4 * h + j);
        for (int t = 0; t < kTokens; ++t) {
          const __m256i xv =
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[t].values8 + sb * kSuperBlock + 128 * h + 32 * j));
          sums[t] = AddScaledPairs(sums[t], _mm256_maddubs_epi16(codes, xv), sc);
        }
      }
    }
    for (int t = 0; t < kTokens; ++t) {
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * x[t].scales[8 * sb]), _mm256_cvtepi32_ps(sums[t]), acc[t]);
    }
  }
  for (int t = 0; t < kTokens; ++t) out[t] = HorizontalSum(acc[t]);
}

}  // namespace k_bytes

// Q3_K rows, 1 token and kByteKernelGroup tokens; activations with scales per 32 columns
// go to the portable kernels Fallback and Fallback4 (4 tokens at a time).
template <Q8Dot Fallback>
HWY_NOINLINE float DotQ3_KBytes(const std::uint8_t* row, const Q8Row& x, std::int64_t cols) {
  return k_bytes::OneTokenOr<Fallback, &k_bytes::DotQ3KBytes<1>>(row, x, cols);
}

template <Q8Dot4 Fallback4>
HWY_NOINLINE void DotQ3_KBytesGroup(const std::uint8_t* row, const Q8Row* x, std::int64_t cols, float* out) {
  k_bytes::GroupOr<Fallback4, &k_bytes::DotQ3KBytes<kByteKernelGroup>>(row, x, cols, out);
}
