#pragma once
// Memory read bandwidth: how fast the CPU streams a buffer far larger than its caches.
// Decoding one token reads every weight once, so this is the ceiling on decode speed
// (tokens/s ≤ bandwidth ÷ bytes read per token), and `piquant bench` reports how close
// the engine gets to it.
#include <cstdint>
#include <memory>
#include <vector>

namespace piquant {

struct BandwidthSample {
  unsigned n_threads = 0;
  double gb_per_second = 0.0;  // 1e9 bytes per second, best of the passes
  double best_seconds = 0.0;   // the fastest pass over the whole buffer
};

// Owns one buffer of 64-bit words, filled once (word i holds i), and times reading it
// all with 1..N threads, each thread summing its own contiguous slice. The sum of each
// pass is checked against the closed form, which keeps the reads from being optimized
// away and proves every word was read.
class ReadBandwidthProbe {
 public:
  explicit ReadBandwidthProbe(std::uint64_t buffer_bytes);  // throws Error below 4 KiB
  ReadBandwidthProbe(const ReadBandwidthProbe&) = delete;
  ReadBandwidthProbe& operator=(const ReadBandwidthProbe&) = delete;

  std::uint64_t buffer_bytes() const { return n_words_ * sizeof(std::uint64_t); }

  // Best of `passes` full reads with n_threads threads (0: one per physical core).
  // Throws Error if passes < 1 or a pass sums to the wrong value.
  BandwidthSample measure(unsigned n_threads, int passes = 3) const;

 private:
  std::unique_ptr<std::uint64_t[]> words_;
  std::uint64_t n_words_ = 0;
};

// One sample per thread count 1..max_threads (0: physical cores), one buffer for all.
std::vector<BandwidthSample> measure_read_bandwidth_table(std::uint64_t buffer_bytes, unsigned max_threads,
                                                          int passes = 3);

}  // namespace piquant
