#pragma once
// A fixed set of worker threads for data-parallel loops. The caller's thread takes
// part as worker 0, so ThreadPool(1) runs everything inline. No allocation, no lock and
// no task queue per call: a hot loop (one call per matmul per token) stays cheap.
// Between jobs the workers poll a few times, then sleep on the job counter (a futex
// through std::atomic::wait), so an idle pool costs nothing.
//
// Exceptions: each thread catches what its own call of the job throws; run() always
// waits for every thread to finish its call, then rethrows one exception on the caller.
// The normal path stays free of allocation and locks (a try block costs nothing until
// something throws; one relaxed load after the wait checks for errors).
#include <atomic>
#include <cstdint>
#include <exception>
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
  // If fn throws on one or more threads (the caller's index 0 included):
  //  - every thread still finishes its own call before run returns or throws, so fn and
  //    whatever it references are no longer in use when the exception reaches the caller;
  //  - the other threads' calls are not interrupted: they run to their end;
  //  - exactly one exception is rethrown on the caller, as itself (std::rethrow_exception:
  //    any type, not only std::exception): the one from the lowest thread index that
  //    threw. The others are destroyed unseen;
  //  - the pool is usable afterwards.
  void run(const std::function<void(unsigned, unsigned)>& fn);

  // Splits [0, n) into contiguous ranges, one per thread, rounded to multiples of
  // `grain` (so rows sharing a cache line land on one thread): fn(begin, end).
  // Exceptions as for run(). Ranges ascend with the thread index, so if each call walks
  // its range in order and stops at its first throw, the exception rethrown is the one a
  // serial loop over [0, n) would have thrown (the lowest failing range's).
  void parallel_for(std::int64_t n, std::int64_t grain, const std::function<void(std::int64_t, std::int64_t)>& fn);

  static unsigned physical_cores();

 private:
  void worker(unsigned index);
  void call_job(const std::function<void(unsigned, unsigned)>& fn, unsigned index) noexcept;
  void rethrow_first_error();

  unsigned n_threads_;
  std::vector<std::thread> threads_;
  std::atomic<const std::function<void(unsigned, unsigned)>*> job_{nullptr};
  std::atomic<std::uint64_t> generation_{0};  // one more per job (and at shutdown)
  std::atomic<unsigned> pending_{0};          // workers still running the current job
  std::atomic<bool> stop_{false};
  // One slot per thread, written only by that thread while a job runs and read by the
  // caller after every thread is done (published by pending_'s release/acquire).
  // Allocated once here, so the no-exception path allocates nothing.
  std::vector<std::exception_ptr> errors_;
  std::atomic<bool> failed_{false};  // some slot is set; checked once per run
};

}  // namespace piquant
