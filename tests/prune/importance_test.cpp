// MLP neuron importance (prune/importance.h) on tiny models built in memory, with
// grouped-query attention, llama3 RoPE factors and a different MLP width per layer:
// - the layer-by-layer calibration pass against a plain LlamaContext whose
//   MatmulObserver records every MLP input and SwiGLU output, summed here in double;
// - every criterion against its definition computed here in double from those records;
// - planted dead and dominant neurons at the bottom and top of every criterion;
// - taylor sums against central differences of an independent double forward pass
//   (train/reference_llama.h) in the scale of each neuron;
// - FLAP's bias compensation against its sum, and at the MLP block: a constant neuron
//   removed plus the bias leaves the block's output as it was;
// - thread counts, layer ranges, errors, and a mapped checkpoint (whose layers the pass
//   releases) against its read-in copy.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "core/error.h"
#include "engine/forward_blocks.h"
#include "engine/llama_context.h"
#include "engine/owned_model.h"
#include "kernels/rope.h"
#include "prune/importance.h"
#include "support/model_fixtures.h"
#include "support/test_support.h"
#include "train/reference_llama.h"

namespace piquant {
namespace {

using Sequences = std::vector<std::vector<std::int32_t>>;
using testing::ReferenceLlama;

Sequences random_sequences(const std::vector<std::size_t>& lengths, std::uint32_t seed) {
  std::mt19937 rng(seed);
  Sequences out;
  for (std::size_t n : lengths) {
    std::vector<std::int32_t> s;
    for (std::size_t t = 0; t < n; ++t) s.push_back(static_cast<std::int32_t>(rng() % 512));
    out.push_back(std::move(s));
  }
  return out;
}

// Element (r, c) of a weight of the model (rows × cols, row-major).
float& at(OwnedLlamaModel& m, WeightKind kind, std::int64_t layer, std::int64_t r, std::int64_t c) {
  const WeightId id{kind, layer};
  return m.weight(id)[static_cast<std::size_t>(r * weight_shape(m.params(), id).second + c)];
}
double value(const OwnedLlamaModel& m, WeightKind kind, std::int64_t layer, std::int64_t r, std::int64_t c) {
  const WeightId id{kind, layer};
  return m.weight(id)[static_cast<std::size_t>(r * weight_shape(m.params(), id).second + c)];
}

// Every MLP's inputs as a LlamaContext (kv F32, one batch per sequence) shows them to
// an observer: x (ffn_gate's input) and h (ffn_down's input), per layer per sequence.
struct Recorded {
  std::vector<std::vector<std::vector<float>>> x, h;  // [layer][sequence]: T × E, T × F rows
};

class Recorder final : public MatmulObserver {
 public:
  Recorder(Recorded& r, std::size_t sequence) : r_(r), s_(sequence) {}
  void observe(WeightId id, const float* in, std::int64_t n, std::int64_t cols) override {
    auto* to = id.kind == WeightKind::FfnGate ? &r_.x : id.kind == WeightKind::FfnDown ? &r_.h : nullptr;
    if (to == nullptr) return;
    auto& rows = (*to)[static_cast<std::size_t>(id.layer)][s_];
    rows.insert(rows.end(), in, in + n * cols);
  }

 private:
  Recorded& r_;
  std::size_t s_;
};

Recorded record(const LlamaModel& model, const Sequences& sequences) {
  const auto L = static_cast<std::size_t>(model.params().n_layer);
  Recorded r;
  r.x.assign(L, std::vector<std::vector<float>>(sequences.size()));
  r.h.assign(L, std::vector<std::vector<float>>(sequences.size()));
  for (std::size_t s = 0; s < sequences.size(); ++s) {
    ContextOptions options;
    options.n_ctx = static_cast<std::int64_t>(sequences[s].size());
    options.n_batch = options.n_ctx;
    options.kv_type = GgmlType::F32;
    options.n_threads = 2;
    LlamaContext context(model, options);
    Recorder recorder(r, s);
    context.set_matmul_observer(&recorder);
    context.eval(sequences[s]);
  }
  return r;
}

// The statistics' definitions, from the recorded rows, in double.
MlpLayerStatistics reference_statistics(const Recorded& r, std::size_t layer, std::int64_t E, std::int64_t F) {
  MlpLayerStatistics s;
  s.input_sq_sum.assign(static_cast<std::size_t>(E), 0.0);
  s.act_sum.assign(static_cast<std::size_t>(F), 0.0);
  s.act_sq_sum.assign(static_cast<std::size_t>(F), 0.0);
  s.act_abs_seq.assign(static_cast<std::size_t>(F), 0.0);
  for (std::size_t q = 0; q < r.x[layer].size(); ++q) {
    const std::vector<float>& x = r.x[layer][q];
    const std::vector<float>& h = r.h[layer][q];
    const auto T = static_cast<std::int64_t>(x.size()) / E;
    EXPECT_EQ(static_cast<std::int64_t>(h.size()), T * F);
    s.n_tokens += T;
    s.n_sequences += 1;
    for (std::int64_t t = 0; t < T; ++t) {
      for (std::int64_t j = 0; j < E; ++j) {
        const double v = x[t * E + j];
        s.input_sq_sum[j] += v * v;
      }
    }
    for (std::int64_t i = 0; i < F; ++i) {
      double abs_sum = 0.0;
      for (std::int64_t t = 0; t < T; ++t) {
        const double v = h[t * F + i];
        s.act_sum[i] += v;
        s.act_sq_sum[i] += v * v;
        abs_sum += std::fabs(v);
      }
      const double mean = abs_sum / static_cast<double>(T);
      s.act_abs_seq[i] += mean * mean;
    }
  }
  return s;
}

void expect_close(const std::vector<double>& got, const std::vector<double>& want, double relative, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double scale = 0.0;
  for (double v : want) scale = std::max(scale, std::fabs(v));
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], relative * scale) << what << " [" << i << "]";
  }
}

void expect_identical(const MlpLayerStatistics& a, const MlpLayerStatistics& b, const std::string& what) {
  EXPECT_EQ(a.n_tokens, b.n_tokens) << what;
  EXPECT_EQ(a.n_sequences, b.n_sequences) << what;
  EXPECT_EQ(a.input_sq_sum, b.input_sq_sum) << what;
  EXPECT_EQ(a.act_sum, b.act_sum) << what;
  EXPECT_EQ(a.act_sq_sum, b.act_sq_sum) << what;
  EXPECT_EQ(a.act_abs_seq, b.act_abs_seq) << what;
  EXPECT_EQ(a.taylor, b.taylor) << what;
  EXPECT_EQ(a.taylor_sq_seq, b.taylor_sq_seq) << what;
}

class TinyModel : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto tokenizer = PIQUANT_SHARED_FILE("models/stories260K/tok512.bin");
    vocab_ = load_vocab_llama2c(tokenizer.string(), 512);
  }
  std::unique_ptr<OwnedLlamaModel> model(std::vector<std::int64_t> n_ff, std::uint64_t seed,
                                         RopePairing pairing = RopePairing::HalfSplit) const {
    return OwnedLlamaModel::random(testing::tiny_llama_params(std::move(n_ff)), vocab_, pairing, seed, 0.3f);
  }
  Vocab vocab_;
};

TEST_F(TinyModel, StatisticsEqualAContextsObservedActivations) {
  for (RopePairing pairing : {RopePairing::Interleaved, RopePairing::HalfSplit}) {
    const auto m = model({48, 24, 40}, 3, pairing);
    // One sequence longer than an MLP step (kMlpTokensPerStep), one of a single token.
    const Sequences sequences = random_sequences({7, 150, 1, 20}, 5);
    ThreadPool pool(2);
    std::vector<std::int64_t> progress;
    CalibrationOptions options;
    options.progress = [&](std::int64_t done, std::int64_t total) {
      EXPECT_EQ(total, 3);
      progress.push_back(done);
    };
    const std::vector<MlpLayerStatistics> stats = collect_mlp_statistics(*m, sequences, options, pool);
    EXPECT_EQ(progress, (std::vector<std::int64_t>{1, 2, 3}));
    const Recorded r = record(*m, sequences);
    ASSERT_EQ(stats.size(), 3u);
    for (std::size_t l = 0; l < 3; ++l) {
      const std::int64_t F = m->params().n_ff[l];
      const MlpLayerStatistics want = reference_statistics(r, l, 32, F);
      const MlpLayerStatistics& got = stats[l];
      const std::string what = "layer " + std::to_string(l);
      EXPECT_EQ(got.n_tokens, 178) << what;
      EXPECT_EQ(got.n_sequences, 4) << what;
      // The same float activations, summed in double in the same (token) order: the same bits.
      EXPECT_EQ(got.input_sq_sum, want.input_sq_sum) << what;
      EXPECT_EQ(got.act_sum, want.act_sum) << what;
      EXPECT_EQ(got.act_sq_sum, want.act_sq_sum) << what;
      EXPECT_EQ(got.act_abs_seq, want.act_abs_seq) << what;
      EXPECT_TRUE(got.taylor.empty());
    }
  }
}

// Every criterion from its definition (importance.h), in double, from the context's
// recorded activations and the model's weights.
TEST_F(TinyModel, CriteriaFollowTheirDefinitions) {
  const auto m = model({48, 24}, 4);
  const Sequences sequences = random_sequences({12, 30, 5}, 6);
  ThreadPool pool(3);
  const std::vector<MlpLayerStatistics> stats = collect_mlp_statistics(*m, sequences, {}, pool);
  const Recorded r = record(*m, sequences);
  const std::int64_t E = 32;
  for (PruneCriterion c : {PruneCriterion::Magnitude, PruneCriterion::Wanda, PruneCriterion::Activation, PruneCriterion::Flap}) {
    const std::vector<MlpLayerStatistics> none;
    const auto scores = neuron_importance(c, *m, c == PruneCriterion::Magnitude ? none : stats, 0, -1, &pool);
    ASSERT_EQ(scores.size(), 2u);
    for (std::int64_t l = 0; l < 2; ++l) {
      const std::int64_t F = m->params().n_ff[static_cast<std::size_t>(l)];
      const auto& xs = r.x[static_cast<std::size_t>(l)];
      const auto& hs = r.h[static_cast<std::size_t>(l)];
      std::vector<double> want(static_cast<std::size_t>(F));
      for (std::int64_t i = 0; i < F; ++i) {
        double gate_sq = 0, up_sq = 0, down_sq = 0, wanda = 0;
        std::vector<double> h_all;
        std::vector<double> seq_means;
        for (std::size_t q = 0; q < hs.size(); ++q) {
          const auto T = static_cast<std::int64_t>(hs[q].size()) / F;
          double abs_sum = 0;
          for (std::int64_t t = 0; t < T; ++t) {
            h_all.push_back(hs[q][t * F + i]);
            abs_sum += std::fabs(h_all.back());
          }
          seq_means.push_back(abs_sum / static_cast<double>(T));
        }
        double h_norm = 0, h_mean = 0;
        for (double v : h_all) h_norm += v * v, h_mean += v;
        h_norm = std::sqrt(h_norm);
        h_mean /= static_cast<double>(h_all.size());
        double variance = 0;
        for (double v : h_all) variance += (v - h_mean) * (v - h_mean);
        variance /= static_cast<double>(h_all.size());
        for (std::int64_t j = 0; j < E; ++j) {
          double x_norm = 0;
          for (const auto& x : xs) {
            for (std::size_t t = 0; t < x.size() / static_cast<std::size_t>(E); ++t) {
              x_norm += std::pow(static_cast<double>(x[t * E + j]), 2);
            }
          }
          x_norm = std::sqrt(x_norm);
          const double g = value(*m, WeightKind::FfnGate, l, i, j), u = value(*m, WeightKind::FfnUp, l, i, j);
          const double d = value(*m, WeightKind::FfnDown, l, j, i);
          gate_sq += g * g;
          up_sq += u * u;
          down_sq += d * d;
          wanda += std::fabs(g) * x_norm + std::fabs(u) * x_norm + std::fabs(d) * h_norm;
        }
        double l2 = 0;
        for (double v : seq_means) l2 += v * v;
        switch (c) {
          case PruneCriterion::Magnitude: want[static_cast<std::size_t>(i)] = gate_sq + up_sq + down_sq; break;
          case PruneCriterion::Wanda: want[static_cast<std::size_t>(i)] = wanda; break;
          case PruneCriterion::Activation: want[static_cast<std::size_t>(i)] = std::sqrt(l2); break;
          default: want[static_cast<std::size_t>(i)] = variance * down_sq; break;
        }
      }
      // The variance comes from Σh and Σh² in the pass: cancellation costs a few digits.
      expect_close(scores[static_cast<std::size_t>(l)], want, c == PruneCriterion::Flap ? 1e-9 : 1e-12,
                   prune_criterion_name(c) + " layer " + std::to_string(l));
    }
  }
}

// Dead neurons (gate and up rows zero: h = 0 on every token) at the bottom, dominant
// ones at the top, under every criterion. Dominant: gate row, up row and down column
// nearly 7 times as large as every other neuron's (the others' scaled down, so the
// model stays in the range where its first-order loss slopes mean something: a taylor
// slope grows with the cube of a neuron's scale, and a single neuron blown up until the
// norms saturate has none).
TEST_F(TinyModel, PlantedDeadAndDominantNeuronsRankLastAndFirst) {
  auto m = model({48, 40}, 7);
  const std::vector<std::int64_t> dead = {3, 17}, dominant = {9, 30};
  for (std::int64_t l = 0; l < 2; ++l) {
    for (std::int64_t i = 0; i < m->params().n_ff[static_cast<std::size_t>(l)]; ++i) {
      const bool is_dead = std::count(dead.begin(), dead.end(), i) > 0;
      if (std::count(dominant.begin(), dominant.end(), i) > 0) continue;
      for (std::int64_t j = 0; j < 32; ++j) {
        for (WeightKind k : {WeightKind::FfnGate, WeightKind::FfnUp}) at(*m, k, l, i, j) *= is_dead ? 0.0f : 0.15f;
        at(*m, WeightKind::FfnDown, l, j, i) *= 0.15f;
      }
    }
  }
  const Sequences sequences = random_sequences({16, 16, 9}, 8);
  ThreadPool pool(2);
  CalibrationOptions options;
  options.taylor = true;
  const auto stats = collect_mlp_statistics(*m, sequences, options, pool);
  for (const std::string& name : prune_criterion_names()) {
    const PruneCriterion c = parse_prune_criterion(name);
    const auto scores = neuron_importance(c, *m, stats, 0, 1, &pool);
    for (std::size_t l = 0; l < 2; ++l) {
      const std::vector<double>& s = scores[l];
      std::vector<std::int64_t> order(s.size());
      for (std::size_t i = 0; i < s.size(); ++i) order[i] = static_cast<std::int64_t>(i);
      std::stable_sort(order.begin(), order.end(), [&](auto a, auto b) { return s[a] < s[b]; });
      std::vector<std::int64_t> lowest(order.begin(), order.begin() + 2), highest(order.end() - 2, order.end());
      std::sort(lowest.begin(), lowest.end());
      std::sort(highest.begin(), highest.end());
      // Not by a hair: the weaker dominant neuron against the strongest ordinary one.
      EXPECT_GT(s[static_cast<std::size_t>(order[order.size() - 2])], 1.5 * s[static_cast<std::size_t>(order[order.size() - 3])])
          << name << " layer " << l;
      EXPECT_EQ(lowest, dead) << name << " layer " << l;
      EXPECT_EQ(highest, dominant) << name << " layer " << l;
      if (c != PruneCriterion::Magnitude) {  // no output at all: nothing measured matters
        for (std::int64_t i : dead) EXPECT_EQ(s[static_cast<std::size_t>(i)], 0.0) << name << " layer " << l;
      }
    }
  }
}

// The taylor sum of neuron i is dL/dα at α = 1 for α scaling its gate row, up row and
// down column, L the summed next-token cross-entropy: central differences of the double
// reference forward, the weights scaled in double.
TEST_F(TinyModel, TaylorSumsAreTheLossSlopeInEachNeuronsScale) {
  for (RopePairing pairing : {RopePairing::Interleaved, RopePairing::HalfSplit}) {
    const auto m = model({48, 24}, 11, pairing);
    const Sequences sequences = random_sequences({9, 6, 1}, 12);  // one sequence with nothing to predict
    ThreadPool pool(2);
    CalibrationOptions options;
    options.taylor = true;
    std::int64_t last_done = 0;
    options.progress = [&](std::int64_t done, std::int64_t total) {
      EXPECT_EQ(total, 2 + 3);
      EXPECT_EQ(done, last_done + 1);
      last_done = done;
    };
    const auto stats = collect_mlp_statistics(*m, sequences, options, pool);
    EXPECT_EQ(last_done, 5);
    const ReferenceLlama base = ReferenceLlama::of(*m);
    const auto loss = [&](const ReferenceLlama& r) {
      double total = 0.0;
      for (const auto& s : sequences) {
        if (s.size() < 2) continue;
        const std::vector<std::int32_t> inputs(s.begin(), s.end() - 1), targets(s.begin() + 1, s.end());
        total += r.loss(inputs, targets, std::vector<float>(inputs.size(), 1.0f));
      }
      return total;
    };
    const std::int64_t E = 32;
    for (std::int64_t l = 0; l < 2; ++l) {
      const std::int64_t F = m->params().n_ff[static_cast<std::size_t>(l)];
      const auto scaled = [&](std::int64_t i, double alpha) {
        ReferenceLlama r = base;
        for (std::int64_t j = 0; j < E; ++j) {
          r.at({WeightKind::FfnGate, l})[static_cast<std::size_t>(i * E + j)] *= alpha;
          r.at({WeightKind::FfnUp, l})[static_cast<std::size_t>(i * E + j)] *= alpha;
          r.at({WeightKind::FfnDown, l})[static_cast<std::size_t>(j * F + i)] *= alpha;
        }
        return loss(r);
      };
      const double step = 1e-3;
      std::vector<double> fd(static_cast<std::size_t>(F));
      double largest = 0.0;
      for (std::int64_t i = 0; i < F; ++i) {
        fd[static_cast<std::size_t>(i)] = (scaled(i, 1.0 + step) - scaled(i, 1.0 - step)) / (2.0 * step);
        largest = std::max(largest, std::fabs(fd[static_cast<std::size_t>(i)]));
      }
      ASSERT_GT(largest, 1e-3);
      for (std::int64_t i = 0; i < F; ++i) {
        const double sum = stats[static_cast<std::size_t>(l)].taylor[static_cast<std::size_t>(i)];
        EXPECT_NEAR(sum, fd[static_cast<std::size_t>(i)], 1e-4 * largest) << "layer " << l << " neuron " << i;
      }
    }
  }
}

TEST_F(TinyModel, OneAndThreeThreadsGiveIdenticalStatistics) {
  const auto m = model({48, 24, 40}, 13);
  const Sequences sequences = random_sequences({140, 3, 33}, 14);
  CalibrationOptions options;
  options.taylor = true;
  ThreadPool one(1), three(3);
  const auto a = collect_mlp_statistics(*m, sequences, options, one);
  const auto b = collect_mlp_statistics(*m, sequences, options, three);
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t l = 0; l < a.size(); ++l) {
    expect_identical(a[l], b[l], "layer " + std::to_string(l));
    EXPECT_FALSE(a[l].taylor.empty());
  }
  for (PruneCriterion c : {PruneCriterion::Magnitude, PruneCriterion::Wanda, PruneCriterion::Flap}) {
    EXPECT_EQ(neuron_importance(c, *m, a, 0, -1, nullptr), neuron_importance(c, *m, a, 0, -1, &three)) << prune_criterion_name(c);
  }
}

// The taylor score is the L2 norm over sequences of each sequence's own sum: calibrating
// on each sequence alone gives those sums (checked against finite differences above), so
// the score must equal the root of their squares added up, and the signed total their sum.
TEST_F(TinyModel, TaylorScoreIsTheNormOfThePerSequenceSums) {
  const auto m = model({48, 24}, 19);
  const Sequences sequences = random_sequences({20, 9, 33}, 20);
  CalibrationOptions options;
  options.taylor = true;
  ThreadPool pool(2);
  const auto together = collect_mlp_statistics(*m, sequences, options, pool);
  std::vector<std::vector<double>> sum_sq(2), sum(2);
  for (const auto& s : sequences) {
    const auto alone = collect_mlp_statistics(*m, Sequences{s}, options, pool);
    for (std::size_t l = 0; l < 2; ++l) {
      sum_sq[l].resize(alone[l].taylor.size(), 0.0);
      sum[l].resize(alone[l].taylor.size(), 0.0);
      for (std::size_t i = 0; i < alone[l].taylor.size(); ++i) {
        sum_sq[l][i] += alone[l].taylor[i] * alone[l].taylor[i];
        sum[l][i] += alone[l].taylor[i];
      }
    }
  }
  const auto scores = neuron_importance(PruneCriterion::Taylor, *m, together, 0, -1, &pool);
  for (std::size_t l = 0; l < 2; ++l) {
    expect_close(together[l].taylor, sum[l], 1e-12, "signed sums, layer " + std::to_string(l));
    std::vector<double> norm(sum_sq[l].size());
    for (std::size_t i = 0; i < norm.size(); ++i) norm[i] = std::sqrt(sum_sq[l][i]);
    expect_close(scores[l], norm, 1e-12, "scores, layer " + std::to_string(l));
    // Not the old |total| form: some neuron's signs cancel across sequences.
    double most = 0;
    for (std::size_t i = 0; i < norm.size(); ++i) most = std::max(most, norm[i] - std::fabs(sum[l][i]));
    EXPECT_GT(most, 1e-3 * *std::max_element(norm.begin(), norm.end())) << l;
  }
}

TEST_F(TinyModel, LayersOutsideTheRangeStayEmpty) {
  const auto m = model({48, 24, 40, 16}, 15);
  const Sequences sequences = random_sequences({10, 21}, 16);
  ThreadPool pool(2);
  CalibrationOptions all;
  all.taylor = true;
  const auto full = collect_mlp_statistics(*m, sequences, all, pool);
  CalibrationOptions middle = all;
  middle.first_layer = 1;
  middle.last_layer = 2;
  std::vector<std::pair<std::int64_t, std::int64_t>> progress;
  middle.progress = [&](std::int64_t done, std::int64_t total) { progress.emplace_back(done, total); };
  const auto part = collect_mlp_statistics(*m, sequences, middle, pool);
  // Layers 0..2 forward (none after the range), then the two sequences' backward.
  EXPECT_EQ(progress, (std::vector<std::pair<std::int64_t, std::int64_t>>{{1, 5}, {2, 5}, {3, 5}, {4, 5}, {5, 5}}));
  ASSERT_EQ(part.size(), 4u);
  for (std::size_t l : {0u, 3u}) {
    EXPECT_EQ(part[l].n_tokens, 0);
    EXPECT_TRUE(part[l].act_sum.empty() && part[l].input_sq_sum.empty() && part[l].taylor.empty());
  }
  for (std::size_t l : {1u, 2u}) expect_identical(part[l], full[l], "layer " + std::to_string(l));
  const auto scores = neuron_importance(PruneCriterion::Wanda, *m, part, 1, 2);
  EXPECT_TRUE(scores[0].empty() && scores[3].empty());
  EXPECT_EQ(scores[1].size(), 24u);
  EXPECT_EQ(scores[2].size(), 40u);
  EXPECT_THROW(neuron_importance(PruneCriterion::Wanda, *m, part, 0, 2), Error);  // layer 0 not measured
  EXPECT_EQ(neuron_importance(PruneCriterion::Magnitude, *m, {}, 3, 3)[3].size(), 16u);
}

TEST_F(TinyModel, BadInputsAreErrors) {
  const auto m = model({48, 24}, 17);
  ThreadPool pool(1);
  CalibrationOptions options;
  EXPECT_THROW(collect_mlp_statistics(*m, {}, options, pool), Error);
  EXPECT_THROW(collect_mlp_statistics(*m, {{1, 2}, {}}, options, pool), Error);
  EXPECT_THROW(collect_mlp_statistics(*m, {{1, 512}}, options, pool), Error);
  EXPECT_THROW(collect_mlp_statistics(*m, {{-1}}, options, pool), Error);
  for (auto [first, last] : {std::pair{-1, 1}, {1, 0}, {0, 2}, {2, -1}}) {
    CalibrationOptions range;
    range.first_layer = first;
    range.last_layer = last;
    EXPECT_THROW(collect_mlp_statistics(*m, {{1, 2}}, range, pool), Error) << first << " .. " << last;
    EXPECT_THROW(neuron_importance(PruneCriterion::Magnitude, *m, {}, first, last), Error) << first << " .. " << last;
  }
  options.taylor = true;
  EXPECT_THROW(collect_mlp_statistics(*m, {{1}, {2}}, options, pool), Error);  // nothing to predict
  options.taylor = false;
  const auto stats = collect_mlp_statistics(*m, {{1, 2, 3}}, options, pool);
  EXPECT_THROW(neuron_importance(PruneCriterion::Taylor, *m, stats, 0, -1), Error);  // no taylor sums
  for (PruneCriterion c : {PruneCriterion::Wanda, PruneCriterion::Activation, PruneCriterion::Flap, PruneCriterion::Taylor}) {
    EXPECT_THROW(neuron_importance(c, *m, {}, 0, -1), Error) << prune_criterion_name(c);
  }
  EXPECT_THROW(mlp_bias_compensation(*m, 0, stats[0], {48}), Error);
  EXPECT_THROW(mlp_bias_compensation(*m, 0, stats[0], {-1}), Error);
  EXPECT_THROW(mlp_bias_compensation(*m, 0, stats[0], {4, 2, 4}), Error);
  EXPECT_THROW(mlp_bias_compensation(*m, 1, stats[0], {1}), Error);  // layer 0's statistics for layer 1
  EXPECT_THROW(mlp_bias_compensation(*m, 2, stats[0], {1}), Error);
  EXPECT_TRUE(mlp_bias_compensation(*m, 0, stats[0], {}) == std::vector<float>(32, 0.0f));
}

TEST_F(TinyModel, BiasCompensationAddsBackTheRemovedNeuronsMeanOutputs) {
  const auto m = model({48, 24}, 19);
  ThreadPool pool(2);
  const auto stats = collect_mlp_statistics(*m, random_sequences({20, 13}, 20), {}, pool);
  const std::vector<std::int64_t> removed = {30, 2, 11, 47};
  const std::vector<float> bias = mlp_bias_compensation(*m, 0, stats[0], removed);
  ASSERT_EQ(bias.size(), 32u);
  double largest = 0.0;
  for (std::int64_t k = 0; k < 32; ++k) {
    double want = 0.0;
    for (std::int64_t i : removed) {
      want += stats[0].act_sum[static_cast<std::size_t>(i)] / 33.0 * value(*m, WeightKind::FfnDown, 0, k, i);
    }
    largest = std::max(largest, std::fabs(want));
    EXPECT_NEAR(bias[static_cast<std::size_t>(k)], want, 1e-6 * std::fabs(want) + 1e-9) << k;
  }
  EXPECT_GT(largest, 1e-3);
}

// A neuron whose output is the same on every token: x's first coordinate is c on every
// row and every row has the same RMS, so the normalised input's first coordinate is
// constant; the neuron's gate and up rows read only that coordinate. Removing it and
// adding the compensation leaves the MLP block's output as it was.
TEST_F(TinyModel, AConstantNeuronRemovedWithItsBiasChangesNothing) {
  auto m = model({48}, 21);
  const LlamaParams& p = m->params();
  const std::int64_t E = 32, F = 48, T = 9, neuron = 5;
  const double c = 1.5, rms = 2.0;
  std::mt19937 rng(22);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<float> x(static_cast<std::size_t>(T * E));
  for (std::int64_t t = 0; t < T; ++t) {
    std::vector<double> rest(static_cast<std::size_t>(E - 1));
    double ss = 0.0;
    for (double& v : rest) {
      v = normal(rng);
      ss += v * v;
    }
    const double scale = std::sqrt((E * rms * rms - c * c) / ss);  // Σ x² = E · rms²
    x[static_cast<std::size_t>(t * E)] = static_cast<float>(c);
    for (std::int64_t j = 1; j < E; ++j) {
      x[static_cast<std::size_t>(t * E + j)] = static_cast<float>(rest[static_cast<std::size_t>(j - 1)] * scale);
    }
  }
  for (std::int64_t j = 0; j < E; ++j) at(*m, WeightKind::FfnGate, 0, neuron, j) = at(*m, WeightKind::FfnUp, 0, neuron, j) = 0.0f;
  at(*m, WeightKind::FfnGate, 0, neuron, 0) = 0.8f;
  at(*m, WeightKind::FfnUp, 0, neuron, 0) = -1.2f;
  // Its output in double: n_0 = c / sqrt(rms² + eps) (ffn_norm is 1).
  const double n0 = c / std::sqrt(rms * rms + p.rms_norm_eps);
  const double g = 0.8 * n0;
  const double h = g / (1.0 + std::exp(-g)) * (-1.2 * n0);

  ThreadPool pool(2);
  const RopeTable rope(p.head_dim, p.rope_theta, m->rope_factors(), m->rope_pairing());
  const ForwardEnv env{p, pool, rope};
  std::vector<float> xn(static_cast<std::size_t>(T * E)), gate(static_cast<std::size_t>(T * F)), up(gate.size()), proj(xn.size());
  const MlpBuffers buffers{xn, gate, up, proj};
  const auto block = [&] {
    std::vector<float> y = x;
    mlp_block(env, 0, m->layer(0), T, y, buffers);
    return y;
  };
  const std::vector<float> full = block();

  MlpLayerStatistics planted;  // as measured over these T tokens
  planted.n_tokens = T;
  planted.n_sequences = 1;
  planted.act_sum.assign(static_cast<std::size_t>(F), 0.0);
  planted.act_sum[static_cast<std::size_t>(neuron)] = static_cast<double>(T) * h;
  const std::vector<float> bias = mlp_bias_compensation(*m, 0, planted, {neuron});

  at(*m, WeightKind::FfnGate, 0, neuron, 0) = 0.0f;
  at(*m, WeightKind::FfnUp, 0, neuron, 0) = 0.0f;
  const std::vector<float> pruned = block();
  double without = 0.0, with = 0.0;
  for (std::int64_t t = 0; t < T; ++t) {
    for (std::int64_t k = 0; k < E; ++k) {
      const auto e = static_cast<std::size_t>(t * E + k);
      without = std::max(without, std::fabs(static_cast<double>(pruned[e]) - full[e]));
      with = std::max(with, std::fabs(static_cast<double>(pruned[e]) + bias[static_cast<std::size_t>(k)] - full[e]));
    }
  }
  EXPECT_GT(without, 0.05);  // the neuron mattered
  EXPECT_LT(with, 1e-5);     // float rounding only
}

// A mapped GGUF (whose layers the pass lets go one by one) measures the same as its
// copy read into memory; stories260K, a real trained model. Reports the pass's time.
TEST(ImportanceStories, MappedCheckpointMeasuresLikeItsReadInCopy) {
  const auto checkpoint = PIQUANT_SHARED_FILE("models/stories260K/stories260K.bin");
  const auto tokenizer = PIQUANT_SHARED_FILE("models/stories260K/tok512.bin");
  testing::TempDir dir;
  const auto gguf = testing::convert_stories260k(dir, checkpoint, tokenizer, "f32").string();
  const auto mapped = LlamaModel::load(gguf);
  ModelLoadOptions read_options;
  read_options.use_mmap = false;
  const auto read = LlamaModel::load(gguf, read_options);
  const std::string text = testing::read_file(PIQUANT_SHARED_FILE("corpora/austen.txt")).substr(0, 200000);
  const std::vector<std::int32_t> ids = mapped->tokenizer().encode(text, true, false);
  Sequences sequences;
  for (std::size_t s = 0; s < 16; ++s) sequences.emplace_back(ids.begin() + s * 256, ids.begin() + (s + 1) * 256);
  Sequences short_sequences;  // the backward's attention is slow on stories260K's 8-wide heads
  for (std::size_t s = 0; s < 4; ++s) short_sequences.emplace_back(ids.begin() + s * 128, ids.begin() + (s + 1) * 128);
  ThreadPool pool(2);
  const auto timed = [&](const LlamaModel& model, const Sequences& calibration, bool taylor) {
    CalibrationOptions options;
    options.taylor = taylor;
    const auto start = std::chrono::steady_clock::now();
    auto stats = collect_mlp_statistics(model, calibration, options, pool);
    std::printf("collect_mlp_statistics%s: stories260K, %zu x %zu tokens, 2 threads: %.3f s\n", taylor ? " with taylor" : "",
                calibration.size(), calibration[0].size(),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    return stats;
  };
  const auto forward = timed(*mapped, sequences, false);
  const auto with_taylor = timed(*mapped, short_sequences, true);
  CalibrationOptions options;
  const auto forward_read = collect_mlp_statistics(*read, sequences, options, pool);
  options.taylor = true;
  const auto with_taylor_read = collect_mlp_statistics(*read, short_sequences, options, pool);
  for (std::size_t l = 0; l < forward.size(); ++l) {
    expect_identical(forward[l], forward_read[l], "layer " + std::to_string(l));
    expect_identical(with_taylor[l], with_taylor_read[l], "layer " + std::to_string(l) + " with taylor");
  }
  // A real model's neurons are not all alike under any criterion.
  for (const std::string& name : prune_criterion_names()) {
    const PruneCriterion c = parse_prune_criterion(name);
    const auto scores = neuron_importance(c, *mapped, c == PruneCriterion::Taylor ? with_taylor : forward, 0, -1, &pool);
    for (const auto& layer : scores) {
      ASSERT_EQ(layer.size(), 172u);
      EXPECT_GT(*std::max_element(layer.begin(), layer.end()), 1.2 * *std::min_element(layer.begin(), layer.end())) << name;
    }
  }
}

}  // namespace
}  // namespace piquant
