#include "cli/bench_output.h"

#include <cstdio>
#include <filesystem>
#include <sstream>

namespace piquant::cli {
namespace {

using nlohmann::json;

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

std::string printf_text(const char* format, double a) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), format, a);
  return buf;
}

std::string mean_sd(const TimingStats& s, const char* format) {
  return printf_text(format, s.mean) + " ± " + printf_text(format, s.stddev);
}

// Seconds, or milliseconds below 0.1 s (a tiny model's timings).
std::string duration_mean_sd(const TimingStats& s) {
  if (s.mean < 0.1) {
    TimingStats ms = s;
    ms.mean *= 1e3;
    ms.stddev *= 1e3;
    return mean_sd(ms, "%.2f") + " ms";
  }
  return mean_sd(s, "%.3f") + " s";
}

std::string bytes_text(double bytes) {
  if (bytes >= kGiB) return printf_text("%.2f GiB", bytes / kGiB);
  return printf_text("%.2f MiB", bytes / (1024.0 * 1024.0));
}

json stats_json(const TimingStats& s) {
  if (s.samples.empty()) return nullptr;
  return {{"mean", s.mean}, {"stddev", s.stddev}, {"n", s.n()}, {"samples", s.samples}};
}

std::string model_name(const SpeedBenchReport& r) {
  return r.architecture + " " + std::filesystem::path(r.model_path).filename().string();
}

std::string params_text(std::int64_t n) {
  return n >= 1'000'000'000 ? printf_text("%.2f B", static_cast<double>(n) / 1e9)
                            : printf_text("%.2f M", static_cast<double>(n) / 1e6);
}

std::string percent(double fraction) { return printf_text("%.0f%%", fraction * 100.0); }

}  // namespace

std::string bench_markdown(const SpeedBenchReport& r) {
  std::ostringstream out;
  const std::string model = model_name(r);
  const std::string size = bytes_text(static_cast<double>(r.model_file_bytes));
  const std::string params = params_text(r.n_params);
  const std::string threads = std::to_string(r.n_threads);
  out << "| model | size | params | threads | test | t/s |\n";
  out << "| --- | ---: | ---: | ---: | --- | ---: |\n";
  for (const PromptBenchResult& p : r.prompts) {
    out << "| " << model << " | " << size << " | " << params << " | " << threads << " | pp" << p.n_tokens << " | "
        << mean_sd(p.tokens_per_second, "%.2f") << " |\n";
  }
  out << "| " << model << " | " << size << " | " << params << " | " << threads << " | tg" << r.n_decode << " | "
      << mean_sd(r.decode_tokens_per_second, "%.2f") << " |\n\n";

  out << "| measurement | value |\n";
  out << "| --- | ---: |\n";
  if (r.load_cold_seconds.samples.empty()) {
    out << "| load, cold | not measured |\n";
  } else {
    out << "| load, cold (" << r.load_cold_seconds.n() << "×; page cache " << (r.cold_evicted ? "evicted" : "NOT evicted")
        << ", " << percent(r.cold_cached_fraction_max) << " cached before) | " << duration_mean_sd(r.load_cold_seconds)
        << " |\n";
  }
  out << "| load, warm (" << r.load_warm_seconds.n() << "×; " << percent(r.warm_cached_fraction_min)
      << " cached before) | " << duration_mean_sd(r.load_warm_seconds) << " |\n";
  for (const PromptBenchResult& p : r.prompts) {
    out << "| time to first token, pp" << p.n_tokens << " | " << duration_mean_sd(p.ttft_seconds) << " |\n";
  }
  out << "| RSS after load | " << bytes_text(static_cast<double>(r.rss_after_load_bytes)) << " |\n";
  out << "| peak RSS (whole run, one process) | " << bytes_text(static_cast<double>(r.peak_rss_bytes))
      << " |\n";
  out << "| bytes read per decoded token | " << printf_text("%.4f GB", r.bytes_per_token / 1e9) << " (weights "
      << printf_text("%.4f", static_cast<double>(r.weight_bytes_per_token) / 1e9) << " + KV "
      << printf_text("%.4f", r.kv_bytes_per_token / 1e9) << ") |\n";
  if (r.read_bandwidth_gbs > 0.0) {
    out << "| read bandwidth, " << r.n_threads << " threads | " << printf_text("%.2f GB/s", r.read_bandwidth_gbs) << " |\n";
    // Above 100%: the probe ran slower than decoding did, i.e. the machine was busy then.
    out << "| bandwidth efficiency (bytes/token × tg t/s ÷ bandwidth) | " << percent(r.bandwidth_efficiency)
        << (r.bandwidth_efficiency > 1.0 ? " (over 100%: the probe was disturbed, machine busy?)" : "") << " |\n";
  } else {
    out << "| read bandwidth | not measured |\n";
  }
  out << "\nkv " << ggml_type_name(r.kv_type) << ", " << (r.use_mmap ? "mmap" : "no mmap") << ", " << r.reps
      << " reps in one process, context " << r.n_ctx << "; tg after " << r.decode_prompt_tokens
      << " untimed tokens; inputs are pseudo-random token ids (seed " << r.token_seed << "), not text\n";
  return out.str();
}

// Keys (all numbers in seconds, bytes, tokens/s or GB/s as named; every TimingStats is
// {"mean", "stddev" (sample, 0 for one sample), "n", "samples"}, null when not measured):
//   model, architecture, model_bytes, model_gib, n_params, threads, kv_type, use_mmap,
//   reps, n_ctx, token_source, token_seed,
//   load_cold_seconds, cold_evicted, cold_cached_fraction_max, load_warm_seconds,
//   warm_cached_fraction_min,
//   prompt: [{n_tokens, ttft_seconds, tokens_per_second}],
//   decode: {n_tokens, prompt_tokens, seconds, tokens_per_second},
//   rss_after_load_bytes, peak_rss_bytes,
//   bytes_per_token: {weights, kv, total, kv_bytes_per_position, mean_decode_positions},
//   bandwidth: {buffer_bytes, read_gbs, efficiency} (null when the probe was skipped).
json bench_json(const SpeedBenchReport& r) {
  json prompts = json::array();
  for (const PromptBenchResult& p : r.prompts) {
    prompts.push_back({{"n_tokens", p.n_tokens},
                       {"ttft_seconds", stats_json(p.ttft_seconds)},
                       {"tokens_per_second", stats_json(p.tokens_per_second)}});
  }
  json bandwidth = nullptr;
  if (r.bandwidth_buffer_bytes > 0) {
    bandwidth = {{"buffer_bytes", r.bandwidth_buffer_bytes},
                 {"read_gbs", r.read_bandwidth_gbs},
                 {"efficiency", r.bandwidth_efficiency}};
  }
  return {
      {"model", r.model_path},
      {"architecture", r.architecture},
      {"model_bytes", r.model_file_bytes},
      {"model_gib", static_cast<double>(r.model_file_bytes) / kGiB},
      {"n_params", r.n_params},
      {"threads", r.n_threads},
      {"kv_type", ggml_type_name(r.kv_type)},
      {"use_mmap", r.use_mmap},
      {"reps", r.reps},
      {"n_ctx", r.n_ctx},
      {"token_source", "pseudo-random token ids (splitmix64), not text"},
      {"token_seed", r.token_seed},
      {"load_cold_seconds", stats_json(r.load_cold_seconds)},
      {"cold_evicted", r.cold_evicted},
      {"cold_cached_fraction_max", r.cold_cached_fraction_max},
      {"load_warm_seconds", stats_json(r.load_warm_seconds)},
      {"warm_cached_fraction_min", r.warm_cached_fraction_min},
      {"prompt", prompts},
      {"decode",
       {{"n_tokens", r.n_decode},
        {"prompt_tokens", r.decode_prompt_tokens},
        {"seconds", stats_json(r.decode_seconds)},
        {"tokens_per_second", stats_json(r.decode_tokens_per_second)}}},
      {"rss_after_load_bytes", r.rss_after_load_bytes},
      {"peak_rss_bytes", r.peak_rss_bytes},
      {"bytes_per_token",
       {{"weights", r.weight_bytes_per_token},
        {"kv", r.kv_bytes_per_token},
        {"total", r.bytes_per_token},
        {"kv_bytes_per_position", r.kv_bytes_per_position},
        {"mean_decode_positions", r.mean_decode_positions}}},
      {"bandwidth", bandwidth},
  };
}

// Columns: model,threads,kv_type,mmap,measurement,unit,n,mean,stddev. Measurements:
// load_cold, load_warm, ttft_ppP, ppP, tgN, rss_after_load, peak_rss, bytes_per_token,
// weight_bytes_per_token, read_bandwidth, bandwidth_efficiency, model_size, n_params.
std::string bench_csv(const SpeedBenchReport& r) {
  std::ostringstream out;
  out << "model,threads,kv_type,mmap,measurement,unit,n,mean,stddev\n";
  std::string model = r.model_path;
  if (model.find_first_of(",\"\n") != std::string::npos) {
    std::string quoted = "\"";
    for (const char c : model) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
    model = quoted + "\"";
  }
  const std::string prefix =
      model + "," + std::to_string(r.n_threads) + "," + ggml_type_name(r.kv_type) + "," + (r.use_mmap ? "1" : "0") + ",";
  const auto row = [&](const std::string& name, const char* unit, int n, double mean, double sd) {
    out << prefix << name << "," << unit << "," << n << "," << printf_text("%.9g", mean) << ","
        << printf_text("%.9g", sd) << "\n";
  };
  const auto stats_row = [&](const std::string& name, const char* unit, const TimingStats& s) {
    if (!s.samples.empty()) row(name, unit, s.n(), s.mean, s.stddev);
  };
  stats_row("load_cold", "s", r.load_cold_seconds);
  stats_row("load_warm", "s", r.load_warm_seconds);
  for (const PromptBenchResult& p : r.prompts) {
    stats_row("ttft_pp" + std::to_string(p.n_tokens), "s", p.ttft_seconds);
    stats_row("pp" + std::to_string(p.n_tokens), "tokens/s", p.tokens_per_second);
  }
  stats_row("tg" + std::to_string(r.n_decode), "tokens/s", r.decode_tokens_per_second);
  row("rss_after_load", "bytes", 1, static_cast<double>(r.rss_after_load_bytes), 0.0);
  row("peak_rss", "bytes", 1, static_cast<double>(r.peak_rss_bytes), 0.0);
  row("bytes_per_token", "bytes", 1, r.bytes_per_token, 0.0);
  row("weight_bytes_per_token", "bytes", 1, static_cast<double>(r.weight_bytes_per_token), 0.0);
  if (r.bandwidth_buffer_bytes > 0) {
    row("read_bandwidth", "GB/s", 1, r.read_bandwidth_gbs, 0.0);
    row("bandwidth_efficiency", "fraction", 1, r.bandwidth_efficiency, 0.0);
  }
  row("model_size", "bytes", 1, static_cast<double>(r.model_file_bytes), 0.0);
  row("n_params", "count", 1, static_cast<double>(r.n_params), 0.0);
  return out.str();
}

std::string bandwidth_output(const std::vector<BandwidthSample>& table, std::uint64_t buffer_bytes,
                             const std::string& format) {
  std::ostringstream out;
  if (format == "json") {
    json rows = json::array();
    for (const BandwidthSample& s : table) {
      rows.push_back({{"threads", s.n_threads}, {"read_gbs", s.gb_per_second}, {"best_seconds", s.best_seconds}});
    }
    out << json{{"buffer_bytes", buffer_bytes}, {"read_bandwidth", rows}}.dump(2) << "\n";
  } else if (format == "csv") {
    out << "threads,buffer_bytes,read_gbs,best_seconds\n";
    for (const BandwidthSample& s : table) {
      out << s.n_threads << "," << buffer_bytes << "," << printf_text("%.6g", s.gb_per_second) << ","
          << printf_text("%.6g", s.best_seconds) << "\n";
    }
  } else {
    out << "| threads | read GB/s (" << (buffer_bytes >> 20) << " MiB buffer, best pass) |\n";
    out << "| ---: | ---: |\n";
    for (const BandwidthSample& s : table) out << "| " << s.n_threads << " | " << printf_text("%.2f", s.gb_per_second) << " |\n";
  }
  return out.str();
}

}  // namespace piquant::cli
