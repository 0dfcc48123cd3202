#include "quantize/sensitivity.h"

#include <chrono>
#include <cmath>
#include <string>

#include "core/error.h"
#include "core/thread_pool.h"
#include "checkpoint/row_encoder.h"
#include "engine/llama_context.h"
#include "eval/log_softmax.h"
#include "eval/perplexity.h"
#include "quant/dequantize.h"

namespace piquant {
namespace {

// The float model's logits at every scored position, chunk by chunk, with each row's
// log Σ exp so its log-probabilities come without another pass of exponentials.
struct BaseLogits {
  std::int64_t n_vocab = 0;
  std::vector<float> logits;
  std::vector<double> log_sum;
};

BaseLogits run_base(LlamaContext& context, const EvalChunks& chunks) {
  BaseLogits base;
  base.n_vocab = context.n_vocab();
  const std::int64_t rows = chunks.scored_per_chunk();
  const auto row_floats = static_cast<std::size_t>(rows * base.n_vocab);
  base.logits.resize(static_cast<std::size_t>(chunks.n_chunks()) * row_floats);
  base.log_sum.resize(static_cast<std::size_t>(chunks.n_scored()));
  for (std::int64_t c = 0; c < chunks.n_chunks(); ++c) {
    const std::span<const float> logits = evaluate_chunk(context, chunks, c);
    std::copy(logits.begin(), logits.begin() + static_cast<std::ptrdiff_t>(row_floats),
              base.logits.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(c) * row_floats));
  }
  context.pool().parallel_for(chunks.n_scored(), 1, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t r = begin; r < end; ++r) {
      const std::span<const float> row(base.logits.data() + r * base.n_vocab, static_cast<std::size_t>(base.n_vocab));
      base.log_sum[static_cast<std::size_t>(r)] = log_sum_exp(row);
    }
  });
  return base;
}

// Mean KL(base || model) over the scored positions, the model as the context runs it now.
double mean_kld(LlamaContext& context, const EvalChunks& chunks, const BaseLogits& base, const std::string& what) {
  const std::int64_t rows = chunks.scored_per_chunk();
  const auto vocab = static_cast<std::size_t>(base.n_vocab);
  std::vector<double> kld(static_cast<std::size_t>(chunks.n_scored()));
  for (std::int64_t c = 0; c < chunks.n_chunks(); ++c) {
    const std::span<const float> logits = evaluate_chunk(context, chunks, c);
    context.pool().parallel_for(rows, 1, [&](std::int64_t begin, std::int64_t end) {
      std::vector<double> base_lp(vocab);
      for (std::int64_t r = begin; r < end; ++r) {
        const std::int64_t at = c * rows + r;
        const float* base_row = base.logits.data() + static_cast<std::size_t>(at) * vocab;
        const double shift = base.log_sum[static_cast<std::size_t>(at)];
        for (std::size_t i = 0; i < vocab; ++i) base_lp[i] = static_cast<double>(base_row[i]) - shift;
        const double d = kl_divergence(base_lp, logits.subspan(static_cast<std::size_t>(r) * vocab, vocab));
        if (std::isnan(d)) {
          throw Error(what + ": the logits at position " + std::to_string(chunks.first_scored() + r) + " of chunk " +
                      std::to_string(c) + " are not numbers (NaN)");
        }
        kld[static_cast<std::size_t>(at)] = d;
      }
    });
  }
  double sum = 0.0;
  for (const double d : kld) sum += d;
  return sum / static_cast<double>(kld.size());
}

}  // namespace

bool SensitivityTable::contains(const std::string& tensor, GgmlType type) const {
  const auto t = kld.find(tensor);
  return t != kld.end() && t->second.count(type) != 0;
}

double SensitivityTable::at(const std::string& tensor, GgmlType type) const {
  if (!contains(tensor, type)) throw Error("no sensitivity measured for " + tensor + " at " + ggml_type_name(type));
  return kld.at(tensor).at(type);
}

void quantize_dequantize(GgmlType type, const float* values, std::int64_t n_rows, std::int64_t row_length,
                         const float* importance, float* out, ThreadPool& pool) {
  if (!row_encoder_supports(type) || !dequantize_supports(type)) {
    throw Error("cannot quantize to and decode " + ggml_type_name(type));
  }
  const std::uint64_t row_bytes = ggml_nbytes(type, static_cast<std::uint64_t>(row_length));
  pool.parallel_for(n_rows, 1, [&](std::int64_t begin, std::int64_t end) {
    std::vector<std::uint8_t> encoded(row_bytes);
    for (std::int64_t r = begin; r < end; ++r) {
      encode_rows(type, values + r * row_length, 1, row_length, encoded.data(), importance);
      dequantize_row(type, encoded.data(), out + r * row_length, row_length);
    }
  });
}

SensitivityTable measure_sensitivities(OwnedLlamaModel& model, const EvalChunks& chunks,
                                       const std::vector<SensitivityJob>& jobs, const SensitivityOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  // Resolve every job before the long part, so a bad one fails at once.
  std::vector<WeightId> ids;
  for (const SensitivityJob& job : jobs) {
    const auto id = parse_gguf_tensor_name(job.tensor);
    bool found = false;
    if (id) {
      for (const WeightId& w : model.weight_ids()) found = found || w == *id;
    }
    if (!found) throw Error("sensitivity: the model has no tensor " + job.tensor);
    const auto [rows, cols] = weight_shape(model.params(), *id);
    if (rows < 2) throw Error("sensitivity: " + job.tensor + " is not a matrix");
    if (!job.importance.empty() && static_cast<std::int64_t>(job.importance.size()) != cols) {
      throw Error("sensitivity: " + job.tensor + ": importance has " + std::to_string(job.importance.size()) +
                  " values for rows of " + std::to_string(cols));
    }
    for (const GgmlType type : job.types) {
      if (!row_encoder_supports(type) || !dequantize_supports(type)) {
        throw Error("sensitivity: cannot quantize to and decode " + ggml_type_name(type));
      }
      if (cols % ggml_type_info(type).block_size != 0) {
        throw Error("sensitivity: " + job.tensor + ": rows of " + std::to_string(cols) + " are not whole " +
                    ggml_type_name(type) + " blocks");
      }
    }
    ids.push_back(*id);
  }

  ContextOptions context_options;
  context_options.n_ctx = chunks.n_ctx();
  context_options.n_batch = chunks.n_ctx();
  context_options.kv_type = GgmlType::F32;
  context_options.n_threads = options.n_threads;
  LlamaContext context(model, context_options);
  check_context_fits(context, chunks);
  const BaseLogits base = run_base(context, chunks);

  SensitivityTable table;
  std::vector<float> original;
  for (std::size_t j = 0; j < jobs.size(); ++j) {
    const SensitivityJob& job = jobs[j];
    const std::span<float> weight = model.weight(ids[j]);
    const auto [rows, cols] = weight_shape(model.params(), ids[j]);
    original.assign(weight.begin(), weight.end());
    auto& results = table.kld[job.tensor];
    try {
      for (const GgmlType type : job.types) {
        quantize_dequantize(type, original.data(), rows, cols, job.importance.empty() ? nullptr : job.importance.data(),
                            weight.data(), context.pool());
        results[type] = mean_kld(context, chunks, base, job.tensor + " at " + ggml_type_name(type));
      }
    } catch (...) {
      std::copy(original.begin(), original.end(), weight.begin());
      throw;
    }
    std::copy(original.begin(), original.end(), weight.begin());
    if (options.on_job) {
      SensitivityProgress progress;
      progress.jobs_done = j + 1;
      progress.jobs_total = jobs.size();
      progress.job = &job;
      progress.kld = &results;
      progress.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      options.on_job(progress);
    }
  }
  return table;
}

}  // namespace piquant
