#pragma once
// Every buffer a LlamaContext holds, sized in one place. The constructor allocates
// exactly these sizes, and the memory check before loading (LlamaContext::scratch_bytes,
// kv_cache_bytes) sums the same numbers without allocating anything.
//
// Counts are 64-bit and saturate at UINT64_MAX instead of wrapping, so an absurd
// context length gives a size the memory check refuses, never a small wrapped one.
#include <cstdint>

#include "formats/llama_params.h"

namespace piquant {

struct ContextOptions;  // model/llama_context.h

struct ContextPlan {
  std::uint64_t n_ctx = 0;       // positions the KV cache holds
  std::uint64_t n_batch = 0;     // tokens per forward step: min(n_batch, n_ctx)
  std::uint64_t threads = 0;     // the pool's threads
  std::uint64_t mlp_tokens = 0;  // tokens per MLP step: min(n_batch, kMlpTokensPerStep)

  // Floats, n_batch rows each (forward_blocks.h says what each holds).
  std::uint64_t x = 0, xn = 0, q = 0, k = 0, v = 0, attn = 0, proj = 0;
  // One region that the MLP and attention use at different times. While the MLP runs it
  // holds gate and up (mlp_gate floats each: mlp_tokens × the widest n_ff, one after the
  // other); while attention runs, thread i's attend() scratch of attend_per_thread floats
  // at i × attend_per_thread. work = max(2 · mlp_gate, threads · attend_per_thread).
  std::uint64_t mlp_gate = 0;
  std::uint64_t attend_per_thread = 0;
  std::uint64_t work = 0;
  std::uint64_t logits = 0;  // n_vocab: the last token's (eval with all_logits grows it)

  // Bytes of matmul's quantized copy of its input (one, reused, at its largest). matmul
  // holds it per calling thread, not the context; it is here for the memory check.
  std::uint64_t q8_bytes = 0;

  std::uint64_t kv_row_bytes = 0;    // K (or V) of one position in one layer
  std::uint64_t kv_cache_bytes = 0;  // K and V of every layer: 2 × n_layer × n_ctx × kv_row_bytes

  // The float buffers above, in bytes: what the context itself allocates besides the cache.
  std::uint64_t context_scratch_bytes() const;
  // context_scratch_bytes() + q8_bytes: activations and logits, for the memory check.
  std::uint64_t scratch_bytes() const;
};

// The plan for a context over a model with these parameters and options, on `threads`
// threads. Negative sizes count as 0 (the constructor rejects them before planning).
ContextPlan plan_context(const LlamaParams& params, const ContextOptions& options, std::uint64_t threads);

}  // namespace piquant
