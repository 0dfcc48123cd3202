#pragma once
// Activations quantized to 8 bits for the integer dot products with quantized weights,
// rounded exactly as llama.cpp's CPU backend rounds them, so both engines multiply the
// same integers (and their logits agree to float rounding, not to 8-bit noise):
// - Q8_0 blocks (for Q4_0, Q5_0, Q8_0 weights): per 32 columns, q = round(x · 127 / max|x|)
//   to nearest even, scale = f16(max|x| / 127).
// - Q8_1 blocks (for Q4_1, Q5_1): as Q8_0, plus the block's sum for the weights' min term
//   stored as llama.cpp stores it, f16((max|x| / 127) · Σq).
// - Q8_K blocks (for the K-quants): per 256 columns, with m the value of largest
//   magnitude (first one on ties), q = min(127, round(x · -127 / m)), scale = 1 / (-127 / m).
// The values are stored widened to int16 so the kernels load them ready for 16-bit
// multiply-adds, once per token rather than once per weight row, and as bytes for the
// kernels that multiply bytes (x86's unsigned × signed byte multiply-add). The scale is given per
// 32 columns in both schemes (a Q8_K scale repeats 8 times), and each group of 16 values
// carries its sum, which folds the offsets and mins of the weight blocks
// (Σ (w_q - 8)·q = Σ w_q·q - 8·Σ q) into one multiply.
#include <cstdint>
#include <vector>

#include "formats/ggml_type.h"

namespace piquant {

inline constexpr std::int64_t kQ8ActivationBlock = 32;

enum class Q8Blocks { Q8_0, Q8_1, Q8_K };

// The activation blocks llama.cpp pairs with a weight type.
Q8Blocks q8_blocks_for(GgmlType weight_type);

// One token's quantized activations; cols / 32 blocks.
struct Q8Row {
  const std::int16_t* values;  // cols values, each in [-128, 127]
  const std::int8_t* values8;  // the same values as bytes (kernels built on byte multiply-adds)
  // Q8_K on x86 only (else null): values8 with each 256-column block's 16-byte pieces in the
  // order 0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15, the order in which x86's
  // 512-bit Q4_K kernel meets them (q8_dot_k_bytes_avx512-inl.h).
  const std::int8_t* values8_interleaved;
  const float* scales;         // cols / 32: block b holds values [32b, 32b + 32)
  const std::int32_t* sums16;  // cols / 16: sum of values [16g, 16g + 16)
  const std::int16_t* sums16_i16;  // the same sums as int16 (|sum| ≤ 2048), for 16-bit multiply-adds
  const float* block_sums;     // cols / 32: Σ x̂ of block b for a min term (scale · Σq; Q8_1: rounded to f16)
  bool scale_per_256;          // Q8_K: the scale is the same for each 256 columns (8 blocks)
};

// Q8_K activations of up to 16 tokens side by side, for x86's prompt kernels
// (q8_token_tiles_*-inl.h). Those multiply 4 weight codes of one row, broadcast, with the
// same 4 columns of 16 tokens (8 on AVX2) at once, so each token's products land in its
// own int32 lane: no horizontal sums, and one float multiply-add per sub-block covers all
// of them.
inline constexpr std::int64_t kQ8TileTokens = 16;

struct Q8TokenTile {
  const std::int8_t* values;      // cols / 4 groups of 64 bytes: group k, bytes [4l, 4l + 4) = token l's columns [4k, 4k + 4)
  const float* scales;            // cols / 256 × 16: super-block s, lane l = token l's scale
  const float* block_sums;        // cols / 32 × 16: scale · Σq of each 32 columns (Q4_K's min term)
  const std::int32_t* offsets16;  // cols / 16 × 16: −32 · Σq of each 16 columns (Q6_K's code offset)
  std::int64_t n_tokens;          // tokens present, ≤ 16; the lanes of absent ones hold zeros
};

class Q8Activations {
 public:
  // Sizes the storage for n_tokens × cols (cols a multiple of the scheme's block: 32 or
  // 256), reusing what it has, so a decode loop does not allocate once warmed up.
  void prepare(std::int64_t n_tokens, std::int64_t cols, Q8Blocks blocks);
  // Quantizes tokens [t_begin, t_end) of x (n_tokens × cols floats, row-major); tokens
  // are independent, so threads may quantize disjoint ranges.
  void quantize_tokens(const float* x, std::int64_t t_begin, std::int64_t t_end);
  void quantize(const float* x, std::int64_t n_tokens, std::int64_t cols, Q8Blocks blocks = Q8Blocks::Q8_0) {
    prepare(n_tokens, cols, blocks);
    quantize_tokens(x, 0, n_tokens);
  }

  // An upper bound on the bytes prepare(n_tokens, cols, ·) allocates (all layouts, the
  // last token tile padded), for memory planning; UINT64_MAX if it overflows.
  static std::uint64_t storage_bytes(std::uint64_t n_tokens, std::uint64_t cols);

  // Bytes held now (the buffers' capacities).
  std::uint64_t held_bytes() const;

  std::int64_t n_tokens() const { return n_tokens_; }
  std::int64_t cols() const { return cols_; }
  Q8Row token(std::int64_t t) const;
  // Tokens [16i, 16i + 16) as one tile. Filled for Q8_K blocks on x86 when there are at
  // least 16 tokens (prompts); otherwise there are none.
  std::int64_t n_token_tiles() const { return n_tiles_; }
  Q8TokenTile token_tile(std::int64_t i) const;

  // scale · q for token t: exactly the activations the integer kernels multiply with
  // (the reference the kernels are tested against).
  void dequantize(std::int64_t t, float* out) const;

 private:
  void fill_token_tiles(std::int64_t block);

  std::int64_t n_tokens_ = 0, cols_ = 0, n_tiles_ = 0;
  Q8Blocks blocks_ = Q8Blocks::Q8_0;
  std::vector<std::int16_t> values_;
  std::vector<std::int8_t> values8_;
  std::vector<std::int8_t> values8_interleaved_;
  std::vector<float> scales_;
  std::vector<std::int32_t> sums16_;
  std::vector<std::int16_t> sums16_i16_;
  std::vector<float> block_sums_;
  std::vector<std::int8_t> tile_values_;
  std::vector<float> tile_scales_, tile_block_sums_;
  std::vector<std::int32_t> tile_offsets16_;
};

}  // namespace piquant
