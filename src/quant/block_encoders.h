#pragma once
// Per-block encoders behind quantize_row. Each writes one block of its type to out.
// w == nullptr asks for round-to-nearest; otherwise scales are searched under weights w.
#include <cstdint>

namespace piquant::block_encoders {

void q8_0(const float* x, const float* w, std::uint8_t* out);
void q4_0(const float* x, const float* w, std::uint8_t* out);
void q4_1(const float* x, const float* w, std::uint8_t* out);
void q5_0(const float* x, const float* w, std::uint8_t* out);
void q5_1(const float* x, const float* w, std::uint8_t* out);
void q2_k(const float* x, const float* w, std::uint8_t* out);
void q3_k(const float* x, const float* w, std::uint8_t* out);
void q4_k(const float* x, const float* w, std::uint8_t* out);
void q5_k(const float* x, const float* w, std::uint8_t* out);
void q6_k(const float* x, const float* w, std::uint8_t* out);

}  // namespace piquant::block_encoders
