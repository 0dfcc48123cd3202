#include "kernels/attention.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>

#include "kernels/simd_config.h"
// clang-format off
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/attention.cpp"
#include "hwy/foreach_target.h"
#include "hwy/highway.h"
// clang-format on
#include "hwy/contrib/math/math-inl.h"
#include "kernels/element_io-inl.h"
#include "kernels/softmax-inl.h"

// Shared by every target's code and the dispatch below (this file is read once per target).
#ifndef PIQUANT_KERNELS_ATTENTION_LAYOUT_
#define PIQUANT_KERNELS_ATTENTION_LAYOUT_
namespace piquant::attention_layout {
// Key (or value) rows converted to float at a time: 16 rows of 128 floats are 8 KiB, so
// they stay in L1 while every query tile of the block passes over them.
constexpr std::size_t kRowsPerChunk = 16;
// Scratch rows are padded to a multiple of every target's vector (≤ 64 floats): the
// inner loops then run whole vectors over zero padding instead of tails.
constexpr std::size_t kPadFloats = 64;
inline std::size_t padded(std::size_t head_dim) { return (head_dim + kPadFloats - 1) / kPadFloats * kPadFloats; }
}  // namespace piquant::attention_layout
#endif

HWY_BEFORE_NAMESPACE();
namespace piquant {
namespace HWY_NAMESPACE {

// Register tiles: kTileQueries queries × kScoreKeys keys of dot products, and
// kTileQueries queries × kOutVectors vectors of output sums. With 16 vector registers
// (AVX2, SSE4) that is 8 accumulators plus the operands; with 32 (AVX-512, AArch64) 16.
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL || HWY_ARCH_ARM_A64
constexpr std::size_t kScoreKeys = 4;
constexpr std::size_t kOutVectors = 4;
#else
constexpr std::size_t kScoreKeys = 2;
constexpr std::size_t kOutVectors = 2;
#endif
constexpr std::size_t kTileQueries = 4;

// The scratch of one attend() call, rows `dp` floats apart (head_dim rounded up to
// whole vectors of this target, zero-padded).
struct Block {
  std::size_t n_q, dp, max_visible;
  const std::int64_t* n_visible;
  float* q;       // n_q × dp: the queries
  float* acc;     // n_q × dp: the output sums
  float* rows;    // kRowsPerChunk × dp: the converted key or value rows of one chunk
  float* scores;  // n_q × max_visible: scores, then probabilities
};

// Calls f(integral_constant<kQ>) with kQ = n (1 ≤ n ≤ kTileQueries): a tile's query
// count as a compile-time size.
template <class F>
HWY_INLINE void WithTileQueries(std::size_t n, F&& f) {
  static_assert(kTileQueries == 4);
  switch (n) {
    case 1: return f(std::integral_constant<std::size_t, 1>());
    case 2: return f(std::integral_constant<std::size_t, 2>());
    case 3: return f(std::integral_constant<std::size_t, 3>());
    default: return f(std::integral_constant<std::size_t, 4>());
  }
}

// Rows [first, first + n) of the cache (`stride` bytes apart) as floats into b.rows,
// zero-padded to b.dp.
template <class E>
HWY_INLINE void ConvertRows(const Block& b, const std::uint8_t* cache, std::size_t stride, std::size_t first, std::size_t n,
                            std::size_t head_dim) {
  const DF d;
  const std::size_t N = hn::Lanes(d);
  for (std::size_t r = 0; r < n; ++r) {
    const std::uint8_t* row = cache + (first + r) * stride;
    float* out = b.rows + r * b.dp;
    std::size_t i = 0;
    for (; i + N <= head_dim; i += N) hn::StoreU(E::Load(d, row, i), d, out + i);
    for (; i < b.dp; i += N) hn::StoreU(i < head_dim ? LoadTail<E>(d, row, i, head_dim - i) : hn::Zero(d), d, out + i);
  }
}

// scores[q0 + a][j + c] = (query q0 + a · key j + c) · scale for a < kQ, c < kK; key j is
// row j - j0 of the chunk.
template <std::size_t kQ, std::size_t kK>
HWY_INLINE void ScoreTile(const Block& b, std::size_t q0, std::size_t j0, std::size_t j, float scale) {
  const DF d;
  const std::size_t N = hn::Lanes(d);
  const float* keys = b.rows + (j - j0) * b.dp;
  VF acc[kQ][kK];
  for (std::size_t a = 0; a < kQ; ++a)
    for (std::size_t c = 0; c < kK; ++c) acc[a][c] = hn::Zero(d);
  for (std::size_t i = 0; i < b.dp; i += N) {
    VF kv[kK];
    for (std::size_t c = 0; c < kK; ++c) kv[c] = hn::LoadU(d, keys + c * b.dp + i);
    for (std::size_t a = 0; a < kQ; ++a) {
      const VF qv = hn::LoadU(d, b.q + (q0 + a) * b.dp + i);
      for (std::size_t c = 0; c < kK; ++c) acc[a][c] = hn::MulAdd(qv, kv[c], acc[a][c]);
    }
  }
  for (std::size_t a = 0; a < kQ; ++a)
    for (std::size_t c = 0; c < kK; ++c) b.scores[(q0 + a) * b.max_visible + j + c] = ReduceSum(d, acc[a][c]) * scale;
}

// Scores of queries [q0, q0 + kQ) for keys [j_begin, j_end) of the chunk starting at key j0.
template <std::size_t kQ>
HWY_INLINE void ScoreKeys(const Block& b, std::size_t q0, std::size_t j0, std::size_t j_begin, std::size_t j_end, float scale) {
  std::size_t j = j_begin;
  for (; j + kScoreKeys <= j_end; j += kScoreKeys) ScoreTile<kQ, kScoreKeys>(b, q0, j0, j, scale);
  for (; j < j_end; ++j) ScoreTile<kQ, 1>(b, q0, j0, j, scale);
}

// acc[q0 + a][i .. i + kV vectors) += p[q0 + a][j] · value j, for keys j_begin .. j_end - 1
// in order (value j is row j - j0 of the chunk).
template <std::size_t kQ, std::size_t kV>
HWY_INLINE void AccumulateTile(const Block& b, std::size_t q0, std::size_t i, std::size_t j0, std::size_t j_begin,
                               std::size_t j_end) {
  const DF d;
  const std::size_t N = hn::Lanes(d);
  VF acc[kQ][kV];
  for (std::size_t a = 0; a < kQ; ++a)
    for (std::size_t c = 0; c < kV; ++c) acc[a][c] = hn::LoadU(d, b.acc + (q0 + a) * b.dp + i + c * N);
  for (std::size_t j = j_begin; j < j_end; ++j) {
    const float* value = b.rows + (j - j0) * b.dp + i;
    VF vv[kV];
    for (std::size_t c = 0; c < kV; ++c) vv[c] = hn::LoadU(d, value + c * N);
    for (std::size_t a = 0; a < kQ; ++a) {
      const VF p = hn::Set(d, b.scores[(q0 + a) * b.max_visible + j]);
      for (std::size_t c = 0; c < kV; ++c) acc[a][c] = hn::MulAdd(p, vv[c], acc[a][c]);
    }
  }
  for (std::size_t a = 0; a < kQ; ++a)
    for (std::size_t c = 0; c < kV; ++c) hn::StoreU(acc[a][c], d, b.acc + (q0 + a) * b.dp + i + c * N);
}

// The weighted values of keys [j_begin, j_end) added to queries [q0, q0 + kQ).
template <std::size_t kQ>
HWY_INLINE void AccumulateKeys(const Block& b, std::size_t q0, std::size_t j0, std::size_t j_begin, std::size_t j_end) {
  const DF d;
  const std::size_t N = hn::Lanes(d);
  std::size_t i = 0;
  for (; i + kOutVectors * N <= b.dp; i += kOutVectors * N) AccumulateTile<kQ, kOutVectors>(b, q0, i, j0, j_begin, j_end);
  for (; i < b.dp; i += N) AccumulateTile<kQ, 1>(b, q0, i, j0, j_begin, j_end);
}

// Runs step(q0, kQ-constant, j_begin, j_end) over the block's query tiles for the keys
// [j0, j1) of one chunk that each query sees: the keys all of a tile's queries see as one
// tile, the rest (causal edges) query by query.
template <class Step>
HWY_INLINE void ForEachTile(const Block& b, std::size_t j0, std::size_t j1, Step&& step) {
  for (std::size_t q0 = 0; q0 < b.n_q; q0 += kTileQueries) {
    const std::size_t n = std::min(kTileQueries, b.n_q - q0);
    std::size_t shared = j1;
    for (std::size_t a = 0; a < n; ++a) shared = std::min(shared, static_cast<std::size_t>(b.n_visible[q0 + a]));
    if (j0 < shared) WithTileQueries(n, [&](auto kQ) { step(q0, kQ, j0, shared); });
    for (std::size_t a = 0; a < n; ++a) {
      const std::size_t begin = std::max(j0, shared);
      const std::size_t end = std::min(j1, static_cast<std::size_t>(b.n_visible[q0 + a]));
      if (begin < end) step(q0 + a, std::integral_constant<std::size_t, 1>(), begin, end);
    }
  }
}


template <class E>
HWY_INLINE void AttendImpl(const float* const* q, const std::int64_t* n_visible, std::size_t n_q, const std::uint8_t* k_rows,
                           const std::uint8_t* v_rows, std::size_t stride, std::size_t head_dim, float scale, float* scratch,
                           float* const* out, float* lse) {
  using attention_layout::kRowsPerChunk;
  const DF d;
  const std::size_t N = hn::Lanes(d);
  Block b;
  b.n_q = n_q;
  b.dp = (head_dim + N - 1) / N * N;
  b.n_visible = n_visible;
  b.max_visible = static_cast<std::size_t>(*std::max_element(n_visible, n_visible + n_q));
  b.q = scratch;
  b.acc = b.q + n_q * b.dp;
  b.rows = b.acc + n_q * b.dp;
  b.scores = b.rows + kRowsPerChunk * b.dp;

  for (std::size_t a = 0; a < n_q; ++a) {
    std::size_t i = 0;
    for (; i + N <= head_dim; i += N) hn::StoreU(hn::LoadU(d, q[a] + i), d, b.q + a * b.dp + i);
    for (; i < b.dp; i += N)
      hn::StoreU(i < head_dim ? LoadFloatTail(d, q[a] + i, head_dim - i) : hn::Zero(d), d, b.q + a * b.dp + i);
  }

  for (std::size_t j0 = 0; j0 < b.max_visible; j0 += kRowsPerChunk) {
    const std::size_t j1 = std::min(j0 + kRowsPerChunk, b.max_visible);
    ConvertRows<E>(b, k_rows, stride, j0, j1 - j0, head_dim);
    ForEachTile(b, j0, j1, [&](std::size_t q0, auto kQ, std::size_t begin, std::size_t end) {
      ScoreKeys<decltype(kQ)::value>(b, q0, j0, begin, end, scale);
    });
  }
  for (std::size_t a = 0; a < n_q; ++a) {
    const SoftmaxStats stats = SoftmaxInPlace(b.scores + a * b.max_visible, static_cast<std::size_t>(n_visible[a]));
    if (lse != nullptr) lse[a] = static_cast<float>(static_cast<double>(stats.max) + std::log(static_cast<double>(stats.sum)));
  }

  std::fill(b.acc, b.acc + n_q * b.dp, 0.0f);
  for (std::size_t j0 = 0; j0 < b.max_visible; j0 += kRowsPerChunk) {
    const std::size_t j1 = std::min(j0 + kRowsPerChunk, b.max_visible);
    ConvertRows<E>(b, v_rows, stride, j0, j1 - j0, head_dim);
    ForEachTile(b, j0, j1, [&](std::size_t q0, auto kQ, std::size_t begin, std::size_t end) {
      AccumulateKeys<decltype(kQ)::value>(b, q0, j0, begin, end);
    });
  }
  for (std::size_t a = 0; a < n_q; ++a) std::memcpy(out[a], b.acc + a * b.dp, head_dim * sizeof(float));
}

void Attend(const float* const* q, const std::int64_t* n_visible, std::int64_t n_q, const void* k_rows, const void* v_rows,
            std::size_t stride, GgmlType type, std::int64_t head_dim, float scale, float* scratch, float* const* out,
            float* lse) {
  const auto* k = static_cast<const std::uint8_t*>(k_rows);
  const auto* v = static_cast<const std::uint8_t*>(v_rows);
  const auto nq = static_cast<std::size_t>(n_q);
  const auto dim = static_cast<std::size_t>(head_dim);
  switch (type) {
    case GgmlType::F16: return AttendImpl<F16Elements>(q, n_visible, nq, k, v, stride, dim, scale, scratch, out, lse);
    case GgmlType::BF16: return AttendImpl<BF16Elements>(q, n_visible, nq, k, v, stride, dim, scale, scratch, out, lse);
    default: return AttendImpl<F32Elements>(q, n_visible, nq, k, v, stride, dim, scale, scratch, out, lse);  // checked by the caller
  }
}

// Σ a[i]·b[i], i < n: one fused multiply-add chain per lane over whole vectors and a
// zero-padded tail, then the lanes added (ScoreTile's arithmetic for one query and key).
HWY_INLINE float DotChain(const float* a, const float* b, std::size_t n) {
  const DF d;
  const std::size_t N = hn::Lanes(d);
  VF acc = hn::Zero(d);
  std::size_t i = 0;
  for (; i + N <= n; i += N) acc = hn::MulAdd(hn::LoadU(d, a + i), hn::LoadU(d, b + i), acc);
  if (i < n) acc = hn::MulAdd(LoadFloatTail(d, a + i, n - i), LoadFloatTail(d, b + i, n - i), acc);
  return ReduceSum(d, acc);
}

void AttendBackward(const float* const* q, const std::int64_t* n_visible, std::int64_t n_q, const float* k_rows,
                    const float* v_rows, std::size_t stride, std::int64_t head_dim, float scale, const float* const* out,
                    const float* const* dout, const float* lse, float* const* dq, float* dk_rows, float* dv_rows,
                    std::size_t grad_stride) {
  const DF d;
  const std::size_t N = hn::Lanes(d), n = static_cast<std::size_t>(head_dim);
  for (std::int64_t b = 0; b < n_q; ++b) {
    const float* qb = q[b];
    const float* gb = dout[b];
    float* dqb = dq[b];
    const float delta = DotChain(gb, out[b], n);  // dout_b · out_b
    std::fill(dqb, dqb + n, 0.0f);
    for (std::int64_t j = 0; j < n_visible[b]; ++j) {
      const float* kj = k_rows + static_cast<std::size_t>(j) * stride;
      const float* vj = v_rows + static_cast<std::size_t>(j) * stride;
      float* dkj = dk_rows + static_cast<std::size_t>(j) * grad_stride;
      float* dvj = dv_rows + static_cast<std::size_t>(j) * grad_stride;
      // The score's chain and dout·v_j's in one pass over the rows.
      VF score_acc = hn::Zero(d), dp_acc = hn::Zero(d);
      std::size_t i = 0;
      for (; i + N <= n; i += N) {
        score_acc = hn::MulAdd(hn::LoadU(d, qb + i), hn::LoadU(d, kj + i), score_acc);
        dp_acc = hn::MulAdd(hn::LoadU(d, gb + i), hn::LoadU(d, vj + i), dp_acc);
      }
      if (i < n) {
        score_acc = hn::MulAdd(LoadFloatTail(d, qb + i, n - i), LoadFloatTail(d, kj + i, n - i), score_acc);
        dp_acc = hn::MulAdd(LoadFloatTail(d, gb + i, n - i), LoadFloatTail(d, vj + i, n - i), dp_acc);
      }
      const float score = ReduceSum(d, score_acc) * scale;
      const float p = hn::GetLane(hn::Exp(d, hn::Set(d, score - lse[b])));
      const float ds = p * (ReduceSum(d, dp_acc) - delta);
      const VF a = hn::Set(d, scale * ds), pv = hn::Set(d, p);
      for (i = 0; i + N <= n; i += N) {
        const VF kv = hn::LoadU(d, kj + i), qv = hn::LoadU(d, qb + i), gv = hn::LoadU(d, gb + i);
        hn::StoreU(hn::MulAdd(a, kv, hn::LoadU(d, dqb + i)), d, dqb + i);
        hn::StoreU(hn::MulAdd(a, qv, hn::LoadU(d, dkj + i)), d, dkj + i);
        hn::StoreU(hn::MulAdd(pv, gv, hn::LoadU(d, dvj + i)), d, dvj + i);
      }
      if (i < n) {
        const std::size_t m = n - i;
        const VF kv = LoadFloatTail(d, kj + i, m), qv = LoadFloatTail(d, qb + i, m), gv = LoadFloatTail(d, gb + i, m);
        StoreFloatTail(d, hn::MulAdd(a, kv, LoadFloatTail(d, dqb + i, m)), dqb + i, m);
        StoreFloatTail(d, hn::MulAdd(a, qv, LoadFloatTail(d, dkj + i, m)), dkj + i, m);
        StoreFloatTail(d, hn::MulAdd(pv, gv, LoadFloatTail(d, dvj + i, m)), dvj + i, m);
      }
    }
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace piquant
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/half.h"

namespace piquant {

HWY_EXPORT(Attend);
HWY_EXPORT(AttendBackward);

namespace {

std::size_t element_bytes(GgmlType type) {
  if (type == GgmlType::F32) return 4;
  if (type == GgmlType::F16 || type == GgmlType::BF16) return 2;
  throw Error("attend: KV cache element type " + ggml_type_name(type) + " is not supported (F32, F16, BF16)");
}

// The arguments both attend() and reference::attend() take, checked alike.
void check_arguments(const float* const* q, const std::int64_t* n_visible, std::int64_t n_q, const void* k_rows,
                     const void* v_rows, std::size_t row_stride_bytes, GgmlType kv_type, std::int64_t head_dim,
                     float* const* out) {
  const std::size_t element = element_bytes(kv_type);
  if (n_q < 0) throw Error("attend: negative query count " + std::to_string(n_q));
  if (head_dim <= 0) throw Error("attend: head dimension " + std::to_string(head_dim) + " is not positive");
  if (n_q == 0) return;
  if (q == nullptr || n_visible == nullptr || out == nullptr || k_rows == nullptr || v_rows == nullptr)
    throw Error("attend: null query, visible-count, output or cache pointer");
  if (row_stride_bytes < static_cast<std::size_t>(head_dim) * element)
    throw Error("attend: row stride of " + std::to_string(row_stride_bytes) + " bytes is shorter than a head of " +
                std::to_string(head_dim) + " " + ggml_type_name(kv_type) + " elements");
  for (std::int64_t i = 0; i < n_q; ++i) {
    if (n_visible[i] < 1)
      throw Error("attend: query " + std::to_string(i) + " sees " + std::to_string(n_visible[i]) + " keys (at least 1)");
    if (q[i] == nullptr || out[i] == nullptr) throw Error("attend: query or output " + std::to_string(i) + " is null");
  }
}

// The arguments attend_backward() and reference::attend_backward() share (T: float or double).
template <class T>
void check_backward_arguments(const T* const* q, const std::int64_t* n_visible, std::int64_t n_q, const T* k_rows,
                              const T* v_rows, std::size_t row_stride, std::int64_t head_dim, const T* const* dout,
                              T* const* dq, T* dk_rows, T* dv_rows, std::size_t grad_row_stride, const char* what) {
  const std::string where(what);
  if (n_q < 0) throw Error(where + ": negative query count " + std::to_string(n_q));
  if (head_dim <= 0) throw Error(where + ": head dimension " + std::to_string(head_dim) + " is not positive");
  if (n_q == 0) return;
  if (q == nullptr || n_visible == nullptr || dout == nullptr || dq == nullptr || k_rows == nullptr ||
      v_rows == nullptr || dk_rows == nullptr || dv_rows == nullptr)
    throw Error(where + ": null query, visible-count, gradient or row pointer");
  if (row_stride < static_cast<std::size_t>(head_dim) || grad_row_stride < static_cast<std::size_t>(head_dim))
    throw Error(where + ": row strides of " + std::to_string(row_stride) + " and " + std::to_string(grad_row_stride) +
                " elements, shorter than a head of " + std::to_string(head_dim));
  for (std::int64_t i = 0; i < n_q; ++i) {
    if (n_visible[i] < 1)
      throw Error(where + ": query " + std::to_string(i) + " sees " + std::to_string(n_visible[i]) + " keys (at least 1)");
    if (q[i] == nullptr || dout[i] == nullptr || dq[i] == nullptr)
      throw Error(where + ": query, gradient or dq " + std::to_string(i) + " is null");
  }
}

}  // namespace

std::size_t attend_scratch_floats(std::int64_t n_q, std::int64_t max_visible, std::int64_t head_dim) {
  if (n_q < 0 || max_visible < 0 || head_dim < 0) throw Error("attend_scratch_floats: negative size");
  const auto nq = static_cast<std::size_t>(n_q);
  return nq * static_cast<std::size_t>(max_visible) +
         (2 * nq + attention_layout::kRowsPerChunk) * attention_layout::padded(static_cast<std::size_t>(head_dim));
}

void attend(const float* const* q, const std::int64_t* n_visible, std::int64_t n_q, const void* k_rows, const void* v_rows,
            std::size_t row_stride_bytes, GgmlType kv_type, std::int64_t head_dim, float scale, float* scratch,
            std::size_t scratch_floats, float* const* out, float* lse) {
  check_arguments(q, n_visible, n_q, k_rows, v_rows, row_stride_bytes, kv_type, head_dim, out);
  if (n_q == 0) return;
  const std::size_t need = attend_scratch_floats(n_q, *std::max_element(n_visible, n_visible + n_q), head_dim);
  if (scratch == nullptr || scratch_floats < need)
    throw Error("attend: scratch of " + std::to_string(scratch_floats) + " floats, " + std::to_string(need) + " needed");
  HWY_DYNAMIC_DISPATCH(Attend)(q, n_visible, n_q, k_rows, v_rows, row_stride_bytes, kv_type, head_dim, scale, scratch, out,
                               lse);
}

void attend_backward(const float* const* q, const std::int64_t* n_visible, std::int64_t n_q, const float* k_rows,
                     const float* v_rows, std::size_t row_stride_floats, std::int64_t head_dim, float scale,
                     const float* const* out, const float* const* dout, const float* lse, float* const* dq,
                     float* dk_rows, float* dv_rows, std::size_t grad_row_stride_floats) {
  check_backward_arguments(q, n_visible, n_q, k_rows, v_rows, row_stride_floats, head_dim, dout, dq, dk_rows, dv_rows,
                           grad_row_stride_floats, "attend_backward");
  if (n_q == 0) return;
  if (out == nullptr || lse == nullptr) throw Error("attend_backward: null output or log-sum-exp pointer");
  for (std::int64_t i = 0; i < n_q; ++i)
    if (out[i] == nullptr) throw Error("attend_backward: output " + std::to_string(i) + " is null");
  HWY_DYNAMIC_DISPATCH(AttendBackward)(q, n_visible, n_q, k_rows, v_rows, row_stride_floats, head_dim, scale, out, dout,
                                       lse, dq, dk_rows, dv_rows, grad_row_stride_floats);
}

namespace reference {

namespace {

// Query b's probabilities P_j (j < n) and output in double, from scratch.
void attend_one(const double* q, std::int64_t n, const double* k_rows, const double* v_rows, std::size_t row_stride,
                std::int64_t head_dim, double scale, std::vector<double>& p, std::vector<double>& out) {
  p.assign(static_cast<std::size_t>(n), 0.0);
  double max = -std::numeric_limits<double>::infinity();
  for (std::int64_t j = 0; j < n; ++j) {
    double s = 0;
    for (std::int64_t i = 0; i < head_dim; ++i) s += q[i] * k_rows[static_cast<std::size_t>(j) * row_stride + i];
    p[static_cast<std::size_t>(j)] = s * scale;
    max = std::max(max, s * scale);
  }
  double sum = 0;
  for (double& x : p) sum += (x = std::exp(x - max));
  for (double& x : p) x /= sum;
  out.assign(static_cast<std::size_t>(head_dim), 0.0);
  for (std::int64_t i = 0; i < head_dim; ++i) {
    double o = 0;
    for (std::int64_t j = 0; j < n; ++j) o += p[static_cast<std::size_t>(j)] * v_rows[static_cast<std::size_t>(j) * row_stride + i];
    out[static_cast<std::size_t>(i)] = o;
  }
}

}  // namespace

void attend(const float* const* q, const std::int64_t* n_visible, std::int64_t n_q, const void* k_rows, const void* v_rows,
            std::size_t row_stride_bytes, GgmlType kv_type, std::int64_t head_dim, float scale, float* const* out) {
  check_arguments(q, n_visible, n_q, k_rows, v_rows, row_stride_bytes, kv_type, head_dim, out);
  if (n_q == 0) return;
  const std::size_t element = element_bytes(kv_type);
  const auto value = [&](const void* rows, std::int64_t j, std::int64_t i) -> double {
    const auto* p = static_cast<const std::uint8_t*>(rows) + static_cast<std::size_t>(j) * row_stride_bytes +
                    static_cast<std::size_t>(i) * element;
    if (kv_type == GgmlType::F32) {
      float f;
      std::memcpy(&f, p, 4);
      return f;
    }
    std::uint16_t h;
    std::memcpy(&h, p, 2);
    return kv_type == GgmlType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
  };
  // The rows every query may see, decoded to double (head_dim apart).
  const std::int64_t rows = *std::max_element(n_visible, n_visible + n_q);
  const auto dim = static_cast<std::size_t>(head_dim);
  std::vector<double> k(static_cast<std::size_t>(rows) * dim), v(k.size()), qd(dim), p, o;
  for (std::int64_t j = 0; j < rows; ++j)
    for (std::int64_t i = 0; i < head_dim; ++i) {
      k[static_cast<std::size_t>(j) * dim + static_cast<std::size_t>(i)] = value(k_rows, j, i);
      v[static_cast<std::size_t>(j) * dim + static_cast<std::size_t>(i)] = value(v_rows, j, i);
    }
  for (std::int64_t b = 0; b < n_q; ++b) {
    std::copy(q[b], q[b] + head_dim, qd.begin());
    attend_one(qd.data(), n_visible[b], k.data(), v.data(), dim, head_dim, scale, p, o);
    for (std::size_t i = 0; i < dim; ++i) out[b][i] = static_cast<float>(o[i]);
  }
}

void attend(const double* const* q, const std::int64_t* n_visible, std::int64_t n_q, const double* k_rows,
            const double* v_rows, std::size_t row_stride, std::int64_t head_dim, double scale, double* const* out) {
  if (n_q < 0 || head_dim <= 0 || row_stride < static_cast<std::size_t>(head_dim))
    throw Error("reference::attend: bad query count, head dimension or row stride");
  std::vector<double> p, o;
  for (std::int64_t b = 0; b < n_q; ++b) {
    if (n_visible[b] < 1) throw Error("reference::attend: a query sees no key");
    attend_one(q[b], n_visible[b], k_rows, v_rows, row_stride, head_dim, scale, p, o);
    std::copy(o.begin(), o.end(), out[b]);
  }
}

// out_b = Σ_j P_bj·v_j, P_b = softmax(s_b), s_bj = scale·q_b·k_j. With g = dout_b:
// ∂L/∂P_bj = g·v_j; through the softmax ∂L/∂s_bj = P_bj·(g·v_j − Σ_l P_bl·g·v_l) = P_bj·(g·v_j − g·out_b) = dS_bj;
// then ∂L/∂q_b = scale·Σ_j dS_bj·k_j, ∂L/∂k_j = scale·Σ_b dS_bj·q_b, ∂L/∂v_j = Σ_b P_bj·g.
void attend_backward(const double* const* q, const std::int64_t* n_visible, std::int64_t n_q, const double* k_rows,
                     const double* v_rows, std::size_t row_stride, std::int64_t head_dim, double scale,
                     const double* const* dout, double* const* dq, double* dk_rows, double* dv_rows,
                     std::size_t grad_row_stride) {
  check_backward_arguments(q, n_visible, n_q, k_rows, v_rows, row_stride, head_dim, dout, dq, dk_rows, dv_rows,
                           grad_row_stride, "reference::attend_backward");
  const auto dim = static_cast<std::size_t>(head_dim);
  std::vector<double> p, o;
  for (std::int64_t b = 0; b < n_q; ++b) {
    attend_one(q[b], n_visible[b], k_rows, v_rows, row_stride, head_dim, scale, p, o);
    double g_out = 0;
    for (std::size_t i = 0; i < dim; ++i) g_out += dout[b][i] * o[i];
    std::fill(dq[b], dq[b] + dim, 0.0);
    for (std::int64_t j = 0; j < n_visible[b]; ++j) {
      const double* kj = k_rows + static_cast<std::size_t>(j) * row_stride;
      const double* vj = v_rows + static_cast<std::size_t>(j) * row_stride;
      double g_v = 0;
      for (std::size_t i = 0; i < dim; ++i) g_v += dout[b][i] * vj[i];
      const double pj = p[static_cast<std::size_t>(j)], ds = pj * (g_v - g_out);
      for (std::size_t i = 0; i < dim; ++i) {
        dq[b][i] += scale * ds * kj[i];
        dk_rows[static_cast<std::size_t>(j) * grad_row_stride + i] += scale * ds * q[b][i];
        dv_rows[static_cast<std::size_t>(j) * grad_row_stride + i] += pj * dout[b][i];
      }
    }
  }
}

}  // namespace reference

}  // namespace piquant
#endif  // HWY_ONCE
