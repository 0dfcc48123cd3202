// Encoders for the 32-element blocks Q4_0, Q4_1, Q5_0, Q5_1, Q8_0.
#include <cstring>

#include "core/half.h"
#include "quant/block_encoders.h"
#include "quant/block_formats.h"
#include "quant/scale_fit.h"

namespace piquant::block_encoders {
namespace {

// Stores the scale as f16 and returns the value the decoder will see.
float store_half(float v, std::uint16_t* field) {
  *field = f32_to_f16(v);
  return f16_to_f32(*field);
}

float symmetric_scale(const float* x, const float* w, int qmin, int qmax) {
  return w ? search_symmetric_scale(x, w, kQk, qmin, qmax) : rtn_symmetric_scale(x, kQk, qmin);
}

AffineFit affine_fit(const float* x, const float* w, int qmax) {
  return w ? search_affine(x, w, kQk, qmax, false) : rtn_affine(x, kQk, qmax, false);
}

void pack_nibbles(const int* q, std::uint8_t* qs) {
  for (int j = 0; j < kQk / 2; ++j) qs[j] = static_cast<std::uint8_t>((q[j] & 0x0f) | (q[j + kQk / 2] & 0x0f) << 4);
}

void pack_fifth_bits(const int* q, std::uint8_t* qh) {
  std::uint32_t bits = 0;
  for (int j = 0; j < kQk; ++j) bits |= static_cast<std::uint32_t>((q[j] >> 4) & 1) << j;
  for (int k = 0; k < 4; ++k) qh[k] = static_cast<std::uint8_t>(bits >> (8 * k));
}

template <typename Block>
void write_block(const Block& b, std::uint8_t* out) {
  std::memcpy(out, &b, sizeof(Block));
}

}  // namespace

void q8_0(const float* x, const float* w, std::uint8_t* out) {
  BlockQ8_0 b{};
  const float d = store_half(symmetric_scale(x, w, -127, 127), &b.d);
  for (int i = 0; i < kQk; ++i) b.qs[i] = static_cast<std::int8_t>(nearest_code(x[i], d, 0.0f, -127, 127));
  write_block(b, out);
}

void q4_0(const float* x, const float* w, std::uint8_t* out) {
  BlockQ4_0 b{};
  const float d = store_half(symmetric_scale(x, w, -8, 7), &b.d);
  int q[kQk];
  for (int i = 0; i < kQk; ++i) q[i] = nearest_code(x[i], d, 0.0f, -8, 7) + 8;
  pack_nibbles(q, b.qs);
  write_block(b, out);
}

void q5_0(const float* x, const float* w, std::uint8_t* out) {
  BlockQ5_0 b{};
  const float d = store_half(symmetric_scale(x, w, -16, 15), &b.d);
  int q[kQk];
  for (int i = 0; i < kQk; ++i) q[i] = nearest_code(x[i], d, 0.0f, -16, 15) + 16;
  pack_nibbles(q, b.qs);
  pack_fifth_bits(q, b.qh);
  write_block(b, out);
}

void q4_1(const float* x, const float* w, std::uint8_t* out) {
  BlockQ4_1 b{};
  const AffineFit fit = affine_fit(x, w, 15);
  const float d = store_half(fit.scale, &b.d);
  const float m = store_half(fit.offset, &b.m);
  int q[kQk];
  for (int i = 0; i < kQk; ++i) q[i] = nearest_code(x[i], d, m, 0, 15);
  pack_nibbles(q, b.qs);
  write_block(b, out);
}

void q5_1(const float* x, const float* w, std::uint8_t* out) {
  BlockQ5_1 b{};
  const AffineFit fit = affine_fit(x, w, 31);
  const float d = store_half(fit.scale, &b.d);
  const float m = store_half(fit.offset, &b.m);
  int q[kQk];
  for (int i = 0; i < kQk; ++i) q[i] = nearest_code(x[i], d, m, 0, 31);
  pack_nibbles(q, b.qs);
  pack_fifth_bits(q, b.qh);
  write_block(b, out);
}

}  // namespace piquant::block_encoders
