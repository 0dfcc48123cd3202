#include "train/adamw.h"

#include <cmath>

#include "core/error.h"

namespace piquant {

void AdamW::add(std::string name, std::span<float> value, std::span<float> grad, bool decay) {
  if (value.size() != grad.size()) throw Error("AdamW: " + name + " has " + std::to_string(value.size()) + " values and " + std::to_string(grad.size()) + " gradients");
  ParameterTensor& p = tensors_.emplace_back();
  p.name = std::move(name);
  p.value = value;
  p.grad = grad;
  p.m.assign(value.size(), 0.0f);
  p.v.assign(value.size(), 0.0f);
  p.decay = decay;
}

double gradient_norm(const std::vector<ParameterTensor>& tensors) {
  double sum = 0.0;
  for (const ParameterTensor& p : tensors) {
    for (float g : p.grad) sum += static_cast<double>(g) * g;
  }
  return std::sqrt(sum);
}

double AdamW::step(double lr, ThreadPool& pool) {
  const double norm = gradient_norm(tensors_);
  if (!std::isfinite(norm)) throw Error("AdamW: the gradient is not finite (norm " + std::to_string(norm) + "); lower the learning rate");
  const double clip = options_.clip_norm > 0.0 && norm > options_.clip_norm ? options_.clip_norm / norm : 1.0;
  ++t_;
  const double b1 = options_.beta1, b2 = options_.beta2;
  const double c1 = 1.0 - std::pow(b1, static_cast<double>(t_));
  const double c2 = 1.0 - std::pow(b2, static_cast<double>(t_));
  for (ParameterTensor& p : tensors_) {
    const double decay = p.decay ? options_.weight_decay : 0.0;
    const auto n = static_cast<std::int64_t>(p.value.size());
    pool.parallel_for(n, 4096, [&](std::int64_t i0, std::int64_t i1) {
      for (std::int64_t i = i0; i < i1; ++i) {
        const double g = static_cast<double>(p.grad[static_cast<std::size_t>(i)]) * clip;
        float& m = p.m[static_cast<std::size_t>(i)];
        float& v = p.v[static_cast<std::size_t>(i)];
        m = static_cast<float>(b1 * m + (1.0 - b1) * g);
        v = static_cast<float>(b2 * v + (1.0 - b2) * g * g);
        float& w = p.value[static_cast<std::size_t>(i)];
        const double update = (m / c1) / (std::sqrt(v / c2) + options_.eps) + decay * w;
        w = static_cast<float>(w - lr * update);
      }
    });
  }
  return norm;
}

}  // namespace piquant
