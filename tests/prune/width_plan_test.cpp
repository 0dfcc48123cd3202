// Width planning: align, minimum, targets, uniform and global allocation, the seed shape.
#include <gtest/gtest.h>

#include <numeric>

#include "checkpoint/synthetic.h"
#include "core/error.h"
#include "prune/width_plan.h"
#include "support/model_fixtures.h"

namespace piquant {
namespace {

LlamaParams shape(std::vector<std::int64_t> n_ff, std::int64_t n_embd = 64) { return testing::tiny_llama_params(std::move(n_ff), n_embd); }

// Scores that rank neurons in a known order: layer l's neuron i scores base_l + (i * 7919) % n.
std::vector<std::vector<double>> scrambled_scores(const LlamaParams& p, std::vector<double> layer_base) {
  std::vector<std::vector<double>> s(static_cast<std::size_t>(p.n_layer));
  for (std::size_t l = 0; l < s.size(); ++l) {
    const std::int64_t n = p.n_ff[l];
    for (std::int64_t i = 0; i < n; ++i) s[l].push_back(layer_base[l] + static_cast<double>((i * 7919) % n));
  }
  return s;
}

TEST(WidthPlan, SeedShapeQuarterOfLayers4To27IsExactlyTheReferenceParameterCount) {
  const LlamaParams p = synth_preset("llama-3.1-8b");
  std::vector<std::vector<double>> scores(static_cast<std::size_t>(p.n_layer));
  for (std::int64_t l = 4; l <= 27; ++l) scores[static_cast<std::size_t>(l)].assign(14336, 1.0);
  WidthTarget target;
  target.ratio = 0.25;
  WidthPlanOptions o;
  o.first_layer = 4;
  o.last_layer = 27;
  const WidthPlan plan = plan_widths(p, scores, target, o);
  EXPECT_EQ(plan.params.n_params(), 6973296640);
  for (std::int64_t l = 0; l < p.n_layer; ++l) {
    EXPECT_EQ(plan.params.n_ff[static_cast<std::size_t>(l)], l >= 4 && l <= 27 ? 10752 : 14336) << l;
  }
  // The same model asked for by its parameter count, uniform and global.
  WidthTarget by_params;
  by_params.params = 6973296640;
  EXPECT_EQ(plan_widths(p, scores, by_params, o).params.n_ff, plan.params.n_ff);
  o.allocation = WidthAllocation::Global;
  EXPECT_EQ(plan_widths(p, scores, by_params, o).params.n_params(), 6973296640);
}

TEST(WidthPlan, KeepsEachLayersBestNeuronsInAscendingOrder) {
  const LlamaParams p = shape({40, 40});
  auto scores = scrambled_scores(p, {0, 0});
  WidthTarget target;
  target.ratio = 0.5;
  WidthPlanOptions o;
  o.align = 4;
  const WidthPlan plan = plan_widths(p, scores, target, o);
  for (std::size_t l = 0; l < 2; ++l) {
    ASSERT_EQ(plan.kept[l].size(), 20u);
    EXPECT_TRUE(std::is_sorted(plan.kept[l].begin(), plan.kept[l].end()));
    // Kept scores are exactly the 20 highest: 20..39 (the scores are a permutation of 0..39).
    for (const auto i : plan.kept[l]) EXPECT_GE(scores[l][static_cast<std::size_t>(i)], 20.0);
    // Removed share of the importance: sum(0..19) / sum(0..39).
    EXPECT_NEAR(plan.removed_importance_share[l], 190.0 / 780.0, 1e-12);
  }
}

TEST(WidthPlan, WidthsHonourAlignMinimumAndLayerRange) {
  const LlamaParams p = shape({1000, 1000, 1000, 1000});
  const auto scores = scrambled_scores(p, {0, 0, 0, 0});
  WidthTarget target;
  target.ratio = 0.3;
  WidthPlanOptions o;
  o.first_layer = 1;
  o.last_layer = 2;
  o.align = 64;
  const WidthPlan plan = plan_widths(p, scores, target, o);
  // 700 rounds to the nearest multiple of 64: 704.
  EXPECT_EQ(plan.params.n_ff, (std::vector<std::int64_t>{1000, 704, 704, 1000}));
  EXPECT_EQ(plan.kept[0].size(), 1000u);
  EXPECT_DOUBLE_EQ(plan.removed_importance_share[0], 0.0);

  // A ratio that would go below the minimum stops at it.
  target.ratio = 0.99;
  o.min_width = 128;
  EXPECT_EQ(plan_widths(p, scores, target, o).params.n_ff, (std::vector<std::int64_t>{1000, 128, 128, 1000}));

  // Global allocation: every pruned width is a multiple of align (or whole) and at least the minimum.
  o.allocation = WidthAllocation::Global;
  target.ratio = 0.4;
  auto skewed = scrambled_scores(p, {0, 0, 5000, 0});  // layer 2's neurons all outrank layer 1's
  const WidthPlan global = plan_widths(p, skewed, target, o);
  EXPECT_EQ(global.params.n_ff[1] % 64, 0);
  EXPECT_GE(global.params.n_ff[1], 128);
  EXPECT_TRUE(global.params.n_ff[2] == 1000 || global.params.n_ff[2] % 64 == 0);
  EXPECT_LE(global.params.n_ff[1] + global.params.n_ff[2], 1200);  // keeps at most 60% of 2000
  EXPECT_GT(global.params.n_ff[1] + global.params.n_ff[2], 1200 - 64);
}

TEST(WidthPlan, GlobalAllocationGivesTheWidthToTheMoreImportantLayer) {
  const LlamaParams p = shape({512, 512});
  // Scores are divided by the layer mean, so a constant scale must not matter:
  // layer 0's scores are layer 1's times 1000 but have the same shape.
  std::vector<std::vector<double>> same_shape(2);
  std::vector<std::vector<double>> dominant(2);
  for (int i = 0; i < 512; ++i) {
    same_shape[0].push_back(1000.0 * (1 + i % 7));
    same_shape[1].push_back(1.0 * (1 + i % 7));
    // Layer 1: a few neurons far above its mean (a peaked layer), layer 0 flat.
    dominant[0].push_back(1.0);
    dominant[1].push_back(i < 128 ? 100.0 : 0.01);
  }
  WidthTarget target;
  target.ratio = 0.5;
  WidthPlanOptions o;
  o.align = 32;
  o.allocation = WidthAllocation::Global;
  const WidthPlan scaled = plan_widths(p, same_shape, target, o);
  EXPECT_NEAR(static_cast<double>(scaled.params.n_ff[0]), static_cast<double>(scaled.params.n_ff[1]), 64.0);
  const WidthPlan peaked = plan_widths(p, dominant, target, o);
  // Layer 1's 128 strong neurons (normalised score ~4) come first; layer 0's flat ones (1) beat its weak ones.
  EXPECT_GE(peaked.params.n_ff[1], 128);
  EXPECT_EQ(peaked.params.n_ff[0] + peaked.params.n_ff[1], 512);
  EXPECT_GT(peaked.params.n_ff[0], peaked.params.n_ff[1]);
}

TEST(WidthPlan, SizeTargetsMeetTheBudget) {
  const LlamaParams p = shape({768, 768, 768}, 128);
  const auto scores = scrambled_scores(p, {0, 0, 0});
  const auto bytes_of = [](const LlamaParams& q) { return static_cast<std::uint64_t>(q.n_params()) * 2; };
  const std::uint64_t full = bytes_of(p);
  for (const auto allocation : {WidthAllocation::Uniform, WidthAllocation::Global}) {
    WidthTarget target;
    target.bytes = full - 3 * 128 * 256 * 2 * 2;  // room for ~2 × 256 fewer neurons
    target.bytes_of = bytes_of;
    WidthPlanOptions o;
    o.align = 128;
    o.allocation = allocation;
    const WidthPlan plan = plan_widths(p, scores, target, o);
    EXPECT_LE(bytes_of(plan.params), *target.bytes) << width_allocation_name(allocation);
    if (allocation == WidthAllocation::Uniform) {  // the same width everywhere: 512 (640 would remove too little)
      EXPECT_EQ(plan.params.n_ff, (std::vector<std::int64_t>{512, 512, 512}));
      continue;
    }
    // Global is tight: one more aligned chunk anywhere would not fit.
    for (std::size_t l = 0; l < 3; ++l) {
      if (plan.params.n_ff[l] == 768) continue;
      LlamaParams grown = plan.params;
      grown.n_ff[l] += 128;
      EXPECT_GT(bytes_of(grown), *target.bytes) << width_allocation_name(allocation) << " layer " << l;
    }
  }
}

TEST(WidthPlan, BiasCompensationCountsTheBiasOfEachPrunedLayer) {
  const LlamaParams p = shape({256, 256, 256});
  const auto scores = scrambled_scores(p, {0, 0, 0});
  WidthTarget target;
  target.ratio = 0.25;
  WidthPlanOptions o;
  o.align = 64;
  o.first_layer = 1;
  o.bias_compensation = true;
  const WidthPlan plan = plan_widths(p, scores, target, o);
  EXPECT_EQ(plan.params.ffn_down_bias, (std::vector<bool>{false, true, true}));
  EXPECT_EQ(plan.params.n_params(), p.n_params() - 2 * 3 * 64 * 64 + 2 * 64);
}

TEST(WidthPlan, ImpossibleTargetsAndBadSpecsAreErrors) {
  const LlamaParams p = shape({256, 256});
  const auto scores = scrambled_scores(p, {0, 0});
  WidthTarget target;
  target.params = 1000;  // below the attention and embeddings alone
  WidthPlanOptions o;
  o.align = 64;
  EXPECT_THROW(plan_widths(p, scores, target, o), Error);
  o.allocation = WidthAllocation::Global;
  EXPECT_THROW(plan_widths(p, scores, target, o), Error);
  WidthTarget two;
  two.ratio = 0.2;
  two.params = 100000;
  EXPECT_THROW(plan_widths(p, scores, two, o), Error);
  WidthTarget ratio;
  ratio.ratio = 1.0;
  EXPECT_THROW(plan_widths(p, scores, ratio, o), Error);
  ratio.ratio = 0.5;
  auto short_scores = scores;
  short_scores[1].pop_back();
  EXPECT_THROW(plan_widths(p, short_scores, ratio, o), Error);

  EXPECT_EQ(parse_layer_range("4-27", 32), (std::pair<std::int64_t, std::int64_t>{4, 27}));
  EXPECT_EQ(parse_layer_range("3", 32), (std::pair<std::int64_t, std::int64_t>{3, 3}));
  EXPECT_EQ(parse_layer_range("", 32), (std::pair<std::int64_t, std::int64_t>{0, 31}));
  for (const char* bad : {"4-", "-3", "27-4", "4-32", "a", "4-27x"}) EXPECT_THROW(parse_layer_range(bad, 32), Error) << bad;
  EXPECT_EQ(parse_param_count("6973296640"), 6973296640);
  EXPECT_EQ(parse_param_count("6.97B"), 6970000000);
  EXPECT_EQ(parse_param_count("500m"), 500000000);
  EXPECT_EQ(parse_param_count("120k"), 120000);
  for (const char* bad : {"", "B", "-5", "1.2.3", "7X"}) EXPECT_THROW(parse_param_count(bad), Error) << bad;
}

}  // namespace
}  // namespace piquant
