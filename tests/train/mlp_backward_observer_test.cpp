// The MLP backward's observer (backward_blocks.h, TrainingGradients::mlp_observer): every
// step of every layer is shown once, in token order, and what it shows is consistent
// with the weight gradients the same pass computes: for row i of w_gate,
// Σ_j W[i,j]·∂L/∂W[i,j] = Σ_t gate_i(t)·∂L/∂gate_i(t) (likewise w_up), and for column i
// of w_down Σ_k W[k,i]·∂L/∂W[k,i] = Σ_t h_i(t)·∂L/∂h_i(t); h is SwiGLU(gate, up).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "engine/owned_model.h"
#include "support/test_support.h"
#include "train/training_pass.h"

namespace piquant {
namespace {

struct Seen {
  std::vector<std::vector<std::int64_t>> steps;     // per layer: token0 of each step shown
  std::vector<std::vector<double>> gate, up, down;  // per layer, per neuron: Σ_t value · gradient
  double swiglu_error = 0.0;                        // largest |h − SiLU(gate)·up|
};

class Recorder final : public MlpBackwardObserver {
 public:
  explicit Recorder(Seen& seen) : seen_(seen) {}
  void observe(const MlpStepValues& v) override {
    const auto l = static_cast<std::size_t>(v.layer);
    seen_.steps[l].push_back(v.token0);
    for (std::int64_t t = 0; t < v.n_tokens; ++t) {
      for (std::int64_t i = 0; i < v.n_ff; ++i) {
        const std::int64_t e = t * v.n_ff + i;
        seen_.gate[l][static_cast<std::size_t>(i)] += static_cast<double>(v.gate[e]) * v.dgate[e];
        seen_.up[l][static_cast<std::size_t>(i)] += static_cast<double>(v.up[e]) * v.dup[e];
        seen_.down[l][static_cast<std::size_t>(i)] += static_cast<double>(v.h[e]) * v.dh[e];
        const double g = v.gate[e];
        seen_.swiglu_error = std::max(seen_.swiglu_error, std::fabs(v.h[e] - g / (1.0 + std::exp(-g)) * v.up[e]));
      }
    }
  }

 private:
  Seen& seen_;
};

TEST(MlpBackwardObserver, ShowsEveryStepConsistentWithTheWeightGradients) {
  const auto tokenizer = PIQUANT_SHARED_FILE("models/stories260K/tok512.bin");
  LlamaParams p;
  p.n_vocab = 512;
  p.n_embd = 32;
  p.n_layer = 2;
  p.n_head = 4;
  p.n_head_kv = 2;
  p.head_dim = 8;
  p.n_ff = {48, 24};
  auto model = OwnedLlamaModel::random(p, load_vocab_llama2c(tokenizer.string(), 512), RopePairing::HalfSplit, 3, 0.3f);
  const std::int64_t T = 130;  // two MLP steps: 128 tokens and 2
  std::mt19937 rng(4);
  std::vector<std::int32_t> inputs, targets;
  for (std::int64_t t = 0; t < T; ++t) {
    inputs.push_back(static_cast<std::int32_t>(rng() % 512));
    targets.push_back(static_cast<std::int32_t>(rng() % 512));
  }
  const std::vector<float> weights(static_cast<std::size_t>(T), 1.0f / static_cast<float>(T));
  ThreadPool pool(2);
  for (const bool keep : {false, true}) {
    TrainingPass pass(*model, nullptr, pool, T, 32, keep);
    Seen seen;
    seen.steps.resize(2);
    for (auto* v : {&seen.gate, &seen.up, &seen.down}) v->assign(2, {});
    std::vector<std::vector<float>> dgate(2), dup(2), ddown(2);
    TrainingGradients grads;
    for (std::int64_t l = 0; l < 2; ++l) {
      const auto F = static_cast<std::size_t>(p.n_ff[static_cast<std::size_t>(l)]);
      for (auto* v : {&seen.gate, &seen.up, &seen.down}) (*v)[static_cast<std::size_t>(l)].assign(F, 0.0);
      for (auto* g : {&dgate, &dup, &ddown}) (*g)[static_cast<std::size_t>(l)].assign(F * 32, 0.0f);
      LayerGrads lg;
      lg.w_gate = dgate[static_cast<std::size_t>(l)].data();
      lg.w_up = dup[static_cast<std::size_t>(l)].data();
      lg.w_down = ddown[static_cast<std::size_t>(l)].data();
      grads.layers.push_back(lg);
    }
    Recorder recorder(seen);
    grads.mlp_observer = &recorder;
    pass.forward_backward({inputs, targets, weights, {}}, {}, grads);
    EXPECT_LT(seen.swiglu_error, 1e-5);
    for (std::int64_t l = 0; l < 2; ++l) {
      const auto L = static_cast<std::size_t>(l);
      EXPECT_EQ(seen.steps[L], (std::vector<std::int64_t>{0, 128})) << "layer " << l;
      const std::int64_t F = p.n_ff[L];
      const std::span<const float> wg = model->weight({WeightKind::FfnGate, l}), wu = model->weight({WeightKind::FfnUp, l}),
                                   wd = model->weight({WeightKind::FfnDown, l});
      double largest = 0.0;
      std::vector<double> want_gate(static_cast<std::size_t>(F)), want_up(want_gate.size()), want_down(want_gate.size());
      for (std::int64_t i = 0; i < F; ++i) {
        const auto I = static_cast<std::size_t>(i);
        for (std::int64_t j = 0; j < 32; ++j) {
          const auto row = static_cast<std::size_t>(i * 32 + j), column = static_cast<std::size_t>(j * F + i);
          want_gate[I] += static_cast<double>(wg[row]) * dgate[L][row];
          want_up[I] += static_cast<double>(wu[row]) * dup[L][row];
          want_down[I] += static_cast<double>(wd[column]) * ddown[L][column];
        }
        largest = std::max({largest, std::fabs(want_gate[I]), std::fabs(want_up[I]), std::fabs(want_down[I])});
      }
      ASSERT_GT(largest, 0.0);
      for (std::int64_t i = 0; i < F; ++i) {
        const auto I = static_cast<std::size_t>(i);
        EXPECT_NEAR(seen.gate[L][I], want_gate[I], 1e-4 * largest) << "layer " << l << " neuron " << i << " keep " << keep;
        EXPECT_NEAR(seen.up[L][I], want_up[I], 1e-4 * largest) << "layer " << l << " neuron " << i << " keep " << keep;
        EXPECT_NEAR(seen.down[L][I], want_down[I], 1e-4 * largest) << "layer " << l << " neuron " << i << " keep " << keep;
      }
    }
  }
}

}  // namespace
}  // namespace piquant
