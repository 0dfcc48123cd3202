#pragma once
// A llama-bench-like speed test of one model, plus what llama-bench leaves out: load
// time from a cold and a warm page cache, time to first token, peak memory, bytes read
// per decoded token and how close decoding gets to the machine's memory bandwidth.
//
// Method (one process runs everything, in this order):
//  1. Cold loads (cold_reps, default 1, each costly on a big file): drop the model's
//     files from the page cache (posix_fadvise DONTNEED, unprivileged; whether it took
//     is checked with mincore and reported), then time a load.
//  2. reps repetitions, each: a warm load (the pages are cached), a fresh context, a
//     one-token warm-up, then for each prompt length p: reset, evaluate p tokens in one
//     batch → time to first token (the logits and their argmax) and p / that time; then
//     reset, evaluate decode_prompt_tokens untimed and n_decode tokens one at a time →
//     decode tokens/s. The model is released at the end of every repetition.
//  3. The memory read-bandwidth probe at the bench's thread count (after the peak RSS
//     is read, so its buffer does not count).
// "Load" is LlamaModel::load with prefetch plus a read of one byte in every page of
// every weight, so the clock stops when all weights are resident and mapped (prefetch
// alone only starts the reads). Context creation is not part of it.
// Inputs are pseudo-random valid token ids (splitmix64 from token_seed), as llama-bench
// does: speed does not depend on the text.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "formats/ggml_type.h"
#include "engine/llama_model.h"

namespace piquant {

struct SpeedBenchOptions {
  std::string model_path;                      // a GGUF file or a Hugging Face folder
  std::vector<std::int64_t> prompt_lengths = {64, 512};
  std::int64_t n_decode = 128;                 // tokens decoded one at a time
  std::int64_t decode_prompt_tokens = 8;       // evaluated untimed before decoding
  int reps = 3;
  int cold_reps = 1;                           // 0: no cold load
  unsigned n_threads = 0;                      // 0: one per physical core
  GgmlType kv_type = GgmlType::F16;
  bool use_mmap = true;
  std::uint64_t bandwidth_buffer_bytes = std::uint64_t{1} << 30;  // 0: skip the probe
  int bandwidth_passes = 5;                    // best of these full reads
  std::uint64_t token_seed = 1;
  std::function<void(const std::string&)> on_progress;  // one line per step; may be empty
};

// Mean and sample standard deviation (n - 1; 0 when n < 2) of one timing's samples.
struct TimingStats {
  std::vector<double> samples;
  double mean = 0.0;
  double stddev = 0.0;
  int n() const { return static_cast<int>(samples.size()); }
};
TimingStats summarize(std::vector<double> samples);

struct PromptBenchResult {
  std::int64_t n_tokens = 0;
  TimingStats ttft_seconds;       // evaluating the prompt up to the first token's logits
  TimingStats tokens_per_second;  // n_tokens / ttft, per repetition
};

struct SpeedBenchReport {
  // The model and the run's settings.
  std::string model_path;
  std::string architecture;
  std::uint64_t model_file_bytes = 0;
  std::int64_t n_params = 0;
  unsigned n_threads = 0;  // resolved (never 0)
  GgmlType kv_type = GgmlType::F16;
  bool use_mmap = true;
  int reps = 0;
  std::int64_t n_ctx = 0;
  std::int64_t n_decode = 0;
  std::int64_t decode_prompt_tokens = 0;
  std::uint64_t token_seed = 0;

  // Loads. cold_evicted: every cold load started with at most 10% of the files cached.
  TimingStats load_cold_seconds;  // empty when cold_reps == 0
  bool cold_evicted = false;
  double cold_cached_fraction_max = 0.0;  // page-cache residency just before a cold load
  TimingStats load_warm_seconds;
  double warm_cached_fraction_min = 0.0;  // residency just before a warm load

  std::vector<PromptBenchResult> prompts;  // one per prompt length, in the order given
  TimingStats decode_seconds;              // all n_decode tokens
  TimingStats decode_tokens_per_second;

  // Memory of this process (it runs every repetition): VmRSS right after the last warm
  // load and the peak (VmHWM, or the highest VmRSS read if the kernel's lazily updated
  // VmHWM lags it) before the bandwidth probe. Mapped file pages count too.
  std::uint64_t rss_after_load_bytes = 0;
  std::uint64_t peak_rss_bytes = 0;

  // Bytes one decoded token reads: weights (every layer matrix and norm, the output
  // matrix and norm, one token_embd row unless the output is tied to it; not rope_freqs,
  // folded into the RoPE table at load) plus the K and V cache over the mean number of
  // positions a decode step attends to. Norms count as floats, as the forward pass reads them.
  std::uint64_t weight_bytes_per_token = 0;
  std::uint64_t kv_bytes_per_position = 0;  // all layers, K and V
  double mean_decode_positions = 0.0;       // decode_prompt_tokens + (n_decode + 1) / 2
  double kv_bytes_per_token = 0.0;
  double bytes_per_token = 0.0;

  // Read bandwidth at n_threads threads (0 when skipped) and the share of it decoding
  // uses: bytes_per_token × decode tokens/s ÷ bandwidth.
  std::uint64_t bandwidth_buffer_bytes = 0;
  double read_bandwidth_gbs = 0.0;
  double bandwidth_efficiency = 0.0;
};

// Throws Error for bad options (a non-positive prompt length, n_decode, reps; negative
// cold_reps or decode_prompt_tokens; a missing model) before loading anything.
void validate_speed_bench_options(const SpeedBenchOptions& options);
SpeedBenchReport run_speed_bench(const SpeedBenchOptions& options);

// The weight part of bytes_per_token for a loaded model (see SpeedBenchReport).
std::uint64_t weight_bytes_read_per_token(const LlamaModel& model);

}  // namespace piquant
