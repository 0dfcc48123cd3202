#include "pipeline/pipeline_runner.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>
#include <sstream>
#include <thread>

#include "core/atomic_file.h"
#include "core/error.h"
#include "pipeline/child_process.h"
#include "pipeline/content_hash.h"
#include "pipeline/pipeline_report.h"

namespace piquant {
namespace fs = std::filesystem;
namespace {

constexpr const char* kVersion = "piquant 0.1.0";

struct Step {
  std::string stage, item, label;
  std::vector<std::string> args;     // after the executable
  std::vector<std::string> outputs;  // must all exist after a successful run
  std::vector<std::string> stale;    // files of an interrupted run with another key: removed first
  nlohmann::json key_material;
  std::string key;
  std::string checkpoint;    // finetune: resume from this when it exists and the key matches
  std::string progress_log;  // finetune: its --log (step/steps per line)
  std::string unit;          // what the progress counts
};

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::optional<nlohmann::json> read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
}

// The last "k/n" in a stage's log (chunks, tensors, steps), for its progress bar.
std::optional<std::pair<long long, long long>> fraction_in_log(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return std::nullopt;
  const std::streamoff size = in.tellg();
  const std::streamoff from = std::max<std::streamoff>(0, size - 2048);
  in.seekg(from);
  std::string tail(static_cast<std::size_t>(size - from), '\0');
  in.read(tail.data(), static_cast<std::streamsize>(tail.size()));
  static const std::regex pattern(R"((\d+)\s*/\s*(\d+))");
  std::optional<std::pair<long long, long long>> last;
  for (auto it = std::sregex_iterator(tail.begin(), tail.end(), pattern); it != std::sregex_iterator(); ++it) {
    const long long done = std::stoll((*it)[1]), total = std::stoll((*it)[2]);
    if (total > 0 && done <= total) last = {done, total};
  }
  return last;
}

std::optional<std::pair<long long, long long>> fraction_in_train_log(const std::string& path) {
  std::ifstream in(path);
  std::string line, last;
  while (std::getline(in, line)) {
    if (!line.empty()) last = line;
  }
  if (last.empty()) return std::nullopt;
  try {
    const auto j = nlohmann::json::parse(last);
    return std::pair<long long, long long>{j.at("step").get<long long>(), j.at("steps").get<long long>()};
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
}

class Planner {
 public:
  Planner(const PipelineRecipe& recipe, const PipelineOptions& options)
      : recipe_(recipe), run_(fs::absolute(options.run_dir).lexically_normal().string()),
        hashes_((fs::path(run_) / "input-hashes.json").string()) {
    threads_ = recipe.threads != 0 ? recipe.threads : std::max(1u, std::thread::hardware_concurrency());
  }

  std::vector<Step> plan(std::vector<PipelineVariant>& variants) {
    std::vector<Step> steps;
    const std::string base = recipe_.model;
    variants.push_back({"base", base, ""});
    std::string current = base, current_key = input_key(base);

    if (const StageOptions* s = recipe_.stage("prune")) {
      Step step = make("prune", "model", "prune", *s, {current_key});
      const std::string out = dir("prune") + "/model.gguf";
      step.args = {"prune", "-m", current, "-o", out, "--report", dir("prune") + "/prune-report.json", "--json"};
      append_flags(step, *s);
      step.outputs = {out};
      steps.push_back(step);
      current = out;
      current_key = step.key;
      variants.push_back({"pruned", out, step.label});
    }
    std::string adapter, adapter_key;
    if (const StageOptions* s = recipe_.stage("finetune")) {
      std::vector<std::string> inputs = {current_key};
      if (s->boolean("distill", false)) inputs.push_back(input_key(base));
      Step step = make("finetune", "adapter", "finetune", *s, inputs);
      step.key_material["threads"] = threads_;  // training results depend on the thread count
      step.key = hex64(hash_text(step.key_material.dump()));
      adapter = dir("finetune") + "/adapter.gguf";
      step.checkpoint = dir("finetune") + "/train-state.safetensors";
      step.progress_log = dir("finetune") + "/train.log";
      step.unit = "steps";
      step.args = {"finetune", "-m", current, "-o", adapter, "--checkpoint", step.checkpoint, "--log", step.progress_log, "--json"};
      if (!s->has("checkpoint_every")) step.args.insert(step.args.end(), {"--checkpoint-every", "25"});
      if (s->boolean("distill", false)) step.args.insert(step.args.end(), {"--teacher", base});
      append_flags(step, *s);
      step.outputs = {adapter};
      step.stale = {step.checkpoint, step.progress_log};
      steps.push_back(step);
      adapter_key = step.key;
    }
    if (const StageOptions* s = recipe_.stage("merge")) {
      if (s->has("adapter")) {
        adapter = s->text("adapter");
        adapter_key = input_key(adapter);
      }
      Step step = make("merge", "model", "merge", *s, {current_key, adapter_key});
      const std::string out = dir("merge") + "/model.gguf";
      step.args = {"merge", "-m", current, "--lora", adapter, "-o", out, "--json"};
      append_flags(step, *s);
      step.outputs = {out};
      steps.push_back(step);
      current = out;
      current_key = step.key;
      variants.push_back({"recovered", out, step.label});
    }
    if (const StageOptions* s = recipe_.stage("awq")) {
      // One scaled model for every recipe: the scales are searched for one of them.
      const StageOptions* q = recipe_.stage("quantize");
      std::string for_recipe = s->text("for_recipe");
      if (for_recipe.empty() && q != nullptr && !q->texts("recipes").empty()) for_recipe = q->texts("recipes").front();
      Step step = make("awq", "model", "awq", *s, {current_key});
      step.key_material["for_recipe"] = for_recipe;
      step.key = hex64(hash_text(step.key_material.dump()));
      const std::string out = dir("awq") + "/model.gguf";
      step.args = {"awq", "-m", current, "-o", out, "--json"};
      append_flags(step, *s);
      if (!s->has("for_recipe") && !for_recipe.empty()) step.args.insert(step.args.end(), {"--for-recipe", for_recipe});
      step.outputs = {out};
      step.unit = "groups";
      steps.push_back(step);
      current = out;
      current_key = step.key;
    }
    std::string imatrix, imatrix_key;
    if (const StageOptions* s = recipe_.stage("imatrix")) {
      Step step = make("imatrix", "imatrix", "imatrix", *s, {current_key});
      imatrix = dir("imatrix") + "/imatrix.dat";
      step.args = {"imatrix", "-m", current, "-o", imatrix, "--json"};
      append_flags(step, *s);
      step.outputs = {imatrix};
      step.unit = "chunks";
      steps.push_back(step);
      imatrix_key = step.key;
    }
    if (const StageOptions* s = recipe_.stage("quantize")) {
      const bool use_imatrix = s->boolean("imatrix", !imatrix.empty());
      for (const std::string& r : s->texts("recipes")) {
        std::vector<std::string> inputs = {current_key};
        if (use_imatrix) inputs.push_back(imatrix_key);
        Step step = make("quantize", r, "quantize " + r, *s, inputs);
        step.key_material["recipe"] = r;
        step.key = hex64(hash_text(step.key_material.dump()));
        const std::string out = dir("quantize") + "/model-" + r + ".gguf";
        step.args = {"quantize", current, out, r};
        if (use_imatrix) step.args.insert(step.args.end(), {"--imatrix", imatrix});
        step.outputs = {out};
        step.unit = "tensors";
        steps.push_back(step);
        variants.push_back({r, out, step.label});
      }
    }
    if (const StageOptions* s = recipe_.stage("evaluate")) {
      const std::string logits = dir("evaluate") + "/base.logits";
      std::string base_eval_key;
      for (const PipelineVariant& v : variants) {
        const bool is_base = v.name == "base";
        std::vector<std::string> inputs = {variant_key(v, steps)};
        if (!is_base) inputs.push_back(base_eval_key);
        Step step = make("evaluate", v.name, "evaluate " + v.name, *s, inputs);
        if (is_base) {
          step.args = {"kld", "--base", v.path, "-m", v.path, "--save-logits", logits, "--json"};
          step.outputs = {logits};
          base_eval_key = step.key;
        } else {
          step.args = {"kld", "--base-logits", logits, "-m", v.path, "--json"};
        }
        append_flags(step, *s);
        step.unit = "chunks";
        steps.push_back(step);
      }
    }
    if (const StageOptions* s = recipe_.stage("bench")) {
      std::vector<std::string> names = s->texts("variants");
      if (names.empty()) {
        for (const auto& v : variants) {
          if (v.name != "base" && v.name != "pruned" && v.name != "recovered") names.push_back(v.name);
        }
        if (names.empty()) names.push_back(variants.back().name);
      }
      for (const std::string& name : names) {
        const auto v = std::find_if(variants.begin(), variants.end(), [&](const auto& x) { return x.name == name; });
        if (v == variants.end()) {
          throw Error(recipe_.path + ":" + std::to_string(s->find("variants")->line) + ": [bench] variants: no variant named " +
                      name + " (this recipe makes: " + variant_names(variants) + ")");
        }
        Step step = make("bench", name, "bench " + name, *s, {variant_key(*v, steps)});
        step.key_material["threads"] = threads_;
        step.key = hex64(hash_text(step.key_material.dump()));
        std::string prompts;
        for (const auto p : s->integers("prompt")) {
          if (!prompts.empty()) prompts += ',';
          prompts += std::to_string(p);
        }
        step.args = {"bench", "-m", v->path, "-p", prompts.empty() ? "64" : prompts, "-n",
                     std::to_string(s->integer("gen", 32)), "-r", std::to_string(s->integer("reps", 3)),
                     "--bandwidth-mib", "256", "-o", "json"};
        steps.push_back(step);
      }
    }
    for (Step& step : steps) {
      if (recipe_.threads != 0) step.args.insert(step.args.end(), {"-t", std::to_string(recipe_.threads)});
    }
    hashes_.save();
    return steps;
  }

  unsigned threads() const { return threads_; }

 private:
  std::string dir(const std::string& stage) const { return run_ + "/" + stage; }

  std::string input_key(const std::string& path) { return "input:" + hashes_.hash(path); }

  static std::string variant_names(const std::vector<PipelineVariant>& variants) {
    std::string s;
    for (const auto& v : variants) s += (s.empty() ? "" : ", ") + v.name;
    return s;
  }

  std::string variant_key(const PipelineVariant& v, const std::vector<Step>& steps) {
    if (v.step.empty()) return input_key(v.path);
    for (const Step& s : steps) {
      if (s.label == v.step) return s.key;
    }
    throw Error("pipeline: no step made " + v.name);
  }

  // The step's key material: stage, item, every option (paths by content), inputs' keys.
  Step make(const std::string& stage, const std::string& item, const std::string& label, const StageOptions& options,
            const std::vector<std::string>& inputs) {
    Step step;
    step.stage = stage;
    step.item = item;
    step.label = label;
    nlohmann::json opts = nlohmann::json::object();
    for (const auto& [k, v] : options.values) opts[k] = v.kind == OptionKind::Path ? input_key(v.text) : v.to_string();
    step.key_material = {{"version", kVersion}, {"stage", stage}, {"item", item}, {"options", opts}, {"inputs", inputs}};
    step.key = hex64(hash_text(step.key_material.dump()));
    return step;
  }

  // Options with a subcommand flag become "--flag value" (booleans: "--flag" when true).
  static void append_flags(Step& step, const StageOptions& options) {
    const StageSchema& schema = stage_schema(options.name);
    for (const OptionSpec& spec : schema.options) {
      const OptionValue* v = options.find(spec.key);
      if (v == nullptr || spec.flag.empty()) continue;
      if (spec.kind == OptionKind::Boolean) {
        if (v->integer != 0) step.args.push_back(spec.flag);
        continue;
      }
      step.args.push_back(spec.flag);
      step.args.push_back(v->to_string());
    }
  }

  const PipelineRecipe& recipe_;
  std::string run_;
  InputHashCache hashes_;
  unsigned threads_ = 1;
};

}  // namespace

PipelineOutcome run_pipeline(const PipelineRecipe& recipe, const PipelineOptions& options) {
  fs::create_directories(options.run_dir);
  const std::string run = fs::absolute(options.run_dir).lexically_normal().string();
  PipelineOutcome outcome;
  Planner planner(recipe, options);
  const std::vector<Step> steps = planner.plan(outcome.variants);
  StageProgress progress(options.style, options.progress_out);

  const int total = static_cast<int>(steps.size());
  for (int i = 0; i < total; ++i) {
    const Step& step = steps[static_cast<std::size_t>(i)];
    const std::string dir = run + "/" + step.stage;
    fs::create_directories(dir);
    const std::string base = dir + "/" + step.item;
    const std::string record_path = base + ".record.json", pending_path = base + ".pending";
    const std::string stdout_path = base + ".stdout.json", log_path = base + ".log";

    PipelineStepStatus status;
    status.stage = step.stage;
    status.item = step.item;
    status.label = step.label;
    status.key = step.key;
    const auto record = read_json(record_path);
    const bool outputs_exist =
        std::all_of(step.outputs.begin(), step.outputs.end(), [](const std::string& p) { return fs::exists(p); });
    if (!options.force && record && record->value("key", "") == step.key && outputs_exist) {
      status.cached = true;
      status.seconds = record->value("seconds", 0.0);
      status.peak_rss_bytes = record->value("peak_rss_bytes", std::uint64_t{0});
      status.result = record->value("result", nlohmann::json());
      progress.skip(i + 1, total, step.label, "unchanged (" + format_duration(status.seconds) + " when it ran)");
      outcome.steps.push_back(status);
      continue;
    }
    if (options.dry_run) {
      progress.skip(i + 1, total, step.label, "would run: piquant " + [&] {
        std::string s;
        for (const auto& a : step.args) s += (s.empty() ? "" : " ") + a;
        return s;
      }());
      outcome.steps.push_back(status);
      continue;
    }

    // An interrupted run of this step with the same key resumes; with another key its files go.
    const bool same_pending = fs::exists(pending_path) && read_text(pending_path) == step.key;
    if (!same_pending || options.force) {
      for (const auto& f : step.stale) fs::remove(f);
      fs::remove(log_path);
    }
    fs::remove(record_path);
    write_file_atomic(pending_path, step.key);

    std::vector<std::string> argv = {options.executable};
    argv.insert(argv.end(), step.args.begin(), step.args.end());
    if (!step.checkpoint.empty() && same_pending && !options.force && fs::exists(step.checkpoint)) argv.push_back("--resume");

    progress.start(i + 1, total, step.label);
    const auto start = std::chrono::steady_clock::now();
    const ChildResult child = run_child(argv, stdout_path, log_path, [&] {
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const auto fraction = step.progress_log.empty() ? fraction_in_log(log_path) : fraction_in_train_log(step.progress_log);
      progress.update(elapsed, fraction, step.unit.empty() ? "" : step.unit);
    });
    if (child.exit_code != 0) {
      if (options.style == ProgressStyle::Terminal) std::fprintf(options.progress_out, "\n");
      const std::string why = last_line_of(log_path);
      throw Error("pipeline: " + step.label + " failed (exit status " + std::to_string(child.exit_code) + ")" +
                  (why.empty() ? "" : ": " + why) + "\n  command: piquant " +
                  [&] {
                    std::string s;
                    for (std::size_t a = 1; a < argv.size(); ++a) s += (a > 1 ? " " : "") + argv[a];
                    return s;
                  }() +
                  "\n  log: " + log_path);
    }
    for (const auto& out : step.outputs) {
      if (!fs::exists(out)) throw Error("pipeline: " + step.label + " finished but did not write " + out);
    }
    status.seconds = child.seconds;
    status.peak_rss_bytes = child.peak_rss_bytes;
    status.result = read_json(stdout_path).value_or(nlohmann::json());
    const nlohmann::json rec = {{"key", step.key}, {"label", step.label}, {"seconds", child.seconds},
                                {"peak_rss_bytes", child.peak_rss_bytes}, {"command", argv}, {"key_material", step.key_material}, {"result", status.result}};
    write_file_atomic(record_path, rec.dump(2) + "\n");
    fs::remove(pending_path);
    progress.done(child.seconds, step_summary(step.stage, status.result));
    outcome.steps.push_back(status);
  }
  if (options.dry_run) return outcome;

  outcome.report = collect_pipeline_report(recipe, run, outcome.variants, outcome.steps);
  outcome.report_json = run + "/report.json";
  outcome.report_md = run + "/REPORT.md";
  draw_report_plots(outcome.report, run);
  write_file_atomic(outcome.report_json, outcome.report.dump(2) + "\n");
  write_file_atomic(outcome.report_md, render_report_markdown(outcome.report));
  return outcome;
}

}  // namespace piquant
