#pragma once
// Runs a recipe's stages in a run folder, each as a `piquant` subcommand in a child
// process, and writes the report.
//
// Run folder: one subfolder per stage with its artifacts, the subcommand's stdout (its
// --json summary) and stderr log, and per step a record (`<item>.record.json`: the step's
// content key, wall time, the summary) written atomically after the step succeeded. A
// step's key hashes its stage, options, the thread count where results depend on it, and
// its inputs: external files by content (InputHashCache), artifacts of earlier steps by
// those steps' keys. A rerun skips a step whose record carries the same key and whose
// artifacts exist; a step killed midway left only a `<item>.pending` note with its key,
// and reruns from its start, except finetune, which resumes from its last checkpoint
// (bit-identical to an uninterrupted run). The subcommands write every artifact under a
// temporary name and rename it when complete.
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "pipeline/recipe.h"
#include "pipeline/stage_progress.h"

namespace piquant {

struct PipelineOptions {
  std::string run_dir;
  std::string executable;  // the piquant binary that runs the stages
  ProgressStyle style = ProgressStyle::Lines;
  std::FILE* progress_out = stderr;
  bool force = false;    // rerun every step
  bool dry_run = false;  // print the steps and whether each would run; run nothing
};

// A model the report compares: the input, the pruned and recovered models, each quantization.
struct PipelineVariant {
  std::string name;  // "base", "pruned", "recovered", "Q4_K_M", ...
  std::string path;
  std::string step;  // the step that made it ("" for the input)
};

struct PipelineStepStatus {
  std::string stage, item, label, key;
  bool cached = false;
  double seconds = 0;
  std::uint64_t peak_rss_bytes = 0;  // the subcommand's
  nlohmann::json result;  // the subcommand's --json summary (null when it prints none)
};

struct PipelineOutcome {
  std::vector<PipelineVariant> variants;
  std::vector<PipelineStepStatus> steps;
  std::string report_md, report_json;  // paths (empty on a dry run)
  nlohmann::json report;
};

PipelineOutcome run_pipeline(const PipelineRecipe& recipe, const PipelineOptions& options);

}  // namespace piquant
