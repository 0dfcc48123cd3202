#include "eval/perplexity.h"

#include <chrono>
#include <cmath>
#include <string>

#include "core/error.h"
#include "core/thread_pool.h"
#include "eval/eval_stats.h"
#include "eval/log_softmax.h"

namespace piquant {

void check_context_fits(const LlamaContext& context, const EvalChunks& chunks) {
  if (context.n_ctx() < chunks.n_ctx()) {
    throw Error("the context holds " + std::to_string(context.n_ctx()) + " positions, the chunks need " +
                std::to_string(chunks.n_ctx()));
  }
}

std::span<const float> evaluate_chunk(LlamaContext& context, const EvalChunks& chunks, std::int64_t chunk) {
  const std::vector<std::int32_t> input = chunks.input(chunk);
  const auto first = static_cast<std::size_t>(chunks.first_scored());
  context.reset();
  context.eval(std::span<const std::int32_t>(input).first(first), /*all_logits=*/false);
  return context.eval(std::span<const std::int32_t>(input).subspan(first), /*all_logits=*/true);
}

PerplexityResult compute_perplexity(LlamaContext& context, const EvalChunks& chunks, const PerplexityOptions& options) {
  check_context_fits(context, chunks);
  const std::int64_t n_vocab = context.n_vocab();
  const std::int64_t n_rows = chunks.scored_per_chunk();
  PerplexityResult result;
  result.n_ctx = chunks.n_ctx();
  result.n_chunks = chunks.n_chunks();
  result.n_evaluated = chunks.n_evaluated();
  if (options.keep_token_log_probs) result.token_log_probs.reserve(static_cast<std::size_t>(chunks.n_scored()));

  MeanAccumulator nll;
  std::vector<double> row_log_probs(static_cast<std::size_t>(n_rows));
  for (std::int64_t c = 0; c < chunks.n_chunks(); ++c) {
    const auto start = std::chrono::steady_clock::now();
    const std::span<const float> logits = evaluate_chunk(context, chunks, c);
    result.eval_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    // Rows are independent: score them on the context's threads, then sum in order. A
    // NaN row's Error reaches the caller (the first such row, as a serial loop would).
    context.pool().parallel_for(n_rows, 1, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t r = begin; r < end; ++r) {
        const auto row = logits.subspan(static_cast<std::size_t>(r * n_vocab), static_cast<std::size_t>(n_vocab));
        const std::int32_t target = chunks.target(c, chunks.first_scored() + r);
        const double lp = static_cast<double>(row[static_cast<std::size_t>(target)]) - log_sum_exp(row);
        if (std::isnan(lp)) {
          throw Error(context.model().path() + ": the logits at position " + std::to_string(chunks.first_scored() + r) +
                      " of chunk " + std::to_string(c) + " are not numbers (NaN)");
        }
        row_log_probs[static_cast<std::size_t>(r)] = lp;
      }
    });
    for (const double lp : row_log_probs) {
      nll.add(-lp);
      if (options.keep_token_log_probs) result.token_log_probs.push_back(static_cast<float>(lp));
    }
    if (options.on_chunk) options.on_chunk(c + 1, chunks.n_chunks(), perplexity_of(nll));
  }
  result.n_scored = nll.count();
  result.mean_nll = nll.mean();
  result.nll_stderr = nll.stderr_of_mean();
  result.ppl = perplexity_of(nll);
  result.ppl_stderr = perplexity_stderr_of(nll);
  result.tokens_per_second = result.eval_seconds > 0 ? static_cast<double>(result.n_evaluated) / result.eval_seconds : 0.0;
  return result;
}

PerplexityResult compute_perplexity(LlamaContext& context, std::string_view text, const PerplexityOptions& options) {
  const LlamaModel& model = context.model();
  const EvalChunks chunks(tokenize_eval_text(model.tokenizer(), text), options.n_ctx, options.max_chunks,
                          eval_bos_id(model.vocab()));
  return compute_perplexity(context, chunks, options);
}

}  // namespace piquant
