#pragma once
// One sequence being evaluated: the KV cache and scratch buffers for a model,
// sized from the context length asked for, not the model's maximum. The forward
// pass: embed → per layer (RMSNorm → Q/K/V → RoPE → causal GQA attention over the
// cache → output projection → residual; RMSNorm → SwiGLU MLP → residual) → RMSNorm →
// logits. Several tokens at once run as matrix-matrix products (prompt), one token as
// matrix-vector (decode).
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "core/thread_pool.h"
#include "formats/ggml_type.h"
#include "engine/llama_model.h"
#include "formats/tensor_names.h"

namespace piquant {

// Sees the input of every linear layer during a forward pass (importance-matrix
// collection). Called on the evaluating thread, before each product.
class MatmulObserver {
 public:
  virtual ~MatmulObserver() = default;
  // x: n_tokens × cols floats, the input of weight `id` (cols = its input dimension).
  virtual void observe(WeightId id, const float* x, std::int64_t n_tokens, std::int64_t cols) = 0;
};

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

  // nullptr (the default) observes nothing. The observer must outlive its use here.
  void set_matmul_observer(MatmulObserver* observer) { observer_ = observer; }

 private:
  struct Buffers;
  void forward_batch(std::span<const std::int32_t> tokens, bool all_logits, float* logits_out);

  const LlamaModel& model_;
  ContextOptions options_;
  ThreadPool pool_;
  std::unique_ptr<Buffers> buffers_;
  std::vector<float> logits_;
  std::int64_t n_past_ = 0;
  MatmulObserver* observer_ = nullptr;
};

}  // namespace piquant
