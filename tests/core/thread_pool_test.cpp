// ThreadPool: every index of parallel_for exactly once, run() on every thread, clean
// shutdown, exceptions carried to the caller after every thread is done.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
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

// Exceptions --------------------------------------------------------------------------

// A normal job right after a throwing one: every index called once, none twice.
void expect_pool_still_works(ThreadPool& pool, const std::string& where) {
  std::vector<std::atomic<int>> calls(pool.size());
  pool.run([&](unsigned index, unsigned) { calls[index]++; });
  for (unsigned i = 0; i < pool.size(); ++i) EXPECT_EQ(calls[i], 1) << where << ", thread " << i;
  std::vector<std::atomic<int>> hits(257);
  pool.parallel_for(257, 3, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) hits[static_cast<std::size_t>(i)]++;
  });
  for (std::size_t i = 0; i < hits.size(); ++i) ASSERT_EQ(hits[i], 1) << where << ", index " << i;
}

// The message of the Error that run() throws, or "" if it throws none.
template <class Fn>
std::string error_of_run(ThreadPool& pool, Fn fn) {
  try {
    pool.run(fn);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ThreadPoolExceptions, WorkerExceptionReachesTheCaller) {
  for (const unsigned threads : {2u, 4u}) {
    ThreadPool pool(threads);
    for (unsigned thrower = 1; thrower < threads; ++thrower) {
      std::vector<std::atomic<int>> calls(threads);
      const std::string message = error_of_run(pool, [&](unsigned index, unsigned) {
        calls[index]++;
        if (index == thrower) throw Error("worker " + std::to_string(index));
      });
      const std::string where = std::to_string(threads) + " threads, thrower " + std::to_string(thrower);
      EXPECT_EQ(message, "worker " + std::to_string(thrower)) << where;
      for (unsigned i = 0; i < threads; ++i) EXPECT_EQ(calls[i], 1) << where << ": every thread runs its call once";
      expect_pool_still_works(pool, where);
    }
  }
}

TEST(ThreadPoolExceptions, CallerExceptionReachesTheCaller) {
  for (const unsigned threads : {1u, 2u, 4u}) {
    ThreadPool pool(threads);
    const std::string message = error_of_run(pool, [&](unsigned index, unsigned) {
      if (index == 0) throw Error("caller");
    });
    EXPECT_EQ(message, "caller") << threads << " threads";
    expect_pool_still_works(pool, std::to_string(threads) + " threads");
  }
}

TEST(ThreadPoolExceptions, CallerThrowingWaitsForTheWorkersToFinish) {
  // The caller throws at once; the workers sleep, then write. Had run() left early, the
  // flags would still be unset here (and fn, a temporary, would be gone under them).
  for (const unsigned threads : {2u, 4u}) {
    ThreadPool pool(threads);
    std::vector<std::atomic<int>> finished(threads);
    const std::string message = error_of_run(pool, [&](unsigned index, unsigned) {
      if (index == 0) throw Error("caller");
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      finished[index].store(1);
    });
    EXPECT_EQ(message, "caller");
    for (unsigned i = 1; i < threads; ++i) EXPECT_EQ(finished[i].load(), 1) << threads << " threads, worker " << i;
    expect_pool_still_works(pool, std::to_string(threads) + " threads");
  }
}

TEST(ThreadPoolExceptions, WorkerThrowingWaitsForTheOtherWorkers) {
  ThreadPool pool(4);
  std::vector<std::atomic<int>> finished(4);
  const std::string message = error_of_run(pool, [&](unsigned index, unsigned) {
    if (index == 1) throw Error("worker 1");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    finished[index].store(1);
  });
  EXPECT_EQ(message, "worker 1");
  for (const unsigned i : {0u, 2u, 3u}) EXPECT_EQ(finished[i].load(), 1) << "thread " << i;
}

// Counts its live instances: the exceptions that are not rethrown must be destroyed.
struct Counted {
  static std::atomic<int> live;
  unsigned index;
  explicit Counted(unsigned i) : index(i) { live++; }
  Counted(const Counted& other) : index(other.index) { live++; }
  ~Counted() { live--; }
};
std::atomic<int> Counted::live{0};

TEST(ThreadPoolExceptions, EveryThreadThrowingGivesExactlyOneTheLowestIndex) {
  for (const unsigned threads : {1u, 2u, 4u}) {
    ThreadPool pool(threads);
    for (const unsigned lowest : {0u, 1u}) {
      if (lowest >= threads) continue;
      const std::string where = std::to_string(threads) + " threads, from thread " + std::to_string(lowest);
      int caught = 0;
      try {
        pool.run([&](unsigned index, unsigned) {
          if (index >= lowest) throw Counted(index);
        });
      } catch (const Counted& e) {
        ++caught;
        EXPECT_EQ(e.index, lowest) << where;
        EXPECT_EQ(Counted::live.load(), 1) << where << ": the other threads' exceptions are dropped";
      }
      EXPECT_EQ(caught, 1) << where;
      EXPECT_EQ(Counted::live.load(), 0) << where << ": nothing kept after the catch";
      expect_pool_still_works(pool, where);
    }
  }
}

TEST(ThreadPoolExceptions, NonStdExceptionPropagatesAsItself) {
  for (const unsigned threads : {1u, 2u, 4u}) {
    ThreadPool pool(threads);
    for (unsigned thrower = 0; thrower < threads; ++thrower) {
      const std::string where = std::to_string(threads) + " threads, thrower " + std::to_string(thrower);
      try {
        pool.run([&](unsigned index, unsigned) {
          if (index == thrower) throw 42;
        });
        ADD_FAILURE() << where << ": nothing thrown";
      } catch (const int value) {
        EXPECT_EQ(value, 42) << where;
      } catch (...) {
        ADD_FAILURE() << where << ": another type arrived";
      }
      expect_pool_still_works(pool, where);
    }
  }
}

TEST(ThreadPoolExceptions, ParallelForGivesTheErrorASerialLoopWould) {
  // Rows 0..99 over 4 threads: 0-24, 25-49, 50-74, 75-99. Each call stops at its first
  // bad row; the error that arrives is the first bad row in order.
  for (const unsigned threads : {1u, 2u, 4u}) {
    ThreadPool pool(threads);
    const auto first_bad_row = [&](const std::set<std::int64_t>& bad) -> std::string {
      std::vector<std::atomic<int>> seen(100);
      try {
        pool.parallel_for(100, 1, [&](std::int64_t begin, std::int64_t end) {
          for (std::int64_t r = begin; r < end; ++r) {
            seen[static_cast<std::size_t>(r)]++;
            if (bad.count(r)) throw Error("row " + std::to_string(r));
          }
        });
      } catch (const Error& e) {
        return e.what();
      }
      for (std::size_t r = 0; r < seen.size(); ++r) EXPECT_EQ(seen[r], 1) << "row " << r;
      return "";
    };
    const std::string where = std::to_string(threads) + " threads";
    EXPECT_EQ(first_bad_row({}), "") << where;
    EXPECT_EQ(first_bad_row({97}), "row 97") << where;
    EXPECT_EQ(first_bad_row({10, 97}), "row 10") << where;
    EXPECT_EQ(first_bad_row({60, 30, 40}), "row 30") << where;
    EXPECT_EQ(first_bad_row({99, 0}), "row 0") << where;
    expect_pool_still_works(pool, where);
  }
}

TEST(ThreadPoolExceptions, AlternatingThrowingAndNormalJobsKeepWorking) {
  for (const unsigned threads : {1u, 2u, 4u}) {
    ThreadPool pool(threads);
    std::vector<int> data(threads, 0);
    for (int round = 1; round <= 1000; ++round) {
      const unsigned thrower = static_cast<unsigned>(round / 2) % threads;
      const bool throws = round % 2 == 0;
      int caught = -1;
      try {
        pool.run([&](unsigned index, unsigned) {
          data[index] = round;
          if (throws && index == thrower) throw static_cast<int>(index);
        });
      } catch (const int value) {
        caught = value;
      }
      ASSERT_EQ(caught, throws ? static_cast<int>(thrower) : -1) << threads << " threads, round " << round;
      // Every thread wrote this round's value before run() returned or threw.
      ASSERT_EQ(std::count(data.begin(), data.end(), round), static_cast<long>(threads)) << threads << " threads, round " << round;
    }
  }
}

}  // namespace
}  // namespace piquant
