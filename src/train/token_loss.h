#pragma once
// The loss of one position from its logits, and its gradient with respect to them:
// next-token cross-entropy, and distillation KL(teacher ‖ student) at a temperature
// from the teacher's top-k logits with the rest of its mass kept as one "tail" bucket.
//
// Distillation (tau = temperature, teacher logits l over its k kept ids K, lse_tau =
// log Σ_all exp(l / tau) over the whole vocabulary):
//   p_i = exp(l_i / tau − lse_tau) for i ∈ K, p_tail = 1 − Σ_K p_i,
//   q = softmax(z / tau) of the student's logits z, q_tail = Σ_{j ∉ K} q_j,
//   KL = Σ_K p_i log(p_i / q_i) + p_tail log(p_tail / q_tail),
// multiplied by tau² (gradients keep their size across temperatures). Its gradient:
//   ∂/∂z_j = tau · (q_j − p_j) for j ∈ K,  tau · q_j · (P_K − p_tail · Q_K / q_tail) otherwise,
// with P_K = Σ_K p_i, Q_K = Σ_K q_i. With k = n_vocab the tail is empty and this is the
// exact KL of the full distributions.
//
// Sums over the vocabulary run in double; the gradients are written in float.
#include <cstdint>

namespace piquant {

// A teacher's top-k at one position (ids distinct, any order).
struct TeacherTopK {
  std::int64_t k = 0;
  const std::int32_t* ids = nullptr;
  const float* logits = nullptr;
  double lse_tau = 0.0;  // log Σ over the vocabulary of exp(logit / tau)
};

struct TokenLossWeights {
  double cross_entropy = 1.0;  // weight of −log softmax(z)[target]
  double distill = 0.0;        // weight of tau² · KL(teacher ‖ student)
  double temperature = 1.0;
};

// Returns the weighted loss of one position (not scaled) and writes dz (n_vocab floats) = scale ·
// its gradient (scale: e.g. 1 / tokens in the batch). target may be −1 (no
// cross-entropy term); teacher may be nullptr when weights.distill == 0. dz may equal z.
double token_loss(const float* z, std::int64_t n_vocab, std::int32_t target, const TeacherTopK* teacher,
                  const TokenLossWeights& weights, double scale, float* dz);

}  // namespace piquant
