#pragma once
// Perplexity as llama.cpp's llama-perplexity measures it (chunking in eval_chunks.h):
// PPL = exp(mean NLL) over the scored second half of every chunk, NLL from a
// log-softmax in double, and the standard error llama-perplexity prints after "±".
#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

#include "eval/eval_chunks.h"
#include "engine/llama_context.h"

namespace piquant {

struct PerplexityOptions {
  std::int64_t n_ctx = 512;
  std::int64_t max_chunks = 0;   // 0: every whole chunk of the text
  bool keep_token_log_probs = false;
  // Called after each chunk with the running estimate (progress display).
  std::function<void(std::int64_t chunks_done, std::int64_t n_chunks, double running_ppl)> on_chunk;
};

struct PerplexityResult {
  double ppl = 0.0;
  double ppl_stderr = 0.0;
  double mean_nll = 0.0;
  double nll_stderr = 0.0;
  std::int64_t n_ctx = 0;
  std::int64_t n_chunks = 0;
  std::int64_t n_scored = 0;     // tokens whose probability was scored
  std::int64_t n_evaluated = 0;  // tokens run through the model (n_chunks × n_ctx)
  double eval_seconds = 0.0;
  double tokens_per_second = 0.0;  // n_evaluated / eval_seconds
  // log p(target) of every scored token, chunk by chunk (with keep_token_log_probs).
  std::vector<float> token_log_probs;
};

// Runs chunk c from an empty cache and returns the logits of its positions
// first_scored .. n_ctx-1 (row-major, n_vocab each), valid until the context's next
// eval. The unscored first half runs without logits: same numbers, less work.
std::span<const float> evaluate_chunk(LlamaContext& context, const EvalChunks& chunks, std::int64_t chunk);

// Checks that the context can run the chunks (its n_ctx is large enough); throws Error.
void check_context_fits(const LlamaContext& context, const EvalChunks& chunks);

PerplexityResult compute_perplexity(LlamaContext& context, const EvalChunks& chunks, const PerplexityOptions& options = {});

// Tokenizes `text` with the context's model (tokenize_eval_text) and chunks it by
// options.n_ctx / options.max_chunks.
PerplexityResult compute_perplexity(LlamaContext& context, std::string_view text, const PerplexityOptions& options = {});

}  // namespace piquant
