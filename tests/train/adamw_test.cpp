#include "train/adamw.h"

#include "core/error.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace piquant {
namespace {

// Two steps by hand in double, from the published AdamW update (Loshchilov & Hutter,
// as torch.optim.AdamW computes it), with clipping on the first step.
TEST(AdamW, TwoStepsMatchTheUpdateByHand) {
  std::vector<float> w = {0.5f, -1.0f, 2.0f}, g(3), w_nd = {1.0f};
  std::vector<float> g_nd(1);
  AdamW opt({.beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8, .weight_decay = 0.1, .clip_norm = 1.0});
  opt.add("w", w, g);
  opt.add("norm", w_nd, g_nd, /*decay=*/false);
  ThreadPool pool(2);

  std::vector<double> W = {0.5, -1.0, 2.0, 1.0}, M(4, 0.0), Vv(4, 0.0);
  const std::vector<std::vector<double>> grads = {{3.0, -4.0, 0.0, 0.0}, {0.1, 0.2, -0.3, 0.4}};
  const double lr = 0.01;
  for (int step = 1; step <= 2; ++step) {
    const auto& G = grads[static_cast<std::size_t>(step - 1)];
    for (int i = 0; i < 3; ++i) g[static_cast<std::size_t>(i)] = static_cast<float>(G[static_cast<std::size_t>(i)]);
    g_nd[0] = static_cast<float>(G[3]);
    double norm = 0.0;
    for (double x : G) norm += x * x;
    norm = std::sqrt(norm);
    EXPECT_NEAR(opt.step(lr, pool), norm, 1e-6);
    const double clip = norm > 1.0 ? 1.0 / norm : 1.0;  // step 1: norm 5 → scaled to 1
    for (int i = 0; i < 4; ++i) {
      const double gi = G[static_cast<std::size_t>(i)] * clip;
      M[static_cast<std::size_t>(i)] = 0.9 * M[static_cast<std::size_t>(i)] + 0.1 * gi;
      Vv[static_cast<std::size_t>(i)] = 0.99 * Vv[static_cast<std::size_t>(i)] + 0.01 * gi * gi;
      const double mh = M[static_cast<std::size_t>(i)] / (1 - std::pow(0.9, step));
      const double vh = Vv[static_cast<std::size_t>(i)] / (1 - std::pow(0.99, step));
      const double decay = i < 3 ? 0.1 : 0.0;
      W[static_cast<std::size_t>(i)] -= lr * (mh / (std::sqrt(vh) + 1e-8) + decay * W[static_cast<std::size_t>(i)]);
    }
    for (int i = 0; i < 3; ++i) EXPECT_NEAR(w[static_cast<std::size_t>(i)], W[static_cast<std::size_t>(i)], 1e-6) << "step " << step << " i " << i;
    EXPECT_NEAR(w_nd[0], W[3], 1e-6) << "step " << step;
  }
  EXPECT_EQ(opt.steps(), 2);
}

TEST(AdamW, RefusesANonFiniteGradient) {
  std::vector<float> w = {1.0f}, g = {NAN};
  AdamW opt({});
  opt.add("w", w, g);
  ThreadPool pool(1);
  EXPECT_THROW(opt.step(0.1, pool), Error);
  EXPECT_EQ(w[0], 1.0f);
}

}  // namespace
}  // namespace piquant
