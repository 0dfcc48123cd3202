// ThreadPool: every index of parallel_for exactly once, run() on every thread, clean
// shutdown.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "core/thread_pool.h"

namespace piquant {
namespace {

TEST(ThreadPool, ParallelForCoversEveryIndexExactlyOnce) {
  for (unsigned threads = 1; threads <= 5; ++threads) {
    ThreadPool pool(threads);
    for (const std::int64_t n : {0, 1, 2, 3, 7, 16, 17, 63, 100, 1000, 4097}) {
      for (const std::int64_t grain : {1, 2, 3, 16, 64, 5000}) {
        std::vector<std::atomic<int>> hits(static_cast<std::size_t>(n));
        std::mutex mutex;
        std::vector<std::pair<std::int64_t, std::int64_t>> ranges;
        pool.parallel_for(n, grain, [&](std::int64_t begin, std::int64_t end) {
          for (std::int64_t i = begin; i < end; ++i) hits[static_cast<std::size_t>(i)]++;
          std::lock_guard<std::mutex> lock(mutex);
          ranges.emplace_back(begin, end);
        });
        const std::string where =
            std::to_string(threads) + " threads, n " + std::to_string(n) + ", grain " + std::to_string(grain);
        for (std::int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[static_cast<std::size_t>(i)], 1) << where << ", index " << i;
        EXPECT_LE(ranges.size(), threads) << where;
        for (const auto& [begin, end] : ranges) {
          EXPECT_LT(begin, end) << where;
          EXPECT_EQ(begin % grain, 0) << where << ": a range must start on a grain boundary";
        }
      }
    }
  }
}

TEST(ThreadPool, ParallelForUsesSeveralThreadsWhenThereIsWork) {
  ThreadPool pool(3);
  std::mutex mutex;
  std::set<std::thread::id> ids;
  pool.parallel_for(300, 1, [&](std::int64_t, std::int64_t) {
    std::lock_guard<std::mutex> lock(mutex);
    ids.insert(std::this_thread::get_id());
  });
  EXPECT_EQ(ids.size(), 3u);
}

TEST(ThreadPool, RunCallsEveryThreadIndexOnce) {
  for (unsigned threads = 1; threads <= 4; ++threads) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.size(), threads);
    for (int round = 0; round < 200; ++round) {  // many rounds: each must wait for the last
      std::vector<std::atomic<int>> calls(threads);
      std::atomic<int> wrong_count{0};
      std::atomic<bool> caller_is_zero{false};
      const auto caller = std::this_thread::get_id();
      pool.run([&](unsigned index, unsigned n) {
        if (n != threads) wrong_count++;
        calls[index]++;
        if (index == 0 && std::this_thread::get_id() == caller) caller_is_zero = true;
      });
      for (unsigned i = 0; i < threads; ++i) ASSERT_EQ(calls[i], 1) << threads << " threads, round " << round;
      ASSERT_EQ(wrong_count, 0);
      ASSERT_TRUE(caller_is_zero) << "the calling thread takes part as worker 0";
    }
  }
}

TEST(ThreadPool, RunSeesWritesOfThePreviousRun) {
  // run() returns only when every thread is done: a following run reads complete data.
  ThreadPool pool(4);
  std::vector<int> data(4, 0);
  for (int round = 1; round <= 500; ++round) {
    pool.run([&](unsigned index, unsigned) { data[index] = round; });
    ASSERT_EQ(std::count(data.begin(), data.end(), round), 4);
  }
}

TEST(ThreadPool, DestroysIdleAndUsedPools) {
  for (int i = 0; i < 50; ++i) {
    ThreadPool idle(4);  // workers never given a job
  }
  for (int i = 0; i < 50; ++i) {
    ThreadPool used(3);
    std::atomic<int> sum{0};
    used.run([&](unsigned index, unsigned) { sum += static_cast<int>(index); });
    EXPECT_EQ(sum, 3);
  }
}

TEST(ThreadPool, ZeroMeansOnePerPhysicalCore) {
  ThreadPool pool(0);
  EXPECT_EQ(pool.size(), ThreadPool::physical_cores());
  EXPECT_GE(pool.size(), 1u);
}

}  // namespace
}  // namespace piquant
