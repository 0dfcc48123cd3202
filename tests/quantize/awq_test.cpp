// AWQ: the scale formula by hand; folding the scales into a written model leaves its
// float logits unchanged (and a deliberately wrong fold does not); α = 0 reproduces
// plain quantization bit for bit through the CLI; a planted outlier channel is found and
// rescued, judged by the quantized model's logits rather than by the search's own error.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "checkpoint/gguf_export.h"
#include "core/error.h"
#include "engine/llama_context.h"
#include "engine/owned_model.h"
#include "quantize/awq.h"
#include "quantize/awq_checkpoint.h"
#include "quantize/recipe.h"
#include "support/model_fixtures.h"
#include "support/test_support.h"
#include "train/model_checkpoint.h"

namespace piquant {
namespace {

constexpr std::int64_t kCtx = 64;

std::vector<std::int32_t> calibration_tokens(std::int64_t n, std::int64_t n_vocab, std::uint64_t seed) {
  std::vector<std::int32_t> tokens;
  std::uint64_t x = seed;
  for (std::int64_t i = 0; i < n; ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    tokens.push_back(static_cast<std::int32_t>((x >> 33) % static_cast<std::uint64_t>(n_vocab)));
  }
  return tokens;
}

ContextOptions context_options() {
  ContextOptions o;
  o.n_ctx = kCtx;
  o.n_threads = 2;
  o.kv_type = GgmlType::F32;
  return o;
}

std::vector<float> all_logits(const LlamaModel& model, const std::vector<std::int32_t>& tokens) {
  LlamaContext ctx(model, context_options());
  const auto logits = ctx.eval(tokens, true);
  return {logits.begin(), logits.end()};
}

// Rows of 256 so that the K-quants apply; `n_head_kv` 4 = one value head per query head.
std::unique_ptr<OwnedLlamaModel> tiny_model(std::int64_t n_head_kv, std::uint64_t seed) {
  LlamaParams params = testing::tiny_llama_params({512, 512}, 256);
  params.n_head_kv = n_head_kv;
  return OwnedLlamaModel::random(params, testing::stories260k_vocab(), RopePairing::Interleaved, seed, 0.06f);
}

// Channel j of layer l's attention and MLP inputs made `factor` times larger where the
// norm produces it and its weight columns as much smaller: the same function, but an
// outlier channel that plain quantization rounds away.
void plant_outlier(OwnedLlamaModel& model, std::int64_t layer, std::int64_t j, float factor) {
  const std::int64_t n_embd = model.params().n_embd;
  for (auto [norm, users] : {std::pair{WeightKind::AttnNorm, std::vector{WeightKind::AttnQ, WeightKind::AttnK, WeightKind::AttnV}},
                             std::pair{WeightKind::FfnNorm, std::vector{WeightKind::FfnGate, WeightKind::FfnUp}}}) {
    model.weight(WeightId{norm, layer})[static_cast<std::size_t>(j)] *= factor;
    for (WeightKind k : users) {
      std::span<float> w = model.weight(WeightId{k, layer});
      for (std::size_t r = 0; r * static_cast<std::size_t>(n_embd) < w.size(); ++r) w[r * n_embd + j] /= factor;
    }
  }
}

std::string write_gguf(const Checkpoint& checkpoint, const std::filesystem::path& path,
                       const std::function<GgmlType(const CheckpointTensor&)>& type_for = {}) {
  GgufExportOptions options;
  options.type = GgmlType::F32;
  options.type_for = type_for;
  if (type_for) options.file_type = LlamaFileType::MostlyQ4_K_M;
  export_gguf(checkpoint, path.string(), options);
  return path.string();
}

// `checkpoint` quantized with the recipe's per-tensor types (no imatrix), loaded.
std::unique_ptr<LlamaModel> quantized(const Checkpoint& checkpoint, const std::string& recipe, const std::filesystem::path& path) {
  const QuantPlan plan = plan_quantization(quant_recipe(recipe), checkpoint.params(), checkpoint.tensors());
  write_gguf(checkpoint, path, [&plan](const CheckpointTensor& t) { return plan.find(t.name)->type; });
  return LlamaModel::load(path.string());
}

double mean_squared_difference(const std::vector<float>& a, const std::vector<float>& b) {
  double sum = 0;
  for (std::size_t i = 0; i < a.size(); ++i) sum += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
  return sum / static_cast<double>(a.size());
}

double max_abs(const std::vector<float>& a) {
  double m = 0;
  for (float v : a) m = std::max(m, std::fabs(static_cast<double>(v)));
  return m;
}

double max_abs_difference(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(static_cast<double>(a[i]) - b[i]));
  return m;
}

// `matrices` with the 1-D tensors (norms) of `norms`.
class NormsFrom : public ForwardingCheckpoint {
 public:
  NormsFrom(const Checkpoint& matrices, const Checkpoint& norms) : ForwardingCheckpoint(matrices), norms_(norms) {}
  void read_rows(const CheckpointTensor& t, std::int64_t first, std::int64_t n, float* out) const override {
    (t.shape.size() == 1 ? norms_ : base_).read_rows(t, first, n, out);
  }

 private:
  const Checkpoint& norms_;
};

AwqResult search(const LlamaModel& model, const AwqOptions& options, std::uint64_t seed = 11) {
  LlamaContext context(model, context_options());
  const EvalChunks chunks(calibration_tokens(4 * kCtx, model.params().n_vocab, seed), kCtx, 4, model.vocab().bos_id);
  return search_awq_scales(context, chunks, options);
}

TEST(AwqChannelScales, PowerOfTheMeanOverTheGeometricMiddleOfItsRange) {
  // m^0.5 = {1, 2, 4}: max · min = 4, so every value is divided by 2.
  EXPECT_EQ(awq_channel_scales({1.0, 4.0, 16.0}, 0.5f), (std::vector<float>{0.5f, 1.0f, 2.0f}));
  // α = 0: all ones exactly, whatever the means (a silent channel included).
  EXPECT_EQ(awq_channel_scales({0.0, 3.0, 1e9}, 0.0f), (std::vector<float>{1.0f, 1.0f, 1.0f}));
  // A silent channel is floored at 1e-6 before the power: finite, the smallest scale.
  const std::vector<float> s = awq_channel_scales({0.0, 1e-6, 1.0}, 1.0f);
  EXPECT_FLOAT_EQ(s[0], 1e-3f);
  EXPECT_FLOAT_EQ(s[1], 1e-3f);
  EXPECT_FLOAT_EQ(s[2], 1e3f);
}

TEST(Awq, FoldedScalesLeaveTheFloatLogitsUnchanged) {
  const testing::TempDir dir;
  auto model = tiny_model(/*n_head_kv=*/4, 3);  // every group, attn_output included
  plant_outlier(*model, 0, 5, 10.0f);  // so that the input groups' scales differ widely too
  plant_outlier(*model, 1, 100, 10.0f);
  const auto source = checkpoint_of(*model, "tiny");
  const auto original = LlamaModel::load(write_gguf(*source, dir / "original.gguf"));
  AwqOptions options;
  options.fixed_alpha = 0.7f;  // strong scales everywhere
  options.importance = false;
  const AwqResult result = search(*original, options);
  ASSERT_EQ(result.groups.size(), 8u);
  for (const AwqGroup& g : result.groups) {
    ASSERT_FALSE(g.scales.empty()) << awq_group_name(g.kind);
    const auto [lo, hi] = std::minmax_element(g.scales.begin(), g.scales.end());
    EXPECT_GT(*hi / *lo, 1.5f) << "layer " << g.layer << " " << awq_group_name(g.kind) << ": scales too flat to test";
  }
  const auto base = open_checkpoint((dir / "original.gguf").string());
  const AwqScaledCheckpoint scaled(*base, result.groups);
  const auto folded = LlamaModel::load(write_gguf(scaled, dir / "folded.gguf", [&scaled](const CheckpointTensor& t) {
    return awq_output_type(scaled, t);
  }));

  const auto tokens = calibration_tokens(40, original->params().n_vocab, 5);
  const std::vector<float> expected = all_logits(*original, tokens);
  const double tolerance = 1e-5 * max_abs(expected);
  EXPECT_LE(max_abs_difference(all_logits(*folded, tokens), expected), tolerance);

  // Control: the matrices folded but the norms left as they were (a fold that forgets
  // the division) changes the function.
  const NormsFrom misfolded(scaled, *base);
  const auto bad = LlamaModel::load(write_gguf(misfolded, dir / "misfolded.gguf"));
  EXPECT_GT(max_abs_difference(all_logits(*bad, tokens), expected), 1000 * tolerance);
}

TEST(Awq, GroupedQueryAttentionLeavesValueToOutputAlone) {
  const auto model = tiny_model(/*n_head_kv=*/2, 3);
  AwqOptions options;
  options.grid = 2;
  const AwqResult result = search(*model, options);
  ASSERT_EQ(result.groups.size(), 6u);
  for (const AwqGroup& g : result.groups) EXPECT_NE(g.kind, AwqGroupKind::AttentionOutput);
}

TEST(Awq, AlphaZeroReproducesPlainQuantizationBitForBit) {
  const testing::TempDir dir;
  const auto model = tiny_model(2, 4);
  const std::string original = write_gguf(*checkpoint_of(*model, "tiny"), dir / "original.gguf");
  std::string text;
  for (int i = 0; i < 60; ++i) text += "Once upon a time there was a little girl who liked to play in the park. ";
  testing::write_file(dir / "calib.txt", text);
  const std::string d = testing::shell_quote(dir.path().string());
  testing::run_piquant("-q awq -m " + d + "/original.gguf -f " + d + "/calib.txt --ctx 64 --chunks 4 --alpha 0 -o " + d +
                       "/awq0.gguf");
  testing::run_piquant("-q imatrix -m " + d + "/original.gguf -f " + d + "/calib.txt --ctx 64 -o " + d + "/im.dat");
  for (const char* recipe : {"Q4_K_M", "Q3_K_M"}) {
    const std::string r = recipe;
    testing::run_piquant("-q quantize " + d + "/original.gguf " + d + "/plain.gguf " + r + " --imatrix " + d + "/im.dat");
    testing::run_piquant("-q quantize " + d + "/awq0.gguf " + d + "/awq.gguf " + r + " --imatrix " + d + "/im.dat");
    EXPECT_EQ(testing::read_file(dir / "plain.gguf"), testing::read_file(dir / "awq.gguf")) << recipe;
  }
  // A searched α does change the file (the comparison above can fail).
  testing::run_piquant("-q awq -m " + d + "/original.gguf -f " + d + "/calib.txt --ctx 64 --chunks 4 --alpha 0.5 -o " + d +
                       "/awq5.gguf");
  testing::run_piquant("-q quantize " + d + "/awq5.gguf " + d + "/awq.gguf Q4_K_M --imatrix " + d + "/im.dat");
  testing::run_piquant("-q quantize " + d + "/original.gguf " + d + "/plain.gguf Q4_K_M --imatrix " + d + "/im.dat");
  EXPECT_NE(testing::read_file(dir / "plain.gguf"), testing::read_file(dir / "awq.gguf"));
}

TEST(Awq, PlantedOutlierChannelIsFoundAndRescued) {
  const testing::TempDir dir;
  auto model = tiny_model(2, 5);
  plant_outlier(*model, 0, 5, 40.0f);
  plant_outlier(*model, 1, 200, 40.0f);
  const auto float_model = LlamaModel::load(write_gguf(*checkpoint_of(*model, "tiny"), dir / "planted.gguf"));

  AwqOptions options;
  options.importance = false;  // as quantize without --imatrix, which sees the outlier only through AWQ
  options.grid = 10;
  const AwqResult result = search(*float_model, options);
  for (const AwqGroup& g : result.groups) {
    if (g.kind == AwqGroupKind::AttentionInput || g.kind == AwqGroupKind::MlpInput) {
      EXPECT_GT(g.alpha, 0.0f) << "layer " << g.layer << " " << awq_group_name(g.kind);
      EXPECT_LT(g.error_chosen, 0.5 * g.error_plain) << "layer " << g.layer << " " << awq_group_name(g.kind);
      const std::int64_t planted = g.layer == 0 ? 5 : 200;
      EXPECT_EQ(std::max_element(g.scales.begin(), g.scales.end()) - g.scales.begin(), planted);
    }
  }

  // Judged independently of the search: the quantized models' logits against the float model's.
  const auto base = open_checkpoint((dir / "planted.gguf").string());
  const AwqScaledCheckpoint scaled(*base, result.groups);
  const auto plain_q = quantized(*base, "Q4_K_M", dir / "plain-q4.gguf");
  const auto awq_q = quantized(scaled, "Q4_K_M", dir / "awq-q4.gguf");
  const auto tokens = calibration_tokens(60, float_model->params().n_vocab, 99);  // not the calibration tokens
  const std::vector<float> expected = all_logits(*float_model, tokens);
  const double plain_error = mean_squared_difference(all_logits(*plain_q, tokens), expected);
  const double awq_error = mean_squared_difference(all_logits(*awq_q, tokens), expected);
  EXPECT_LT(awq_error, 0.5 * plain_error) << "plain " << plain_error << ", AWQ " << awq_error;
}

TEST(Awq, RefusesAQuantizedModel) {
  const testing::TempDir dir;
  const auto model = tiny_model(2, 6);
  const auto q = quantized(*checkpoint_of(*model, "tiny"), "Q4_K_M", dir / "q4.gguf");
  try {
    search(*q, AwqOptions{});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("AWQ needs a float model"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("q4.gguf"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace piquant
