#pragma once
// KL divergence of a model from a base model, as `llama-perplexity --kl-divergence`
// measures it: the same chunks and scored positions as perplexity (eval_chunks.h);
// at every position KL(P_base || P_model) from log-softmaxes in double; reported as
// mean ± standard error, quantiles and maximum, how often both pick the same top
// token, and the perplexity of each.
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "eval/eval_chunks.h"
#include "eval/logits_file.h"
#include "engine/llama_context.h"

namespace piquant {

// Where the base distributions come from: a base model run chunk by chunk beside
// the model, or a file saved by an earlier run. Exactly one is set.
struct KldBase {
  LlamaContext* context = nullptr;
  const BaseLogitsFile* saved = nullptr;
};

struct KldOptions {
  std::int64_t n_ctx = 512;
  std::int64_t max_chunks = 0;   // 0: every whole chunk of the text
  std::string save_base_logits;  // with a base context: also save its distributions here
  std::function<void(std::int64_t chunks_done, std::int64_t n_chunks, double running_kld)> on_chunk;
};

struct KldResult {
  std::int64_t n_ctx = 0;
  std::int64_t n_chunks = 0;
  std::int64_t n_scored = 0;
  double kld_mean = 0.0;
  double kld_stderr = 0.0;
  double kld_median = 0.0;
  double kld_p90 = 0.0;
  double kld_p99 = 0.0;
  double kld_max = 0.0;
  double top1_agreement = 0.0;  // fraction of positions where both argmaxes agree
  double top1_stderr = 0.0;
  double ppl_base = 0.0;
  double ppl_base_stderr = 0.0;
  double ppl_model = 0.0;
  double ppl_model_stderr = 0.0;
  double delta_ppl = 0.0;             // ppl_model - ppl_base
  double ln_ppl_ratio = 0.0;          // mean of NLL_model - NLL_base = ln(PPL_model / PPL_base)
  double ln_ppl_ratio_stderr = 0.0;   // from the per-token differences (correlated errors cancel)
  double eval_seconds = 0.0;          // time in the model (and base model) forward passes
};

// Runs the model (and the base model, if given) over the chunks; a base context that is
// the model's own runs once (KLD 0, the base's perplexity and saved logits). With a saved base,
// the file must match the chunks (BaseLogitsFile::check_matches); throws Error.
KldResult compute_kld(const KldBase& base, LlamaContext& model, const EvalChunks& chunks, const KldOptions& options = {});

// Tokenizes `text` with the model's tokenizer (and checks that a base model's
// tokenizer gives the same tokens), chunks it and runs compute_kld.
KldResult compute_kld(const KldBase& base, LlamaContext& model, std::string_view text, const KldOptions& options = {});

}  // namespace piquant
