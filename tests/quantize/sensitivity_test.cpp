// Sensitivities measured in memory against the KL divergence of real files with one
// tensor quantized, the weights left as they were, a planted sensitive tensor, and the
// cache file.
#include "quantize/sensitivity.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "core/error.h"
#include "checkpoint/gguf_export.h"
#include "eval/kld.h"
#include "quantize/budget_plan.h"
#include "quantize/sensitivity_file.h"
#include "support/model_fixtures.h"

namespace piquant {
namespace {

// The tiny preset (4 layers of width 256, MLP 512, 512 tokens) with weights ~ N(0, 0.25²)
// so its distributions are far from uniform, as an HF folder made once for the suite.
class SensitivityModels : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    hf_ = new std::filesystem::path(testing::write_tiny_hf(*dir_, "hf", "0-3:512", 0.25f));
  }
  static void TearDownTestSuite() {
    delete hf_;
    delete dir_;
  }
  // n_chunks chunks of n_ctx random tokens (BOS first).
  static EvalChunks random_chunks(const LlamaModel& model, std::int64_t n_ctx, std::int64_t n_chunks, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<std::int32_t> tokens(static_cast<std::size_t>(n_ctx * n_chunks));
    for (auto& t : tokens) t = static_cast<std::int32_t>(rng() % static_cast<std::uint64_t>(model.params().n_vocab));
    return EvalChunks(std::move(tokens), n_ctx, n_chunks, eval_bos_id(model.vocab()));
  }
  static ContextOptions f32_context(std::int64_t n_ctx) {
    ContextOptions o;
    o.n_ctx = n_ctx;
    o.n_batch = n_ctx;
    o.kv_type = GgmlType::F32;
    o.n_threads = 2;
    return o;
  }
  static testing::TempDir* dir_;
  static std::filesystem::path* hf_;
};
testing::TempDir* SensitivityModels::dir_ = nullptr;
std::filesystem::path* SensitivityModels::hf_ = nullptr;

TEST_F(SensitivityModels, EqualsTheKldOfAFileWithOnlyThatTensorQuantized) {
  const auto checkpoint = open_checkpoint(hf_->string());
  const std::string base_path = (*dir_ / "f32.gguf").string();
  GgufExportOptions f32;
  f32.type = GgmlType::F32;
  export_gguf(*checkpoint, base_path, f32);
  const auto base = LlamaModel::load(base_path);
  const EvalChunks chunks = random_chunks(*base, 48, 2, 5);
  LlamaContext base_context(*base, f32_context(48));

  struct Case {
    std::string tensor;
    GgmlType type;
    double tolerance;  // relative
  };
  // The embedding is a row lookup: the file's rows decode to exactly the measured values.
  // A matrix's product in the file runs on 8-bit quantized activations, which adds a
  // little error of its own (a few percent of a 2-4 bit weight's).
  const std::vector<Case> cases = {{"token_embd.weight", GgmlType::Q2_K, 1e-9},
                                   {"blk.1.ffn_up.weight", GgmlType::Q4_K, 0.1},
                                   {"blk.2.attn_v.weight", GgmlType::Q3_K, 0.1},
                                   {"output.weight", GgmlType::Q2_K, 0.1}};
  const auto copy = OwnedLlamaModel::copy_of(*base);
  std::vector<SensitivityJob> jobs;
  for (const Case& c : cases) jobs.push_back({c.tensor, {c.type}, {}});
  SensitivityOptions options;
  options.n_threads = 2;
  const SensitivityTable measured = measure_sensitivities(*copy, chunks, jobs, options);

  for (const Case& c : cases) {
    GgufExportOptions one;
    one.type_for = [&c](const CheckpointTensor& t) { return t.name == c.tensor ? c.type : GgmlType::F32; };
    one.file_type = LlamaFileType::AllF32;
    const std::string path = (*dir_ / ("one-" + c.tensor + ".gguf")).string();
    export_gguf(*checkpoint, path, one);
    const auto model = LlamaModel::load(path);
    LlamaContext context(*model, f32_context(48));
    const KldResult file = compute_kld(KldBase{&base_context, nullptr}, context, chunks);
    const double m = measured.at(c.tensor, c.type);
    EXPECT_GT(file.kld_mean, 0.0) << c.tensor;
    EXPECT_NEAR(m, file.kld_mean, c.tolerance * file.kld_mean) << c.tensor << " at " << ggml_type_name(c.type);
  }
}

TEST_F(SensitivityModels, WeightsComeBackBitForBit) {
  const auto base = LlamaModel::load(hf_->string());
  const auto copy = OwnedLlamaModel::copy_of(*base);
  const auto untouched = OwnedLlamaModel::copy_of(*base);
  const EvalChunks chunks = random_chunks(*base, 16, 1, 9);
  measure_sensitivities(*copy, chunks, {{"blk.0.attn_q.weight", {GgmlType::Q2_K, GgmlType::Q8_0}, {}},
                                        {"output.weight", {GgmlType::Q3_K}, {}}});
  for (const WeightId id : copy->weight_ids()) {
    const auto a = copy->weight(id);
    const auto b = untouched->weight(id);
    ASSERT_EQ(a.size(), b.size());
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << gguf_tensor_name(id);
  }
}

TEST_F(SensitivityModels, WiderTypesCostLessAndImportanceIsUsed) {
  const auto base = LlamaModel::load(hf_->string());
  const auto copy = OwnedLlamaModel::copy_of(*base);
  const EvalChunks chunks = random_chunks(*base, 32, 2, 3);
  const std::vector<GgmlType> types = default_budget_candidates();  // narrow to wide
  // Importance on the first half of the columns only: a different encoding, a different KLD.
  std::vector<float> skewed(256, 1e-6f);
  std::fill(skewed.begin(), skewed.begin() + 128, 1.0f);
  const SensitivityTable t = measure_sensitivities(*copy, chunks, {{"blk.0.ffn_gate.weight", types, {}}});
  for (std::size_t k = 1; k < types.size(); ++k) {
    EXPECT_LT(t.at("blk.0.ffn_gate.weight", types[k]), t.at("blk.0.ffn_gate.weight", types[k - 1])) << ggml_type_name(types[k]);
  }
  EXPECT_GT(t.at("blk.0.ffn_gate.weight", GgmlType::Q8_0), 0.0);
  // The importance weighs the encoding's error per column: another importance, another encoding.
  const SensitivityTable plain = measure_sensitivities(*copy, chunks, {{"blk.0.ffn_up.weight", {GgmlType::Q2_K}, {}}});
  const SensitivityTable weighted = measure_sensitivities(*copy, chunks, {{"blk.0.ffn_up.weight", {GgmlType::Q2_K}, skewed}});
  EXPECT_NE(weighted.at("blk.0.ffn_up.weight", GgmlType::Q2_K), plain.at("blk.0.ffn_up.weight", GgmlType::Q2_K));
}

TEST_F(SensitivityModels, PlantedSensitiveTensorGetsTheWiderType) {
  // Layer 3's MLP gets 16 dead neurons (gate rows 0, 32, ..., 480 zeroed: silu(0) = 0), in
  // both models. The planted model also puts outliers (±40, the weights are ~N(0, 0.25²))
  // in blk.3.ffn_down's columns of those neurons. They multiply exact zeros, so both
  // models compute exactly the same function; but every 32-wide quantization block of
  // the planted tensor holds one, so its scale is set by the outlier and the live weights
  // beside it are quantized far more coarsely: a tensor whose quantization matters more,
  // by construction, and nothing else changed.
  const auto checkpoint = open_checkpoint(hf_->string());
  const auto base = LlamaModel::load(hf_->string());
  const EvalChunks chunks = random_chunks(*base, 32, 2, 11);
  BudgetProblem problem;
  problem.tensors = checkpoint->tensors();
  problem.candidates = default_budget_candidates();
  problem.data_offset = 0;
  problem.alignment = 32;
  // Only the ffn_down tensors are chosen for (the rest fixed), to keep the test short.
  problem.overrides.push_back(parse_tensor_type_override("^(token_embd|output|blk\\.\\d+\\.(attn_.*|ffn_gate|ffn_up))\\.weight$=q4_K"));
  const auto choices = budget_choices(problem);
  std::vector<SensitivityJob> jobs;
  for (const BudgetChoices& c : choices) {
    if (!c.fixed) jobs.push_back({c.tensor, c.types, {}});
  }
  ASSERT_EQ(jobs.size(), 4u);
  const std::string planted = "blk.3.ffn_down.weight", twin = "blk.2.ffn_down.weight";  // the same shape
  const std::int64_t n_ff = 512, n_embd = 256;

  const auto control = OwnedLlamaModel::copy_of(*base);
  const std::span<float> gate = control->weight({WeightKind::FfnGate, 3});
  for (std::int64_t j = 0; j < n_ff; j += 32) std::fill_n(gate.begin() + j * n_embd, n_embd, 0.0f);
  const auto model = OwnedLlamaModel::copy_of(*control);
  const std::span<float> down = model->weight({WeightKind::FfnDown, 3});
  for (std::int64_t r = 0; r < n_embd; ++r) {
    for (std::int64_t j = 0; j < n_ff; j += 32) down[static_cast<std::size_t>(r * n_ff + j)] = r % 2 ? 40.0f : -40.0f;
  }
  const SensitivityTable control_kld = measure_sensitivities(*control, chunks, jobs);
  const SensitivityTable kld = measure_sensitivities(*model, chunks, jobs);

  // The same function: the other tensors' sensitivities are the same to the bit.
  for (int l = 0; l < 3; ++l) {
    const std::string other = "blk." + std::to_string(l) + ".ffn_down.weight";
    EXPECT_EQ(kld.kld.at(other), control_kld.kld.at(other)) << other;
  }
  EXPECT_GT(kld.at(planted, GgmlType::Q4_K), 4.0 * control_kld.at(planted, GgmlType::Q4_K));

  const auto bits_at_mid_budget = [&](const SensitivityTable& table, const std::string& name) {
    SizeBudget wide;
    wide.file_bytes = UINT64_MAX / 2;
    const BudgetPlan all = plan_for_budget(problem, table, wide);
    SizeBudget mid;
    mid.file_bytes = (all.smallest_file_bytes + all.largest_file_bytes) / 2;
    const GgmlTypeInfo& info = ggml_type_info(plan_for_budget(problem, table, mid).plan.find(name)->type);
    return 8.0 * info.block_bytes / info.block_size;
  };
  // Unplanted, the tensor gets no more bits than its twin; planted, more.
  EXPECT_LE(bits_at_mid_budget(control_kld, planted), bits_at_mid_budget(control_kld, twin));
  EXPECT_GT(bits_at_mid_budget(kld, planted), bits_at_mid_budget(kld, twin));
}

TEST_F(SensitivityModels, BadJobsFailBeforeMeasuring) {
  const auto base = LlamaModel::load(hf_->string());
  const auto copy = OwnedLlamaModel::copy_of(*base);
  const EvalChunks chunks = random_chunks(*base, 16, 1, 1);
  const auto message = [&](const std::vector<SensitivityJob>& jobs) {
    try {
      measure_sensitivities(*copy, chunks, jobs);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message({{"blk.9.attn_q.weight", {GgmlType::Q4_K}, {}}}).find("blk.9.attn_q.weight"), std::string::npos);
  EXPECT_NE(message({{"blk.0.attn_norm.weight", {GgmlType::Q4_K}, {}}}).find("not a matrix"), std::string::npos);
  EXPECT_NE(message({{"blk.0.attn_q.weight", {GgmlType::Q4_K}, std::vector<float>(100, 1.0f)}}).find("100 values"),
            std::string::npos);
  EXPECT_NE(message({{"blk.0.attn_q.weight", {GgmlType::Q8_K}, {}}}).find("q8_K"), std::string::npos);
}

TEST_F(SensitivityModels, FileRoundTripsAndKnowsWhatItWasMeasuredOn) {
  const auto checkpoint = open_checkpoint(hf_->string());
  SensitivityRecord r;
  r.source.model_fingerprint = checkpoint_fingerprint(*checkpoint);
  r.source.model_path = hf_->string();
  r.source.calibration_fingerprint = "c1";
  r.source.calibration_path = "calib.txt";
  r.source.n_ctx = 256;
  r.source.n_chunks = 8;
  r.measure_seconds = 12.5;
  r.table.kld["blk.0.attn_q.weight"][GgmlType::Q4_K] = 0.1 / 3.0;  // needs all 17 digits
  r.table.kld["blk.0.attn_q.weight"][GgmlType::Q8_0] = 1.2345678901234567e-9;
  r.table.kld["output.weight"][GgmlType::Q6_K] = 0.0;
  const std::string path = (*dir_ / "s.json").string();
  EXPECT_FALSE(read_sensitivity_file(path).has_value());
  write_sensitivity_file(path, r);
  const auto back = read_sensitivity_file(path);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->table.kld, r.table.kld);
  EXPECT_EQ(back->measure_seconds, 12.5);
  EXPECT_EQ(sensitivity_source_mismatch(back->source, r.source, true), "");

  // The same model gives the same fingerprint; another seed's weights another.
  EXPECT_EQ(checkpoint_fingerprint(*open_checkpoint(hf_->string())), r.source.model_fingerprint);
  const auto other = testing::write_tiny_hf(*dir_, "other", "0-3:512", 0.25f, 8);
  SensitivitySource wanted = r.source;
  wanted.model_fingerprint = checkpoint_fingerprint(*open_checkpoint(other.string()));
  EXPECT_NE(wanted.model_fingerprint, r.source.model_fingerprint);
  EXPECT_NE(sensitivity_source_mismatch(r.source, wanted, true).find("another model"), std::string::npos);
  wanted = r.source;
  wanted.imatrix_fingerprint = "i1";
  EXPECT_NE(sensitivity_source_mismatch(r.source, wanted, true).find("without an imatrix"), std::string::npos);
  wanted = r.source;
  wanted.calibration_fingerprint = "c2";
  EXPECT_NE(sensitivity_source_mismatch(r.source, wanted, true).find("calibration"), std::string::npos);
  EXPECT_EQ(sensitivity_source_mismatch(r.source, wanted, false), "");  // no calibration given: not compared

  testing::write_file(*dir_ / "bad.json", "{\"format\": \"piquant-sensitivity\", \"version\": 1}");
  try {
    read_sensitivity_file((*dir_ / "bad.json").string());
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("bad.json"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("model"), std::string::npos) << e.what();
  }
  testing::write_file(*dir_ / "notjson.json", "{");
  EXPECT_THROW(read_sensitivity_file((*dir_ / "notjson.json").string()), FormatError);
}

}  // namespace
}  // namespace piquant
