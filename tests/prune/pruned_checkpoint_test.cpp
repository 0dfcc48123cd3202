// PrunedCheckpoint: the rows and columns it keeps, and that removing neurons which
// contribute nothing leaves the model's output unchanged (written, reloaded, run).
#include <gtest/gtest.h>

#include <cmath>

#include "checkpoint/gguf_export.h"
#include "core/error.h"
#include "engine/llama_context.h"
#include "engine/owned_model.h"
#include "prune/pruned_checkpoint.h"
#include "support/model_fixtures.h"
#include "support/test_support.h"
#include "tokenizer/vocab.h"
#include "train/model_checkpoint.h"

namespace piquant {
namespace {

std::unique_ptr<OwnedLlamaModel> tiny_model(std::uint64_t seed) {
  return OwnedLlamaModel::random(testing::tiny_llama_params({48, 40, 48}), testing::stories260k_vocab(), RopePairing::Interleaved,
                                 seed, 0.3f);
}

std::vector<float> all_logits(const LlamaModel& model, const std::vector<std::int32_t>& tokens) {
  ContextOptions o;
  o.n_ctx = 64;
  o.n_threads = 2;
  o.kv_type = GgmlType::F32;
  LlamaContext ctx(model, o);
  const auto logits = ctx.eval(tokens, true);
  return {logits.begin(), logits.end()};
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(static_cast<double>(a[i]) - b[i]));
  return m;
}

std::vector<std::int64_t> all_but(std::int64_t n, const std::vector<std::int64_t>& removed) {
  std::vector<std::int64_t> kept;
  for (std::int64_t i = 0; i < n; ++i) {
    if (std::find(removed.begin(), removed.end(), i) == removed.end()) kept.push_back(i);
  }
  return kept;
}

// Writes `model` pruned to `kept` as an F32 GGUF and loads it back.
std::unique_ptr<LlamaModel> prune_through_file(const LlamaModel& model, const std::vector<std::vector<std::int64_t>>& kept,
                                               const std::vector<std::vector<float>>& biases, const testing::TempDir& dir) {
  const auto source = checkpoint_of(model, "tiny");
  LlamaParams pruned = model.params();
  for (std::size_t l = 0; l < kept.size(); ++l) pruned.n_ff[l] = static_cast<std::int64_t>(kept[l].size());
  if (!biases.empty()) {
    pruned.ffn_down_bias.assign(kept.size(), false);
    for (std::size_t l = 0; l < kept.size(); ++l) pruned.ffn_down_bias[l] = !biases[l].empty();
  }
  const PrunedCheckpoint view(*source, pruned, kept, biases);
  GgufExportOptions options;
  options.type = GgmlType::F32;
  const auto path = (dir / "pruned.gguf").string();
  export_gguf(view, path, options);
  return LlamaModel::load(path);
}

TEST(PrunedCheckpoint, KeepsRowsOfGateAndUpAndColumnsOfDown) {
  auto model = tiny_model(3);
  const auto source = checkpoint_of(*model, "tiny");
  std::vector<std::vector<std::int64_t>> kept = {all_but(48, {}), all_but(40, {0, 5, 6, 7, 39}), all_but(48, {47})};
  LlamaParams pruned = model->params();
  pruned.n_ff = {48, 35, 47};
  const PrunedCheckpoint view(*source, pruned, kept, {});
  EXPECT_EQ(view.params().n_params(), model->params().n_params() - 6 * 3 * 32);
  const CheckpointTensor* up = view.find("blk.1.ffn_up.weight");
  const CheckpointTensor* down = view.find("blk.1.ffn_down.weight");
  ASSERT_NE(up, nullptr);
  ASSERT_NE(down, nullptr);
  EXPECT_EQ(up->shape, (std::vector<std::int64_t>{32, 35}));
  EXPECT_EQ(down->shape, (std::vector<std::int64_t>{35, 32}));
  const auto w_up = model->weight({WeightKind::FfnUp, 1});
  const auto w_down = model->weight({WeightKind::FfnDown, 1});
  // Read in odd pieces, so runs of kept rows split across calls.
  std::vector<float> rows(35 * 32);
  for (std::int64_t r = 0; r < 35; r += 4) view.read_rows(*up, r, std::min<std::int64_t>(4, 35 - r), rows.data() + r * 32);
  for (std::int64_t r = 0; r < 35; ++r) {
    for (std::int64_t c = 0; c < 32; ++c) ASSERT_EQ(rows[r * 32 + c], w_up[kept[1][r] * 32 + c]);
  }
  std::vector<float> cols(32 * 35);
  view.read_rows(*down, 0, 32, cols.data());
  for (std::int64_t r = 0; r < 32; ++r) {
    for (std::int64_t c = 0; c < 35; ++c) ASSERT_EQ(cols[r * 35 + c], w_down[r * 40 + kept[1][c]]);
  }
  EXPECT_THROW(view.read_rows(*up, 30, 6, rows.data()), Error);
}

TEST(PrunedCheckpoint, RemovingNeuronsWithZeroGateAndUpRowsLeavesTheOutputUnchanged) {
  auto model = tiny_model(5);
  const std::vector<std::int64_t> dead0 = {3, 17, 18, 47}, dead1 = {0, 1, 2, 20, 33};
  for (const auto& [layer, dead] : {std::pair{0, dead0}, std::pair{1, dead1}}) {
    for (const auto i : dead) {
      for (const auto kind : {WeightKind::FfnGate, WeightKind::FfnUp}) {
        auto w = model->weight({kind, layer});
        std::fill(w.begin() + i * 32, w.begin() + (i + 1) * 32, 0.0f);
      }
    }
  }
  const std::vector<std::int32_t> tokens = {1, 403, 81, 300, 12, 77, 490, 256, 9, 4, 150, 33};
  const auto before = all_logits(*model, tokens);
  testing::TempDir dir;
  const auto pruned = prune_through_file(*model, {all_but(48, dead0), all_but(40, dead1), all_but(48, {})}, {}, dir);
  EXPECT_EQ(pruned->params().n_ff, (std::vector<std::int64_t>{44, 35, 48}));
  EXPECT_EQ(pruned->architecture(), "deci");
  const double diff = max_abs_diff(before, all_logits(*pruned, tokens));
  EXPECT_LT(diff, 2e-5);  // only the order of the down products' sums changes

  // Control: removing one live neuron instead changes the logits far more.
  testing::TempDir dir2;
  const auto wrong = prune_through_file(*model, {all_but(48, dead0), all_but(40, {0, 1, 2, 20, 34}), all_but(48, {})}, {}, dir2);
  EXPECT_GT(max_abs_diff(before, all_logits(*wrong, tokens)), 100 * diff + 1e-4);
}

TEST(PrunedCheckpoint, MismatchedShapesAreErrors) {
  auto model = tiny_model(7);
  const auto source = checkpoint_of(*model, "tiny");
  LlamaParams p = model->params();
  EXPECT_THROW(PrunedCheckpoint(*source, p, {all_but(48, {}), all_but(40, {1}), all_but(48, {})}, {}), Error);  // width says 40
  p.n_ff[1] = 39;
  EXPECT_THROW(PrunedCheckpoint(*source, p, {all_but(48, {}), {1, 0}, all_but(48, {})}, {}), Error);  // not ascending
  std::vector<std::int64_t> out_of_range = all_but(40, {1});
  out_of_range.back() = 40;
  EXPECT_THROW(PrunedCheckpoint(*source, p, {all_but(48, {}), out_of_range, all_but(48, {})}, {}), Error);
  // A bias without the flag, and a bias of the wrong length.
  EXPECT_THROW(PrunedCheckpoint(*source, p, {all_but(48, {}), all_but(40, {1}), all_but(48, {})}, {{}, std::vector<float>(32), {}}),
               Error);
  p.ffn_down_bias = {false, true, false};
  EXPECT_THROW(PrunedCheckpoint(*source, p, {all_but(48, {}), all_but(40, {1}), all_but(48, {})}, {{}, std::vector<float>(31), {}}),
               Error);
}

}  // namespace
}  // namespace piquant
