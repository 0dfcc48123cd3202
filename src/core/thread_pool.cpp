#include "core/thread_pool.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <string>
#include <utility>

namespace piquant {

unsigned ThreadPool::physical_cores() {
  // Distinct (physical id, core id) pairs; hyperthreads share a core and add little to matmuls.
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::set<std::pair<std::string, std::string>> cores;
  std::string line, physical = "0";
  while (std::getline(cpuinfo, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string key = line.substr(0, line.find_last_not_of(" \t", colon - 1) + 1);
    const std::string value = colon + 2 <= line.size() ? line.substr(colon + 2) : "";
    if (key == "physical id") physical = value;
    if (key == "core id") cores.insert({physical, value});
  }
  const unsigned logical = std::max(1u, std::thread::hardware_concurrency());
  return cores.empty() ? logical : std::min<unsigned>(logical, static_cast<unsigned>(cores.size()));
}

ThreadPool::ThreadPool(unsigned n_threads) : n_threads_(n_threads ? n_threads : physical_cores()) {
  for (unsigned i = 1; i < n_threads_; ++i) threads_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  start_.notify_all();
  for (auto& t : threads_) t.join();
}

void ThreadPool::worker(unsigned index) {
  std::uint64_t seen = 0;
  for (;;) {
    const std::function<void(unsigned, unsigned)>* job = nullptr;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      start_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      job = job_;
    }
    (*job)(index, n_threads_);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (--pending_ == 0) done_.notify_one();
    }
  }
}

void ThreadPool::run(const std::function<void(unsigned, unsigned)>& fn) {
  if (n_threads_ == 1) {
    fn(0, 1);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = &fn;
    pending_ = n_threads_ - 1;
    ++generation_;
  }
  start_.notify_all();
  fn(0, n_threads_);
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [&] { return pending_ == 0; });
  job_ = nullptr;
}

void ThreadPool::parallel_for(std::int64_t n, std::int64_t grain,
                              const std::function<void(std::int64_t, std::int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<std::int64_t>(1, grain);
  const std::int64_t units = (n + grain - 1) / grain;
  const unsigned threads = static_cast<unsigned>(std::min<std::int64_t>(n_threads_, units));
  if (threads <= 1) {
    fn(0, n);
    return;
  }
  // One captured pointer keeps the lambda inside std::function's inline storage: no allocation per call.
  struct Split {
    std::int64_t n, grain, units;
    unsigned threads;
    const std::function<void(std::int64_t, std::int64_t)>* fn;
  } split{n, grain, units, threads, &fn};
  const Split* s = &split;
  run([s](unsigned index, unsigned) {
    if (index >= s->threads) return;
    const std::int64_t begin = std::min(s->n, (s->units * index / s->threads) * s->grain);
    const std::int64_t end = std::min(s->n, (s->units * (index + 1) / s->threads) * s->grain);
    if (begin < end) (*s->fn)(begin, end);
  });
}

}  // namespace piquant
