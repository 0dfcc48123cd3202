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
void attend(const float* const* q, const std::int64_t* n_visible, std::int64_t n_q, const void* k_rows, const void* v_rows,
            std::size_t row_stride_bytes, GgmlType kv_type, std::int64_t head_dim, float scale, float* scratch,
            std::size_t scratch_floats, float* const* out);

namespace reference {
// The definition in double: scores, softmax and weighted sum, rounded to float at the end.
void attend(const float* const* q, const std::int64_t* n_visible, std::int64_t n_q, const void* k_rows, const void* v_rows,
            std::size_t row_stride_bytes, GgmlType kv_type, std::int64_t head_dim, float scale, float* const* out);
}  // namespace reference

}  // namespace piquant
