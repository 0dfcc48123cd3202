#pragma once
// The options `finetune` and `train` share: data, schedule, optimizer, evaluation,
// checkpoints, logging; and the progress line / JSON log of a run.
#include <cstdio>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "train/trainer.h"
#include "train/training_data.h"

namespace piquant::cli {

struct TrainArgs {
  std::string data, format;  // format: "alpaca", "text" or "" (by the file's extension)
  std::int64_t max_seq = 512;
  double held_out = 0.05;
  std::int64_t held_out_count = 0;
  std::int64_t max_records = 0;
  TrainerOptions trainer;
  std::string log_file;
  unsigned threads = 0;
  bool dry_run = false;
  bool json = false;
  bool no_memory_check = false;
  std::string activations = "auto";  // keep, recompute, or auto
};

void add_train_options(CLI::App& cmd, TrainArgs& args);

// Training and held-out sequences from --data.
DataSplit load_training_data(const TrainArgs& args, const Tokenizer& tokenizer);

// The settings a resume must find unchanged (everything that shapes the run's numbers).
nlohmann::json train_settings(const TrainArgs& args);

// A progress line on a terminal, a JSON line per step in --log.
class TrainProgress {
 public:
  TrainProgress(const std::string& what, const std::string& log_file);
  ~TrainProgress();
  void step(const StepReport& r);
  void finish();

 private:
  std::string what_;
  std::FILE* log_ = nullptr;
  std::string log_path_;
  bool terminal_ = false;
};

// Refuses (Error) when `bytes` more than the machine has available are needed, unless
// the check is off; prints the plan's lines to the log.
void check_training_memory(const std::string& what, std::uint64_t bytes, bool no_check);

unsigned resolve_threads(unsigned threads);

// --activations: keep every layer's activations (a third fewer products, more memory) or
// recompute them in the backward; auto keeps them when the run still fits in the
// available memory with them. The results are the same bits either way.
bool choose_keep_activations(const TrainArgs& args, std::uint64_t bytes_recomputing, std::uint64_t bytes_keeping);

// The end of a run: `summary` plus the run's numbers and the peak RSS as JSON (--json),
// else `wrote` ("wrote X (...) after N steps") and the held-out loss before and after.
void report_training(const TrainArgs& args, const TrainerRun& run, nlohmann::json summary, const std::string& wrote);

}  // namespace piquant::cli
