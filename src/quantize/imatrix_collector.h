#pragma once
// Importance-matrix collection as llama.cpp's llama-imatrix does it: the text is cut
// into chunks of n_ctx tokens (eval_chunks.h: first token of each chunk BOS), each
// chunk runs from an empty cache, and for every linear weight the input of every
// token is seen. Per weight it keeps sum(x_j^2) per input column j and the number of
// tokens; the result stores (sum / tokens) * ncall with ncall = chunks that reached
// the weight (imatrix_file.h). Only the blocks' weights ("blk.N.*") are kept, plus
// output.weight with process_output (never when the output is the tied embedding:
// llama.cpp sees that product as token_embd.weight and skips it too).
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "eval/eval_chunks.h"
#include "engine/llama_context.h"
#include "quantize/imatrix_file.h"

namespace piquant {

// Accumulates the statistics; attach with LlamaContext::set_matmul_observer.
class ImatrixCollector final : public MatmulObserver {
 public:
  explicit ImatrixCollector(bool record_output = false) : record_output_(record_output) {}

  // Throws Error when a weight's input has a different column count than before.
  void observe(WeightId id, const float* x, std::int64_t n_tokens, std::int64_t cols) override;
  // Ends a chunk: every weight seen since the last call gets one more ncall.
  void finish_chunk();

  std::int32_t chunks() const { return chunks_; }
  // The statistics so far in the imatrix file's form.
  ImportanceMatrix result(const std::string& dataset) const;

 private:
  struct Stats {
    std::vector<double> sum_squares;  // per input column
    std::int64_t tokens = 0;
    std::int32_t ncall = 0;
    bool seen_in_chunk = false;
  };
  bool record_output_;
  std::map<std::string, Stats> stats_;  // by GGUF tensor name
  std::int32_t chunks_ = 0;
};

struct ImatrixOptions {
  bool process_output = false;  // also collect output.weight (llama-imatrix --process-output)
  std::string dataset;          // recorded in the file's trailer (the calibration file's name)
  // Called after each chunk (progress display).
  std::function<void(std::int64_t chunks_done, std::int64_t n_chunks)> on_chunk;
};

// Runs every chunk through the context (from an empty cache each) and returns the
// importance matrix. The context's observer is restored to none afterwards.
ImportanceMatrix collect_imatrix(LlamaContext& context, const EvalChunks& chunks, const ImatrixOptions& options = {});

}  // namespace piquant
