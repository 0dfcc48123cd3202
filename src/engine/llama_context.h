#pragma once
// One sequence being evaluated: the KV cache and scratch buffers for a model,
// sized from the context length asked for, not the model's maximum. The forward
// pass: embed → per layer (RMSNorm → Q/K/V → RoPE → causal GQA attention over the
// cache → output projection → residual; RMSNorm → SwiGLU MLP → residual) → RMSNorm →
// logits. Several tokens at once run as matrix-matrix products (prompt), one token as
// matrix-vector (decode). The blocks themselves are in forward_blocks.h; every buffer
// size comes from one plan (context_plan.h). Once warm, evaluating one token allocates
// nothing.
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "core/thread_pool.h"
#include "formats/ggml_type.h"
#include "engine/context_plan.h"
#include "engine/forward_blocks.h"
#include "engine/llama_model.h"
#include "formats/tensor_names.h"

namespace piquant {

struct ContextOptions {
  std::int64_t n_ctx = 2048;           // positions the KV cache holds
  std::int64_t n_batch = 512;          // tokens per forward step (longer inputs are split)
  GgmlType kv_type = GgmlType::F16;    // F16 (default), F32 or BF16
  unsigned n_threads = 0;              // 0: physical cores
};

class LlamaContext {
 public:
  LlamaContext(const LlamaModel& model, const ContextOptions& options);
  ~LlamaContext();

  // Evaluates tokens at positions n_past() .. n_past() + tokens.size() - 1 and appends
  // them to the cache. Returns the logits of the last token (n_vocab floats), or with
  // all_logits the logits of every token (tokens.size() × n_vocab, row-major). The
  // span stays valid until the next call. Throws Error if the cache would overflow or
  // a token id is out of range.
  std::span<const float> eval(std::span<const std::int32_t> tokens, bool all_logits = false);

  std::int64_t n_past() const { return n_past_; }
  std::int64_t n_ctx() const { return options_.n_ctx; }
  std::int64_t n_vocab() const { return model_.params().n_vocab; }
  void reset() { n_past_ = 0; }
  void truncate(std::int64_t n_keep);  // forget positions >= n_keep

  const LlamaModel& model() const { return model_; }
  ThreadPool& pool() { return pool_; }
  std::uint64_t kv_cache_bytes() const;
  // What a context would allocate, computed without allocating (for the memory check);
  // saturates at UINT64_MAX instead of overflowing for absurd lengths.
  static std::uint64_t kv_cache_bytes(const LlamaParams& params, const ContextOptions& options);
  static std::uint64_t scratch_bytes(const LlamaParams& params, const ContextOptions& options);

  // The sizes this context was built from.
  const ContextPlan& plan() const;
  // Bytes the scratch buffers and the logits hold now (their capacities): equal to
  // plan().context_scratch_bytes() until an all_logits eval grows the logits.
  std::uint64_t allocated_scratch_bytes() const;

  // nullptr (the default) observes nothing. The observer must outlive its use here.
  void set_matmul_observer(MatmulObserver* observer) { observer_ = observer; }

 private:
  struct Buffers;
  void forward_batch(std::span<const std::int32_t> tokens, bool all_logits, float* logits_out);
  KvLayerView kv_layer(std::int64_t layer) const;

  const LlamaModel& model_;
  ContextOptions options_;
  ThreadPool pool_;
  std::unique_ptr<Buffers> buffers_;
  std::vector<float> logits_;
  std::int64_t n_past_ = 0;
  MatmulObserver* observer_ = nullptr;
};

// Attaches an observer to a context for one scope: detached however the scope ends.
class ScopedMatmulObserver {
 public:
  ScopedMatmulObserver(LlamaContext& context, MatmulObserver& observer) : context_(context) {
    context_.set_matmul_observer(&observer);
  }
  ~ScopedMatmulObserver() { context_.set_matmul_observer(nullptr); }
  ScopedMatmulObserver(const ScopedMatmulObserver&) = delete;
  ScopedMatmulObserver& operator=(const ScopedMatmulObserver&) = delete;

 private:
  LlamaContext& context_;
};

}  // namespace piquant
