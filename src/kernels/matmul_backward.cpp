#include "kernels/matmul_backward.h"

#include "kernels/simd_config.h"
// clang-format off
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/matmul_backward.cpp"
#include "hwy/foreach_target.h"
#include "hwy/highway.h"
// clang-format on
#include "hwy/cache_control.h"
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "kernels/element_io-inl.h"

#ifndef PIQUANT_KERNELS_MATMUL_BACKWARD_TYPES_
#define PIQUANT_KERNELS_MATMUL_BACKWARD_TYPES_
namespace piquant {
// One target's backward kernels, looked up on the calling thread (so Highway's target
// choice, or the level forced, is settled before any worker runs).
struct BackwardKernels {
  // Columns per strip: the width of a register tile, kStripVectors vectors.
  std::size_t strip;
  // Strips [s_begin, s_end) of dx, tokens [t_begin, t_end): dx[t][c] += Σ_{i < band_rows}
  // dy[t][r0 + i] · band(i, c), band packed as strips of band_rows × strip floats.
  void (*input_grad_strips)(const float* band, std::int64_t band_rows, const float* dy, std::int64_t dy_stride,
                            std::int64_t r0, float* dx, std::int64_t cols, std::int64_t s_begin, std::int64_t s_end,
                            std::int64_t t_begin, std::int64_t t_end);
  // Rows [r_begin, r_end) of dw += Σ_{k < chunk} dy[t0 + k][r] · xs(k, c), xs packed as strips
  // of chunk × strip floats; `tile` is scratch for chunk × 4 floats.
  void (*weight_grad_rows)(const float* dy, std::int64_t rows, const float* xs, std::int64_t chunk, std::int64_t t0,
                           float* dw, std::int64_t cols, std::int64_t r_begin, std::int64_t r_end, float* tile);
};
}  // namespace piquant
#endif

HWY_BEFORE_NAMESPACE();
namespace piquant {
namespace HWY_NAMESPACE {

// A register tile is kTileM output rows (tokens of dx, rows of dw) × kStripVectors
// vectors of columns: 4 × 3 = 12 accumulators + 3 loaded vectors + 1 broadcast. That is
// all 16 registers of AVX2 (no spill in the inner loop, checked in the disassembly) and
// measured 1.3-1.45× faster there than 4 × 2 (Zen 4 in AVX2 mode), whose 8 chains barely
// cover two FMA units of 4-cycle latency. SSE4 and the baseline have no FMA: a product
// needs a 17th register, so they take 4 × 2.
#if (HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2) || HWY_ARCH_ARM_A64
constexpr std::size_t kStripVectors = 3;
#else
constexpr std::size_t kStripVectors = 2;
#endif
constexpr std::size_t kTileM = 4;

// c[i][0, kV·N) = chain over k of c[i][j] + a[i][k·a_step] · b[k·b_step + j], for i < kM,
// k ascending (the order in the header: accumulators start from c and are stored once).
// Full vectors only, so the accumulators stay in registers.
template <std::size_t kM, std::size_t kV>
HWY_INLINE void FmaTile(const float* const* a, std::size_t a_step, const float* b, std::size_t b_step,
                        std::size_t depth, float* const* c) {
  const DF d;
  const std::size_t n = hn::Lanes(d);
  VF acc[kM][kV];
  for (std::size_t i = 0; i < kM; ++i)
    for (std::size_t j = 0; j < kV; ++j) acc[i][j] = hn::LoadU(d, c[i] + j * n);
  const float* ap[kM];
  for (std::size_t i = 0; i < kM; ++i) ap[i] = a[i];
  for (std::size_t k = 0; k < depth; ++k) {
    VF bv[kV];
    for (std::size_t j = 0; j < kV; ++j) bv[j] = hn::LoadU(d, b + j * n);
    b += b_step;
    for (std::size_t i = 0; i < kM; ++i) {
      const VF av = hn::Set(d, *ap[i]);
      ap[i] += a_step;
      for (std::size_t j = 0; j < kV; ++j) acc[i][j] = hn::MulAdd(av, bv[j], acc[i][j]);
    }
  }
  for (std::size_t i = 0; i < kM; ++i)
    for (std::size_t j = 0; j < kV; ++j) hn::StoreU(acc[i][j], d, c[i] + j * n);
}

// FmaTile for kV vectors of which the last holds `valid` − (kV − 1)·N < N columns of c:
// through a copy of c's rows padded to whole vectors (b is zero-padded already), so
// nothing outside the valid columns is read or written.
template <std::size_t kM, std::size_t kV>
HWY_NOINLINE void FmaTilePartial(const float* const* a, std::size_t a_step, const float* b, std::size_t b_step,
                                 std::size_t depth, float* const* c, std::size_t valid) {
  alignas(64) float padded[kM][kV * kMaxLanes] = {};
  float* rows[kM];
  for (std::size_t i = 0; i < kM; ++i) {
    std::copy(c[i], c[i] + valid, padded[i]);
    rows[i] = padded[i];
  }
  FmaTile<kM, kV>(a, a_step, b, b_step, depth, rows);
  for (std::size_t i = 0; i < kM; ++i) std::copy(padded[i], padded[i] + valid, c[i]);
}

// FmaTile for a strip with `valid` columns: as many vectors as they need.
template <std::size_t kM>
HWY_INLINE void FmaTileColumns(const float* const* a, std::size_t a_step, const float* b, std::size_t b_step,
                               std::size_t depth, float* const* c, std::size_t valid) {
  const std::size_t n = hn::Lanes(DF());
  static_assert(kStripVectors == 2 || kStripVectors == 3);
  if (valid == kStripVectors * n) return FmaTile<kM, kStripVectors>(a, a_step, b, b_step, depth, c);
  if (valid == n) return FmaTile<kM, 1>(a, a_step, b, b_step, depth, c);
  if (valid > 2 * n) {
    if constexpr (kStripVectors == 3) FmaTilePartial<kM, 3>(a, a_step, b, b_step, depth, c, valid);
  } else if (valid > n) {
    FmaTilePartial<kM, 2>(a, a_step, b, b_step, depth, c, valid);
  } else {
    FmaTilePartial<kM, 1>(a, a_step, b, b_step, depth, c, valid);
  }
}

// FmaTileColumns for m (1..kTileM) output rows.
HWY_INLINE void FmaTileAny(std::size_t m, const float* const* a, std::size_t a_step, const float* b,
                           std::size_t b_step, std::size_t depth, float* const* c, std::size_t valid) {
  static_assert(kTileM == 4);
  switch (m) {
    case 4:
      return FmaTileColumns<4>(a, a_step, b, b_step, depth, c, valid);
    case 3:
      return FmaTileColumns<3>(a, a_step, b, b_step, depth, c, valid);
    case 2:
      return FmaTileColumns<2>(a, a_step, b, b_step, depth, c, valid);
    default:
      return FmaTileColumns<1>(a, a_step, b, b_step, depth, c, valid);
  }
}

HWY_NOINLINE void InputGradStrips(const float* band, std::int64_t band_rows, const float* dy, std::int64_t dy_stride,
                                  std::int64_t r0, float* dx, std::int64_t cols, std::int64_t s_begin,
                                  std::int64_t s_end, std::int64_t t_begin, std::int64_t t_end) {
  const auto strip = static_cast<std::int64_t>(kStripVectors * hn::Lanes(DF()));
  // A strip of the band (≤ 256 rows × 48 floats = 48 KiB) stays in L2, its dy columns
  // too, while every token tile passes over it.
  for (std::int64_t s = s_begin; s < s_end; ++s) {
    const std::int64_t c0 = s * strip;
    const auto valid = static_cast<std::size_t>(std::min(strip, cols - c0));
    const float* b = band + s * band_rows * strip;
    for (std::int64_t t = t_begin; t < t_end; t += static_cast<std::int64_t>(kTileM)) {
      const auto m = static_cast<std::size_t>(std::min<std::int64_t>(kTileM, t_end - t));
      const float* a[kTileM];
      float* c[kTileM];
      for (std::size_t i = 0; i < m; ++i) {
        a[i] = dy + (t + static_cast<std::int64_t>(i)) * dy_stride + r0;
        c[i] = dx + (t + static_cast<std::int64_t>(i)) * cols + c0;
      }
      // The next tile's dx comes from L3 or memory (dx is rarely cached by now): ask for
      // it while this tile computes.
      const std::int64_t next_end = std::min<std::int64_t>(t_end, t + 2 * static_cast<std::int64_t>(kTileM));
      for (std::int64_t u = t + static_cast<std::int64_t>(kTileM); u < next_end; ++u)
        for (std::size_t l = 0; l < valid; l += 16) hwy::Prefetch(dx + u * cols + c0 + static_cast<std::int64_t>(l));
      FmaTileAny(m, a, 1, b, static_cast<std::size_t>(strip), static_cast<std::size_t>(band_rows), c, valid);
    }
  }
}

// The part of a chunk of x that one row tile's pass keeps in L2.
constexpr std::int64_t kPanelBytes = 256 * 1024;

HWY_NOINLINE void WeightGradRows(const float* dy, std::int64_t rows, const float* xs, std::int64_t chunk,
                                 std::int64_t t0, float* dw, std::int64_t cols, std::int64_t r_begin,
                                 std::int64_t r_end, float* tile) {
  const auto strip = static_cast<std::int64_t>(kStripVectors * hn::Lanes(DF()));
  const std::int64_t n_strips = (cols + strip - 1) / strip;
  const std::int64_t panel =
      std::max<std::int64_t>(1, kPanelBytes / (chunk * strip * static_cast<std::int64_t>(sizeof(float))));
  for (std::int64_t p0 = 0; p0 < n_strips; p0 += panel) {
    const std::int64_t p1 = std::min(n_strips, p0 + panel);
    for (std::int64_t r = r_begin; r < r_end; r += static_cast<std::int64_t>(kTileM)) {
      const auto m = static_cast<std::size_t>(std::min<std::int64_t>(kTileM, r_end - r));
      // dy's columns r..r+m-1 for the chunk's tokens, transposed: tile[k·4 + i].
      for (std::int64_t k = 0; k < chunk; ++k)
        for (std::size_t i = 0; i < m; ++i) tile[k * 4 + static_cast<std::int64_t>(i)] = dy[(t0 + k) * rows + r + static_cast<std::int64_t>(i)];
      const float* a[kTileM];
      for (std::size_t i = 0; i < m; ++i) a[i] = tile + i;
      for (std::int64_t s = p0; s < p1; ++s) {
        const std::int64_t c0 = s * strip;
        float* c[kTileM];
        for (std::size_t i = 0; i < m; ++i) c[i] = dw + (r + static_cast<std::int64_t>(i)) * cols + c0;
        // The next strip's dw, from L3 or memory, while this one computes.
        if (s + 1 < p1)
          for (std::size_t i = 0; i < m; ++i)
            for (std::int64_t l = 0; l < std::min(strip, cols - c0 - strip); l += 16) hwy::Prefetch(c[i] + strip + l);
        FmaTileAny(m, a, kTileM, xs + s * chunk * strip, static_cast<std::size_t>(strip),
                   static_cast<std::size_t>(chunk), c, static_cast<std::size_t>(std::min(strip, cols - c0)));
      }
    }
  }
}

BackwardKernels GetBackwardKernels() {
  return {kStripVectors * hn::Lanes(DF()), &InputGradStrips, &WeightGradRows};
}

}  // namespace HWY_NAMESPACE
}  // namespace piquant
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/matmul.h"
#include "kernels/weight_kernels.h"

namespace piquant {

HWY_EXPORT(GetBackwardKernels);

namespace {

// Input grad: rows of W per band, and the most floats a band's scratch holds (4 MiB;
// long rows get fewer rows per band, at least kMinBandRows). dx is read and written once
// per band: 256 rows measured ≈ 15% faster than 128 (Zen 4, 2048 × 2048, 512 tokens).
constexpr std::int64_t kBandRows = 256;
constexpr std::int64_t kMinBandRows = 16;
constexpr std::int64_t kBandFloats = 1 << 20;

// Weight grad: tokens of x per chunk. dw is read and written once per chunk; a chunk's
// copy of x is chunk × cols floats, and one strip of it (128 × 48 floats, 24 KiB) fits
// L1 (measured on Zen 4: 128 tokens ≈ 8% faster than 256, 512 slower still).
constexpr std::int64_t kChunkTokens = 128;

// [begin, end) of thread `index`'s share of n items, in multiples of `grain`.
std::pair<std::int64_t, std::int64_t> share(std::int64_t n, std::int64_t grain, unsigned index, unsigned threads) {
  const std::int64_t units = (n + grain - 1) / grain;
  const std::int64_t begin = units * index / threads * grain;
  const std::int64_t end = units * (index + 1) / threads * grain;
  return {std::min(begin, n), std::min(end, n)};
}

// Row `src` (cols floats) into row i of a band packed as strips of `height` × strip floats,
// the last strip's columns past cols set to zero.
void scatter_to_strips(const float* src, std::int64_t cols, std::int64_t strip, std::int64_t height, std::int64_t i,
                       float* packed) {
  for (std::int64_t c0 = 0; c0 < cols; c0 += strip) {
    float* dst = packed + (c0 / strip) * height * strip + i * strip;
    const std::int64_t valid = std::min(strip, cols - c0);
    std::memcpy(dst, src + c0, static_cast<std::size_t>(valid) * sizeof(float));
    std::fill(dst + valid, dst + strip, 0.0f);
  }
}

}  // namespace

void matmul_input_grad(const MatrixView& w, const float* dy, std::int64_t n_tokens, float* dx, ThreadPool& pool) {
  if (!matmul_supports(w.type))
    throw Error("matmul_input_grad: weight type " + ggml_type_name(w.type) + " is not supported");
  check_matrix_view(w, "matmul_input_grad");
  if (n_tokens < 0) throw Error("matmul_input_grad: negative token count " + std::to_string(n_tokens));
  if (n_tokens == 0 || w.rows == 0 || w.cols == 0) return;
  if (dy == nullptr || dx == nullptr) throw Error("matmul_input_grad: null gradient buffer");
  const BackwardKernels k = HWY_DYNAMIC_DISPATCH(GetBackwardKernels)();
  const auto strip = static_cast<std::int64_t>(k.strip);
  const std::int64_t cols = w.cols;
  const std::int64_t n_strips = (cols + strip - 1) / strip;
  const std::int64_t band_rows = std::min(w.rows, std::clamp(kBandFloats / cols, kMinBandRows, kBandRows));
  std::vector<float> band(static_cast<std::size_t>(n_strips * strip * band_rows));
  // One decoded row per thread (F32 rows are copied straight into the band).
  const bool f32 = w.type == GgmlType::F32;
  std::vector<float> rows_as_floats(f32 ? 0 : static_cast<std::size_t>(cols) * pool.size());
  for (std::int64_t r0 = 0; r0 < w.rows; r0 += band_rows) {
    const std::int64_t height = std::min(band_rows, w.rows - r0);
    pool.run([&](unsigned index, unsigned threads) {
      const auto [begin, end] = share(height, 1, index, threads);
      float* row = f32 ? nullptr : rows_as_floats.data() + static_cast<std::size_t>(cols) * index;
      for (std::int64_t i = begin; i < end; ++i) {
        const float* src = reinterpret_cast<const float*>(w.row(r0 + i));
        if (!f32) {
          matrix_row_to_floats(w, r0 + i, row);
          src = row;
        }
        scatter_to_strips(src, cols, strip, height, i, band.data());
      }
    });
    // Threads take strips of columns; with fewer strips than threads (narrow LoRA
    // matrices), tiles of tokens. Either way each output's chain is the same.
    if (n_strips >= static_cast<std::int64_t>(pool.size())) {
      pool.parallel_for(n_strips, 1, [&](std::int64_t s_begin, std::int64_t s_end) {
        k.input_grad_strips(band.data(), height, dy, w.rows, r0, dx, cols, s_begin, s_end, 0, n_tokens);
      });
    } else {
      pool.parallel_for(n_tokens, 4, [&](std::int64_t t_begin, std::int64_t t_end) {
        k.input_grad_strips(band.data(), height, dy, w.rows, r0, dx, cols, 0, n_strips, t_begin, t_end);
      });
    }
  }
}

void matmul_weight_grad(const float* dy, std::int64_t rows, const float* x, std::int64_t cols, std::int64_t n_tokens,
                        float* dw, ThreadPool& pool) {
  if (rows < 0 || cols < 0 || n_tokens < 0)
    throw Error("matmul_weight_grad: negative size (" + std::to_string(rows) + " rows, " + std::to_string(cols) +
                " cols, " + std::to_string(n_tokens) + " tokens)");
  if (rows == 0 || cols == 0 || n_tokens == 0) return;
  if (dy == nullptr || x == nullptr || dw == nullptr) throw Error("matmul_weight_grad: null buffer");
  const BackwardKernels k = HWY_DYNAMIC_DISPATCH(GetBackwardKernels)();
  const auto strip = static_cast<std::int64_t>(k.strip);
  const std::int64_t n_strips = (cols + strip - 1) / strip;
  const std::int64_t max_chunk = std::min(n_tokens, kChunkTokens);
  std::vector<float> xs(static_cast<std::size_t>(n_strips * strip * max_chunk));
  std::vector<float> tiles(static_cast<std::size_t>(max_chunk * 4) * pool.size());
  for (std::int64_t t0 = 0; t0 < n_tokens; t0 += max_chunk) {
    const std::int64_t chunk = std::min(max_chunk, n_tokens - t0);
    pool.parallel_for(chunk, 1, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t i = begin; i < end; ++i) scatter_to_strips(x + (t0 + i) * cols, cols, strip, chunk, i, xs.data());
    });
    // Rows in multiples of 4 per thread, so only the last thread has a partial tile.
    pool.run([&](unsigned index, unsigned threads) {
      const auto [begin, end] = share(rows, 4, index, threads);
      if (begin < end)
        k.weight_grad_rows(dy, rows, xs.data(), chunk, t0, dw, cols, begin, end,
                           tiles.data() + static_cast<std::size_t>(max_chunk * 4) * index);
    });
  }
}

}  // namespace piquant
#endif  // HWY_ONCE
