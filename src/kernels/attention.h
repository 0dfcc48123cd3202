#pragma once
// Causal attention for a block of query vectors that share one KV head (grouped-query
// attention): the group's heads of one token, and of several consecutive tokens of a
// prompt. Each key and value row is read from the cache and converted to float once per
// block, then used by every query of the block that sees it.
//
// Arithmetic, per query (the same whether the query is alone or in a block, and
// however the block is ordered: block results equal single-query results bit for bit):
// - score_j = (Σ_i q[i]·k_j[i]) · scale, the sum one fused multiply-add chain per vector
//   lane over i ascending, then the lanes added;
// - softmax over score_0 .. score_{n-1} as vector_ops' softmax (max subtracted, Highway's Exp);
// - out[i] = Σ_j p_j·v_j[i] as one fused multiply-add chain over j ascending from 0
//   (what repeated axpy() into a zeroed row computes).
// Results differ between SIMD targets in the last bits (vector width changes the sums).
#include <cstddef>
#include <cstdint>

#include "formats/ggml_type.h"

namespace piquant {

// Floats of scratch attend() needs for n_q queries of head_dim floats that see at most
// max_visible keys: n_q · max_visible scores plus a head_dim-sized part (what
// attend_scratch_floats(n_q, 0, head_dim) returns).
std::size_t attend_scratch_floats(std::int64_t n_q, std::int64_t max_visible, std::int64_t head_dim);

// For each query b < n_q: out[b] (head_dim floats) = softmax over keys j < n_visible[b] of
// (q[b] · k_j) · scale, weighting the value rows v_j. Key row j starts at
// k_rows + j · row_stride_bytes (value rows likewise), head_dim elements of kv_type (F32,
// F16 or BF16). n_visible[b] ≥ 1. scratch holds at least
// attend_scratch_floats(n_q, max n_visible, head_dim) floats; out rows must not overlap
// the queries or the scratch. Throws Error on bad arguments.
// lse (n_q floats, optional): lse[b] = ln Σ_j exp(score_j) over query b's visible keys,
// formed in double as max + ln(sum) from the max and Σ exp(score_j − max) the softmax
// used, rounded once to float, so exp(score_j − lse[b]) gives back the probabilities
// (to roundoff): what attend_backward() needs. Passing it changes no output bit.
void attend(const float* const* q, const std::int64_t* n_visible, std::int64_t n_q, const void* k_rows, const void* v_rows,
            std::size_t row_stride_bytes, GgmlType kv_type, std::int64_t head_dim, float scale, float* scratch,
            std::size_t scratch_floats, float* const* out, float* lse = nullptr);

// The backward of attend() for n_q queries sharing one KV head, with F32 key and value
// rows (row j at k_rows + j · row_stride_floats, likewise v_rows), given the forward's
// out[b] and lse[b] and dout[b] = ∂L/∂out[b] (head_dim floats each):
//   dq[b] = scale · Σ_j dS_bj · k_j                 (written)
//   dk_j += scale · Σ_b dS_bj · q_b                 (added; row j at dk_rows + j · grad_row_stride_floats)
//   dv_j += Σ_b P_bj · dout_b                       (added; likewise)
// with P_bj = exp(scale · q_b·k_j − lse[b]) for j < n_visible[b] (n_visible[b] ≥ 1) and
// dS_bj = P_bj · (dout_b·v_j − dout_b·out_b).
// Arithmetic: score_bj as attend() forms it (one fused multiply-add chain per vector lane
// over i ascending, zero-padded tail, lanes added, times scale), then exp(score − lse) by
// Highway's Exp; dout_b·v_j and dout_b·out_b as one such chain each; then, in the order b
// ascending, then j ascending: dq[b] += (scale·dS_bj)·k_j, dk_j += (scale·dS_bj)·q_b and
// dv_j += P_bj·dout_b, one fused multiply-add per element each. Pass all queries of one KV
// head (every token × the head's query group) in one call: the dk/dv rows then accumulate
// in one thread in that fixed order (no atomics; the result does not depend on threads).
// dq rows, dk rows and dv rows must not overlap each other or any input. Throws Error on
// bad arguments. Results differ between SIMD targets in the last bits.
void attend_backward(const float* const* q, const std::int64_t* n_visible, std::int64_t n_q, const float* k_rows,
                     const float* v_rows, std::size_t row_stride_floats, std::int64_t head_dim, float scale,
                     const float* const* out, const float* const* dout, const float* lse, float* const* dq,
                     float* dk_rows, float* dv_rows, std::size_t grad_row_stride_floats);

namespace reference {
// The definition in double: scores, softmax and weighted sum, rounded to float at the end.
void attend(const float* const* q, const std::int64_t* n_visible, std::int64_t n_q, const void* k_rows, const void* v_rows,
            std::size_t row_stride_bytes, GgmlType kv_type, std::int64_t head_dim, float scale, float* const* out);

// In double throughout (queries, rows, results and arithmetic), for the gradient tests:
// attend() on double rows (row j at k_rows + j · row_stride), and its backward straight
// from the calculus, the softmax (and out) recomputed from scratch rather than taken from
// a forward; dq written, dk/dv rows (grad_row_stride apart) added to, as attend_backward().
void attend(const double* const* q, const std::int64_t* n_visible, std::int64_t n_q, const double* k_rows,
            const double* v_rows, std::size_t row_stride, std::int64_t head_dim, double scale, double* const* out);
void attend_backward(const double* const* q, const std::int64_t* n_visible, std::int64_t n_q, const double* k_rows,
                     const double* v_rows, std::size_t row_stride, std::int64_t head_dim, double scale,
                     const double* const* dout, double* const* dq, double* dk_rows, double* dv_rows,
                     std::size_t grad_row_stride);
}  // namespace reference

}  // namespace piquant
