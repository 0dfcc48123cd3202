#pragma once
// Scores independent rows on a context's threads. ThreadPool does not carry
// exceptions across threads, so a row that throws (NaN logits, a bad saved row) is
// caught on its worker and the first such error is rethrown here, on the caller's thread.
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>

#include "core/thread_pool.h"

namespace piquant {

inline void parallel_rows(ThreadPool& pool, std::int64_t n_rows, const std::function<void(std::int64_t, std::int64_t)>& fn) {
  std::mutex mutex;
  std::exception_ptr error;
  pool.parallel_for(n_rows, 1, [&](std::int64_t begin, std::int64_t end) {
    try {
      fn(begin, end);
    } catch (...) {
      const std::lock_guard<std::mutex> lock(mutex);
      if (!error) error = std::current_exception();
    }
  });
  if (error) std::rethrow_exception(error);
}

}  // namespace piquant
