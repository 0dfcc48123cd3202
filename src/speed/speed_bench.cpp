#include "speed/speed_bench.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "core/error.h"
#include "core/memory_info.h"
#include "speed/memory_bandwidth.h"
#include "speed/page_cache.h"
#include "engine/llama_context.h"

namespace piquant {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// A cold load counts as cold when at most this share of the files was still cached.
constexpr double kColdCachedLimit = 0.10;

// Deterministic pseudo-random token ids in [0, n_vocab): splitmix64.
class TokenSource {
 public:
  TokenSource(std::uint64_t seed, std::int64_t n_vocab) : state_(seed), n_vocab_(static_cast<std::uint64_t>(n_vocab)) {}
  std::vector<std::int32_t> next(std::int64_t n) {
    std::vector<std::int32_t> tokens(static_cast<std::size_t>(n));
    for (auto& t : tokens) t = static_cast<std::int32_t>(next_u64() % n_vocab_);
    return tokens;
  }

 private:
  std::uint64_t next_u64() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  std::uint64_t state_;
  std::uint64_t n_vocab_;
};

std::uint64_t matrix_bytes(const MatrixView& m) {
  return m.data == nullptr ? 0 : static_cast<std::uint64_t>(m.rows) * m.row_bytes;
}

// Reads one byte per page of a weight so that it is resident and mapped.
std::uint64_t touch_pages(const std::uint8_t* data, std::uint64_t bytes, std::size_t page) {
  std::uint64_t sum = 0;
  if (data == nullptr) return sum;
  for (std::uint64_t off = 0; off < bytes; off += page) sum += data[off];
  if (bytes > 0) sum += data[bytes - 1];
  return sum;
}

void touch_all_weights(const LlamaModel& model) {
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const auto touch = [&](const MatrixView& m) { return touch_pages(m.data, matrix_bytes(m), page); };
  std::uint64_t sum = touch(model.token_embedding()) + touch(model.output());
  for (std::int64_t l = 0; l < model.params().n_layer; ++l) {
    const LayerWeights& w = model.layer(l);
    for (const MatrixView* m : {&w.wq, &w.wk, &w.wv, &w.wo, &w.w_gate, &w.w_up, &w.w_down}) sum += touch(*m);
  }
  volatile std::uint64_t sink = sum;  // the reads must happen
  (void)sink;
}

struct TimedLoad {
  std::unique_ptr<LlamaModel> model;
  double seconds = 0.0;
};

TimedLoad timed_load(const SpeedBenchOptions& options) {
  ModelLoadOptions load;
  load.prefetch = true;
  load.use_mmap = options.use_mmap;
  const auto start = Clock::now();
  TimedLoad result;
  result.model = LlamaModel::load(options.model_path, load);
  touch_all_weights(*result.model);
  result.seconds = seconds_since(start);
  return result;
}

std::int32_t argmax(std::span<const float> logits) {
  return static_cast<std::int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

void progress(const SpeedBenchOptions& options, const std::string& line) {
  if (options.on_progress) options.on_progress(line);
}

std::string seconds_text(double s) {
  std::ostringstream out;
  out.precision(3);
  out << std::fixed << s << " s";
  return out.str();
}

// One repetition's timings.
struct RepTimings {
  double load = 0.0;
  std::vector<double> ttft;  // per prompt length
  double decode = 0.0;
};

}  // namespace

TimingStats summarize(std::vector<double> samples) {
  TimingStats s;
  s.samples = std::move(samples);
  if (s.samples.empty()) return s;
  double sum = 0.0;
  for (const double x : s.samples) sum += x;
  s.mean = sum / static_cast<double>(s.samples.size());
  if (s.samples.size() > 1) {
    double sq = 0.0;
    for (const double x : s.samples) sq += (x - s.mean) * (x - s.mean);
    s.stddev = std::sqrt(sq / static_cast<double>(s.samples.size() - 1));
  }
  return s;
}

std::uint64_t weight_bytes_read_per_token(const LlamaModel& model) {
  const LlamaParams& p = model.params();
  const std::uint64_t norm_bytes = static_cast<std::uint64_t>(p.n_embd) * sizeof(float);
  std::uint64_t total = 0;
  for (std::int64_t l = 0; l < p.n_layer; ++l) {
    const LayerWeights& w = model.layer(l);
    for (const MatrixView* m : {&w.wq, &w.wk, &w.wv, &w.wo, &w.w_gate, &w.w_up, &w.w_down}) total += matrix_bytes(*m);
    if (w.attn_norm != nullptr) total += norm_bytes;
    if (w.ffn_norm != nullptr) total += norm_bytes;
    if (w.ffn_down_bias != nullptr) total += norm_bytes;
  }
  if (model.output_norm() != nullptr) total += norm_bytes;
  total += matrix_bytes(model.output());
  // The embedding lookup reads one row; a tied output has already counted all of it.
  if (model.output().data != model.token_embedding().data) total += model.token_embedding().row_bytes;
  return total;
}

void validate_speed_bench_options(const SpeedBenchOptions& o) {
  if (o.prompt_lengths.empty()) throw Error("bench: give at least one prompt length (-p)");
  for (const std::int64_t p : o.prompt_lengths) {
    if (p <= 0) throw Error("bench: prompt length (-p) must be positive, got " + std::to_string(p));
  }
  if (o.n_decode <= 0) throw Error("bench: decode length (-n) must be positive, got " + std::to_string(o.n_decode));
  if (o.reps <= 0) throw Error("bench: repetitions (-r) must be positive, got " + std::to_string(o.reps));
  if (o.cold_reps < 0) throw Error("bench: cold loads (--cold-reps) must be 0 or more, got " + std::to_string(o.cold_reps));
  if (o.decode_prompt_tokens < 0) {
    throw Error("bench: decode prompt length must be 0 or more, got " + std::to_string(o.decode_prompt_tokens));
  }
  if (o.bandwidth_passes < 1) throw Error("bench: bandwidth passes must be at least 1");
  if (o.model_path.empty()) throw Error("bench: no model given (-m)");
  (void)model_files(o.model_path);  // throws naming a missing path
}

SpeedBenchReport run_speed_bench(const SpeedBenchOptions& o) {
  validate_speed_bench_options(o);
  const std::vector<std::string> files = model_files(o.model_path);
  SpeedBenchReport r;
  r.model_path = o.model_path;
  r.model_file_bytes = total_file_bytes(files);
  r.kv_type = o.kv_type;
  r.use_mmap = o.use_mmap;
  r.reps = o.reps;
  r.n_decode = o.n_decode;
  r.decode_prompt_tokens = o.decode_prompt_tokens;
  r.token_seed = o.token_seed;
  const std::int64_t max_prompt = *std::max_element(o.prompt_lengths.begin(), o.prompt_lengths.end());
  r.n_ctx = std::max(max_prompt, o.decode_prompt_tokens + o.n_decode);

  std::vector<double> cold;
  r.cold_evicted = o.cold_reps > 0;
  for (int rep = 0; rep < o.cold_reps; ++rep) {
    evict_from_page_cache(files);
    const double cached = cached_fraction(files);
    r.cold_cached_fraction_max = std::max(r.cold_cached_fraction_max, cached);
    if (cached > kColdCachedLimit) r.cold_evicted = false;
    TimedLoad load = timed_load(o);
    cold.push_back(load.seconds);
    progress(o, "cold load " + std::to_string(rep + 1) + "/" + std::to_string(o.cold_reps) + ": " +
                    seconds_text(load.seconds) + " (" + std::to_string(static_cast<int>(cached * 100.0 + 0.5)) +
                    "% cached before)");
  }
  r.load_cold_seconds = summarize(std::move(cold));
  // Without a cold load first, a first "warm" load could still read from disk.
  if (o.cold_reps == 0) (void)timed_load(o);

  std::vector<RepTimings> reps;
  std::uint64_t rss_seen = 0;  // VmHWM lags VmRSS (the kernel updates it lazily): take both
  r.warm_cached_fraction_min = 1.0;
  for (int rep = 0; rep < o.reps; ++rep) {
    r.warm_cached_fraction_min = std::min(r.warm_cached_fraction_min, cached_fraction(files));
    RepTimings t;
    TimedLoad load = timed_load(o);
    t.load = load.seconds;
    r.rss_after_load_bytes = read_process_memory().rss;
    rss_seen = std::max(rss_seen, r.rss_after_load_bytes);
    const LlamaModel& model = *load.model;
    if (rep == 0) {
      r.architecture = model.architecture();
      r.n_params = model.params().n_params();
      r.weight_bytes_per_token = weight_bytes_read_per_token(model);
    }

    ContextOptions copts;
    copts.n_ctx = r.n_ctx;
    copts.n_batch = max_prompt;
    copts.kv_type = o.kv_type;
    copts.n_threads = o.n_threads;
    LlamaContext context(model, copts);
    r.n_threads = context.pool().size();
    r.kv_bytes_per_position = context.kv_cache_bytes() / static_cast<std::uint64_t>(r.n_ctx);
    TokenSource tokens(o.token_seed, model.params().n_vocab);
    const std::string tag = "rep " + std::to_string(rep + 1) + "/" + std::to_string(o.reps) + ": ";
    progress(o, tag + "warm load " + seconds_text(t.load));

    (void)context.eval(tokens.next(1));  // warm-up: threads started, scratch touched
    for (const std::int64_t p : o.prompt_lengths) {
      context.reset();
      const std::vector<std::int32_t> prompt = tokens.next(p);
      const auto start = Clock::now();
      volatile std::int32_t first = argmax(context.eval(prompt));
      (void)first;
      t.ttft.push_back(seconds_since(start));
      progress(o, tag + "pp" + std::to_string(p) + " " + seconds_text(t.ttft.back()));
    }

    context.reset();
    if (o.decode_prompt_tokens > 0) (void)context.eval(tokens.next(o.decode_prompt_tokens));
    const std::vector<std::int32_t> decode = tokens.next(o.n_decode);
    const auto start = Clock::now();
    std::int64_t picked = 0;
    for (const std::int32_t token : decode) picked += argmax(context.eval(std::span<const std::int32_t>(&token, 1)));
    t.decode = seconds_since(start);
    volatile std::int64_t sink = picked;
    (void)sink;
    progress(o, tag + "tg" + std::to_string(o.n_decode) + " " + seconds_text(t.decode));
    reps.push_back(std::move(t));
  }
  r.peak_rss_bytes = std::max(read_process_memory().peak, rss_seen);

  std::vector<double> warm, decode_s, decode_tps;
  for (const RepTimings& t : reps) {
    warm.push_back(t.load);
    decode_s.push_back(t.decode);
    decode_tps.push_back(static_cast<double>(o.n_decode) / t.decode);
  }
  r.load_warm_seconds = summarize(std::move(warm));
  r.decode_seconds = summarize(std::move(decode_s));
  r.decode_tokens_per_second = summarize(std::move(decode_tps));
  for (std::size_t i = 0; i < o.prompt_lengths.size(); ++i) {
    PromptBenchResult pr;
    pr.n_tokens = o.prompt_lengths[i];
    std::vector<double> ttft, tps;
    for (const RepTimings& t : reps) {
      ttft.push_back(t.ttft[i]);
      tps.push_back(static_cast<double>(pr.n_tokens) / t.ttft[i]);
    }
    pr.ttft_seconds = summarize(std::move(ttft));
    pr.tokens_per_second = summarize(std::move(tps));
    r.prompts.push_back(std::move(pr));
  }

  // Decode step i (0-based) attends to decode_prompt_tokens + i + 1 positions.
  r.mean_decode_positions = static_cast<double>(o.decode_prompt_tokens) + static_cast<double>(o.n_decode + 1) / 2.0;
  r.kv_bytes_per_token = r.mean_decode_positions * static_cast<double>(r.kv_bytes_per_position);
  r.bytes_per_token = static_cast<double>(r.weight_bytes_per_token) + r.kv_bytes_per_token;

  if (o.bandwidth_buffer_bytes > 0) {
    progress(o, "read bandwidth probe: " + std::to_string(o.bandwidth_buffer_bytes >> 20) + " MiB, " +
                    std::to_string(r.n_threads) + " threads");
    const ReadBandwidthProbe probe(o.bandwidth_buffer_bytes);
    r.bandwidth_buffer_bytes = probe.buffer_bytes();
    r.read_bandwidth_gbs = probe.measure(r.n_threads, o.bandwidth_passes).gb_per_second;
    if (r.read_bandwidth_gbs > 0.0) {
      r.bandwidth_efficiency = r.bytes_per_token * r.decode_tokens_per_second.mean / (r.read_bandwidth_gbs * 1e9);
    }
  }
  return r;
}

}  // namespace piquant
