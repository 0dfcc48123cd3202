#include "pipeline/pipeline_report.h"

#include <cmath>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include <unistd.h>

#include "checkpoint/model_report.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/logger.h"
#include "formats/gguf.h"
#include "pipeline/child_process.h"
#include "speed/pi4_projection.h"

namespace piquant {
namespace fs = std::filesystem;
namespace {

using json = nlohmann::json;

std::string fmt(double value, int decimals) {
  if (!std::isfinite(value)) return "—";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, value);
  return buf;
}

std::string fmt_json(const json& j, const char* key, int decimals, double scale = 1.0) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_number()) return "—";
  return fmt(j[key].get<double>() * scale, decimals);
}

std::string params_text(double n) {
  if (n >= 1e9) return fmt(n / 1e9, 2) + "B";
  if (n >= 1e6) return fmt(n / 1e6, 2) + "M";
  return fmt(n, 0);
}

const PipelineStepStatus* find_step(const std::vector<PipelineStepStatus>& steps, const std::string& stage,
                                    const std::string& item) {
  for (const auto& s : steps) {
    if (s.stage == stage && s.item == item) return &s;
  }
  return nullptr;
}

// The training log, one point per step (a resumed run appends steps it redoes: the last wins).
json training_curve(const std::string& log_path) {
  std::map<long long, json> by_step;
  std::ifstream in(log_path);
  std::string line;
  while (std::getline(in, line)) {
    try {
      const json j = json::parse(line);
      json point = {{"step", j.at("step")}, {"loss", j.at("loss")}};
      if (j.contains("eval_loss")) point["eval_loss"] = j["eval_loss"];
      by_step[j.at("step").get<long long>()] = point;
    } catch (const json::exception&) {
    }
  }
  json curve = json::array();
  for (auto& [step, point] : by_step) curve.push_back(point);
  return curve;
}

json pi4_projection_json(const std::string& path) {
  try {
    const GgufFile gguf(path);
    const auto matrices = pi4_decode_matrices(gguf);
    const Pi4Projection p = project_pi4(matrices);
    json bounds = json::array();
    for (const auto& b : p.bounds) {
      bounds.push_back({{"clock_ghz", b.clock_ghz}, {"bandwidth_gbs", b.bandwidth_gbs},
                        {"tokens_per_s", b.tokens_per_second()}, {"bound", b.compute_bound() ? "compute" : "memory"}});
    }
    return {{"bytes_per_token", p.bytes}, {"cycles_per_token", p.cycles}, {"bounds", bounds}};
  } catch (const Error& e) {
    return {{"not_projected", e.what()}};
  }
}

json machine_json() {
  json m = {{"threads_available", std::thread::hardware_concurrency()}};
  std::ifstream cpu("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpu, line)) {
    if (line.rfind("model name", 0) == 0) {
      m["cpu"] = line.substr(line.find(':') + 2);
      break;
    }
  }
  return m;
}

std::string find_on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const fs::path candidate = fs::path(dir) / name;
    if (!dir.empty() && ::access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return "";
}

}  // namespace

json collect_pipeline_report(const PipelineRecipe& recipe, const std::string& run_dir,
                             const std::vector<PipelineVariant>& variants, const std::vector<PipelineStepStatus>& steps) {
  json report = {{"recipe", recipe.path}, {"name", recipe.name}, {"model", recipe.model}, {"run_dir", run_dir},
                 {"machine", machine_json()}};
  const std::time_t now = std::time(nullptr);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
  report["date"] = date;

  json rows = json::array();
  for (const PipelineVariant& v : variants) {
    json row = {{"name", v.name}, {"path", v.path}};
    try {
      const json info = inspect_model_file(v.path);
      for (const char* k : {"architecture", "n_params", "size_gb", "size_gib", "bits_per_weight", "mlp_widths", "file_type"}) {
        if (info.contains(k)) row[k] = info[k];
      }
      row["file_bytes"] = info.value("file_bytes", info.value("tensor_bytes", 0));
    } catch (const Error& e) {
      row["inspect_error"] = e.what();
    }
    if (const auto* s = find_step(steps, "evaluate", v.name); s && s->result.is_object()) {
      const json& r = s->result;
      row["eval"] = {{"ppl", r.value("ppl_model", NAN)}, {"ppl_stderr", r.value("ppl_model_stderr", NAN)},
                     {"kld", v.name == "base" ? 0.0 : r.value("kld_mean", NAN)},
                     {"kld_stderr", v.name == "base" ? 0.0 : r.value("kld_stderr", NAN)},
                     {"top1", v.name == "base" ? 1.0 : r.value("top1_agreement", NAN)},
                     {"chunks", r.value("n_chunks", 0)}, {"ctx", r.value("n_ctx", 0)}};
    }
    if (const auto* s = find_step(steps, "bench", v.name); s && s->result.is_object()) {
      const json& r = s->result;
      json bench = {{"threads", r.value("threads", 0)}, {"peak_rss_bytes", r.value("peak_rss_bytes", 0)},
                    {"rss_after_load_bytes", r.value("rss_after_load_bytes", 0)}};
      if (r.contains("load_cold_seconds")) bench["load_cold_s"] = r["load_cold_seconds"].value("mean", NAN);
      if (r.contains("load_warm_seconds")) bench["load_warm_s"] = r["load_warm_seconds"].value("mean", NAN);
      if (r.contains("decode")) bench["decode_tps"] = r["decode"]["tokens_per_second"].value("mean", NAN);
      if (r.contains("prompt") && !r["prompt"].empty()) {
        const json& p = r["prompt"][0];
        bench["prompt_tokens"] = p.value("n_tokens", 0);
        bench["prompt_tps"] = p["tokens_per_second"].value("mean", NAN);
        bench["ttft_s"] = p["ttft_seconds"].value("mean", NAN);
      }
      if (r.contains("bandwidth")) bench["bandwidth_efficiency"] = r["bandwidth"].value("efficiency", NAN);
      row["bench"] = bench;
      row["pi4"] = pi4_projection_json(v.path);
    }
    rows.push_back(row);
  }
  report["variants"] = rows;

  if (const auto* s = find_step(steps, "prune", "model"); s && s->result.is_object()) {
    const json& r = s->result;
    json widths_before = json::array(), widths_after = json::array();
    for (const auto& l : r.value("per_layer", json::array())) {
      widths_before.push_back(l.value("width_before", 0));
      widths_after.push_back(l.value("width_after", 0));
    }
    report["pruning"] = {{"criterion", r.value("criterion", "")}, {"allocation", r.value("allocation", "")},
                         {"layers", r.value("layers", json::array())}, {"params_before", r.value("params_before", 0)},
                         {"params_after", r.value("params_after", 0)}, {"widths_before", widths_before},
                         {"widths_after", widths_after}, {"bias_compensation", r.value("bias_compensation", false)},
                         {"calibration_tokens", r.value("calibration_tokens", 0)}};
  }
  if (const auto* s = find_step(steps, "finetune", "adapter"); s && s->result.is_object()) {
    const json& r = s->result;
    report["finetune"] = {{"steps", r.value("steps", 0)}, {"first_eval_loss", r.value("first_eval_loss", NAN)},
                          {"final_eval_loss", r.value("final_eval_loss", NAN)}, {"final_loss", r.value("final_loss", NAN)},
                          {"seconds", s->seconds},
                          {"curve", training_curve(run_dir + "/finetune/train.log")}};
  }
  json timeline = json::array();
  for (const auto& s : steps) {
    timeline.push_back({{"step", s.label}, {"seconds", s.seconds}, {"peak_rss_bytes", s.peak_rss_bytes}, {"cached", s.cached}});
  }
  report["steps"] = timeline;
  return report;
}

void draw_report_plots(json& report, const std::string& run_dir) {
  const std::string gnuplot = find_on_path("gnuplot");
  if (gnuplot.empty()) {
    report["plots_error"] = "gnuplot not found on PATH (scripts/setup.sh installs gnuplot-nox)";
    log::warn("pipeline: ", report["plots_error"].get<std::string>(), "; the report has no plots");
    return;
  }
  const std::string dir = run_dir + "/plots";
  fs::create_directories(dir);
  std::ostringstream script;
  script << "set terminal pngcairo size 900,560 font 'sans,11' noenhanced\nset grid\nset key top left\n";
  json plots = json::object();

  // Size against perplexity, one labelled point per evaluated variant.
  std::ostringstream sizes;
  for (const auto& v : report["variants"]) {
    if (!v.contains("eval") || !v.contains("size_gb")) continue;
    const double ppl = v["eval"].value("ppl", NAN);
    if (std::isfinite(ppl)) sizes << '"' << v["name"].get<std::string>() << "\" " << v["size_gb"].get<double>() * 1000 << " " << ppl << "\n";
  }
  if (!sizes.str().empty()) {
    write_file_atomic(dir + "/size_ppl.dat", sizes.str());
    script << "set output '" << dir << "/size_vs_perplexity.png'\nset title 'Size against perplexity'\n"
           << "set xlabel 'file size (MB)'\nset ylabel 'perplexity (held-out text)'\nset offsets graph 0.1, graph 0.1, graph 0.1, graph 0.1\n"
           << "plot '" << dir << "/size_ppl.dat' using 2:3 with points pt 7 ps 1.5 notitle, '' using 2:3:1 with labels offset 0,1 notitle\n"
           << "set offsets\n";
    plots["size_vs_perplexity"] = dir + "/size_vs_perplexity.png";
  }
  // MLP width per layer before and after pruning.
  if (report.contains("pruning")) {
    std::ostringstream widths;
    const auto& before = report["pruning"]["widths_before"];
    const auto& after = report["pruning"]["widths_after"];
    for (std::size_t l = 0; l < before.size(); ++l) widths << l << " " << before[l].get<long long>() << " " << after[l].get<long long>() << "\n";
    write_file_atomic(dir + "/mlp_widths.dat", widths.str());
    script << "set output '" << dir << "/mlp_widths.png'\nset title 'MLP width per layer'\nset xlabel 'layer'\n"
           << "set ylabel 'MLP neurons'\nset yrange [0:*]\nset style fill solid 0.6\nset boxwidth 0.4\nset key bottom right\n"
           << "plot '" << dir << "/mlp_widths.dat' using ($1-0.2):2 with boxes title 'before', '' using ($1+0.2):3 with boxes title 'after pruning'\n"
           << "set yrange [*:*]\nset key top left\n";
    plots["mlp_widths"] = dir + "/mlp_widths.png";
  }
  // Training loss curve of the recovery.
  if (report.contains("finetune") && !report["finetune"]["curve"].empty()) {
    std::ostringstream loss, eval;
    for (const auto& p : report["finetune"]["curve"]) {
      loss << p["step"].get<long long>() << " " << p["loss"].get<double>() << "\n";
      if (p.contains("eval_loss")) eval << p["step"].get<long long>() << " " << p["eval_loss"].get<double>() << "\n";
    }
    write_file_atomic(dir + "/loss.dat", loss.str());
    write_file_atomic(dir + "/eval_loss.dat", eval.str().empty() ? "0 NaN\n" : eval.str());
    // Two axes: the training objective (a distillation KL is far below a cross-entropy) and the held-out loss.
    script << "set output '" << dir << "/training_loss.png'\nset title 'Recovery: training loss'\nset xlabel 'step'\n"
           << "set ylabel 'training batch: the objective (nats per token)'\nset y2label 'held-out loss (nats per token)'\n"
           << "set ytics nomirror\nset y2tics\nset key top right\n"
           << "plot '" << dir << "/loss.dat' using 1:2 axes x1y1 with lines title 'training batch (left)', '" << dir
           << "/eval_loss.dat' using 1:2 axes x1y2 with linespoints pt 7 title 'held-out (right)'\n";
    plots["training_loss"] = dir + "/training_loss.png";
  }
  if (plots.empty()) return;
  write_file_atomic(dir + "/plots.gp", script.str());
  const ChildResult r = run_child({gnuplot, dir + "/plots.gp"}, dir + "/gnuplot.out", dir + "/gnuplot.log");
  if (r.exit_code != 0) {
    report["plots_error"] = "gnuplot failed: " + last_line_of(dir + "/gnuplot.log");
    log::warn("pipeline: ", report["plots_error"].get<std::string>());
    return;
  }
  report["plots"] = plots;
}

std::string render_variant_table(const json& report) {
  std::ostringstream md;
  md << "| variant | parameters | size (GB) | size (GiB) | bits/weight | perplexity | KLD vs base | top-1 agreement |\n"
     << "|---|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const auto& v : report["variants"]) {
    const json e = v.value("eval", json::object());
    md << "| " << v["name"].get<std::string>() << " | " << params_text(v.value("n_params", 0.0)) << " | "
       << fmt_json(v, "size_gb", 4) << " | " << fmt_json(v, "size_gib", 4) << " | " << fmt_json(v, "bits_per_weight", 2)
       << " | " << (e.contains("ppl") ? fmt_json(e, "ppl", 3) + " ± " + fmt_json(e, "ppl_stderr", 3) : "—") << " | "
       << fmt_json(e, "kld", 4) << " | " << fmt_json(e, "top1", 3) << " |\n";
  }
  return md.str();
}

std::string render_report_markdown(const json& report) {
  std::ostringstream md;
  md << "# piquant pipeline report: " << report.value("name", "") << "\n\n"
     << "Recipe `" << report.value("recipe", "") << "`, input model `" << report.value("model", "") << "`, "
     << report.value("date", "") << ", on " << report["machine"].value("cpu", "an unknown CPU") << ".\n\n";

  md << "## Size and quality\n\n"
     << "Perplexity on the held-out text and the mean KL divergence of each variant's next-token distribution from the "
        "input model's (`piquant kld`, ";
  for (const auto& v : report["variants"]) {
    if (v.contains("eval")) {
      md << v["eval"].value("chunks", 0) << " chunks of " << v["eval"].value("ctx", 0) << " tokens";
      break;
    }
  }
  md << "). Sizes are the GGUF files: GB = 10⁹ bytes, GiB = 2³⁰.\n\n" << render_variant_table(report) << "\n";

  if (report.contains("pruning")) {
    const json& p = report["pruning"];
    md << "## Pruning\n\n"
       << "| criterion | allocation | layers | parameters before | after | removed | MLP widths after |\n|---|---|---|---:|---:|---:|---|\n"
       << "| " << p.value("criterion", "") << " | " << p.value("allocation", "") << " | " << p["layers"].dump() << " | "
       << params_text(p.value("params_before", 0.0)) << " | " << params_text(p.value("params_after", 0.0)) << " | "
       << fmt(100.0 * (1.0 - p.value("params_after", 0.0) / std::max(1.0, p.value("params_before", 1.0))), 1) << "% | ";
    std::string widths;
    for (const auto& w : p["widths_after"]) widths += (widths.empty() ? "" : ", ") + std::to_string(w.get<long long>());
    md << widths << " |\n\n";
  }
  if (report.contains("finetune")) {
    const json& f = report["finetune"];
    md << "## Recovery\n\n| steps | held-out loss before | after | last batch loss | time |\n|---:|---:|---:|---:|---:|\n| "
       << f.value("steps", 0) << " | " << fmt_json(f, "first_eval_loss", 4) << " | " << fmt_json(f, "final_eval_loss", 4)
       << " | " << fmt_json(f, "final_loss", 4) << " | " << fmt(f.value("seconds", 0.0), 1) << " s |\n\n";
  }
  bool any_bench = false;
  for (const auto& v : report["variants"]) any_bench = any_bench || v.contains("bench");
  if (any_bench) {
    md << "## Deployment benchmark (this machine)\n\n"
       << "`piquant bench`: load from a cold and a warm page cache, time to first token and prompt speed for one prompt "
          "in one batch, decode one token at a time, peak resident memory.\n\n"
       << "| variant | threads | load cold (s) | load warm (s) | first token (s) | prompt tok/s | decode tok/s | peak RSS (MiB) |\n"
       << "|---|---:|---:|---:|---:|---:|---:|---:|\n";
    for (const auto& v : report["variants"]) {
      if (!v.contains("bench")) continue;
      const json& b = v["bench"];
      md << "| " << v["name"].get<std::string>() << " | " << b.value("threads", 0) << " | " << fmt_json(b, "load_cold_s", 3)
         << " | " << fmt_json(b, "load_warm_s", 3) << " | " << fmt_json(b, "ttft_s", 3) << " | " << fmt_json(b, "prompt_tps", 1)
         << " | " << fmt_json(b, "decode_tps", 1) << " | " << fmt_json(b, "peak_rss_bytes", 1, 1.0 / (1 << 20)) << " |\n";
    }
    md << "\n## Raspberry Pi 4 projection\n\n"
       << "Decode tokens/s projected from the Cortex-A72 cycle counts of the NEON kernels and the Pi 4's memory "
          "bandwidth (`piquant bench --project-pi4`; a static model, not a measurement).\n\n"
       << "| variant | bytes per token (MB) | 1.5 GHz, 5.5 GB/s | 1.8 GHz, 12.8 GB/s | bound |\n|---|---:|---:|---:|---|\n";
    for (const auto& v : report["variants"]) {
      if (!v.contains("pi4")) continue;
      const json& p = v["pi4"];
      if (p.contains("not_projected")) {
        md << "| " << v["name"].get<std::string>() << " | — | — | — | not projected: " << p["not_projected"].get<std::string>() << " |\n";
        continue;
      }
      const json& b = p["bounds"];
      md << "| " << v["name"].get<std::string>() << " | " << fmt(p.value("bytes_per_token", 0.0) / 1e6, 2) << " | "
         << fmt_json(b.front(), "tokens_per_s", 1) << " | " << fmt_json(b.back(), "tokens_per_s", 1) << " | "
         << b.back().value("bound", "") << " |\n";
    }
    md << "\n";
  }
  if (report.contains("plots")) {
    md << "## Plots\n\n";
    for (const auto& [name, path] : report["plots"].items()) {
      const std::string file = fs::path(path.get<std::string>()).filename().string();
      md << "![" << name << "](plots/" << file << ")\n\n";
    }
  } else if (report.contains("plots_error")) {
    md << "No plots: " << report["plots_error"].get<std::string>() << "\n\n";
  }
  md << "## Steps\n\nWall time and peak resident memory of each step's subcommand.\n\n"
     << "| step | time (s) | peak RSS (MiB) | |\n|---|---:|---:|---|\n";
  for (const auto& s : report["steps"]) {
    md << "| " << s["step"].get<std::string>() << " | " << fmt(s["seconds"].get<double>(), 1) << " | "
       << fmt_json(s, "peak_rss_bytes", 0, 1.0 / (1 << 20)) << " | "
       << (s["cached"].get<bool>() ? "unchanged, not rerun" : "") << " |\n";
  }
  return md.str();
}

std::string step_summary(const std::string& stage, const json& r) {
  if (!r.is_object()) return "";
  if (stage == "prune") return "parameters " + params_text(r.value("params_before", 0.0)) + " → " + params_text(r.value("params_after", 0.0));
  if (stage == "finetune") return "held-out loss " + fmt_json(r, "first_eval_loss", 3) + " → " + fmt_json(r, "final_eval_loss", 3);
  if (stage == "awq") {
    return std::to_string(r.value("groups_scaled", 0)) + " of " + std::to_string(r.value("groups_total", 0)) +
           " groups scaled, output error " + fmt_json(r, "error_plain", 1) + " → " + fmt_json(r, "error_chosen", 1);
  }
  if (stage == "evaluate") return "perplexity " + fmt_json(r, "ppl_model", 3) + ", KLD " + fmt_json(r, "kld_mean", 4);
  if (stage == "bench" && r.contains("decode")) return "decode " + fmt(r["decode"]["tokens_per_second"].value("mean", NAN), 1) + " tok/s";
  return "";
}

}  // namespace piquant
