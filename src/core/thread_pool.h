#pragma once
// A fixed set of worker threads for data-parallel loops. The caller's thread takes
// part as worker 0, so ThreadPool(1) runs everything inline. No allocation, no lock and
// no task queue per call: a hot loop (one call per matmul per token) stays cheap.
// Between jobs the workers poll a few times, then sleep on the job counter (a futex
// through std::atomic::wait), so an idle pool costs nothing.
#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

namespace piquant {

class ThreadPool {
 public:
  explicit ThreadPool(unsigned n_threads);  // 0: one per physical core
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  unsigned size() const { return n_threads_; }

  // Calls fn(thread_index, n_threads) once on every thread and waits for all.
  void run(const std::function<void(unsigned, unsigned)>& fn);

  // Splits [0, n) into contiguous ranges, one per thread, rounded to multiples of
  // `grain` (so rows sharing a cache line land on one thread): fn(begin, end).
  void parallel_for(std::int64_t n, std::int64_t grain, const std::function<void(std::int64_t, std::int64_t)>& fn);

  static unsigned physical_cores();

 private:
  void worker(unsigned index);

  unsigned n_threads_;
  std::vector<std::thread> threads_;
  std::atomic<const std::function<void(unsigned, unsigned)>*> job_{nullptr};
  std::atomic<std::uint64_t> generation_{0};  // one more per job (and at shutdown)
  std::atomic<unsigned> pending_{0};          // workers still running the current job
  std::atomic<bool> stop_{false};
};

}  // namespace piquant
