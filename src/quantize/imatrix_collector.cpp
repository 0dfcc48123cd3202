#include "quantize/imatrix_collector.h"

#include <cmath>
#include <limits>

#include "core/error.h"
#include "eval/perplexity.h"

namespace piquant {
namespace {


bool output_is_tied(const LlamaModel& model) { return model.output().data == model.token_embedding().data; }

}  // namespace

void ImatrixCollector::observe(WeightId id, const float* x, std::int64_t n_tokens, std::int64_t cols) {
  if (id.kind == WeightKind::Output ? !record_output_ : id.layer < 0) return;
  if (n_tokens <= 0) return;
  if (cols <= 0) throw Error("imatrix: " + gguf_tensor_name(id) + ": input has " + std::to_string(cols) + " columns");
  Stats& s = stats_[gguf_tensor_name(id)];
  if (s.sum_squares.empty()) {
    s.sum_squares.assign(static_cast<std::size_t>(cols), 0.0);
  } else if (static_cast<std::int64_t>(s.sum_squares.size()) != cols) {
    throw Error("imatrix: " + gguf_tensor_name(id) + ": input has " + std::to_string(cols) + " columns, earlier " +
                std::to_string(s.sum_squares.size()));
  }
  double* sum = s.sum_squares.data();
  for (std::int64_t t = 0; t < n_tokens; ++t) {
    const float* row = x + t * cols;
    for (std::int64_t j = 0; j < cols; ++j) sum[j] += static_cast<double>(row[j]) * static_cast<double>(row[j]);
  }
  s.tokens += n_tokens;
  s.seen_in_chunk = true;
}

void ImatrixCollector::finish_chunk() {
  for (auto& [name, s] : stats_) {
    if (s.seen_in_chunk) ++s.ncall;
    s.seen_in_chunk = false;
  }
  ++chunks_;
}

ImportanceMatrix ImatrixCollector::result(const std::string& dataset) const {
  ImportanceMatrix matrix;
  matrix.dataset = dataset;
  matrix.chunks = chunks_;
  for (const auto& [name, s] : stats_) {
    if (s.ncall == 0 || s.tokens == 0) continue;  // seen only in an unfinished chunk
    ImportanceMatrix::Entry entry;
    entry.ncall = s.ncall;
    entry.values.resize(s.sum_squares.size());
    const double scale = static_cast<double>(s.ncall) / static_cast<double>(s.tokens);
    for (std::size_t j = 0; j < s.sum_squares.size(); ++j) {
      const double v = s.sum_squares[j] * scale;
      if (!std::isfinite(v) || v > std::numeric_limits<float>::max()) {
        throw Error("imatrix: " + name + ": column " + std::to_string(j) + " has a non-finite mean square (the model's activations overflow)");
      }
      entry.values[j] = static_cast<float>(v);
    }
    matrix.entries.emplace(name, std::move(entry));
  }
  return matrix;
}

ImportanceMatrix collect_imatrix(LlamaContext& context, const EvalChunks& chunks, const ImatrixOptions& options) {
  check_context_fits(context, chunks);
  const bool record_output = options.process_output && !output_is_tied(context.model());
  ImatrixCollector collector(record_output);
  {
    const ScopedMatmulObserver attachment(context, collector);
    for (std::int64_t c = 0; c < chunks.n_chunks(); ++c) {
      const std::vector<std::int32_t> input = chunks.input(c);
      context.reset();
      // With output.weight wanted every position goes through it; otherwise only the last.
      context.eval(input, /*all_logits=*/record_output);
      collector.finish_chunk();
      if (options.on_chunk) options.on_chunk(c + 1, chunks.n_chunks());
    }
  }
  return collector.result(options.dataset);
}

}  // namespace piquant
