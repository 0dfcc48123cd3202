#pragma once
// Running mean and standard error of per-token values (negative log-likelihoods,
// KL divergences), summed in double in the order tokens are scored so a result does
// not depend on the thread count.
#include <cstdint>
#include <vector>

namespace piquant {

class MeanAccumulator {
 public:
  void add(double value) {
    sum_ += value;
    sum_sq_ += value * value;
    ++count_;
  }
  std::int64_t count() const { return count_; }
  double mean() const { return count_ > 0 ? sum_ / static_cast<double>(count_) : 0.0; }
  // Standard error of the mean: sqrt(variance / (n - 1)) with the population variance
  // E[x²] - E[x]² (llama-perplexity's estimate); 0 when undefined.
  double stderr_of_mean() const;

 private:
  double sum_ = 0.0;
  double sum_sq_ = 0.0;
  std::int64_t count_ = 0;
};

// Perplexity from a NLL accumulator: exp(mean NLL), and its error by the delta
// method, PPL · stderr(mean NLL), as llama-perplexity prints after "±".
double perplexity_of(const MeanAccumulator& nll);
double perplexity_stderr_of(const MeanAccumulator& nll);

// The value below which `fraction` of the values lie, interpolating linearly between
// order statistics (fraction 0.5: the median). Sorts `values`; 0 when empty.
double percentile(std::vector<float>& values, double fraction);

}  // namespace piquant
