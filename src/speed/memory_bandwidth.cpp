#include "speed/memory_bandwidth.h"

#include <chrono>
#include <cstring>
#include <string>

#include "core/error.h"
#include "core/thread_pool.h"

namespace piquant {
namespace {

// Two 64-bit lanes: GCC/Clang map it to SSE2 or NEON registers, so each load moves
// 16 bytes on any target without depending on the build's -march.
using Lanes = std::uint64_t __attribute__((vector_size(16)));

Lanes load_lanes(const std::uint64_t* p) {
  Lanes v;
  std::memcpy(&v, p, sizeof(v));  // slices need not start 16-byte aligned
  return v;
}

// Wrapping sum of words [begin, end); four independent accumulators keep several
// loads in flight.
std::uint64_t sum_words(const std::uint64_t* words, std::uint64_t begin, std::uint64_t end) {
  Lanes a{0, 0}, b{0, 0}, c{0, 0}, d{0, 0};
  std::uint64_t i = begin;
  for (; i + 8 <= end; i += 8) {
    a += load_lanes(words + i);
    b += load_lanes(words + i + 2);
    c += load_lanes(words + i + 4);
    d += load_lanes(words + i + 6);
  }
  const Lanes total = (a + b) + (c + d);
  std::uint64_t sum = total[0] + total[1];
  for (; i < end; ++i) sum += words[i];
  return sum;
}

// 0 + 1 + ... + (n - 1) modulo 2^64.
std::uint64_t sum_of_indices(std::uint64_t n) {
  const unsigned __int128 wide = static_cast<unsigned __int128>(n) * (n == 0 ? 0 : n - 1) / 2;
  return static_cast<std::uint64_t>(wide);
}

std::uint64_t slice_begin(std::uint64_t n, unsigned index, unsigned count) {
  return static_cast<std::uint64_t>(static_cast<unsigned __int128>(n) * index / count);
}

}  // namespace

ReadBandwidthProbe::ReadBandwidthProbe(std::uint64_t buffer_bytes) {
  constexpr std::uint64_t kMinBytes = 4096;
  if (buffer_bytes < kMinBytes) {
    throw Error("bandwidth probe: buffer of " + std::to_string(buffer_bytes) + " bytes is too small (at least 4096)");
  }
  n_words_ = buffer_bytes / sizeof(std::uint64_t);
  words_.reset(new std::uint64_t[n_words_]);  // not value-initialized: the fill below is the first touch
  ThreadPool pool(0);
  pool.run([&](unsigned t, unsigned n) {
    const std::uint64_t end = slice_begin(n_words_, t + 1, n);
    for (std::uint64_t i = slice_begin(n_words_, t, n); i < end; ++i) words_[i] = i;
  });
}

BandwidthSample ReadBandwidthProbe::measure(unsigned n_threads, int passes) const {
  if (passes < 1) throw Error("bandwidth probe: passes must be at least 1, got " + std::to_string(passes));
  ThreadPool pool(n_threads);
  const unsigned threads = pool.size();
  std::vector<std::uint64_t> partial(threads);
  const std::uint64_t expected = sum_of_indices(n_words_);
  double best = 0.0;
  for (int pass = 0; pass < passes; ++pass) {
    const auto start = std::chrono::steady_clock::now();
    pool.run([&](unsigned t, unsigned n) {
      partial[t] = sum_words(words_.get(), slice_begin(n_words_, t, n), slice_begin(n_words_, t + 1, n));
    });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::uint64_t sum = 0;
    for (const std::uint64_t s : partial) sum += s;
    if (sum != expected) throw Error("bandwidth probe: the buffer summed to a wrong value (memory error?)");
    if (pass == 0 || seconds < best) best = seconds;
  }
  BandwidthSample sample;
  sample.n_threads = threads;
  sample.best_seconds = best;
  sample.gb_per_second = best > 0.0 ? static_cast<double>(buffer_bytes()) / best / 1e9 : 0.0;
  return sample;
}

std::vector<BandwidthSample> measure_read_bandwidth_table(std::uint64_t buffer_bytes, unsigned max_threads,
                                                          int passes) {
  const unsigned top = max_threads ? max_threads : ThreadPool::physical_cores();
  const ReadBandwidthProbe probe(buffer_bytes);
  std::vector<BandwidthSample> table;
  for (unsigned t = 1; t <= top; ++t) table.push_back(probe.measure(t, passes));
  return table;
}

}  // namespace piquant
