#include "quantize/budget_sensitivities.h"

#include <chrono>
#include <cstdio>
#include <optional>

#include "core/error.h"
#include "core/logger.h"
#include "core/mapped_file.h"
#include "engine/llama_model.h"
#include "engine/owned_model.h"
#include "eval/eval_chunks.h"
#include "quantize/sensitivity.h"

namespace piquant {
namespace {

std::string read_text(const std::string& path) {
  const MappedFile file(path);
  if (file.size() == 0) throw Error(path + ": the calibration text is empty");
  return std::string(reinterpret_cast<const char*>(file.data()), file.size());
}

std::string duration_text(double seconds) {
  char text[32];
  if (seconds < 120) {
    std::snprintf(text, sizeof text, "%.0f s", seconds);
  } else {
    std::snprintf(text, sizeof text, "%.1f min", seconds / 60);
  }
  return text;
}

}  // namespace

SensitivityRecord budget_sensitivities(const BudgetSensitivityRequest& args, const Checkpoint& checkpoint,
                                       const std::vector<BudgetChoices>& choices, const ImportanceMatrix& imatrix) {
  SensitivitySource wanted;
  wanted.model_path = args.model_path;
  wanted.imatrix_path = args.imatrix_path;
  wanted.calibration_path = args.calibration_path;
  wanted.model_fingerprint = checkpoint_fingerprint(checkpoint);
  if (!args.imatrix_path.empty()) wanted.imatrix_fingerprint = imatrix_fingerprint(imatrix);

  std::unique_ptr<LlamaModel> model;
  std::optional<EvalChunks> chunks;
  if (!args.calibration_path.empty()) {
    model = LlamaModel::load(args.model_path);
    chunks.emplace(tokenize_eval_text(model->tokenizer(), read_text(args.calibration_path)), args.calibration_ctx, args.calibration_chunks,
                   eval_bos_id(model->vocab()));
    wanted.calibration_fingerprint = calibration_fingerprint(*chunks);
    wanted.n_ctx = chunks->n_ctx();
    wanted.n_chunks = chunks->n_chunks();
  }

  SensitivityRecord record;
  record.source = wanted;
  bool from_cache = false;
  if (!args.cache_path.empty()) {
    if (auto cached = read_sensitivity_file(args.cache_path)) {
      const std::string why = sensitivity_source_mismatch(cached->source, wanted, chunks.has_value());
      if (why.empty()) {
        record = std::move(*cached);
        from_cache = true;
        if (!chunks) log::info("quantize: using the sensitivities in ", args.cache_path, " (calibration ", record.source.calibration_path, ")");
      } else {
        log::info("quantize: not using the sensitivities in ", args.cache_path, ": ", why);
      }
    }
  }

  std::vector<SensitivityJob> jobs;
  std::size_t missing = 0;
  for (const BudgetChoices& c : choices) {
    if (c.fixed) continue;
    SensitivityJob job;
    job.tensor = c.tensor;
    for (const GgmlType type : c.types) {
      if (!record.table.contains(c.tensor, type)) job.types.push_back(type);
    }
    if (job.types.empty()) continue;
    missing += job.types.size();
    if (!args.imatrix_path.empty()) job.importance = imatrix.mean_squares(c.tensor);
    jobs.push_back(std::move(job));
  }
  if (jobs.empty()) {
    if (from_cache) {
      log::info("quantize: every sensitivity is in ", args.cache_path, " (measured in ", duration_text(record.measure_seconds), ")");
    }
    return record;
  }
  if (!chunks) {
    if (from_cache) {
      throw Error("quantize: " + args.cache_path + " lacks " + std::to_string(missing) + " of the sensitivities the candidates need (" +
                  jobs.front().tensor + " at " + ggml_type_name(jobs.front().types.front()) +
                  ", ...): give the calibration text (--calib FILE) to measure them");
    }
    throw Error("quantize: a size budget needs sensitivities: give a calibration text (--calib FILE)" +
                std::string(args.cache_path.empty() ? "" : " or a --sensitivity file measured for this model and imatrix"));
  }
  log::info("quantize: measuring ", missing, " sensitivities of ", jobs.size(), " tensors on ", chunks->n_chunks(),
            " chunks of ", chunks->n_ctx(), " tokens of ", args.calibration_path);
  const auto start = std::chrono::steady_clock::now();
  const auto copy = OwnedLlamaModel::copy_of(*model);
  model.reset();  // the copy holds everything the measurement needs
  SensitivityOptions options;
  options.n_threads = args.n_threads;
  options.on_job = [](const SensitivityProgress& p) {
    std::string line = log::concat("sensitivity: ", p.jobs_done, "/", p.jobs_total, " ", p.job->tensor);
    for (const GgmlType type : p.job->types) line += log::concat("  ", ggml_type_name(type), " ", p.kld->at(type));
    const double left = p.seconds / static_cast<double>(p.jobs_done) * static_cast<double>(p.jobs_total - p.jobs_done);
    line += "  (" + duration_text(p.seconds) + ", about " + duration_text(left) + " left)";
    log::info(line);
  };
  const SensitivityTable measured = measure_sensitivities(*copy, *chunks, jobs, options);
  for (const auto& [tensor, types] : measured.kld) {
    for (const auto& [type, kld] : types) record.table.kld[tensor][type] = kld;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  record.measure_seconds += seconds;
  log::info("quantize: measured ", missing, " sensitivities in ", duration_text(seconds));
  if (!args.cache_path.empty()) {
    write_sensitivity_file(args.cache_path, record);
    log::info("quantize: wrote the sensitivities to ", args.cache_path);
  }
  return record;
}

}  // namespace piquant
