#pragma once
// What the pipeline prints while it runs: on a terminal one line per stage, redrawn with a
// progress bar and ETA while the stage runs; elsewhere one line when a stage starts and one
// when it ends; with --json one JSON object per event (start, progress, done, skip); with
// --quiet nothing.
#include <cstdio>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace piquant {

enum class ProgressStyle { Terminal, Lines, Json, Quiet };

class StageProgress {
 public:
  StageProgress(ProgressStyle style, std::FILE* out) : style_(style), out_(out) {}

  void start(int index, int total, const std::string& step);
  // done/total of the stage's own unit (steps, chunks, tensors), when it reports one.
  void update(double elapsed_s, std::optional<std::pair<long long, long long>> fraction, const std::string& unit);
  void done(double seconds, const std::string& summary);
  void skip(int index, int total, const std::string& step, const std::string& why);

 private:
  void emit(const nlohmann::json& event);

  ProgressStyle style_;
  std::FILE* out_;
  std::string label_;
  std::string step_;
  double last_json_ = -1;
};

std::string format_duration(double seconds);  // "42s", "3m07s", "1h02m"

}  // namespace piquant
