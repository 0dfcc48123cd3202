#pragma once
// The run's report: report.json (every number the pipeline measured, per variant) and
// REPORT.md (the reference project's tables for this run: size, parameters, perplexity and
// KLD per variant, recovery, the deployment benchmark and the Raspberry Pi 4 projection),
// with PNG plots drawn by gnuplot (size against perplexity, MLP width per layer, the
// training loss curve).
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "pipeline/pipeline_runner.h"

namespace piquant {

nlohmann::json collect_pipeline_report(const PipelineRecipe& recipe, const std::string& run_dir,
                                       const std::vector<PipelineVariant>& variants,
                                       const std::vector<PipelineStepStatus>& steps);

// Writes run_dir/plots/*.png and records them in report["plots"]; without gnuplot on PATH
// it records why in report["plots_error"] and draws nothing.
void draw_report_plots(nlohmann::json& report, const std::string& run_dir);

std::string render_report_markdown(const nlohmann::json& report);

// The main table alone (what `piquant pipeline` prints at the end).
std::string render_variant_table(const nlohmann::json& report);

// One line on what a step measured, from its subcommand's --json summary.
std::string step_summary(const std::string& stage, const nlohmann::json& result);

}  // namespace piquant
