#pragma once
// How much each tensor's quantization costs the model, measured one tensor at a time:
// the sensitivity of tensor t at type T is the mean, over the scored positions of the
// calibration chunks (eval_chunks.h: the second half of every chunk), of
// KL(P_float || P_t→T), where P_float are the float model's next-token distributions and
// P_t→T those of the same model with only t quantized to T and decoded back to float
// (encoded exactly as `piquant quantize` encodes it: encode_rows with the tensor's
// importance), every other tensor float. The forward passes run on F32 weights with an
// F32 KV cache, so the measured change is the weights' alone.
//
// Numbers: the float model's logits are kept (float) and each KL term is computed in
// double from them and the quantized model's logits (log_softmax.h); a measurement is
// the per-position KLs summed in position order and divided by their count, so it does
// not depend on the thread count. The base logits take n_scored × n_vocab floats.
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "eval/eval_chunks.h"
#include "engine/owned_model.h"
#include "formats/ggml_type.h"

namespace piquant {

// kld[tensor name][type]: a sensitivity as defined above.
struct SensitivityTable {
  std::map<std::string, std::map<GgmlType, double>> kld;

  bool contains(const std::string& tensor, GgmlType type) const;
  // Throws Error naming the tensor and type when it was not measured.
  double at(const std::string& tensor, GgmlType type) const;
};

// One tensor to measure: its GGUF name, the types to try, and the per-column importance
// its quantization uses (an imatrix's mean squares; empty: the quantizers' default).
struct SensitivityJob {
  std::string tensor;
  std::vector<GgmlType> types;
  std::vector<float> importance;
};

struct SensitivityProgress {
  std::size_t jobs_done = 0;
  std::size_t jobs_total = 0;
  const SensitivityJob* job = nullptr;  // the one just measured
  const std::map<GgmlType, double>* kld = nullptr;  // its results
  double seconds = 0.0;  // since the measurement began (the base run included)
};

struct SensitivityOptions {
  unsigned n_threads = 0;  // 0: one per physical core
  std::function<void(const SensitivityProgress&)> on_job;
};

// Runs every job against `model` (an F32 copy of the float model: OwnedLlamaModel::copy_of),
// whose weights are changed during a job and restored after it, bit for bit. Throws
// Error for a tensor the model does not have, a shape or importance that does not fit,
// a type encode_rows cannot make, or NaN logits.
SensitivityTable measure_sensitivities(OwnedLlamaModel& model, const EvalChunks& chunks,
                                       const std::vector<SensitivityJob>& jobs, const SensitivityOptions& options = {});

// `values` (rows of row_length) encoded as `type` with `importance` (nullptr: default
// weights), as export_gguf encodes them, and decoded back to float into `out`.
void quantize_dequantize(GgmlType type, const float* values, std::int64_t n_rows, std::int64_t row_length,
                         const float* importance, float* out, ThreadPool& pool);

}  // namespace piquant
