#pragma once
// Merging a LoRA adapter into its base model: a Checkpoint decorator whose adapted
// weights read as W + scale · B · A, so export_gguf streams the merged model out
// without ever holding it whole.
#include <cstdint>
#include <memory>
#include <string>

#include "checkpoint/checkpoint.h"
#include "checkpoint/gguf_export.h"
#include "core/thread_pool.h"
#include "engine/lora.h"

namespace piquant {

// The base's tensors, with every weight the adapter has replaced by the merged weight:
//   W'[r][c] = float(W[r][c] + s · Σ_k B[r][k] · A[k][c])
// in double (the products and the sum over k = 0 .. rank-1 in that order, one rounding
// to float at the end), s = adapter.scale() (a float, as the engine's linear() uses).
// The Checkpoint presents GGUF layouts, so the adapter's Q/K rows are brought to the
// interleaved order first. Everything else passes through unchanged.
class LoraMergedCheckpoint : public ForwardingCheckpoint {
 public:
  // `base` must outlive this. Throws Error when an adapted weight is missing from the
  // base (a tied output, say) or has another shape. n_threads: rows of a read in parallel
  // (0: one per physical core).
  LoraMergedCheckpoint(const Checkpoint& base, const LoraAdapter& adapter, unsigned n_threads = 1);
  ~LoraMergedCheckpoint() override;

  void read_rows(const CheckpointTensor& tensor, std::int64_t first_row, std::int64_t n_rows, float* out) const override;

  const LoraAdapter& adapter() const { return *adapter_; }  // in GGUF (interleaved) layout

 private:
  std::unique_ptr<LoraAdapter> adapter_;
  std::unique_ptr<ThreadPool> pool_;
};

// open_checkpoint for a merge base: a Hugging Face folder, a float GGUF or a llama2.c
// checkpoint. A quantized GGUF is refused with an Error saying why (merging would
// requantize every adapted weight; merge into the float model, then quantize).
std::unique_ptr<Checkpoint> open_merge_base(const std::string& path, const CheckpointOptions& options = {});

struct LoraMergeSummary {
  GgufExportSummary exported;
  std::string adapter_format;  // "gguf" or "peft"
  std::size_t adapted_tensors = 0;
  std::int64_t rank = 0;
  float alpha = 0.0f;
};

// Opens base_path and the adapter (read_lora, checked against the base) and writes the
// merged model to out_path with export_gguf (options.type: F32, F16 or BF16).
LoraMergeSummary merge_lora(const std::string& base_path, const std::string& adapter_path, const std::string& out_path,
                            const GgufExportOptions& options, const CheckpointOptions& checkpoint_options = {});

}  // namespace piquant
