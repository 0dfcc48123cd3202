#include "pipeline/stage_progress.h"

#include <algorithm>
#include <cmath>

namespace piquant {

std::string format_duration(double seconds) {
  const long long s = std::llround(std::max(0.0, seconds));
  char buf[32];
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%llds", s);
  } else if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", s / 3600, (s % 3600) / 60);
  }
  return buf;
}

void StageProgress::emit(const nlohmann::json& event) {
  std::fprintf(out_, "%s\n", event.dump().c_str());
  std::fflush(out_);
}

void StageProgress::start(int index, int total, const std::string& step) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "[%d/%d] ", index, total);
  label_ = buf + step;
  step_ = step;
  last_json_ = -1;
  switch (style_) {
    case ProgressStyle::Terminal: std::fprintf(out_, "%-34s", label_.c_str()); break;
    case ProgressStyle::Lines: std::fprintf(out_, "%s ...\n", label_.c_str()); break;
    case ProgressStyle::Json: emit({{"event", "start"}, {"step", step}, {"index", index}, {"total", total}}); break;
    case ProgressStyle::Quiet: break;
  }
  std::fflush(out_);
}

void StageProgress::update(double elapsed_s, std::optional<std::pair<long long, long long>> fraction,
                           const std::string& unit) {
  if (style_ == ProgressStyle::Json) {
    if (elapsed_s - last_json_ < 5) return;  // a line every 5 s at most
    last_json_ = elapsed_s;
    nlohmann::json e = {{"event", "progress"}, {"step", step_}, {"elapsed_s", elapsed_s}};
    if (fraction) e["done"] = fraction->first, e["of"] = fraction->second, e["unit"] = unit;
    emit(e);
    return;
  }
  if (style_ != ProgressStyle::Terminal) return;
  std::string line;
  if (fraction && fraction->second > 0) {
    const double f = std::clamp(static_cast<double>(fraction->first) / static_cast<double>(fraction->second), 0.0, 1.0);
    constexpr int kWidth = 24;
    std::string bar(static_cast<std::size_t>(std::lround(f * kWidth)), '#');
    bar.resize(kWidth, '.');
    char buf[160];
    std::snprintf(buf, sizeof buf, "[%s] %3.0f%% %lld/%lld %s  %s", bar.c_str(), 100 * f, fraction->first,
                  fraction->second, unit.c_str(), format_duration(elapsed_s).c_str());
    line = buf;
    if (f > 0.02) line += ", ETA " + format_duration(elapsed_s / f - elapsed_s);
  } else {
    line = "running " + format_duration(elapsed_s);
  }
  std::fprintf(out_, "\r%-34s%-70s", label_.c_str(), line.c_str());
  std::fflush(out_);
}

void StageProgress::done(double seconds, const std::string& summary) {
  switch (style_) {
    case ProgressStyle::Terminal:
      std::fprintf(out_, "\r%-34s%-70s\n", label_.c_str(), ("done in " + format_duration(seconds) + "  " + summary).c_str());
      break;
    case ProgressStyle::Lines:
      std::fprintf(out_, "%s done in %s  %s\n", label_.c_str(), format_duration(seconds).c_str(), summary.c_str());
      break;
    case ProgressStyle::Json: emit({{"event", "done"}, {"step", step_}, {"seconds", seconds}, {"summary", summary}}); break;
    case ProgressStyle::Quiet: break;
  }
  std::fflush(out_);
}

void StageProgress::skip(int index, int total, const std::string& step, const std::string& why) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "[%d/%d] ", index, total);
  switch (style_) {
    case ProgressStyle::Terminal:
    case ProgressStyle::Lines: std::fprintf(out_, "%-34s%s\n", (buf + step).c_str(), why.c_str()); break;
    case ProgressStyle::Json: emit({{"event", "skip"}, {"step", step}, {"index", index}, {"total", total}, {"why", why}}); break;
    case ProgressStyle::Quiet: break;
  }
  std::fflush(out_);
}

}  // namespace piquant
