// The size-budget planner on made-up sensitivities: the budget holds, the choice is the
// best a brute-force search finds, and a tensor that matters more gets more bits.
#include "quantize/budget_plan.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <regex>

#include "core/error.h"
#include "quantize/tensor_type_file.h"

namespace piquant {
namespace {

CheckpointTensor tensor(const std::string& name, std::vector<std::int64_t> shape) {
  CheckpointTensor t;
  t.name = name;
  t.shape = std::move(shape);
  return t;
}

// A small llama-shaped tensor list: 5 matrices to choose for, norms that stay F32. Odd
// row counts make tensor sizes that are not multiples of the 32-byte alignment.
std::vector<CheckpointTensor> small_model() {
  return {tensor("token_embd.weight", {256, 65}),      tensor("blk.0.attn_norm.weight", {256}),
          tensor("blk.0.ffn_gate.weight", {256, 97}),  tensor("blk.0.ffn_up.weight", {256, 97}),
          tensor("blk.0.ffn_down.weight", {96, 255}),  tensor("output_norm.weight", {256}),
          tensor("output.weight", {256, 65})};
}

double bits_per_weight(GgmlType type) {
  const GgmlTypeInfo& info = ggml_type_info(type);
  return 8.0 * info.block_bytes / info.block_size;
}

// Made-up sensitivities that fall with the bits: weight × 4^(-bits per weight).
SensitivityTable made_up_sensitivities(const std::vector<BudgetChoices>& choices, const std::map<std::string, double>& weight) {
  SensitivityTable table;
  for (const BudgetChoices& c : choices) {
    for (const GgmlType t : c.types) {
      table.kld[c.tensor][t] = (weight.count(c.tensor) ? weight.at(c.tensor) : 1.0) * std::pow(4.0, -bits_per_weight(t));
    }
  }
  return table;
}

BudgetProblem small_problem() {
  BudgetProblem p;
  p.tensors = small_model();
  p.candidates = default_budget_candidates();
  p.data_offset = 4128;  // any header size: the planner adds it as given
  p.alignment = 32;
  return p;
}

std::uint64_t align32(std::uint64_t v) { return (v + 31) / 32 * 32; }

// The file size of giving each listed tensor its type (others F32), from first principles.
std::uint64_t file_size_of(const BudgetProblem& p, const std::map<std::string, GgmlType>& types) {
  std::uint64_t size = p.data_offset;
  for (const CheckpointTensor& t : p.tensors) {
    const auto it = types.find(t.name);
    size += align32(ggml_nbytes(it == types.end() ? GgmlType::F32 : it->second, static_cast<std::uint64_t>(t.n_elements())));
  }
  return size;
}

// Brute force: the least Σ sensitivity over every assignment whose file fits.
double brute_force_best(const BudgetProblem& p, const std::vector<BudgetChoices>& choices, const SensitivityTable& s,
                        std::uint64_t budget) {
  double best = std::numeric_limits<double>::infinity();
  std::vector<std::size_t> pick(choices.size(), 0);
  for (;;) {
    std::map<std::string, GgmlType> types;
    double loss = 0;
    for (std::size_t i = 0; i < choices.size(); ++i) {
      types[choices[i].tensor] = choices[i].types[pick[i]];
      loss += s.at(choices[i].tensor, choices[i].types[pick[i]]);
    }
    if (file_size_of(p, types) <= budget) best = std::min(best, loss);
    std::size_t i = 0;
    while (i < choices.size() && ++pick[i] == choices[i].types.size()) pick[i++] = 0;
    if (i == choices.size()) return best;
  }
}

SizeBudget file_budget(std::uint64_t bytes) {
  SizeBudget b;
  b.unit = SizeBudget::Unit::FileBytes;
  b.file_bytes = bytes;
  return b;
}

TEST(BudgetPlan, ChoicesFollowTheRowLengthFallbacks) {
  // Rows of 96 take no K-quant: llama.cpp's fallbacks are Q2_K/Q3_K -> Q4_0, Q4_K -> Q5_0,
  // Q5_K -> Q5_1, Q6_K -> Q8_0.
  const std::vector<GgmlType> want96 = {GgmlType::Q4_0, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0};
  EXPECT_EQ(tensor_candidate_types(default_budget_candidates(), 96), want96);
  EXPECT_EQ(tensor_candidate_types(default_budget_candidates(), 512), default_budget_candidates());
  const std::vector<GgmlType> want20 = {GgmlType::F16};  // not even 32 divides 20
  EXPECT_EQ(tensor_candidate_types(default_budget_candidates(), 20), want20);

  const std::vector<BudgetChoices> choices = budget_choices(small_problem());
  ASSERT_EQ(choices.size(), 5u);  // the norms are not chosen for
  EXPECT_EQ(choices[0].tensor, "token_embd.weight");
  EXPECT_EQ(choices[3].tensor, "blk.0.ffn_down.weight");
  EXPECT_EQ(choices[3].types, want96);
  EXPECT_EQ(choices[4].tensor, "output.weight");
}

TEST(BudgetPlan, NeverExceedsTheBudgetAndMatchesBruteForce) {
  const BudgetProblem p = small_problem();
  ASSERT_NE(ggml_nbytes(GgmlType::Q2_K, 256 * 97) % 32, 0u);  // the padding is exercised
  const auto choices = budget_choices(p);
  const SensitivityTable s = made_up_sensitivities(choices, {{"output.weight", 3.0}, {"blk.0.ffn_down.weight", 0.5}});
  const BudgetPlan smallest = plan_for_budget(p, s, file_budget(UINT64_MAX / 2));
  const std::uint64_t lo = plan_for_budget(p, s, file_budget(smallest.smallest_file_bytes)).file_bytes;
  EXPECT_EQ(lo, smallest.smallest_file_bytes);
  const std::uint64_t hi = smallest.largest_file_bytes;
  EXPECT_EQ(smallest.file_bytes, hi);  // with room for everything, every tensor at its widest (least loss)
  for (std::uint64_t budget = lo; budget <= hi + 64; budget += (hi - lo) / 97 + 1) {
    for (const std::uint64_t b : {budget, budget + 31, budget + 32}) {
      const BudgetPlan plan = plan_for_budget(p, s, file_budget(b));
      SCOPED_TRACE("budget " + std::to_string(b));
      std::map<std::string, GgmlType> types;
      double loss = 0;
      for (std::size_t i = 0; i < plan.plan.tensors.size(); ++i) {
        const PlannedTensor& t = plan.plan.tensors[i];
        if (t.type == GgmlType::F32) continue;
        types[t.name] = t.type;
        loss += s.at(t.name, t.type);
        EXPECT_EQ(plan.predicted_kld[i], s.at(t.name, t.type));
      }
      EXPECT_EQ(file_size_of(p, types), plan.file_bytes);
      EXPECT_LE(plan.file_bytes, b);
      EXPECT_TRUE(plan.exact);
      EXPECT_NEAR(plan.predicted_kld_total, loss, 1e-15);
      EXPECT_NEAR(loss, brute_force_best(p, choices, s, b), 1e-15);
      EXPECT_EQ(plan.plan.find("blk.0.attn_norm.weight")->type, GgmlType::F32);
    }
  }
}

TEST(BudgetPlan, APlantedSensitiveTensorGetsTheWiderType) {
  // ffn_gate and ffn_up have the same shape; ffn_up's sensitivities are 20 times larger.
  const BudgetProblem p = small_problem();
  const auto choices = budget_choices(p);
  const SensitivityTable s = made_up_sensitivities(choices, {{"blk.0.ffn_up.weight", 20.0}});
  const BudgetPlan wide = plan_for_budget(p, s, file_budget(UINT64_MAX / 2));
  const std::uint64_t mid = (wide.smallest_file_bytes + wide.largest_file_bytes) / 2;
  const BudgetPlan plan = plan_for_budget(p, s, file_budget(mid));
  const GgmlType up = plan.plan.find("blk.0.ffn_up.weight")->type;
  const GgmlType gate = plan.plan.find("blk.0.ffn_gate.weight")->type;
  EXPECT_GT(bits_per_weight(up), bits_per_weight(gate)) << ggml_type_name(up) << " vs " << ggml_type_name(gate);

  // Swapped, the other way round: it is the sensitivity that decides, not the position.
  const SensitivityTable swapped = made_up_sensitivities(choices, {{"blk.0.ffn_gate.weight", 20.0}});
  const BudgetPlan other = plan_for_budget(p, swapped, file_budget(mid));
  EXPECT_GT(bits_per_weight(other.plan.find("blk.0.ffn_gate.weight")->type),
            bits_per_weight(other.plan.find("blk.0.ffn_up.weight")->type));
}

TEST(BudgetPlan, BitsPerWeightBudgetCountsEveryTensor) {
  const BudgetProblem p = small_problem();
  const SensitivityTable s = made_up_sensitivities(budget_choices(p), {});
  std::uint64_t n = 0;
  for (const auto& t : p.tensors) n += static_cast<std::uint64_t>(t.n_elements());
  for (const double bpw : {3.6, 4.0, 4.5, 5.0, 6.0, 8.5, 16.0}) {
    SizeBudget b;
    b.unit = SizeBudget::Unit::BitsPerWeight;
    b.bits_per_weight = bpw;
    const BudgetPlan plan = plan_for_budget(p, s, b);
    std::uint64_t bytes = 0;
    for (const PlannedTensor& t : plan.plan.tensors) bytes += ggml_nbytes(t.type, static_cast<std::uint64_t>(t.n_elements()));
    EXPECT_EQ(plan.tensor_bytes, bytes);
    EXPECT_LE(8.0 * static_cast<double>(bytes) / static_cast<double>(n), bpw);
    EXPECT_DOUBLE_EQ(plan.bits_per_weight, 8.0 * static_cast<double>(bytes) / static_cast<double>(n));
  }
  SizeBudget tiny;
  tiny.unit = SizeBudget::Unit::BitsPerWeight;
  tiny.bits_per_weight = 2.0;
  try {
    plan_for_budget(p, s, tiny);
    FAIL() << "2 bits per weight is below Q2_K with F32 norms";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("below the smallest"), std::string::npos) << e.what();
  }
}

TEST(BudgetPlan, BelowTheSmallestPlanIsAnErrorNamingIt) {
  const BudgetProblem p = small_problem();
  const auto choices = budget_choices(p);
  const SensitivityTable s = made_up_sensitivities(choices, {});
  std::map<std::string, GgmlType> narrowest;
  for (const BudgetChoices& c : choices) {
    GgmlType best = c.types.front();
    for (const GgmlType t : c.types) {
      if (ggml_nbytes(t, 256 * 96) < ggml_nbytes(best, 256 * 96)) best = t;
    }
    narrowest[c.tensor] = best;
  }
  const std::uint64_t smallest = file_size_of(p, narrowest);
  EXPECT_EQ(plan_for_budget(p, s, file_budget(smallest)).file_bytes, smallest);
  try {
    plan_for_budget(p, s, file_budget(smallest - 1));
    FAIL() << "one byte under the smallest plan";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(std::to_string(smallest) + " bytes"), std::string::npos) << e.what();
  }
}

TEST(BudgetPlan, OverriddenTensorsKeepTheirTypeAndCount) {
  BudgetProblem p = small_problem();
  p.overrides.push_back(parse_tensor_type_override("^output\\.weight$=q8_0"));
  const auto choices = budget_choices(p);
  const SensitivityTable s = made_up_sensitivities(choices, {});
  for (const BudgetChoices& c : choices) {
    if (c.tensor == "output.weight") {
      EXPECT_TRUE(c.fixed);
      EXPECT_EQ(c.types, std::vector<GgmlType>{GgmlType::Q8_0});
    }
  }
  const BudgetPlan wide = plan_for_budget(p, s, file_budget(UINT64_MAX / 2));
  for (const std::uint64_t b : {wide.smallest_file_bytes, (wide.smallest_file_bytes + wide.largest_file_bytes) / 2}) {
    const BudgetPlan plan = plan_for_budget(p, s, file_budget(b));
    const PlannedTensor* out = plan.plan.find("output.weight");
    EXPECT_EQ(out->type, GgmlType::Q8_0);
    EXPECT_TRUE(out->overridden);
    std::map<std::string, GgmlType> types;
    for (const PlannedTensor& t : plan.plan.tensors) {
      if (t.type != GgmlType::F32) types[t.name] = t.type;
    }
    EXPECT_EQ(file_size_of(p, types), plan.file_bytes);
    EXPECT_LE(plan.file_bytes, b);
  }
}

TEST(BudgetPlan, FileTypeIsTheRecipesOrThatOfMostWeights) {
  const BudgetProblem p = small_problem();
  const SensitivityTable s = made_up_sensitivities(budget_choices(p), {});
  const BudgetPlan q8 = plan_for_budget(p, s, file_budget(UINT64_MAX / 2));
  EXPECT_EQ(q8.plan.recipe.file_type, LlamaFileType::MostlyQ8_0);  // everything at q8_0
  const BudgetPlan with_recipe = plan_for_budget(p, s, file_budget(UINT64_MAX / 2), quant_recipe("Q4_K_M"));
  EXPECT_EQ(with_recipe.plan.recipe.file_type, LlamaFileType::MostlyQ4_K_M);

  std::vector<PlannedTensor> mixed = {{"a.weight", {256, 100}, GgmlType::Q4_K},
                                      {"b.weight", {256, 60}, GgmlType::Q6_K},
                                      {"c.weight", {256, 60}, GgmlType::Q3_K},
                                      {"n.weight", {256}, GgmlType::F32}};
  EXPECT_EQ(mixed_plan_file_type(mixed), LlamaFileType::MostlyQ4_K_M);
  mixed[1].shape = {256, 100};  // a tie: the wider type
  EXPECT_EQ(mixed_plan_file_type(mixed), LlamaFileType::MostlyQ6_K);
}

TEST(BudgetPlan, CandidateListParsing) {
  EXPECT_EQ(parse_budget_candidates("q4_K,Q6_K,q8_0"),
            (std::vector<GgmlType>{GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q8_0}));
  for (const char* bad : {"", "q4_K,", "q9_K", "q4_K,q4_k", "f32", "q8_K"}) {
    EXPECT_THROW(parse_budget_candidates(bad), Error) << bad;
  }
}

TEST(TensorTypeFile, ExactLinesMatchOneNameOnly) {
  const std::string line = exact_tensor_type_line("blk.3.ffn_down.weight", GgmlType::Q6_K);
  EXPECT_EQ(line, "^blk\\.3\\.ffn_down\\.weight$=q6_K");
  const TensorTypeOverride o = parse_tensor_type_override(line);
  EXPECT_EQ(o.type, GgmlType::Q6_K);
  const std::regex re(o.pattern);
  EXPECT_TRUE(std::regex_search("blk.3.ffn_down.weight", re));
  for (const char* other : {"blk.13.ffn_down.weight", "blk.3.ffn_down.weightx", "blkx3.ffn_down.weight", "blk.3xffn_down.weight"}) {
    EXPECT_FALSE(std::regex_search(other, re)) << other;
  }
  const TensorTypeOverride odd = parse_tensor_type_override(exact_tensor_type_line("a+b(c)[d]{2}|e^$\\?*", GgmlType::Q8_0));
  EXPECT_TRUE(std::regex_search("a+b(c)[d]{2}|e^$\\?*", std::regex(odd.pattern)));
}

}  // namespace
}  // namespace piquant
