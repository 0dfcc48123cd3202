// Q4_K and Q6_K rows times Q8_K activations with x86's byte multiply-add
// (vpmaddubsw: unsigned weight codes × signed activation bytes, adjacent pairs summed to
// int16), for the AVX2 and AVX-512 targets. These two types carry nearly all of a
// Q4_K_M model's bytes, and decoding them at memory speed needs fewer instructions per
// weight than the int16 multiply-adds of the portable kernels (q8_dot_k32/k16-inl.h):
// one multiply-add covers 32 weights instead of 16, and the sub-block scales are applied
// in integers (a second multiply-add with the scale broadcast), so each super-block ends
// in one int32 sum per lane and one float multiply-add.
//
// Ranges: codes ≤ 63 times |q_x| ≤ 128, two products per int16: ≤ 16128, no saturation;
// times a 6-bit scale and summed over a super-block: < 2^31.
//
// Prompts of 16+ tokens of Q3_K, Q4_K, Q5_K and Q6_K go through the token-tile kernels
// instead (q8_token_tiles_*-inl.h, included below).
//
// On the AVX-512 target the int16 multiply-add and the accumulation are one VNNI
// instruction (vpdpwssd), so that target's kernels need AVX512-VNNI (Cascade Lake, Ice
// Lake, Zen 4 and later); ByteKernelsSupported() says whether it may be used now.
//
// Only activations with one scale per 256 columns (Q8_K, what matmul pairs with these
// types) take this path; the kernels fall back to the portable ones otherwise.
// Included once per Highway target; the kernels exist where HWY_TARGET is AVX2 or better.
// Include after q8_matmul_rows-inl.h (Q8Dot, Q8Dot4).
#if defined(PIQUANT_KERNELS_Q8_DOT_K_BYTES_X86_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef PIQUANT_KERNELS_Q8_DOT_K_BYTES_X86_INL_H_
#undef PIQUANT_KERNELS_Q8_DOT_K_BYTES_X86_INL_H_
#else
#define PIQUANT_KERNELS_Q8_DOT_K_BYTES_X86_INL_H_
#endif

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "hwy/highway.h"
#include "kernels/decode_prefetch.h"
#include "kernels/q8_activations.h"
#include "kernels/q8_matmul.h"
#include "kernels/q8_matmul_rows-inl.h"
#include "kernels/simd_target.h"
#include "quant/block_formats.h"

#undef PIQUANT_HAVE_BYTE_K_KERNELS  // redefined for each target
#undef PIQUANT_BYTE_K_KERNELS_USE_VNNI
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
#include <immintrin.h>
#define PIQUANT_HAVE_BYTE_K_KERNELS 1
#define PIQUANT_BYTE_K_KERNELS_USE_VNNI (HWY_TARGET == HWY_AVX3)
#else
#define PIQUANT_HAVE_BYTE_K_KERNELS 0
#define PIQUANT_BYTE_K_KERNELS_USE_VNNI 0
#endif

HWY_BEFORE_NAMESPACE();
#if PIQUANT_BYTE_K_KERNELS_USE_VNNI
// Added to the AVX-512 target's options for everything down to the matching pop.
#pragma GCC push_options
#pragma GCC target("avx512vnni")
#endif
namespace piquant {
namespace HWY_NAMESPACE {

#if PIQUANT_HAVE_BYTE_K_KERNELS
// Whether this target's byte kernels run now: on AVX-512 they need VNNI, which the CPU
// must have and the forced SIMD level must allow (simd_target.h: "avx512" rules it out,
// to run what an AVX-512 CPU without VNNI runs).
inline bool ByteKernelsSupported() {  // not always_inline: callers lack the VNNI option
#if PIQUANT_BYTE_K_KERNELS_USE_VNNI
  return simd_avx512_vnni_enabled();
#else
  return true;
#endif
}

namespace k_bytes {

// acc + Σ pairs of p16 · sc (int16 products summed into int32 lanes).
HWY_INLINE __m256i AddScaledPairs(__m256i acc, __m256i p16, __m256i sc) {
#if PIQUANT_BYTE_K_KERNELS_USE_VNNI
  return _mm256_dpwssd_epi32(acc, p16, sc);
#else
  return _mm256_add_epi32(acc, _mm256_madd_epi16(p16, sc));
#endif
}

constexpr std::int64_t kSuperBlock = 256;

HWY_INLINE float HalfToFloat(const std::uint8_t* p) {
  std::uint16_t bits;
  std::memcpy(&bits, p, sizeof(bits));
  return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits)));
}

HWY_INLINE float HorizontalSum(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 s2 = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

// int16 lanes: scale `a` in the low 128 bits, `b` in the high ones, taken from a vector
// whose int32 lane k holds the int16 pair (scale 2k, scale 2k + 1): lane `pair` is
// broadcast, then each half picks its element of the pair.
HWY_INLINE __m256i ScalePair(__m256i pairs, int pair) {
  const __m256i both = _mm256_permutevar8x32_epi32(pairs, _mm256_set1_epi32(pair));
  const __m256i pick = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1,  //
                                        2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3);
  return _mm256_shuffle_epi8(both, pick);
}

// All int16 lanes = scale `s` of a vector of 8 int16 scales (in both 128-bit halves).
HWY_INLINE __m256i BroadcastScale(__m256i scales16, int s) {
  const char lo = static_cast<char>(2 * s), hi = static_cast<char>(2 * s + 1);
  return _mm256_shuffle_epi8(scales16, _mm256_setr_epi8(lo, hi, lo, hi, lo, hi, lo, hi, lo, hi, lo, hi, lo, hi, lo,
                                                        hi, lo, hi, lo, hi, lo, hi, lo, hi, lo, hi, lo, hi, lo, hi, lo, hi));
}

// ---------------------------------------------------------------------------- Q4_K
// Super-block: d, dmin (f16), 12 bytes of 6-bit scales and mins, 128 bytes of codes:
// byte i of chunk c (32 bytes) holds weight i of sub-block 2c (low nibble) and of
// sub-block 2c + 1 (high nibble). x = d·sc·q − dmin·m.
struct Q4KHeader {
  float d, dmin;
  __m256i scales16;  // int16 scales of the 8 sub-blocks, repeated in both halves
  __m256 mins;       // the 8 mins as floats
};

HWY_INLINE Q4KHeader LoadQ4KHeader(const std::uint8_t* block) {
  std::uint64_t scales, mins;
  unpack_k4_scales_and_mins(block + 4, &scales, &mins);
  Q4KHeader h;
  h.d = HalfToFloat(block);
  h.dmin = HalfToFloat(block + 2);
  const __m128i s16 = _mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<long long>(scales)));
  h.scales16 = _mm256_broadcastsi128_si256(s16);
  h.mins = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(mins))));
  return h;
}

// The 5th bits of sub-block j as bytes 0 or 16, from the 32 qh bytes: bit j moved to
// bit 4. (The 16-bit shifts carry bits across bytes, but none lands on a bit 4.)
template <int j>
HWY_INLINE __m256i Q5KFifthBits(__m256i qh) {
  const __m256i bit4 = _mm256_set1_epi8(0x10);
  if constexpr (j < 4) {
    return _mm256_and_si256(_mm256_slli_epi16(qh, 4 - j), bit4);
  } else if constexpr (j == 4) {
    return _mm256_and_si256(qh, bit4);
  } else {
    return _mm256_and_si256(_mm256_srli_epi16(qh, j - 4), bit4);
  }
}

// Chunk c (64 weights: sub-blocks 2c, 2c + 1) of Σ over the super-block of
// sc_j · Σ_{i in j} q_i · x_i, added to 8 int32 lanes; with kFifthBit (Q5_K) bit 4 of the
// codes from qh.
template <int c, int kTokens, bool kFifthBit>
HWY_INLINE void Q4KChunkSums(const std::uint8_t* qs, __m256i qh, __m256i scales16, const std::int8_t* const* xs,
                             __m256i* sums) {
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * c));
  __m256i lo = _mm256_and_si256(q, low4);
  __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
  if constexpr (kFifthBit) {
    lo = _mm256_or_si256(lo, Q5KFifthBits<2 * c>(qh));
    hi = _mm256_or_si256(hi, Q5KFifthBits<2 * c + 1>(qh));
  }
  const __m256i sc_lo = BroadcastScale(scales16, 2 * c), sc_hi = BroadcastScale(scales16, 2 * c + 1);
  for (int t = 0; t < kTokens; ++t) {
    const std::int8_t* x = xs[t] + 64 * c;
    const __m256i p_lo = _mm256_maddubs_epi16(lo, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)));
    const __m256i p_hi = _mm256_maddubs_epi16(hi, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 32)));
    sums[t] = AddScaledPairs(AddScaledPairs(sums[t], p_lo, sc_lo), p_hi, sc_hi);
  }
}

// out[t] = row · x[t] for kTokens tokens whose activations have one scale per 256; Block
// BlockQ4_K or BlockQ5_K (the same header and nibbles, plus qh).
template <int kTokens, class Block = BlockQ4_K>
HWY_INLINE void DotQ4KBytes(const std::uint8_t* row, const Q8Row* x, std::int64_t cols, float* out) {
  constexpr bool kFifthBit = !std::is_same_v<Block, BlockQ4_K>;
  __m256 acc[kTokens], min_acc[kTokens];
  for (int t = 0; t < kTokens; ++t) acc[t] = min_acc[t] = _mm256_setzero_ps();
  const std::int64_t n_super = cols / kSuperBlock;
  for (std::int64_t sb = 0; sb < n_super; ++sb) {
    const std::uint8_t* block = row + sb * static_cast<std::int64_t>(sizeof(Block));
    if constexpr (kTokens == 1) prefetch_for_decode<sizeof(Block)>(block);
    const Q4KHeader h = LoadQ4KHeader(block);
    const std::int8_t* xs[kTokens];
    for (int t = 0; t < kTokens; ++t) xs[t] = x[t].values8 + sb * kSuperBlock;
    const std::uint8_t* qs = block + offsetof(Block, qs);
    __m256i qh = _mm256_setzero_si256();
    if constexpr (kFifthBit) qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + offsetof(Block, qh)));
    __m256i sums[kTokens];
    for (int t = 0; t < kTokens; ++t) sums[t] = _mm256_setzero_si256();
    Q4KChunkSums<0, kTokens, kFifthBit>(qs, qh, h.scales16, xs, sums);
    Q4KChunkSums<1, kTokens, kFifthBit>(qs, qh, h.scales16, xs, sums);
    Q4KChunkSums<2, kTokens, kFifthBit>(qs, qh, h.scales16, xs, sums);
    Q4KChunkSums<3, kTokens, kFifthBit>(qs, qh, h.scales16, xs, sums);
    const __m256 dmin_mins = _mm256_mul_ps(_mm256_set1_ps(h.dmin), h.mins);
    for (int t = 0; t < kTokens; ++t) {
      const float dx = x[t].scales[8 * sb];
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(h.d * dx), _mm256_cvtepi32_ps(sums[t]), acc[t]);
      // The mins: dmin·m_j times the activations' sum over sub-block j (dx·Σq_x).
      min_acc[t] = _mm256_fmadd_ps(dmin_mins, _mm256_loadu_ps(x[t].block_sums + 8 * sb), min_acc[t]);
    }
  }
  for (int t = 0; t < kTokens; ++t) out[t] = HorizontalSum(acc[t]) - HorizontalSum(min_acc[t]);
}

// ---------------------------------------------------------------------------- Q6_K
// Super-block: ql[128] low nibbles, qh[64] top 2 bits, 16 int8 scales, d (f16). Element
// e = 128h + 32k + l (h < 2, k < 4, l < 32): low = ql[64h + 32(k & 1) + l] >> 4(k >> 1),
// high = qh[32h + l] >> 2k, q = (low | high << 4) − 32, scale e / 16.
// Σ sc·(q − 32)·x = Σ sc·q·x − 32·Σ_g sc_g·(Σ x over group g of 16).
template <int kTokens>
HWY_INLINE void DotQ6KBytes(const std::uint8_t* row, const Q8Row* x, std::int64_t cols, float* out) {
  const __m256i low4 = _mm256_set1_epi8(0x0f), bits45 = _mm256_set1_epi8(0x30);
  __m256 acc[kTokens];
  for (int t = 0; t < kTokens; ++t) acc[t] = _mm256_setzero_ps();
  const std::int64_t n_super = cols / kSuperBlock;
  for (std::int64_t sb = 0; sb < n_super; ++sb) {
    const std::uint8_t* block = row + sb * static_cast<std::int64_t>(sizeof(BlockQ6_K));
    if constexpr (kTokens == 1) prefetch_for_decode<sizeof(BlockQ6_K)>(block);
    const std::uint8_t* ql = block + offsetof(BlockQ6_K, ql);
    const std::uint8_t* qh = block + offsetof(BlockQ6_K, qh);
    // 16 scales as int16; int32 lane k holds scales 2k and 2k + 1.
    const __m256i scales16 =
        _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block + offsetof(BlockQ6_K, scales))));
    const float d = HalfToFloat(block + offsetof(BlockQ6_K, d));
    __m256i sums[kTokens];
    for (int t = 0; t < kTokens; ++t) {
      // 32·Σ_g sc_g·sum16_g first (subtracted), from the activations' sums of 16.
      const std::int32_t* s16 = x[t].sums16 + 16 * sb;
      const __m256i g_lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s16));
      const __m256i g_hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s16 + 8));
      // packs interleaves 128-bit halves: lanes (0-3, 8-11, 4-7, 12-15); restore the order.
      const __m256i g16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(g_lo, g_hi), 0xd8);
      sums[t] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_madd_epi16(g16, scales16), 5));
    }
    for (int half = 0; half < 2; ++half) {
      const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qh + 32 * half));
      const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 64 * half));
      const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 64 * half + 32));
      const __m256i q[4] = {
          _mm256_or_si256(_mm256_and_si256(l0, low4), _mm256_and_si256(_mm256_slli_epi16(h, 4), bits45)),
          _mm256_or_si256(_mm256_and_si256(l1, low4), _mm256_and_si256(_mm256_slli_epi16(h, 2), bits45)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), low4), _mm256_and_si256(h, bits45)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), low4),
                          _mm256_and_si256(_mm256_srli_epi16(h, 2), bits45)),
      };
      for (int k = 0; k < 4; ++k) {
        // 32 weights = groups 8·half + 2k and + 1: one scale per 128-bit half.
        const __m256i sc = ScalePair(scales16, 4 * half + k);
        for (int t = 0; t < kTokens; ++t) {
          const __m256i xv =
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[t].values8 + sb * kSuperBlock + 128 * half + 32 * k));
          sums[t] = AddScaledPairs(sums[t], _mm256_maddubs_epi16(q[k], xv), sc);
        }
      }
    }
    for (int t = 0; t < kTokens; ++t) {
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * x[t].scales[8 * sb]), _mm256_cvtepi32_ps(sums[t]), acc[t]);
    }
  }
  for (int t = 0; t < kTokens; ++t) out[t] = HorizontalSum(acc[t]);
}

#include "kernels/q8_token_tiles_x86-inl.h"
#if PIQUANT_BYTE_K_KERNELS_USE_VNNI
#include "kernels/q8_dot_k_bytes_avx512-inl.h"
#include "kernels/q8_token_tiles_avx512-inl.h"
#else
#include "kernels/q8_token_tiles_avx2-inl.h"
#endif

// out[t] = row · x[t], in this target's widest vectors.
template <int kTokens>
HWY_INLINE void DotQ4KWidest(const std::uint8_t* row, const Q8Row* x, std::int64_t cols, float* out) {
#if PIQUANT_BYTE_K_KERNELS_USE_VNNI
  k_bytes512::DotQ4K<kTokens>(row, x, cols, out);
#else
  DotQ4KBytes<kTokens>(row, x, cols, out);
#endif
}

template <int kTokens>
HWY_INLINE void DotQ6KWidest(const std::uint8_t* row, const Q8Row* x, std::int64_t cols, float* out) {
#if PIQUANT_BYTE_K_KERNELS_USE_VNNI
  k_bytes512::DotQ6K<kTokens>(row, x, cols, out);
#else
  DotQ6KBytes<kTokens>(row, x, cols, out);
#endif
}

}  // namespace k_bytes

// Tokens per group of the prompt kernels below: the 512-bit kernels have 32 registers
// for 8 tokens' sums; the 256-bit ones (16 registers) keep 4.
constexpr int kByteKernelGroup = PIQUANT_BYTE_K_KERNELS_USE_VNNI ? 8 : 4;

namespace k_bytes {
HWY_INLINE bool AllScalesPer256(const Q8Row* x) {
  for (int t = 0; t < kByteKernelGroup; ++t)
    if (!x[t].scale_per_256) return false;
  return true;
}

template <Q8Dot4 Fallback4>
HWY_INLINE void FallbackGroup(const std::uint8_t* row, const Q8Row* x, std::int64_t cols, float* out) {
  for (int t = 0; t < kByteKernelGroup; t += 4) Fallback4(row, x + t, cols, out + t);
}

using KernelN = void (*)(const std::uint8_t* row, const Q8Row* x, std::int64_t cols, float* out);

// One token through Kernel (a byte kernel for 1 token), or through the portable Fallback
// when its activations have scales per 32 columns.
template <Q8Dot Fallback, KernelN Kernel>
HWY_INLINE float OneTokenOr(const std::uint8_t* row, const Q8Row& x, std::int64_t cols) {
  if (!x.scale_per_256) return Fallback(row, x, cols);
  float out;
  Kernel(row, &x, cols, &out);
  return out;
}

// kByteKernelGroup tokens through Kernel, or 4 at a time through Fallback4.
template <Q8Dot4 Fallback4, KernelN Kernel>
HWY_INLINE void GroupOr(const std::uint8_t* row, const Q8Row* x, std::int64_t cols, float* out) {
  if (!AllScalesPer256(x)) return FallbackGroup<Fallback4>(row, x, cols, out);
  Kernel(row, x, cols, out);
}
}  // namespace k_bytes

// Q4_K and Q6_K rows, 1 token and kByteKernelGroup tokens, through the kernels above.
template <Q8Dot Fallback>
HWY_NOINLINE float DotQ4_KBytes(const std::uint8_t* row, const Q8Row& x, std::int64_t cols) {
  return k_bytes::OneTokenOr<Fallback, &k_bytes::DotQ4KWidest<1>>(row, x, cols);
}

template <Q8Dot Fallback>
HWY_NOINLINE float DotQ6_KBytes(const std::uint8_t* row, const Q8Row& x, std::int64_t cols) {
  return k_bytes::OneTokenOr<Fallback, &k_bytes::DotQ6KWidest<1>>(row, x, cols);
}

template <Q8Dot4 Fallback4>
HWY_NOINLINE void DotQ4_KBytesGroup(const std::uint8_t* row, const Q8Row* x, std::int64_t cols, float* out) {
  k_bytes::GroupOr<Fallback4, &k_bytes::DotQ4KWidest<kByteKernelGroup>>(row, x, cols, out);
}

#if PIQUANT_BYTE_K_KERNELS_USE_VNNI
// Two consecutive rows as one tile (each activation load serves both rows).
template <Q8Dot4 Fallback4>
HWY_NOINLINE void DotQ4_KBytes2Rows(const std::uint8_t* row, std::size_t row_bytes, const Q8Row* x, std::int64_t cols,
                                    float* out) {
  if (!k_bytes::AllScalesPer256(x)) {
    k_bytes::FallbackGroup<Fallback4>(row, x, cols, out);
    k_bytes::FallbackGroup<Fallback4>(row + row_bytes, x, cols, out + kByteKernelGroup);
    return;
  }
  k_bytes::k_bytes512::DotQ4KTile<2, kByteKernelGroup>(row, row_bytes, x, cols, out);
}
#endif

// Activations in token tiles (prompts of 16+ tokens) through the tile kernels of Format
// (k_tiles::Q3K, Q4K, Q5K, Q6K); the rest through Rows.
template <class Format, Q8MatmulRows Rows>
HWY_NOINLINE void TokenTilesOr(const MatrixView& w, const Q8Activations& x, float* y, std::int64_t r_begin,
                               std::int64_t r_end) {
  if (x.n_token_tiles() == 0) return Rows(w, x, y, r_begin, r_end);
  k_bytes::k_tiles::TokenTileRows<Format>(w, x, y, r_begin, r_end);
}

template <Q8Dot4 Fallback4>
HWY_NOINLINE void DotQ6_KBytesGroup(const std::uint8_t* row, const Q8Row* x, std::int64_t cols, float* out) {
  k_bytes::GroupOr<Fallback4, &k_bytes::DotQ6KWidest<kByteKernelGroup>>(row, x, cols, out);
}
// Q3_K and Q5_K rows (decode and groups of tokens), in files of their own.
#include "kernels/q8_dot_q3k_bytes_x86-inl.h"
#include "kernels/q8_dot_q5k_bytes_x86-inl.h"
#endif  // PIQUANT_HAVE_BYTE_K_KERNELS

}  // namespace HWY_NAMESPACE
}  // namespace piquant
#if PIQUANT_BYTE_K_KERNELS_USE_VNNI
#pragma GCC pop_options
#endif
HWY_AFTER_NAMESPACE();

#endif  // include guard toggle
