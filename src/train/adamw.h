#pragma once
// AdamW (decoupled weight decay), over any set of F32 parameter tensors:
//   m = β1 m + (1 − β1) g,  v = β2 v + (1 − β2) g²,
//   w −= lr · (m / (1 − β1^t)) / (sqrt(v / (1 − β2^t)) + ε) + lr · weight_decay · w,
// t counting optimizer steps from 1. Element by element, so the result does not depend
// on how tensors split over threads. Gradient clipping (by the global L2 norm, summed in
// double over tensors in order) happens before the update.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/thread_pool.h"

namespace piquant {

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double weight_decay = 0.0;
  double clip_norm = 1.0;  // 0: no clipping
};

// One trainable tensor: its values, its gradient, and the optimizer's moments.
struct ParameterTensor {
  std::string name;
  std::span<float> value;
  std::span<float> grad;
  std::vector<float> m, v;  // sized by AdamW::add
  bool decay = true;        // weight decay applies (norm weights usually excluded)
};

class AdamW {
 public:
  explicit AdamW(const AdamWOptions& options) : options_(options) {}
  void add(std::string name, std::span<float> value, std::span<float> grad, bool decay = true);

  // Clips, updates every tensor with learning rate lr, and returns the gradient norm
  // before clipping. Gradients are left as they were (the caller zeroes them).
  double step(double lr, ThreadPool& pool);

  std::int64_t steps() const { return t_; }
  void set_steps(std::int64_t t) { t_ = t; }  // resuming
  std::vector<ParameterTensor>& tensors() { return tensors_; }
  const std::vector<ParameterTensor>& tensors() const { return tensors_; }

 private:
  AdamWOptions options_;
  std::vector<ParameterTensor> tensors_;
  std::int64_t t_ = 0;
};

// Σ g² over all gradients, in double, tensors in order and elements ascending.
double gradient_norm(const std::vector<ParameterTensor>& tensors);

}  // namespace piquant
