#include "train/token_loss.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"

namespace piquant {

namespace {
// log Σ exp(z_j / tau), in double.
double log_sum_exp(const float* z, std::int64_t n, double inv_tau) {
  double max = -INFINITY;
  for (std::int64_t j = 0; j < n; ++j) max = std::max(max, static_cast<double>(z[j]) * inv_tau);
  double sum = 0.0;
  for (std::int64_t j = 0; j < n; ++j) sum += std::exp(static_cast<double>(z[j]) * inv_tau - max);
  return max + std::log(sum);
}
}  // namespace

double token_loss(const float* z, std::int64_t n_vocab, std::int32_t target, const TeacherTopK* teacher,
                  const TokenLossWeights& weights, double scale, float* dz) {
  if (target >= n_vocab) throw Error("token_loss: target " + std::to_string(target) + " outside a vocabulary of " + std::to_string(n_vocab));
  const bool ce = target >= 0 && weights.cross_entropy != 0.0;
  const bool kd = weights.distill != 0.0;
  if (kd && (teacher == nullptr || teacher->k <= 0 || teacher->k > n_vocab)) throw Error("token_loss: distillation without a teacher's top-k");
  if (kd && !(weights.temperature > 0.0)) throw Error("token_loss: temperature must be positive");

  // The student's probabilities at temperature 1 (cross-entropy) and tau (distillation)
  // are computed on the fly from their log-sum-exps; the gradient is assembled in double
  // per element and written once.
  const double lse1 = log_sum_exp(z, n_vocab, 1.0);
  double loss = 0.0;
  double tau = weights.temperature, inv_tau = 1.0 / tau;
  double lse_t = 0.0, P_K = 0.0, Q_K = 0.0, p_tail = 0.0, q_tail = 0.0, tail_coef = 0.0;
  std::vector<std::pair<std::int32_t, double>> p;  // teacher's kept ids and probabilities
  if (kd) {
    lse_t = tau == 1.0 ? lse1 : log_sum_exp(z, n_vocab, inv_tau);
    p.reserve(static_cast<std::size_t>(teacher->k));
    double kl = 0.0;
    for (std::int64_t i = 0; i < teacher->k; ++i) {
      const std::int32_t id = teacher->ids[i];
      if (id < 0 || id >= n_vocab) throw Error("token_loss: teacher token id " + std::to_string(id) + " outside the vocabulary");
      const double pi = std::exp(static_cast<double>(teacher->logits[i]) * inv_tau - teacher->lse_tau);
      const double log_qi = static_cast<double>(z[id]) * inv_tau - lse_t;
      P_K += pi;
      Q_K += std::exp(log_qi);
      if (pi > 0.0) kl += pi * (std::log(pi) - log_qi);
      p.emplace_back(id, pi);
    }
    p_tail = std::max(0.0, 1.0 - P_K);
    // q_tail summed directly over the ids outside K (1 − Q_K would cancel).
    std::vector<char> kept(static_cast<std::size_t>(n_vocab), 0);
    for (const auto& [id, pi] : p) kept[static_cast<std::size_t>(id)] = 1;
    for (std::int64_t j = 0; j < n_vocab; ++j) {
      if (!kept[static_cast<std::size_t>(j)]) q_tail += std::exp(static_cast<double>(z[j]) * inv_tau - lse_t);
    }
    if (p_tail > 0.0 && q_tail > 0.0) kl += p_tail * (std::log(p_tail) - std::log(q_tail));
    tail_coef = q_tail > 0.0 ? P_K - p_tail * Q_K / q_tail : 0.0;
    loss += weights.distill * tau * tau * kl;
  }
  if (ce) loss += weights.cross_entropy * (lse1 - static_cast<double>(z[target]));

  // Gradient: cross-entropy softmax(z) − onehot(target); distillation per the header.
  std::vector<double> teacher_p;
  if (kd) {
    teacher_p.assign(static_cast<std::size_t>(n_vocab), -1.0);  // −1: outside K
    for (const auto& [id, pi] : p) teacher_p[static_cast<std::size_t>(id)] = pi;
  }
  for (std::int64_t j = 0; j < n_vocab; ++j) {
    const double zj = static_cast<double>(z[j]);
    double g = 0.0;
    if (ce) g += weights.cross_entropy * (std::exp(zj - lse1) - (j == target ? 1.0 : 0.0));
    if (kd) {
      const double qj = std::exp(zj * inv_tau - lse_t);
      const double pj = teacher_p[static_cast<std::size_t>(j)];
      g += weights.distill * tau * (pj >= 0.0 ? qj - pj : qj * tail_coef);
    }
    dz[j] = static_cast<float>(scale * g);
  }
  return loss;
}

}  // namespace piquant
