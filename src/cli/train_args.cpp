#include "cli/train_args.h"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <thread>

#include "core/error.h"
#include "core/logger.h"
#include "core/memory_info.h"

namespace piquant::cli {

void add_train_options(CLI::App& cmd, TrainArgs& a) {
  TrainerOptions& t = a.trainer;
  cmd.add_option("--data", a.data, "Training data: alpaca JSON (instruction/input/output) or a plain text file")->required();
  cmd.add_option("--format", a.format, "alpaca or text (default: alpaca for .json files, text otherwise)")
      ->check(CLI::IsMember({"alpaca", "text"}));
  cmd.add_option("--max-seq", a.max_seq, "Positions per sequence at most")->capture_default_str()->check(CLI::PositiveNumber);
  cmd.add_option("--max-records", a.max_records, "Alpaca: use only the first N records (0: all)")->capture_default_str();
  cmd.add_option("--held-out", a.held_out, "Share of the sequences held out for evaluation")->capture_default_str()->check(CLI::Range(0.0, 0.9));
  cmd.add_option("--held-out-count", a.held_out_count, "Sequences held out (instead of --held-out)");
  cmd.add_option("--steps", t.steps, "Optimizer steps (0: from --epochs)")->capture_default_str();
  cmd.add_option("--epochs", t.epochs, "Passes over the training sequences when --steps is 0")->capture_default_str();
  cmd.add_option("--batch", t.batch, "Sequences per optimizer step (gradient accumulation)")->capture_default_str()->check(CLI::PositiveNumber);
  cmd.add_option("--lr", t.lr, "Peak learning rate")->capture_default_str();
  cmd.add_option("--warmup", t.warmup, "Warm-up steps (linear from 0)")->capture_default_str();
  cmd.add_option("--min-lr-ratio", t.min_lr_ratio, "Cosine decay ends at lr × this")->capture_default_str();
  cmd.add_flag("!--no-cosine", t.cosine, "Constant learning rate after the warm-up");
  cmd.add_option("--weight-decay", t.adam.weight_decay, "AdamW weight decay")->capture_default_str();
  cmd.add_option("--clip", t.adam.clip_norm, "Clip the gradient's global L2 norm (0: off)")->capture_default_str();
  cmd.add_option("--eval-every", t.eval_every, "Held-out loss every N steps (0: at the start and end only)")->capture_default_str();
  cmd.add_option("--checkpoint", t.checkpoint_path, "Training checkpoint file (.safetensors) for --resume");
  cmd.add_option("--checkpoint-every", t.checkpoint_every, "Write the checkpoint every N steps")->capture_default_str();
  cmd.add_flag("--resume", t.resume, "Continue the run saved in --checkpoint");
  cmd.add_option("--seed", t.seed, "Seed of the data order and initialisation")->capture_default_str();
  cmd.add_option("--loss-chunk", t.loss_chunk, "Tokens per chunk of the output head")->capture_default_str()->check(CLI::PositiveNumber);
  cmd.add_option("--log", a.log_file, "Append one JSON line per step to FILE");
  cmd.add_option("-t,--threads", a.threads, "Threads (0: one per core)")->capture_default_str();
  cmd.add_flag("--dry-run", a.dry_run, "Print the memory plan and stop");
  cmd.add_flag("--json", a.json, "Print the summary as JSON");
  cmd.add_flag("--no-memory-check", a.no_memory_check, "Run even when the plan exceeds the available memory");
  cmd.add_option("--activations", a.activations,
                 "keep (every layer's activations: faster, more memory), recompute (in the backward), or auto "
                 "(keep when it fits in the available memory); the same results either way")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "keep", "recompute"}));
}

DataSplit load_training_data(const TrainArgs& a, const Tokenizer& tokenizer) {
  std::string format = a.format;
  if (format.empty()) format = std::filesystem::path(a.data).extension() == ".json" ? "alpaca" : "text";
  TrainingData data;
  if (format == "alpaca") {
    data = load_alpaca(a.data, tokenizer, {a.max_seq, a.max_records});
  } else {
    data = load_text(a.data, tokenizer, {a.max_seq, false});
  }
  log::info(a.data, ": ", data.stats.examples, " sequences, ", data.stats.tokens, " tokens, ", data.stats.loss_targets,
            " loss targets", data.stats.truncated > 0 ? ", " + std::to_string(data.stats.truncated) + " truncated" : "",
            data.stats.dropped > 0 ? ", " + std::to_string(data.stats.dropped) + " dropped" : "");
  if (data.examples.empty()) {
    throw Error(a.data + ": no training sequence" +
                (data.stats.dropped > 0 ? " (all " + std::to_string(data.stats.dropped) + " records were dropped: their prompts " +
                                              "fill --max-seq " + std::to_string(a.max_seq) + "; raise it)"
                                        : ""));
  }
  HeldOut held{a.held_out, a.held_out_count};
  if (data.examples.size() < 2) held = {};
  return split_held_out(std::move(data.examples), held, a.trainer.seed);
}

nlohmann::json train_settings(const TrainArgs& a) {
  const TrainerOptions& t = a.trainer;
  return {{"data", a.data},         {"format", a.format},       {"max_seq", a.max_seq},
          {"held_out", a.held_out}, {"held_out_count", a.held_out_count}, {"max_records", a.max_records},
          {"steps", t.steps},       {"epochs", t.epochs},       {"batch", t.batch},
          {"lr", t.lr},             {"warmup", t.warmup},       {"min_lr_ratio", t.min_lr_ratio},
          {"cosine", t.cosine},     {"weight_decay", t.adam.weight_decay}, {"clip", t.adam.clip_norm},
          {"loss_chunk", t.loss_chunk}, {"cross_entropy", t.loss.cross_entropy}, {"distill", t.loss.distill},
          {"temperature", t.loss.temperature}, {"threads", a.threads}};
}

namespace {
std::string duration(double s) {
  if (!std::isfinite(s)) return "?";
  const auto total = static_cast<long long>(s + 0.5);
  char buf[32];
  if (total >= 3600) {
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", total / 3600, total / 60 % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%lldm%02llds", total / 60, total % 60);
  }
  return buf;
}
}  // namespace

TrainProgress::TrainProgress(const std::string& what, const std::string& log_file)
    : what_(what), log_path_(log_file), terminal_(log::level() <= log::Level::Info && ::isatty(2) != 0) {
  if (!log_file.empty()) {
    log_ = std::fopen(log_file.c_str(), "a");
    if (log_ == nullptr) throw Error(log_file + ": cannot open the log: " + std::strerror(errno));
  }
}

TrainProgress::~TrainProgress() {
  if (log_ != nullptr) std::fclose(log_);
}

void TrainProgress::step(const StepReport& r) {
  if (log_ != nullptr) {
    nlohmann::json line = {{"step", r.step}, {"steps", r.total_steps}, {"loss", r.loss}, {"lr", r.lr},
                           {"grad_norm", r.grad_norm}, {"tokens", r.tokens}, {"tokens_per_s", r.tokens_per_s},
                           {"elapsed_s", r.elapsed_s}};
    if (r.eval_loss) {
      line["eval_loss"] = *r.eval_loss;
      line["eval_ppl"] = std::exp(*r.eval_loss);
    }
    std::fprintf(log_, "%s\n", line.dump().c_str());
    std::fflush(log_);
  }
  if (terminal_) {
    constexpr int kWidth = 24;
    const int filled = static_cast<int>(kWidth * r.step / std::max<std::int64_t>(1, r.total_steps));
    std::string bar(static_cast<std::size_t>(filled), '=');
    bar.resize(kWidth, ' ');
    std::fprintf(stderr, "\r%s [%s] %lld/%lld loss %.4f lr %.2e %.0f tok/s ETA %s   ", what_.c_str(), bar.c_str(),
                 static_cast<long long>(r.step), static_cast<long long>(r.total_steps), r.loss, r.lr, r.tokens_per_s,
                 duration(r.eta_s).c_str());
  }
  if (r.eval_loss) {
    if (terminal_) std::fprintf(stderr, "\n");
    log::info(what_, ": step ", r.step, " held-out loss ", *r.eval_loss, " (perplexity ", std::exp(*r.eval_loss), ")");
  } else if (!terminal_) {
    log::debug(what_, ": step ", r.step, "/", r.total_steps, " loss ", r.loss);
  }
}

void TrainProgress::finish() {
  if (terminal_) std::fprintf(stderr, "\n");
}

void check_training_memory(const std::string& what, std::uint64_t bytes, bool no_check) {
  if (no_check) return;
  const std::optional<MemoryInfo> have = read_memory_info();
  if (!have || bytes <= have->available_bytes) return;
  throw Error(what + " needs " + format_memory_size(bytes) + " but " + format_memory_size(have->available_bytes) +
              " are available (" + have->source + "); shorten --max-seq, use a smaller model or quantized base, or pass "
              "--no-memory-check");
}

void report_training(const TrainArgs& args, const TrainerRun& run, nlohmann::json summary, const std::string& wrote) {
  summary["steps"] = run.steps_done;
  summary["resumed_from"] = run.resumed_from;
  summary["final_loss"] = run.final_loss;
  summary["peak_rss_bytes"] = read_process_memory().peak;
  if (run.first_eval_loss) summary["first_eval_loss"] = *run.first_eval_loss;
  if (run.final_eval_loss) summary["final_eval_loss"] = *run.final_eval_loss;
  if (args.json) {
    std::printf("%s\n", summary.dump(2).c_str());
    return;
  }
  std::printf("%s after %lld steps", wrote.c_str(), static_cast<long long>(run.steps_done));
  if (run.first_eval_loss && run.final_eval_loss) {
    std::printf("; held-out loss %.4f -> %.4f (perplexity %.3f -> %.3f)", *run.first_eval_loss, *run.final_eval_loss,
                std::exp(*run.first_eval_loss), std::exp(*run.final_eval_loss));
  }
  std::printf("\n");
}

bool choose_keep_activations(const TrainArgs& args, std::uint64_t bytes_recomputing, std::uint64_t bytes_keeping) {
  if (args.activations == "keep") return true;
  if (args.activations == "recompute") return false;
  const std::optional<MemoryInfo> have = read_memory_info();
  // Keep a tenth of the available memory free for everything the plan does not count.
  const bool keep = have && bytes_keeping <= have->available_bytes / 10 * 9;
  log::info("activations: ", keep ? "kept" : "recomputed in the backward", " (", format_memory_size(bytes_keeping), " keeping them, ",
            format_memory_size(bytes_recomputing), " recomputing", have ? ", " + format_memory_size(have->available_bytes) + " available" : std::string(), ")");
  return keep;
}

unsigned resolve_threads(unsigned threads) {
  if (threads > 0) return threads;
  return std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace piquant::cli
