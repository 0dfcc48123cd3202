// Per-target register tiles for matmul: kR weight rows × kT tokens of dot products whose
// accumulators stay in registers while the columns stream past. Each weight vector is
// loaded (and converted to float) once and used for all kT tokens; each activation
// vector once for all kR rows. Included once per Highway target.
#if defined(PIQUANT_KERNELS_MATMUL_TILES_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef PIQUANT_KERNELS_MATMUL_TILES_INL_H_
#undef PIQUANT_KERNELS_MATMUL_TILES_INL_H_
#else
#define PIQUANT_KERNELS_MATMUL_TILES_INL_H_
#endif

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "hwy/highway.h"
#include "kernels/element_io-inl.h"
#include "kernels/matrix_view.h"

HWY_BEFORE_NAMESPACE();
namespace piquant {
namespace HWY_NAMESPACE {

// Tokens per tile: 4 rows × 4 tokens = 16 accumulators + 4 activations + 1 weight fit
// the 32 vector registers of AVX-512 and AArch64. With 16 registers (AVX2, SSE4) 4 × 3
// measured faster than 4 × 2 on F32 weights (≈20%, Zen 4 in AVX2 mode) and the same on
// F16/BF16, though the tile is at the register limit.
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL || HWY_ARCH_ARM_A64
constexpr std::size_t kTileTokens = 4;
#else
constexpr std::size_t kTileTokens = 3;
#endif
constexpr std::size_t kTileRows = 4;

// Columns [begin, end) of a dot product; `accumulate` adds to the outputs (a later
// panel of the same rows) instead of overwriting them.
struct ColumnSpan {
  std::size_t begin, end;
  bool accumulate;
};

// y[t][r0 + r] (+)= Σ_{c in span} W[r0 + r][c] · x[t][c] for r < kR, t < kT. kU
// independent accumulator sets per output hide the FMA latency when the tile itself is
// small (mat-vec: kT = 1).
template <class E, std::size_t kR, std::size_t kT, std::size_t kU>
HWY_INLINE void DotTile(const MatrixView& w, std::int64_t r0, ColumnSpan span, const float* const* xs,
                        float* const* ys) {
  const DF d;
  const std::size_t n = hn::Lanes(d);
  const std::uint8_t* rows[kR];
  for (std::size_t r = 0; r < kR; ++r) rows[r] = w.row(r0 + static_cast<std::int64_t>(r));

  VF acc[kU][kR][kT];
  for (std::size_t u = 0; u < kU; ++u)
    for (std::size_t r = 0; r < kR; ++r)
      for (std::size_t t = 0; t < kT; ++t) acc[u][r][t] = hn::Zero(d);

  std::size_t c = span.begin;
  for (; c + kU * n <= span.end; c += kU * n) {
    for (std::size_t u = 0; u < kU; ++u) {
      VF xv[kT];
      for (std::size_t t = 0; t < kT; ++t) xv[t] = hn::LoadU(d, xs[t] + c + u * n);
      for (std::size_t r = 0; r < kR; ++r) {
        const VF wv = E::Load(d, rows[r], c + u * n);
        for (std::size_t t = 0; t < kT; ++t) acc[u][r][t] = hn::MulAdd(wv, xv[t], acc[u][r][t]);
      }
    }
  }
  for (; c + n <= span.end; c += n) {
    for (std::size_t r = 0; r < kR; ++r) {
      const VF wv = E::Load(d, rows[r], c);
      for (std::size_t t = 0; t < kT; ++t) acc[0][r][t] = hn::MulAdd(wv, hn::LoadU(d, xs[t] + c), acc[0][r][t]);
    }
  }
  if (c < span.end) {
    const std::size_t rest = span.end - c;
    for (std::size_t r = 0; r < kR; ++r) {
      const VF wv = LoadTail<E>(d, rows[r], c, rest);
      for (std::size_t t = 0; t < kT; ++t) acc[0][r][t] = hn::MulAdd(wv, LoadFloatTail(d, xs[t] + c, rest), acc[0][r][t]);
    }
  }

  for (std::size_t r = 0; r < kR; ++r) {
    for (std::size_t t = 0; t < kT; ++t) {
      VF sum = acc[0][r][t];
      for (std::size_t u = 1; u < kU; ++u) sum = hn::Add(sum, acc[u][r][t]);
      float& out = ys[t][r0 + static_cast<std::int64_t>(r)];
      out = (span.accumulate ? out : 0.0f) + ReduceSum(d, sum);
    }
  }
}

// One row tile (kR rows) against tokens [t0, t1) of x over a span of columns.
template <class E, std::size_t kR>
HWY_INLINE void RowTileOverTokens(const MatrixView& w, std::int64_t r0, ColumnSpan span, const float* x, float* y,
                                  std::int64_t t0, std::int64_t t1) {
  const std::int64_t cols = w.cols, rows = w.rows;
  const float* xs[kTileTokens];
  float* ys[kTileTokens];
  std::int64_t t = t0;
  for (; t + static_cast<std::int64_t>(kTileTokens) <= t1; t += kTileTokens) {
    for (std::size_t i = 0; i < kTileTokens; ++i) {
      xs[i] = x + (t + static_cast<std::int64_t>(i)) * cols;
      ys[i] = y + (t + static_cast<std::int64_t>(i)) * rows;
    }
    DotTile<E, kR, kTileTokens, 1>(w, r0, span, xs, ys);
  }
  for (; t < t1; ++t) {  // fewer than kTileTokens left
    xs[0] = x + t * cols;
    ys[0] = y + t * rows;
    DotTile<E, kR, 1, 2>(w, r0, span, xs, ys);
  }
}

// Prompt blocking. Columns are cut into panels of kPanelCols and tokens into chunks so
// that a chunk's activations for one panel (≈ kActivationBlockBytes) stay in L2 while
// every row tile of this thread passes over them: each weight panel then comes from
// memory once per chunk and serves all the chunk's tokens from cache, however long the
// rows are. kPanelCols is a multiple of every vector width, so only the last panel of a
// row has a tail.
constexpr std::int64_t kPanelCols = 4096;
constexpr std::int64_t kActivationBlockBytes = 512 * 1024;

// Rows [r_begin, r_end) of y = x · Wᵀ for all n_tokens tokens.
template <class E>
HWY_NOINLINE void MatmulRows(const MatrixView& w, const float* x, std::int64_t n_tokens, float* y,
                             std::int64_t r_begin, std::int64_t r_end) {
  constexpr auto kR = static_cast<std::int64_t>(kTileRows);
  const auto cols = static_cast<std::size_t>(w.cols);
  if (n_tokens == 1) {
    // Decode: stream each weight row once, two accumulators per row.
    const float* xs[1] = {x};
    float* ys[1] = {y};
    const ColumnSpan all{0, cols, false};
    std::int64_t r = r_begin;
    for (; r + kR <= r_end; r += kR) DotTile<E, kTileRows, 1, 2>(w, r, all, xs, ys);
    for (; r < r_end; ++r) DotTile<E, 1, 1, 4>(w, r, all, xs, ys);
    return;
  }
  const std::int64_t panel = std::clamp<std::int64_t>(w.cols, 1, kPanelCols);
  const std::int64_t chunk = std::max<std::int64_t>(
      2 * kTileTokens, kActivationBlockBytes / 4 / panel / kTileTokens * kTileTokens);
  for (std::int64_t t0 = 0; t0 < n_tokens; t0 += chunk) {
    const std::int64_t t1 = std::min(n_tokens, t0 + chunk);
    std::size_t c0 = 0;
    do {  // at least once: zero columns still write zeros
      const ColumnSpan span{c0, std::min(cols, c0 + static_cast<std::size_t>(panel)), c0 > 0};
      std::int64_t r = r_begin;
      for (; r + kR <= r_end; r += kR) RowTileOverTokens<E, kTileRows>(w, r, span, x, y, t0, t1);
      for (; r < r_end; ++r) RowTileOverTokens<E, 1>(w, r, span, x, y, t0, t1);
      c0 = span.end;
    } while (c0 < cols);
  }
}

template <class E>
HWY_NOINLINE void DequantizeRow(const MatrixView& w, std::int64_t r, float* out) {
  const DF d;
  const std::size_t n = hn::Lanes(d);
  const std::size_t cols = static_cast<std::size_t>(w.cols);
  const std::uint8_t* row = w.row(r);
  std::size_t c = 0;
  for (; c + n <= cols; c += n) hn::StoreU(E::Load(d, row, c), d, out + c);
  for (; c < cols; ++c) out[c] = E::At(row, c);
}

}  // namespace HWY_NAMESPACE
}  // namespace piquant
HWY_AFTER_NAMESPACE();

#endif  // include guard toggle
