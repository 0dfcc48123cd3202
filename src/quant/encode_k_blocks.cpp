// Encoders for the 256-element K-quant super-blocks Q2_K .. Q6_K. Each sub-block gets a
// float scale (and min) first; those are then quantized against one f16 super-block scale,
// and the codes are recomputed from the quantized scales the decoder will actually use.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/half.h"
#include "quant/block_encoders.h"
#include "quant/block_formats.h"
#include "quant/scale_fit.h"

namespace piquant::block_encoders {
namespace {

float store_half(float v, std::uint16_t* field) {
  *field = f32_to_f16(v);
  return f16_to_f32(*field);
}

// Sub-block of `size` elements, codes in [qmin, qmax], decoded as scale * q - min.
struct SubBlock {
  const float* x;
  const float* w;
  int size;
  int qmin;
  int qmax;
};

double sub_block_error(const SubBlock& sb, float scale, float min) {
  const float inv = scale == 0.0f ? 0.0f : 1.0f / scale;
  const auto lo = static_cast<float>(sb.qmin), hi = static_cast<float>(sb.qmax);
  float err = 0.0f;
  PIQUANT_SIMD_REDUCTION(err)
  for (int i = 0; i < sb.size; ++i) {
    const float diff = sb.x[i] - (scale * nearest_code_float(sb.x[i], inv, -min, lo, hi) - min);
    err += sb.w[i] * diff * diff;
  }
  return err;
}

// K-quant with unsigned sub-block scales and mins (Q2_K, Q4_K, Q5_K).
struct AffineK {
  int sub_size;
  int qmax;       // codes 0..qmax
  int level_max;  // quantized scales and mins 0..level_max
};

struct AffineKCodes {
  std::uint16_t d = 0;
  std::uint16_t dmin = 0;
  int scale[16] = {};
  int min[16] = {};
  int q[kQkK] = {};
};

AffineKCodes encode_affine_k(const float* x, const float* w, const AffineK& k) {
  const int n_sub = kQkK / k.sub_size;
  float scale[16], min[16];
  for (int s = 0; s < n_sub; ++s) {
    const float* xs = x + s * k.sub_size;
    const AffineFit fit = w ? search_affine(xs, w + s * k.sub_size, k.sub_size, k.qmax, true)
                            : rtn_affine(xs, k.sub_size, k.qmax, true);
    scale[s] = fit.scale;
    min[s] = -fit.offset;
  }
  AffineKCodes c;
  const float d = store_half(*std::max_element(scale, scale + n_sub) / static_cast<float>(k.level_max), &c.d);
  const float dmin = store_half(*std::max_element(min, min + n_sub) / static_cast<float>(k.level_max), &c.dmin);
  for (int s = 0; s < n_sub; ++s) {
    int ls = nearest_code(scale[s], d, 0.0f, 0, k.level_max);
    int lm = nearest_code(min[s], dmin, 0.0f, 0, k.level_max);
    if (w) {
      // Rounding the levels independently is not optimal; try the neighbours too.
      const SubBlock sb{x + s * k.sub_size, w + s * k.sub_size, k.sub_size, 0, k.qmax};
      const int ls0 = ls, lm0 = lm;
      double best = sub_block_error(sb, d * static_cast<float>(ls), dmin * static_cast<float>(lm));
      for (int a = std::max(0, ls0 - 1); a <= std::min(k.level_max, ls0 + 1); ++a) {
        for (int b = std::max(0, lm0 - 1); b <= std::min(k.level_max, lm0 + 1); ++b) {
          const double err = sub_block_error(sb, d * static_cast<float>(a), dmin * static_cast<float>(b));
          if (err < best) {
            best = err;
            ls = a;
            lm = b;
          }
        }
      }
    }
    c.scale[s] = ls;
    c.min[s] = lm;
    const float sc = d * static_cast<float>(ls);
    const float mn = dmin * static_cast<float>(lm);
    for (int i = 0; i < k.sub_size; ++i) {
      const int e = s * k.sub_size + i;
      c.q[e] = nearest_code(x[e], sc, -mn, 0, k.qmax);
    }
  }
  return c;
}

// K-quant with signed sub-block scales and symmetric codes (Q3_K, Q6_K).
struct SymmetricK {
  int qmin, qmax;          // codes
  int level_min, level_max;  // quantized sub-block scales
};

struct SymmetricKCodes {
  std::uint16_t d = 0;
  int scale[16] = {};
  int q[kQkK] = {};
};

SymmetricKCodes encode_symmetric_k(const float* x, const float* w, const SymmetricK& k) {
  constexpr int kSub = 16;
  float scale[kQkK / kSub];
  for (int s = 0; s < kQkK / kSub; ++s) {
    const float* xs = x + s * kSub;
    scale[s] = w ? search_symmetric_scale(xs, w + s * kSub, kSub, k.qmin, k.qmax) : rtn_symmetric_scale(xs, kSub, k.qmin);
  }
  SymmetricKCodes c;
  const float d = store_half(rtn_symmetric_scale(scale, kQkK / kSub, k.level_min), &c.d);
  for (int s = 0; s < kQkK / kSub; ++s) {
    int ls = nearest_code(scale[s], d, 0.0f, k.level_min, k.level_max);
    if (w) {
      const SubBlock sb{x + s * kSub, w + s * kSub, kSub, k.qmin, k.qmax};
      const int ls0 = ls;
      double best = sub_block_error(sb, d * static_cast<float>(ls), 0.0f);
      for (int a = std::max(k.level_min, ls0 - 1); a <= std::min(k.level_max, ls0 + 1); ++a) {
        const double err = sub_block_error(sb, d * static_cast<float>(a), 0.0f);
        if (err < best) {
          best = err;
          ls = a;
        }
      }
    }
    c.scale[s] = ls;
    const float sc = d * static_cast<float>(ls);
    for (int i = 0; i < kSub; ++i) c.q[s * kSub + i] = nearest_code(x[s * kSub + i], sc, 0.0f, k.qmin, k.qmax);
  }
  return c;
}

// 2-bit fields shared by Q2_K and Q3_K: element e = 128h + 32j + 16p + l sits in
// byte 32h + 16p + l at bits 2j.
void pack_two_bit(const int* q, std::uint8_t* qs) {
  for (int e = 0; e < kQkK; ++e) {
    const int h = e / 128, j = (e / 32) % 4, p = (e / 16) % 2, l = e % 16;
    qs[32 * h + 16 * p + l] |= static_cast<std::uint8_t>((q[e] & 3) << (2 * j));
  }
}

// One high bit per element: byte e % 32, bit e / 32 (Q3_K hmask, Q5_K qh).
void pack_high_bit(const int* q, int bit, std::uint8_t* bytes) {
  for (int e = 0; e < kQkK; ++e) bytes[e % 32] |= static_cast<std::uint8_t>(((q[e] >> bit) & 1) << (e / 32));
}

// Nibbles of Q4_K/Q5_K: element e = 64c + 32p + l in byte 32c + l, nibble p.
void pack_k_nibbles(const int* q, std::uint8_t* qs) {
  for (int e = 0; e < kQkK; ++e) {
    const int c = e / 64, p = (e / 32) % 2, l = e % 32;
    qs[32 * c + l] |= static_cast<std::uint8_t>((q[e] & 0x0f) << (4 * p));
  }
}

void pack_k4_scales(const int* scale, const int* min, std::uint8_t* s) {
  for (int j = 0; j < 4; ++j) {
    s[j] = static_cast<std::uint8_t>(scale[j] | (scale[j + 4] >> 4) << 6);
    s[j + 4] = static_cast<std::uint8_t>(min[j] | (min[j + 4] >> 4) << 6);
    s[j + 8] = static_cast<std::uint8_t>((scale[j + 4] & 0x0f) | (min[j + 4] & 0x0f) << 4);
  }
}

template <typename Block>
void write_block(const Block& b, std::uint8_t* out) {
  std::memcpy(out, &b, sizeof(Block));
}

}  // namespace

void q2_k(const float* x, const float* w, std::uint8_t* out) {
  const AffineKCodes c = encode_affine_k(x, w, {16, 3, 15});
  BlockQ2_K b{};
  b.d = c.d;
  b.dmin = c.dmin;
  for (int s = 0; s < 16; ++s) b.scales[s] = static_cast<std::uint8_t>(c.scale[s] | c.min[s] << 4);
  pack_two_bit(c.q, b.qs);
  write_block(b, out);
}

void q3_k(const float* x, const float* w, std::uint8_t* out) {
  const SymmetricKCodes c = encode_symmetric_k(x, w, {-4, 3, -32, 31});
  BlockQ3_K b{};
  b.d = c.d;
  for (int s = 0; s < 16; ++s) {
    const int u = c.scale[s] + 32;
    if (s < 8) {
      b.scales[s] |= static_cast<std::uint8_t>(u & 0x0f);
    } else {
      b.scales[s - 8] |= static_cast<std::uint8_t>((u & 0x0f) << 4);
    }
    b.scales[8 + s % 4] |= static_cast<std::uint8_t>((u >> 4) << (2 * (s / 4)));
  }
  int q3[kQkK];
  for (int e = 0; e < kQkK; ++e) q3[e] = c.q[e] + 4;
  pack_two_bit(q3, b.qs);
  pack_high_bit(q3, 2, b.hmask);
  write_block(b, out);
}

void q4_k(const float* x, const float* w, std::uint8_t* out) {
  const AffineKCodes c = encode_affine_k(x, w, {32, 15, 63});
  BlockQ4_K b{};
  b.d = c.d;
  b.dmin = c.dmin;
  pack_k4_scales(c.scale, c.min, b.scales);
  pack_k_nibbles(c.q, b.qs);
  write_block(b, out);
}

void q5_k(const float* x, const float* w, std::uint8_t* out) {
  const AffineKCodes c = encode_affine_k(x, w, {32, 31, 63});
  BlockQ5_K b{};
  b.d = c.d;
  b.dmin = c.dmin;
  pack_k4_scales(c.scale, c.min, b.scales);
  pack_k_nibbles(c.q, b.qs);
  pack_high_bit(c.q, 4, b.qh);
  write_block(b, out);
}

void q6_k(const float* x, const float* w, std::uint8_t* out) {
  const SymmetricKCodes c = encode_symmetric_k(x, w, {-32, 31, -128, 127});
  BlockQ6_K b{};
  b.d = c.d;
  for (int s = 0; s < 16; ++s) b.scales[s] = static_cast<std::int8_t>(c.scale[s]);
  for (int e = 0; e < kQkK; ++e) {
    const int q6 = c.q[e] + 32;
    const int h = e / 128, k = (e / 32) % 4, l = e % 32;
    b.ql[64 * h + 32 * (k & 1) + l] |= static_cast<std::uint8_t>((q6 & 0x0f) << (4 * (k >> 1)));
    b.qh[32 * h + l] |= static_cast<std::uint8_t>((q6 >> 4) << (2 * k));
  }
  write_block(b, out);
}

}  // namespace piquant::block_encoders
