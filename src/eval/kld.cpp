#include "eval/kld.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "eval/eval_stats.h"
#include "eval/log_softmax.h"
#include "eval/perplexity.h"

namespace piquant {
namespace {

struct RowScore {
  double kld = 0.0;
  double base_log_prob = 0.0;   // of the actual next token
  double model_log_prob = 0.0;
  bool same_top = false;
};

void check_base(const KldBase& base, const LlamaContext& model, const EvalChunks& chunks, const KldOptions& options) {
  if ((base.context == nullptr) == (base.saved == nullptr)) throw Error("KL divergence needs either a base model or saved base logits");
  if (base.context != nullptr) {
    check_context_fits(*base.context, chunks);
    if (base.context->n_vocab() != model.n_vocab()) {
      throw Error("the base model has " + std::to_string(base.context->n_vocab()) + " logits per token, the model " +
                  std::to_string(model.n_vocab()) + ": they do not share a vocabulary");
    }
  } else {
    base.saved->check_matches(chunks, model.n_vocab());
    if (!options.save_base_logits.empty()) throw Error("saving base logits needs a base model, not saved logits");
  }
}

}  // namespace

KldResult compute_kld(const KldBase& base, LlamaContext& model, const EvalChunks& chunks, const KldOptions& options) {
  check_base(base, model, chunks, options);
  check_context_fits(model, chunks);
  const std::int64_t n_vocab = model.n_vocab();
  const std::int64_t n_rows = chunks.scored_per_chunk();
  const auto vocab = static_cast<std::size_t>(n_vocab);

  std::unique_ptr<BaseLogitsWriter> writer;
  std::vector<std::uint8_t> encoded;
  if (!options.save_base_logits.empty()) {
    writer = std::make_unique<BaseLogitsWriter>(options.save_base_logits, n_vocab, chunks);
    encoded.resize(static_cast<std::size_t>(n_rows) * writer->row_bytes());
  }

  KldResult result;
  result.n_ctx = chunks.n_ctx();
  result.n_chunks = chunks.n_chunks();
  MeanAccumulator kld, nll_base, nll_model, nll_diff, same_top;
  std::vector<float> kld_values;
  kld_values.reserve(static_cast<std::size_t>(chunks.n_scored()));
  std::vector<RowScore> scores(static_cast<std::size_t>(n_rows));

  for (std::int64_t c = 0; c < chunks.n_chunks(); ++c) {
    const auto start = std::chrono::steady_clock::now();
    std::span<const float> base_logits;
    if (base.context != nullptr) base_logits = evaluate_chunk(*base.context, chunks, c);
    // The base compared with itself (the base row of a report) runs once.
    const std::span<const float> model_logits = base.context == &model ? base_logits : evaluate_chunk(model, chunks, c);
    result.eval_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    // A row's Error (NaN scores, a bad saved row) reaches this thread, the first bad row's.
    model.pool().parallel_for(n_rows, 1, [&](std::int64_t begin, std::int64_t end) {
      std::vector<double> base_lp;  // this thread's row buffer
      for (std::int64_t r = begin; r < end; ++r) {
        const std::int32_t target = chunks.target(c, chunks.first_scored() + r);
        const auto offset = static_cast<std::size_t>(r) * vocab;
        std::int32_t base_top = 0;
        RowScore& score = scores[static_cast<std::size_t>(r)];
        if (base.context != nullptr) {
          const auto row = base_logits.subspan(offset, vocab);
          log_softmax(row, base_lp);
          base_top = argmax(row);
          score.base_log_prob = base_lp[static_cast<std::size_t>(target)];
          if (writer) {
            const std::size_t bytes = writer->row_bytes();
            encode_logits_row(base_lp, target, std::span<std::uint8_t>(encoded).subspan(static_cast<std::size_t>(r) * bytes, bytes));
          }
        } else {
          const BaseLogitsFile::Row saved = base.saved->decode(c, r, base_lp);
          base_top = saved.argmax;
          score.base_log_prob = saved.target_log_prob;
        }
        const auto model_row = model_logits.subspan(offset, vocab);
        score.kld = kl_divergence(base_lp, model_row);
        score.model_log_prob = static_cast<double>(model_row[static_cast<std::size_t>(target)]) - log_sum_exp(model_row);
        score.same_top = argmax(model_row) == base_top;
        if (std::isnan(score.kld) || std::isnan(score.model_log_prob) || std::isnan(score.base_log_prob)) {
          throw Error("position " + std::to_string(chunks.first_scored() + r) + " of chunk " + std::to_string(c) +
                      ": the base's or the model's logits are not numbers (NaN)");
        }
      }
    });
    if (writer) writer->write_rows(encoded);
    for (const RowScore& s : scores) {
      kld.add(s.kld);
      kld_values.push_back(static_cast<float>(s.kld));
      nll_base.add(-s.base_log_prob);
      nll_model.add(-s.model_log_prob);
      nll_diff.add(s.base_log_prob - s.model_log_prob);
      same_top.add(s.same_top ? 1.0 : 0.0);
    }
    if (options.on_chunk) options.on_chunk(c + 1, chunks.n_chunks(), kld.mean());
  }
  if (writer) writer->commit();

  result.n_scored = kld.count();
  result.kld_mean = kld.mean();
  result.kld_stderr = kld.stderr_of_mean();
  result.kld_max = kld_values.empty() ? 0.0 : static_cast<double>(*std::max_element(kld_values.begin(), kld_values.end()));
  result.kld_median = percentile(kld_values, 0.5);
  result.kld_p90 = percentile(kld_values, 0.9);
  result.kld_p99 = percentile(kld_values, 0.99);
  result.top1_agreement = same_top.mean();
  result.top1_stderr = same_top.stderr_of_mean();
  result.ppl_base = perplexity_of(nll_base);
  result.ppl_base_stderr = perplexity_stderr_of(nll_base);
  result.ppl_model = perplexity_of(nll_model);
  result.ppl_model_stderr = perplexity_stderr_of(nll_model);
  result.delta_ppl = result.ppl_model - result.ppl_base;
  result.ln_ppl_ratio = nll_diff.mean();
  result.ln_ppl_ratio_stderr = nll_diff.stderr_of_mean();
  return result;
}

KldResult compute_kld(const KldBase& base, LlamaContext& model, std::string_view text, const KldOptions& options) {
  const LlamaModel& m = model.model();
  std::vector<std::int32_t> tokens = tokenize_eval_text(m.tokenizer(), text);
  const std::int32_t bos = eval_bos_id(m.vocab());
  if (base.context != nullptr) {
    const LlamaModel& b = base.context->model();
    if (tokenize_eval_text(b.tokenizer(), text) != tokens || eval_bos_id(b.vocab()) != bos) {
      throw Error(b.path() + " and " + m.path() + " tokenize the text differently: KL divergence needs the same tokenizer");
    }
  }
  const EvalChunks chunks(std::move(tokens), options.n_ctx, options.max_chunks, bos);
  return compute_kld(base, model, chunks, options);
}

}  // namespace piquant
