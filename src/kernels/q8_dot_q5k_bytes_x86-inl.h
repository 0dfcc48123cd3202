// Q5_K rows times Q8_K activations with x86's byte multiply-adds: Q4_K's kernels (see
// q8_dot_k_bytes_x86-inl.h and q8_dot_k_bytes_avx512-inl.h) with a 5th code bit OR-ed
// into the codes before they meet the activations. Q5_K's header (d, dmin, the 12 bytes
// of scales and mins) and its nibbles are laid out as Q4_K's; qh adds bit 4 of weight
// 32j + b (sub-block j) as bit j of qh[b].
//
// Ranges: codes ≤ 31 times |q_x| ≤ 128: a vpmaddubsw pair ≤ 7936 (no saturation), a
// vpdpbusd lane pair of the 512-bit kernel (8 products) ≤ 31744, still an int16 for its
// vpackssdw; times a 6-bit scale and summed over a super-block: < 2^31.
//
// Included at the end of q8_dot_k_bytes_x86-inl.h, inside its namespace and only where
// PIQUANT_HAVE_BYTE_K_KERNELS holds.

namespace k_bytes {

// out[t] = row · x[t] for kTokens tokens whose activations have one scale per 256, in
// 256-bit vectors: Q4_K's kernel with the 5th bits.
template <int kTokens>
HWY_INLINE void DotQ5KBytes(const std::uint8_t* row, const Q8Row* x, std::int64_t cols, float* out) {
  DotQ4KBytes<kTokens, BlockQ5_K>(row, x, cols, out);
}

#if PIQUANT_BYTE_K_KERNELS_USE_VNNI
namespace k_bytes512 {

// The low nibble of each byte of v, plus 16 where fifth_bit is set: one vpternlogd
// computes (v & 0x0f) | sixteens.
HWY_INLINE __m512i NibblePlusFifthBit(__m512i v, __mmask64 fifth_bit) {
  const __m512i sixteens = _mm512_maskz_mov_epi8(fifth_bit, _mm512_set1_epi8(16));
  constexpr int kAAndBOrC = (0xf0 & 0xcc) | 0xaa;  // ternlog truth table of (a & b) | c
  return _mm512_ternarylogic_epi32(v, _mm512_set1_epi8(0x0f), sixteens, kAAndBOrC);
}

// A Q5_K super-block as Q4KBlockTerm takes it: the codes in LoadQ4KRowBlock's
// arrangement (128-bit lane L of p_* and q_* holds sub-block 2L in *_lo, 2L + 1 in *_hi,
// elements 0-15 in p_*, 16-31 in q_*) with the 5th bit added. Element b of a p_* lane
// takes it from qh[b], of a q_* lane from qh[16 + b]: each qh half is broadcast to the
// four lanes, and lane L tests bit 2L (lo) or 2L + 1 (hi).
HWY_INLINE Q4KRowBlock LoadQ5KRowBlock(const std::uint8_t* block) {
  Q4KRowBlock b;
  LoadQ4KRowHeader(block, b);
  __m512i p, q;
  ArrangeQ4KCodes(block + offsetof(BlockQ5_K, qs), p, q);
  const std::uint8_t* qh = block + offsetof(BlockQ5_K, qh);
  const __m512i qh_p = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qh)));
  const __m512i qh_q = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qh + 16)));
  // Bit 2L (even sub-blocks) and 2L + 1 (odd) in every byte of 128-bit lane L.
  const __m512i even_bit = _mm512_setr_epi32(0x01010101, 0x01010101, 0x01010101, 0x01010101,  //
                                             0x04040404, 0x04040404, 0x04040404, 0x04040404,  //
                                             0x10101010, 0x10101010, 0x10101010, 0x10101010,  //
                                             0x40404040, 0x40404040, 0x40404040, 0x40404040);
  const __m512i odd_bit = _mm512_add_epi8(even_bit, even_bit);
  b.p_lo = NibblePlusFifthBit(p, _mm512_test_epi8_mask(qh_p, even_bit));
  b.q_lo = NibblePlusFifthBit(q, _mm512_test_epi8_mask(qh_q, even_bit));
  b.p_hi = NibblePlusFifthBit(_mm512_srli_epi16(p, 4), _mm512_test_epi8_mask(qh_p, odd_bit));
  b.q_hi = NibblePlusFifthBit(_mm512_srli_epi16(q, 4), _mm512_test_epi8_mask(qh_q, odd_bit));
  return b;
}

// One row × kTokens tokens: Q4_K's tile with this loader.
template <int kTokens>
HWY_INLINE void DotQ5K(const std::uint8_t* row, const Q8Row* x, std::int64_t cols, float* out) {
  DotQ4KTile<1, kTokens, sizeof(BlockQ5_K), LoadQ5KRowBlock>(row, 0, x, cols, out);
}

}  // namespace k_bytes512
#endif  // PIQUANT_BYTE_K_KERNELS_USE_VNNI

// out[t] = row · x[t], in this target's widest vectors.
template <int kTokens>
HWY_INLINE void DotQ5KWidest(const std::uint8_t* row, const Q8Row* x, std::int64_t cols, float* out) {
#if PIQUANT_BYTE_K_KERNELS_USE_VNNI
  k_bytes512::DotQ5K<kTokens>(row, x, cols, out);
#else
  DotQ5KBytes<kTokens>(row, x, cols, out);
#endif
}

}  // namespace k_bytes

// Q5_K rows, 1 token and kByteKernelGroup tokens, through the kernels above; activations
// with scales per 32 columns go to the portable kernels Fallback and Fallback4.
template <Q8Dot Fallback>
HWY_NOINLINE float DotQ5_KBytes(const std::uint8_t* row, const Q8Row& x, std::int64_t cols) {
  return k_bytes::OneTokenOr<Fallback, &k_bytes::DotQ5KWidest<1>>(row, x, cols);
}

template <Q8Dot4 Fallback4>
HWY_NOINLINE void DotQ5_KBytesGroup(const std::uint8_t* row, const Q8Row* x, std::int64_t cols, float* out) {
  k_bytes::GroupOr<Fallback4, &k_bytes::DotQ5KWidest<kByteKernelGroup>>(row, x, cols, out);
}
