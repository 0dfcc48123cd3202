// Quantization recipes: per-tensor types against llama.cpp's rules and the sizes of
// files llama-quantize produced for known shapes.
#include "quantize/recipe.h"

#include <gtest/gtest.h>

#include <set>

#include "core/error.h"
#include "support/test_support.h"

namespace piquant {
namespace {

// Llama 3.1 8B's hyperparameters (Meta's config.json), with per-layer MLP widths.
LlamaParams llama31_8b(std::vector<std::int64_t> n_ff) {
  LlamaParams p;
  p.n_vocab = 128256;
  p.n_embd = 4096;
  p.n_layer = static_cast<std::int64_t>(n_ff.size());
  p.n_head = 32;
  p.n_head_kv = 8;
  p.head_dim = 128;
  p.n_ff = std::move(n_ff);
  p.n_ctx_train = 131072;
  p.rope_theta = 500000.0;
  p.rope_scaling = RopeScaling{};
  return p;
}

// The seed project's pruned shape: 14336 wide MLPs in layers 0-3 and 28-31, 10752 in 4-27.
LlamaParams seed_shape() {
  std::vector<std::int64_t> ff(32, 10752);
  for (int l : {0, 1, 2, 3, 28, 29, 30, 31}) ff[static_cast<std::size_t>(l)] = 14336;
  return llama31_8b(ff);
}

CheckpointTensor tensor(const std::string& name, std::vector<std::int64_t> shape) {
  CheckpointTensor t;
  t.name = name;
  t.shape = std::move(shape);
  return t;
}

// The tensor list written out by hand from the GGUF layout of a llama model
// (independent of llama_tensor_layout, which the converter uses).
std::vector<CheckpointTensor> llama_tensors(const LlamaParams& p) {
  std::vector<CheckpointTensor> out;
  const std::int64_t kv = p.n_head_kv * p.head_dim;
  if (p.rope_scaling) out.push_back(tensor("rope_freqs.weight", {p.head_dim / 2}));
  out.push_back(tensor("token_embd.weight", {p.n_embd, p.n_vocab}));
  for (std::int64_t l = 0; l < p.n_layer; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    const std::int64_t ff = p.n_ff[static_cast<std::size_t>(l)];
    out.push_back(tensor(b + "attn_norm.weight", {p.n_embd}));
    out.push_back(tensor(b + "attn_q.weight", {p.n_embd, p.n_embd}));
    out.push_back(tensor(b + "attn_k.weight", {p.n_embd, kv}));
    out.push_back(tensor(b + "attn_v.weight", {p.n_embd, kv}));
    out.push_back(tensor(b + "attn_output.weight", {p.n_embd, p.n_embd}));
    out.push_back(tensor(b + "ffn_norm.weight", {p.n_embd}));
    out.push_back(tensor(b + "ffn_gate.weight", {p.n_embd, ff}));
    out.push_back(tensor(b + "ffn_up.weight", {p.n_embd, ff}));
    out.push_back(tensor(b + "ffn_down.weight", {ff, p.n_embd}));
  }
  out.push_back(tensor("output_norm.weight", {p.n_embd}));
  if (!p.tie_word_embeddings) out.push_back(tensor("output.weight", {p.n_embd, p.n_vocab}));
  return out;
}

double planned_gib(const std::string& recipe, const LlamaParams& p) {
  return plan_summary(plan_quantization(quant_recipe(recipe), p, llama_tensors(p))).gib;
}

GgmlType type_of(const QuantPlan& plan, const std::string& name) {
  const PlannedTensor* t = plan.find(name);
  if (t == nullptr) throw Error("no planned tensor " + name);
  return t->type;
}

std::string blk(int l, const std::string& what) { return "blk." + std::to_string(l) + "." + what + ".weight"; }

TEST(Recipe, SeedShapeQ4KMIsTheSeedFileSize) {
  // The seed project's llama.cpp Q4_K_M file of this shape holds 3.99 GiB of tensors.
  const double gib = planned_gib("Q4_K_M", seed_shape());
  EXPECT_GT(gib, 3.98);
  EXPECT_LT(gib, 4.00);
}

TEST(Recipe, SeedShapeQ3KMIsTheSeedFileSize) {
  const double gib = planned_gib("Q3_K_M", seed_shape());
  EXPECT_GT(gib, 3.26);
  EXPECT_LT(gib, 3.28);
}

TEST(Recipe, Llama31_8BMatchesPublishedSizes) {
  const LlamaParams p = llama31_8b(std::vector<std::int64_t>(32, 14336));
  // Sizes of the published Meta-Llama-3.1-8B GGUFs made by llama-quantize, in GB
  // rounded to 0.01. A whole file adds ~10 MB of metadata (the tokenizer) to the
  // tensor data, so the plan must come out within 0.025 GB below the published size.
  const std::vector<std::pair<std::string, double>> published = {
      {"Q8_0", 8.54}, {"Q6_K", 6.60}, {"Q5_K_M", 5.73}, {"Q4_K_M", 4.92}, {"Q3_K_M", 4.02}, {"Q2_K", 3.18},
  };
  for (const auto& [recipe, gb] : published) {
    const double planned_gb =
        static_cast<double>(plan_summary(plan_quantization(quant_recipe(recipe), p, llama_tensors(p))).total_bytes) /
        1e9;
    EXPECT_GT(planned_gb, gb - 0.025) << recipe;
    EXPECT_LT(planned_gb, gb + 0.005) << recipe;
  }
  // The brief's figure: Q4_K_M is 4.58 GiB.
  const double q4km = planned_gib("q4_k_m", p);
  EXPECT_GT(q4km, 4.57);
  EXPECT_LT(q4km, 4.59);
}

TEST(Recipe, Q4KMUpgradesAttnVAndFfnDownOnUseMoreBitsLayers) {
  const LlamaParams p = llama31_8b(std::vector<std::int64_t>(32, 14336));
  const QuantPlan plan = plan_quantization(quant_recipe("Q4_K_M"), p, llama_tensors(p));
  // n = 32: layers < 4, >= 28, and 4 + 3k + 2 in between.
  const std::set<int> more_bits{0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31};
  for (int l = 0; l < 32; ++l) {
    const GgmlType want = more_bits.count(l) ? GgmlType::Q6_K : GgmlType::Q4_K;
    EXPECT_EQ(type_of(plan, blk(l, "attn_v")), want) << "layer " << l;
    EXPECT_EQ(type_of(plan, blk(l, "ffn_down")), want) << "layer " << l;
    EXPECT_EQ(type_of(plan, blk(l, "attn_q")), GgmlType::Q4_K);
    EXPECT_EQ(type_of(plan, blk(l, "ffn_up")), GgmlType::Q4_K);
    EXPECT_EQ(type_of(plan, blk(l, "attn_norm")), GgmlType::F32);
  }
  EXPECT_EQ(type_of(plan, "output.weight"), GgmlType::Q6_K);
  EXPECT_EQ(type_of(plan, "token_embd.weight"), GgmlType::Q4_K);
  EXPECT_EQ(type_of(plan, "rope_freqs.weight"), GgmlType::F32);
  EXPECT_EQ(type_of(plan, "output_norm.weight"), GgmlType::F32);
  EXPECT_EQ(plan.recipe.file_type, LlamaFileType::MostlyQ4_K_M);
  const PlanSummary s = plan_summary(plan);
  EXPECT_EQ(s.tensor_counts.at(GgmlType::Q6_K), 2 * 16 + 1);
  EXPECT_EQ(s.tensor_counts.at(GgmlType::F32), 2 * 32 + 2);
}

TEST(Recipe, Q3KMAndQ2KRules) {
  const LlamaParams p = llama31_8b(std::vector<std::int64_t>(32, 14336));
  const QuantPlan q3 = plan_quantization(quant_recipe("Q3_K_M"), p, llama_tensors(p));
  EXPECT_EQ(type_of(q3, blk(0, "attn_v")), GgmlType::Q5_K);
  EXPECT_EQ(type_of(q3, blk(1, "attn_v")), GgmlType::Q5_K);
  EXPECT_EQ(type_of(q3, blk(2, "attn_v")), GgmlType::Q4_K);
  EXPECT_EQ(type_of(q3, blk(5, "attn_output")), GgmlType::Q4_K);
  EXPECT_EQ(type_of(q3, blk(1, "ffn_down")), GgmlType::Q5_K);  // i < n/16 = 2
  EXPECT_EQ(type_of(q3, blk(2, "ffn_down")), GgmlType::Q4_K);
  EXPECT_EQ(type_of(q3, blk(2, "ffn_gate")), GgmlType::Q3_K);
  EXPECT_EQ(type_of(q3, "output.weight"), GgmlType::Q6_K);

  const QuantPlan q2 = plan_quantization(quant_recipe("Q2_K"), p, llama_tensors(p));
  EXPECT_EQ(type_of(q2, blk(7, "attn_v")), GgmlType::Q4_K);  // n_head / n_head_kv = 4
  EXPECT_EQ(type_of(q2, blk(7, "ffn_down")), GgmlType::Q3_K);
  EXPECT_EQ(type_of(q2, blk(7, "attn_output")), GgmlType::Q3_K);
  EXPECT_EQ(type_of(q2, blk(7, "attn_k")), GgmlType::Q2_K);

  LlamaParams mha = p;
  mha.n_head_kv = 32;  // without grouped-query attention attn_v only gets Q3_K
  const QuantPlan q2_mha = plan_quantization(quant_recipe("Q2_K"), mha, llama_tensors(mha));
  EXPECT_EQ(type_of(q2_mha, blk(7, "attn_v")), GgmlType::Q3_K);

  const QuantPlan q4s = plan_quantization(quant_recipe("Q4_K_S"), p, llama_tensors(p));
  EXPECT_EQ(type_of(q4s, blk(3, "attn_v")), GgmlType::Q5_K);
  EXPECT_EQ(type_of(q4s, blk(4, "attn_v")), GgmlType::Q4_K);
  EXPECT_EQ(type_of(q4s, blk(3, "ffn_down")), GgmlType::Q5_K);
  EXPECT_EQ(type_of(q4s, blk(4, "ffn_down")), GgmlType::Q4_K);

  const QuantPlan q8 = plan_quantization(quant_recipe("Q8_0"), p, llama_tensors(p));
  EXPECT_EQ(type_of(q8, "output.weight"), GgmlType::Q8_0);
  const QuantPlan q40 = plan_quantization(quant_recipe("Q4_0"), p, llama_tensors(p));
  EXPECT_EQ(type_of(q40, "output.weight"), GgmlType::Q6_K);
  EXPECT_EQ(type_of(q40, blk(0, "ffn_down")), GgmlType::Q4_0);
  // With an imatrix llama.cpp guards Q4_0's first eighth of ffn_down layers with Q4_1.
  PlanOptions with_imatrix;
  with_imatrix.has_imatrix = true;
  const QuantPlan q40i = plan_quantization(quant_recipe("Q4_0"), p, llama_tensors(p), with_imatrix);
  EXPECT_EQ(type_of(q40i, blk(3, "ffn_down")), GgmlType::Q4_1);
  EXPECT_EQ(type_of(q40i, blk(4, "ffn_down")), GgmlType::Q4_0);
}

TEST(Recipe, TiedEmbeddingIsTreatedAsTheOutput) {
  LlamaParams p = llama31_8b(std::vector<std::int64_t>(4, 14336));
  p.tie_word_embeddings = true;
  const QuantPlan plan = plan_quantization(quant_recipe("Q4_K_M"), p, llama_tensors(p));
  EXPECT_EQ(plan.find("output.weight"), nullptr);
  EXPECT_EQ(type_of(plan, "token_embd.weight"), GgmlType::Q6_K);
}

TEST(Recipe, RowLengthFallbacks) {
  EXPECT_EQ(row_length_fallback(GgmlType::Q4_K, 4096), GgmlType::Q4_K);
  EXPECT_EQ(row_length_fallback(GgmlType::Q2_K, 288), GgmlType::Q4_0);
  EXPECT_EQ(row_length_fallback(GgmlType::Q3_K, 288), GgmlType::Q4_0);
  EXPECT_EQ(row_length_fallback(GgmlType::Q4_K, 288), GgmlType::Q5_0);
  EXPECT_EQ(row_length_fallback(GgmlType::Q5_K, 288), GgmlType::Q5_1);
  EXPECT_EQ(row_length_fallback(GgmlType::Q6_K, 288), GgmlType::Q8_0);
  // 172 is not even a multiple of 32: only F16 is left.
  EXPECT_EQ(row_length_fallback(GgmlType::Q4_K, 172), GgmlType::F16);
  EXPECT_EQ(row_length_fallback(GgmlType::Q8_0, 172), GgmlType::F16);

  // A pruned layer whose MLP is 172 wide: its ffn_down rows are 172 long.
  LlamaParams p = llama31_8b({14336, 172, 14336, 14336, 14336, 14336, 14336, 14336});
  const QuantPlan plan = plan_quantization(quant_recipe("Q4_K_M"), p, llama_tensors(p));
  const PlannedTensor* down = plan.find(blk(1, "ffn_down"));
  ASSERT_NE(down, nullptr);
  EXPECT_EQ(down->type, GgmlType::F16);
  EXPECT_TRUE(down->fallback);
  // Its gate/up rows are n_embd long, so they keep the recipe's type.
  EXPECT_EQ(type_of(plan, blk(1, "ffn_up")), GgmlType::Q4_K);
  EXPECT_FALSE(plan.find(blk(1, "ffn_up"))->fallback);

  // 160 wide: a multiple of 32 but not of 256. With 8 layers ffn_down gets Q6_K in
  // layer 0 (-> Q8_0) and stays Q4_K in layer 1 (-> Q5_0).
  p.n_ff[0] = 160;
  p.n_ff[1] = 160;
  const QuantPlan plan160 = plan_quantization(quant_recipe("Q4_K_M"), p, llama_tensors(p));
  EXPECT_EQ(type_of(plan160, blk(0, "ffn_down")), GgmlType::Q8_0);
  EXPECT_EQ(type_of(plan160, blk(1, "ffn_down")), GgmlType::Q5_0);
  const QuantPlan q3 = plan_quantization(quant_recipe("Q3_K_S"), p, llama_tensors(p));
  EXPECT_EQ(type_of(q3, blk(1, "ffn_down")), GgmlType::Q4_0);
  const QuantPlan q5 = plan_quantization(quant_recipe("Q5_K_S"), p, llama_tensors(p));
  EXPECT_EQ(type_of(q5, blk(1, "ffn_down")), GgmlType::Q5_1);
}

TEST(Recipe, Stories260KShapeFallsBackEverywhere) {
  // stories260K: dim 64, MLP 172, 5 layers, 8 heads, 4 KV heads, vocab 512, tied output.
  LlamaParams p;
  p.n_vocab = 512;
  p.n_embd = 64;
  p.n_layer = 5;
  p.n_head = 8;
  p.n_head_kv = 4;
  p.head_dim = 8;
  p.n_ff = std::vector<std::int64_t>(5, 172);
  p.tie_word_embeddings = true;
  const QuantPlan plan = plan_quantization(quant_recipe("Q4_K_M"), p, llama_tensors(p));
  // The tied embedding is the output: 64 is no multiple of 256, so Q8_0 directly.
  EXPECT_EQ(type_of(plan, "token_embd.weight"), GgmlType::Q8_0);
  for (int l = 0; l < 5; ++l) {
    // use_more_bits for n = 5: n/8 = 0, 7n/8 = 4 -> layers 2 and 4 (Q6_K -> Q8_0).
    const bool more = l == 2 || l == 4;
    EXPECT_EQ(type_of(plan, blk(l, "attn_v")), more ? GgmlType::Q8_0 : GgmlType::Q5_0) << l;
    EXPECT_EQ(type_of(plan, blk(l, "attn_q")), GgmlType::Q5_0) << l;
    EXPECT_EQ(type_of(plan, blk(l, "ffn_gate")), GgmlType::Q5_0) << l;
    EXPECT_EQ(type_of(plan, blk(l, "ffn_down")), GgmlType::F16) << l;  // 172 is not a multiple of 32
  }
}

TEST(Recipe, TensorTypeOverridesFirstMatchWinsThenFallback) {
  LlamaParams p = llama31_8b({14336, 160, 14336, 14336, 14336, 14336, 14336, 14336});
  PlanOptions options;
  options.overrides.push_back(parse_tensor_type_override(R"(blk\.1\.ffn_.*=q6_k)"));
  options.overrides.push_back(parse_tensor_type_override("ffn_up=Q8_0"));
  options.overrides.push_back(parse_tensor_type_override("attn_k=f16"));
  const QuantPlan plan = plan_quantization(quant_recipe("Q4_K_M"), p, llama_tensors(p), options);
  EXPECT_EQ(type_of(plan, blk(1, "ffn_up")), GgmlType::Q6_K);  // first pattern, not the second
  EXPECT_EQ(type_of(plan, blk(2, "ffn_up")), GgmlType::Q8_0);
  EXPECT_EQ(type_of(plan, blk(5, "attn_k")), GgmlType::F16);
  EXPECT_TRUE(plan.find(blk(5, "attn_k"))->overridden);
  EXPECT_FALSE(plan.find(blk(5, "attn_q"))->overridden);
  // The override asks Q6_K for a 160-long row: the fallback still applies.
  const PlannedTensor* down = plan.find(blk(1, "ffn_down"));
  EXPECT_EQ(down->type, GgmlType::Q8_0);
  EXPECT_TRUE(down->overridden);
  EXPECT_TRUE(down->fallback);
  // Norms are never quantized, whatever the patterns say.
  PlanOptions all;
  all.overrides.push_back(parse_tensor_type_override(".*=q4_0"));
  const QuantPlan plan_all = plan_quantization(quant_recipe("Q4_K_M"), p, llama_tensors(p), all);
  EXPECT_EQ(type_of(plan_all, blk(0, "attn_norm")), GgmlType::F32);
  EXPECT_EQ(type_of(plan_all, "output.weight"), GgmlType::Q4_0);
}

// A pruned model's ffn_down bias (1-D, n_embd) stays F32 like the norms, and the other
// tensors get what they get without it.
TEST(Recipe, FfnDownBiasStaysF32) {
  const LlamaParams p = seed_shape();
  std::vector<CheckpointTensor> tensors = llama_tensors(p);
  std::vector<CheckpointTensor> biased;
  for (const CheckpointTensor& t : tensors) {
    biased.push_back(t);
    if (t.name == blk(5, "ffn_down")) biased.push_back(tensor("blk.5.ffn_down.bias", {p.n_embd}));
  }
  PlanOptions all;
  all.overrides.push_back(parse_tensor_type_override("ffn_down=q4_0"));
  for (const PlanOptions& options : {PlanOptions{}, all}) {
    const QuantPlan plain = plan_quantization(quant_recipe("Q4_K_M"), p, tensors, options);
    const QuantPlan plan = plan_quantization(quant_recipe("Q4_K_M"), p, biased, options);
    EXPECT_EQ(type_of(plan, "blk.5.ffn_down.bias"), GgmlType::F32);
    for (const PlannedTensor& t : plain.tensors) EXPECT_EQ(type_of(plan, t.name), t.type) << t.name;
    EXPECT_EQ(plan_summary(plan).total_bytes, plan_summary(plain).total_bytes + 4 * 4096);
  }
}

TEST(Recipe, BadOverridesAreErrors) {
  EXPECT_THROW(parse_tensor_type_override("ffn_up"), Error);
  EXPECT_THROW(parse_tensor_type_override("=q4_0"), Error);
  EXPECT_THROW(parse_tensor_type_override("ffn_up="), Error);
  EXPECT_THROW(parse_tensor_type_override("ffn_up=q9_9"), Error);
  EXPECT_THROW(parse_tensor_type_override("ffn_(up=q4_0"), Error);
  // A regex may itself contain '=': the type follows the last one.
  EXPECT_EQ(parse_tensor_type_override("a=b=Q5_K").pattern, "a=b");
}

TEST(Recipe, PureGivesEveryMatrixTheBaseType) {
  LlamaParams p = llama31_8b({14336, 160, 14336, 14336, 14336, 14336, 14336, 14336});
  PlanOptions options;
  options.pure = true;
  const QuantPlan plan = plan_quantization(quant_recipe("Q4_K_M"), p, llama_tensors(p), options);
  for (const auto& t : plan.tensors) {
    if (t.shape.size() == 1) {
      EXPECT_EQ(t.type, GgmlType::F32) << t.name;
    } else if (t.name == blk(1, "ffn_down")) {
      EXPECT_EQ(t.type, GgmlType::Q5_0);  // Q4_K's fallback for a 160-long row
    } else {
      EXPECT_EQ(t.type, GgmlType::Q4_K) << t.name;
    }
  }
}

TEST(Recipe, NamesAndFileTypes) {
  EXPECT_EQ(quant_recipe("q4_k_m").name, "Q4_K_M");
  EXPECT_EQ(static_cast<std::uint32_t>(quant_recipe("Q4_K_M").file_type), 15u);
  EXPECT_EQ(static_cast<std::uint32_t>(quant_recipe("Q8_0").file_type), 7u);
  EXPECT_EQ(static_cast<std::uint32_t>(quant_recipe("Q2_K").file_type), 10u);
  EXPECT_EQ(static_cast<std::uint32_t>(quant_recipe("Q3_K_S").file_type), 11u);
  EXPECT_EQ(static_cast<std::uint32_t>(quant_recipe("Q6_K").file_type), 18u);
  EXPECT_EQ(quant_recipe_names().size(), 10u);
  try {
    quant_recipe("Q4_K_X");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Q4_K_X"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("Q5_K_S"), std::string::npos);
  }
}

TEST(Recipe, ShapesThatDoNotFitAreErrors) {
  const LlamaParams p = llama31_8b(std::vector<std::int64_t>(2, 256));
  std::vector<CheckpointTensor> ts = llama_tensors(p);
  ts.push_back(tensor("blk.5.attn_q.weight", {4096, 4096}));
  EXPECT_THROW(plan_quantization(quant_recipe("Q4_K_M"), p, ts), Error);
  ts.pop_back();
  ts.push_back(tensor("blk.0.attn_q.weight", {4096, 0}));
  EXPECT_THROW(plan_quantization(quant_recipe("Q4_K_M"), p, ts), Error);
}

TEST(Recipe, SummaryCountsBytesAndBits) {
  const LlamaParams p = llama31_8b(std::vector<std::int64_t>(32, 14336));
  const QuantPlan plan = plan_quantization(quant_recipe("Q8_0"), p, llama_tensors(p));
  const PlanSummary s = plan_summary(plan);
  EXPECT_EQ(static_cast<std::int64_t>(s.n_elements), p.n_params() + 64);  // + rope_freqs
  // Q8_0 is 8.5 bits per weight; the F32 norms add a hair.
  EXPECT_GT(s.bits_per_weight, 8.5);
  EXPECT_LT(s.bits_per_weight, 8.51);
  std::uint64_t sum = 0;
  for (const auto& [type, bytes] : s.bytes_by_type) sum += bytes;
  EXPECT_EQ(sum, s.total_bytes);
  const std::string text = format_plan_summary(plan, s);
  EXPECT_NE(text.find("q8_0"), std::string::npos);
  EXPECT_NE(text.find("GiB"), std::string::npos);
}

}  // namespace
}  // namespace piquant
