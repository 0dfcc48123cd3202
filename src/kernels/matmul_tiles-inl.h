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

// Columns are summed in panels of kPanelCols (the order in matmul.h): a panel's sum is
// one vector accumulator, then its lanes added, then added into y. kPanelCols is a
// multiple of every vector width, so only the last panel of a row has a tail.
constexpr std::int64_t kPanelCols = 4096;

// y[t][r0 + r] (+)= Σ_{c in span} W[r0 + r][c] · x[t][c] for r < kR, t < kT, every one
// in the order matmul.h states, whatever kR and kT: one accumulator per output (no
// split chains, which would change the order), lane l taking columns begin + l + k·N
// for k ascending, the last partial vector zero-padded. Latency is hidden by the tile's
// kR·kT independent chains.
template <class E, std::size_t kR, std::size_t kT>
HWY_INLINE void DotTile(const MatrixView& w, std::int64_t r0, ColumnSpan span, const float* const* xs,
                        float* const* ys) {
  const DF d;
  const std::size_t n = hn::Lanes(d);
  const std::uint8_t* rows[kR];
  for (std::size_t r = 0; r < kR; ++r) rows[r] = w.row(r0 + static_cast<std::int64_t>(r));

  VF acc[kR][kT];
  for (std::size_t r = 0; r < kR; ++r)
    for (std::size_t t = 0; t < kT; ++t) acc[r][t] = hn::Zero(d);

  std::size_t c = span.begin;
  for (; c + n <= span.end; c += n) {
    VF xv[kT];
    for (std::size_t t = 0; t < kT; ++t) xv[t] = hn::LoadU(d, xs[t] + c);
    for (std::size_t r = 0; r < kR; ++r) {
      const VF wv = E::Load(d, rows[r], c);
      for (std::size_t t = 0; t < kT; ++t) acc[r][t] = hn::MulAdd(wv, xv[t], acc[r][t]);
    }
  }
  if (c < span.end) {
    const std::size_t rest = span.end - c;
    for (std::size_t r = 0; r < kR; ++r) {
      const VF wv = LoadTail<E>(d, rows[r], c, rest);
      for (std::size_t t = 0; t < kT; ++t) acc[r][t] = hn::MulAdd(wv, LoadFloatTail(d, xs[t] + c, rest), acc[r][t]);
    }
  }

  for (std::size_t r = 0; r < kR; ++r) {
    for (std::size_t t = 0; t < kT; ++t) {
      float& out = ys[t][r0 + static_cast<std::int64_t>(r)];
      out = (span.accumulate ? out : 0.0f) + ReduceSum(d, acc[r][t]);
    }
  }
}

// Tokens [t0, t0 + kT) of x and y as the tile's pointers.
template <std::size_t kT>
HWY_INLINE void TokenPointers(const MatrixView& w, const float* x, float* y, std::int64_t t0, const float** xs,
                              float** ys) {
  for (std::size_t i = 0; i < kT; ++i) {
    xs[i] = x + (t0 + static_cast<std::int64_t>(i)) * w.cols;
    ys[i] = y + (t0 + static_cast<std::int64_t>(i)) * w.rows;
  }
}

// One row tile (kR rows) against tokens [t0, t1) of x over a span of columns: tiles of
// kTileTokens, then one tile of the 1..kTileTokens-1 tokens left.
template <class E, std::size_t kR>
HWY_INLINE void RowTileOverTokens(const MatrixView& w, std::int64_t r0, ColumnSpan span, const float* x, float* y,
                                  std::int64_t t0, std::int64_t t1) {
  const float* xs[kTileTokens];
  float* ys[kTileTokens];
  std::int64_t t = t0;
  for (; t + static_cast<std::int64_t>(kTileTokens) <= t1; t += kTileTokens) {
    TokenPointers<kTileTokens>(w, x, y, t, xs, ys);
    DotTile<E, kR, kTileTokens>(w, r0, span, xs, ys);
  }
  static_assert(kTileTokens <= 4);
  switch (t1 - t) {
    case 1:
      TokenPointers<1>(w, x, y, t, xs, ys);
      return DotTile<E, kR, 1>(w, r0, span, xs, ys);
    case 2:
      TokenPointers<2>(w, x, y, t, xs, ys);
      return DotTile<E, kR, 2>(w, r0, span, xs, ys);
    case 3:
      if constexpr (kTileTokens > 3) {
        TokenPointers<3>(w, x, y, t, xs, ys);
        return DotTile<E, kR, 3>(w, r0, span, xs, ys);
      }
      return;
    default:
      return;
  }
}

// Decode streams each weight row once. Rows go 8 at a time: 8 independent FMA chains
// keep two FMA units of 4-cycle latency busy without splitting any row's sum into
// several chains (which would change its order), in 8 + 1 + 1 (+ a conversion temporary
// for F16/BF16) of AVX2's 16 vector registers. Then 4 rows, then single rows.
constexpr std::int64_t kDecodeRows = 8;

// Prompt blocking. Columns are cut into panels and tokens into chunks so that a chunk's
// activations for one panel (≈ kActivationBlockBytes) stay in L2 while every row tile
// of this thread passes over them: each weight panel then comes from memory once per
// chunk and serves all the chunk's tokens from cache, however long the rows are.
constexpr std::int64_t kActivationBlockBytes = 512 * 1024;

// Rows [r_begin, r_end) of y = x · Wᵀ for all n_tokens tokens.
template <class E>
HWY_NOINLINE void MatmulRows(const MatrixView& w, const float* x, std::int64_t n_tokens, float* y,
                             std::int64_t r_begin, std::int64_t r_end) {
  constexpr auto kR = static_cast<std::int64_t>(kTileRows);
  const auto cols = static_cast<std::size_t>(w.cols);
  const std::int64_t panel = std::clamp<std::int64_t>(w.cols, 1, kPanelCols);
  // The panels of a row; at least one: zero columns still write zeros.
  const auto for_each_panel = [&](auto&& fn) {
    std::size_t c0 = 0;
    do {
      const ColumnSpan span{c0, std::min(cols, c0 + static_cast<std::size_t>(panel)), c0 > 0};
      fn(span);
      c0 = span.end;
    } while (c0 < cols);
  };
  if (n_tokens == 1) {
    const float* xs[1] = {x};
    float* ys[1] = {y};
    std::int64_t r = r_begin;
    for (; r + kDecodeRows <= r_end; r += kDecodeRows)
      for_each_panel([&](ColumnSpan span) { DotTile<E, kDecodeRows, 1>(w, r, span, xs, ys); });
    for (; r + kR <= r_end; r += kR)
      for_each_panel([&](ColumnSpan span) { DotTile<E, kTileRows, 1>(w, r, span, xs, ys); });
    for (; r < r_end; ++r) for_each_panel([&](ColumnSpan span) { DotTile<E, 1, 1>(w, r, span, xs, ys); });
    return;
  }
  const std::int64_t chunk = std::max<std::int64_t>(
      2 * kTileTokens, kActivationBlockBytes / 4 / panel / kTileTokens * kTileTokens);
  for (std::int64_t t0 = 0; t0 < n_tokens; t0 += chunk) {
    const std::int64_t t1 = std::min(n_tokens, t0 + chunk);
    for_each_panel([&](ColumnSpan span) {
      std::int64_t r = r_begin;
      for (; r + kR <= r_end; r += kR) RowTileOverTokens<E, kTileRows>(w, r, span, x, y, t0, t1);
      for (; r < r_end; ++r) RowTileOverTokens<E, 1>(w, r, span, x, y, t0, t1);
    });
  }
}

template <class E>
HWY_NOINLINE void MatrixRowToFloats(const MatrixView& w, std::int64_t r, float* out) {
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
