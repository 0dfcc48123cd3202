// The prune job end to end: with bias compensation, neurons whose activation is constant
// over the calibration set are removed without changing the output (written, reloaded,
// run); without the bias the output moves. Calibrating on one-token sequences makes
// every neuron's activation constant over the calibration set.
#include <gtest/gtest.h>

#include <cmath>

#include "checkpoint/gguf_export.h"
#include "core/error.h"
#include "engine/llama_context.h"
#include "engine/owned_model.h"
#include "prune/prune_job.h"
#include "prune/pruned_checkpoint.h"
#include "support/model_fixtures.h"
#include "support/test_support.h"
#include "tokenizer/vocab.h"
#include "train/model_checkpoint.h"

namespace piquant {
namespace {

std::unique_ptr<OwnedLlamaModel> tiny_model() {
  LlamaParams p = testing::tiny_llama_params({48, 40, 48});
  return OwnedLlamaModel::random(p, testing::stories260k_vocab(), RopePairing::Interleaved, 21, 0.3f);
}

std::vector<float> logits_of(const LlamaModel& model, const std::vector<std::int32_t>& tokens) {
  ContextOptions o;
  o.n_ctx = 16;
  o.n_threads = 2;
  o.kv_type = GgmlType::F32;
  LlamaContext ctx(model, o);
  const auto l = ctx.eval(tokens, true);
  return {l.begin(), l.end()};
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(static_cast<double>(a[i]) - b[i]));
  return m;
}

std::unique_ptr<LlamaModel> pruned_model(const LlamaModel& model, const PruneDecision& d, const testing::TempDir& dir,
                                         const std::string& name) {
  const auto source = checkpoint_of(model, "tiny");
  const PrunedCheckpoint view(*source, d.plan.params, d.plan.kept, d.biases);
  GgufExportOptions options;
  options.type = GgmlType::F32;
  export_gguf(view, (dir / name).string(), options);
  return LlamaModel::load((dir / name).string());
}

TEST(PruneJob, BiasCompensationKeepsTheOutputOfInputsWhoseActivationsAreConstant) {
  (void)PIQUANT_SHARED_FILE("models/stories260K/tok512.bin");  // the vocabulary; skips without the shared data
  auto model = tiny_model();
  ThreadPool pool(2);
  const std::vector<std::int32_t> token = {1};  // one position: every neuron's activation is one constant
  PruneSettings settings;
  settings.criterion = PruneCriterion::Magnitude;  // the criterion does not matter here; magnitude keeps it independent
  settings.target.ratio = 0.25;
  settings.widths.align = 4;
  settings.calibration = {token, token, token};
  settings.widths.bias_compensation = true;
  const PruneDecision with_bias = decide_pruning(*model, settings, pool);
  settings.widths.bias_compensation = false;
  const PruneDecision without_bias = decide_pruning(*model, settings, pool);
  ASSERT_EQ(with_bias.plan.kept, without_bias.plan.kept);  // the same neurons go either way
  EXPECT_EQ(with_bias.plan.params.n_ff, (std::vector<std::int64_t>{36, 32, 36}));
  EXPECT_EQ(with_bias.plan.params.ffn_down_bias, (std::vector<bool>{true, true, true}));

  testing::TempDir dir;
  const auto before = logits_of(*model, token);
  const double compensated = max_abs_diff(before, logits_of(*pruned_model(*model, with_bias, dir, "bias.gguf"), token));
  const double uncompensated = max_abs_diff(before, logits_of(*pruned_model(*model, without_bias, dir, "plain.gguf"), token));
  EXPECT_LT(compensated, 1e-4);
  EXPECT_GT(uncompensated, 100 * compensated + 1e-2);

  // Another input (its activations are not the calibration's constants) does change: the bias is a mean, not magic.
  const std::vector<std::int32_t> other = {1, 200, 37};
  EXPECT_GT(max_abs_diff(logits_of(*model, other), logits_of(*pruned_model(*model, with_bias, dir, "bias2.gguf"), other)), 1e-3);
}

TEST(PruneJob, CalibrationTextIsCutIntoBosLedSequences) {
  (void)PIQUANT_SHARED_FILE("models/stories260K/tok512.bin");
  auto model = tiny_model();
  std::string text;
  while (text.size() < 3000) text += "Once upon a time there was a little dog. ";
  const auto seqs = calibration_sequences(model->tokenizer(), text, "calib.txt", 32, 100);
  ASSERT_EQ(seqs.size(), 4u);  // ceil(100 / 32)
  for (const auto& s : seqs) {
    ASSERT_EQ(s.size(), 32u);
    EXPECT_EQ(s[0], 1);
  }
  try {
    calibration_sequences(model->tokenizer(), "short", "calib.txt", 32, 100);
    FAIL() << "a text shorter than one sequence must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("calib.txt"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace piquant
