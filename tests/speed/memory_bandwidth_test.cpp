// The read-bandwidth probe on a small buffer: a number, not a speed claim.
#include <cmath>

#include "core/error.h"
#include "speed/memory_bandwidth.h"
#include "support/test_support.h"

namespace piquant {
namespace {

// measure() sums the buffer (word i holds i) and throws unless the sum is the closed form
// n(n-1)/2: a pass that skips or repeats a word anywhere is an error. That is what
// these tests lean on; the rate itself is only a number (no speed claim in a test).
TEST(ReadBandwidthProbe, GivesAPositiveFiniteRateForOneAndTwoThreads) {
  const ReadBandwidthProbe probe(std::uint64_t{1} << 20);
  EXPECT_EQ(probe.buffer_bytes(), std::uint64_t{1} << 20);
  for (const unsigned threads : {1u, 2u}) {
    const BandwidthSample s = probe.measure(threads, 2);
    EXPECT_EQ(s.n_threads, threads);
    EXPECT_TRUE(std::isfinite(s.gb_per_second) && s.gb_per_second > 0.0) << s.gb_per_second;
    EXPECT_GT(s.best_seconds, 0.0);
  }
}

TEST(ReadBandwidthProbe, OddSizesAndManyThreadsStillSumRight) {
  // 4 KiB + 8 bytes: 513 words, not a multiple of the 8-word loop or of 3 threads (the
  // 3 stray bytes are dropped).
  const ReadBandwidthProbe probe(4096 + 8 + 3);
  EXPECT_EQ(probe.buffer_bytes(), 4096u + 8u);
  // 3 threads: slices of 171 words (a 3-word tail each); 57: 9 words, loop + 1-word tail;
  // 100: 5 or 6 words, tails only.
  for (const unsigned threads : {3u, 57u, 100u}) {
    EXPECT_NO_THROW((void)probe.measure(threads, 1)) << threads << " threads";
  }
}

TEST(ReadBandwidthProbe, TableHasOneRowPerThreadCount) {
  const auto table = measure_read_bandwidth_table(std::uint64_t{1} << 20, 2, 1);
  ASSERT_EQ(table.size(), 2u);
  EXPECT_EQ(table[0].n_threads, 1u);
  EXPECT_EQ(table[1].n_threads, 2u);
}

TEST(ReadBandwidthProbe, RejectsTinyBuffersAndZeroPasses) {
  EXPECT_THROW(ReadBandwidthProbe(100), Error);
  const ReadBandwidthProbe probe(8192);
  EXPECT_THROW((void)probe.measure(1, 0), Error);
}

}  // namespace
}  // namespace piquant
