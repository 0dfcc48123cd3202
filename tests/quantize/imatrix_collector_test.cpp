// Importance-matrix collection: the statistics against sums computed here from the
// model file itself (embedding rows and RMSNorm in double), the shapes of every
// entry (per-layer MLP widths), chunk counting, and that observing changes nothing.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "eval/eval_chunks.h"
#include "formats/ggml_type.h"
#include "formats/gguf.h"
#include "engine/llama_context.h"
#include "engine/llama_model.h"
#include "quant/dequantize.h"
#include "quantize/imatrix_collector.h"
#include "support/model_fixtures.h"
#include "support/test_support.h"

namespace piquant {
namespace {

using testing::TempDir;

constexpr std::int64_t kCtx = 64;

std::vector<std::int32_t> some_tokens(std::int64_t n, std::int64_t n_vocab) {
  std::vector<std::int32_t> tokens;
  for (std::int64_t i = 0; i < n; ++i) tokens.push_back(static_cast<std::int32_t>((i * 7919 + 13) % n_vocab));
  return tokens;
}

std::unique_ptr<LlamaContext> make_context(const LlamaModel& model, std::int64_t n_batch = kCtx) {
  ContextOptions options;
  options.n_ctx = kCtx;
  options.n_batch = n_batch;
  options.kv_type = GgmlType::F32;
  options.n_threads = 2;
  return std::make_unique<LlamaContext>(model, options);
}

// One row of a GGUF tensor as float, through the dequantizer.
std::vector<float> gguf_row(const GgufFile& gguf, const std::string& name, std::int64_t row) {
  const GgufTensorInfo& info = gguf.tensor(name);
  const std::int64_t n = info.shape[0];
  const GgmlType type = info.type;
  const auto row_bytes = static_cast<std::size_t>(ggml_nbytes(type, static_cast<std::uint64_t>(n)));
  std::vector<float> out(static_cast<std::size_t>(n));
  dequantize_row(type, gguf.tensor_data(info).data() + static_cast<std::size_t>(row) * row_bytes, out.data(), n);
  return out;
}

// ---- The collector on hand-made inputs ----

TEST(ImatrixCollector, StoresMeanSquareTimesChunksPerColumn) {
  ImatrixCollector collector;
  const WeightId q{WeightKind::AttnQ, 0};
  const WeightId down{WeightKind::FfnDown, 2};
  const float chunk1[] = {1, 2, 3, 4};  // 2 tokens × 2 columns
  collector.observe(q, chunk1, 2, 2);
  collector.finish_chunk();
  const float chunk2[] = {-2, 0};
  const float down_x[] = {1, 1, 1, 3, 3, 3};  // 2 tokens × 3 columns
  collector.observe(q, chunk2, 1, 2);
  collector.observe(down, down_x, 2, 3);
  collector.finish_chunk();

  const ImportanceMatrix m = collector.result("calib.txt");
  EXPECT_EQ(m.chunks, 2);
  EXPECT_EQ(m.dataset, "calib.txt");
  ASSERT_EQ(m.entries.size(), 2u);
  const auto& eq = m.entries.at("blk.0.attn_q.weight");
  EXPECT_EQ(eq.ncall, 2);
  // Column sums of squares over 3 tokens: 1+9+4 = 14, 4+16+0 = 20; mean × ncall 2.
  ASSERT_EQ(eq.values.size(), 2u);
  EXPECT_FLOAT_EQ(eq.values[0], 14.0f / 3 * 2);
  EXPECT_FLOAT_EQ(eq.values[1], 20.0f / 3 * 2);
  const auto& ed = m.entries.at("blk.2.ffn_down.weight");
  EXPECT_EQ(ed.ncall, 1);  // reached in one chunk only
  EXPECT_EQ(ed.values, (std::vector<float>{5, 5, 5}));
  EXPECT_FLOAT_EQ(m.mean_squares("blk.0.attn_q.weight")[0], 14.0f / 3);
}

TEST(ImatrixCollector, ColumnCountChangeIsAnError) {
  ImatrixCollector collector;
  const std::vector<float> x(20, 1.0f);
  collector.observe({WeightKind::FfnDown, 1}, x.data(), 2, 8);
  try {
    collector.observe({WeightKind::FfnDown, 1}, x.data(), 2, 10);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("blk.1.ffn_down.weight"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("10 columns"), std::string::npos) << e.what();
  }
}

TEST(ImatrixCollector, OutputOnlyWhenAsked) {
  const std::vector<float> x(4, 2.0f);
  ImatrixCollector without;
  without.observe({WeightKind::Output, -1}, x.data(), 1, 4);
  without.finish_chunk();
  EXPECT_TRUE(without.result("t").entries.empty());
  ImatrixCollector with(/*record_output=*/true);
  with.observe({WeightKind::Output, -1}, x.data(), 1, 4);
  with.finish_chunk();
  const ImportanceMatrix m = with.result("t");
  ASSERT_TRUE(m.contains("output.weight"));
  EXPECT_EQ(m.entries.at("output.weight").values, std::vector<float>(4, 4.0f));
}

// ---- Real models ----

class ImatrixModels : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    synth_ = new std::filesystem::path(testing::synth_tiny(*dir_, "synth", "96,128,64,160", 0.25f));
  }
  static void TearDownTestSuite() {
    delete synth_;
    delete dir_;
  }
  static TempDir* dir_;
  static std::filesystem::path* synth_;
};
TempDir* ImatrixModels::dir_ = nullptr;
std::filesystem::path* ImatrixModels::synth_ = nullptr;

TEST_F(ImatrixModels, Stories260kFirstLayerMatchesIndependentSums) {
  const auto checkpoint = PIQUANT_SHARED_FILE("models/stories260K/stories260K.bin");
  const auto tokenizer = PIQUANT_SHARED_FILE("models/stories260K/tok512.bin");
  const auto gguf_path = testing::convert_stories260k(*dir_, checkpoint, tokenizer, "f32");
  const auto model = LlamaModel::load(gguf_path.string());
  ASSERT_TRUE(model->vocab().add_bos);
  const auto context = make_context(*model);

  constexpr std::int64_t kChunks = 3;
  const auto tokens = some_tokens(kChunks * kCtx + 20, model->params().n_vocab);  // a tail shorter than a chunk
  const EvalChunks chunks(tokens, kCtx, 0, eval_bos_id(model->vocab()));
  ImatrixOptions options;
  options.dataset = "tokens.txt";
  options.process_output = true;  // stories260K ties its output: still no output.weight
  std::int64_t progress_calls = 0;
  options.on_chunk = [&](std::int64_t done, std::int64_t total) {
    EXPECT_EQ(done, ++progress_calls);
    EXPECT_EQ(total, kChunks);
  };
  const ImportanceMatrix m = collect_imatrix(*context, chunks, options);
  EXPECT_EQ(progress_calls, kChunks);
  EXPECT_EQ(m.chunks, kChunks);
  EXPECT_EQ(m.dataset, "tokens.txt");
  EXPECT_EQ(m.entries.size(), 7u * 5u);  // 5 layers × q, k, v, o, gate, up, down
  EXPECT_FALSE(m.contains("output.weight"));
  EXPECT_FALSE(m.contains("token_embd.weight"));
  for (const auto& [name, entry] : m.entries) EXPECT_EQ(entry.ncall, kChunks) << name;

  // Expected: RMSNorm(embedding row) · attn_norm over every token of every chunk,
  // the first token of each chunk replaced by BOS, straight from the GGUF.
  const GgufFile gguf(gguf_path.string());
  const auto bos = static_cast<std::int32_t>(gguf.get_int("tokenizer.ggml.bos_token_id"));
  const double eps = gguf.get_float("llama.attention.layer_norm_rms_epsilon", 1e-5);
  const std::vector<float> norm = gguf_row(gguf, "blk.0.attn_norm.weight", 0);
  const std::size_t E = norm.size();
  std::vector<double> sum(E, 0.0);
  for (std::int64_t c = 0; c < kChunks; ++c) {
    for (std::int64_t t = 0; t < kCtx; ++t) {
      const std::int32_t token = t == 0 ? bos : tokens[static_cast<std::size_t>(c * kCtx + t)];
      const std::vector<float> x = gguf_row(gguf, "token_embd.weight", token);
      double ms = 0;
      for (const float v : x) ms += static_cast<double>(v) * v;
      const double inv = 1.0 / std::sqrt(ms / static_cast<double>(E) + eps);
      for (std::size_t j = 0; j < E; ++j) {
        const double y = x[j] * inv * norm[j];
        sum[j] += y * y;
      }
    }
  }
  const auto& q = m.entries.at("blk.0.attn_q.weight");
  ASSERT_EQ(q.values.size(), E);
  for (std::size_t j = 0; j < E; ++j) {
    const double expected = sum[j] / static_cast<double>(kChunks * kCtx) * kChunks;
    EXPECT_NEAR(q.values[j], expected, 1e-4 * expected + 1e-7) << "column " << j;
  }
  // Q, K and V read the same input; so do gate and up.
  for (std::int64_t l = 0; l < 5; ++l) {
    const std::string blk = "blk." + std::to_string(l) + ".";
    EXPECT_EQ(m.entries.at(blk + "attn_k.weight").values, m.entries.at(blk + "attn_q.weight").values) << blk;
    EXPECT_EQ(m.entries.at(blk + "attn_v.weight").values, m.entries.at(blk + "attn_q.weight").values) << blk;
    EXPECT_EQ(m.entries.at(blk + "ffn_up.weight").values, m.entries.at(blk + "ffn_gate.weight").values) << blk;
    EXPECT_EQ(m.entries.at(blk + "ffn_down.weight").values.size(), 172u) << blk;
    EXPECT_NE(m.entries.at(blk + "ffn_up.weight").values, m.entries.at(blk + "attn_q.weight").values) << blk;
  }
}

TEST_F(ImatrixModels, EntriesFollowPerLayerMlpWidths) {
  const auto model = LlamaModel::load(synth_->string());
  const auto context = make_context(*model);
  const EvalChunks chunks(some_tokens(5 * kCtx, model->params().n_vocab), kCtx, /*max_chunks=*/2, eval_bos_id(model->vocab()));
  ImatrixOptions options;
  options.process_output = true;
  const ImportanceMatrix m = collect_imatrix(*context, chunks, options);
  EXPECT_EQ(m.chunks, 2);
  EXPECT_EQ(m.entries.size(), 7u * 4u + 1u);
  const std::size_t widths[] = {96, 128, 64, 160};
  for (std::size_t l = 0; l < 4; ++l) {
    const std::string blk = "blk." + std::to_string(l) + ".";
    EXPECT_EQ(m.entries.at(blk + "ffn_down.weight").values.size(), widths[l]) << blk;
    for (const char* n : {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up"}) {
      EXPECT_EQ(m.entries.at(blk + n + ".weight").values.size(), 256u) << blk << n;
    }
  }
  ASSERT_TRUE(m.contains("output.weight"));
  EXPECT_EQ(m.entries.at("output.weight").values.size(), 256u);
  for (const auto& [name, entry] : m.entries) {
    EXPECT_EQ(entry.ncall, 2) << name;
    EXPECT_TRUE(std::all_of(entry.values.begin(), entry.values.end(), [](float v) { return std::isfinite(v) && v >= 0; }));
    EXPECT_TRUE(std::any_of(entry.values.begin(), entry.values.end(), [](float v) { return v > 0; })) << name;
  }

  // Without --process-output the output layer is left out.
  EXPECT_FALSE(collect_imatrix(*context, chunks).contains("output.weight"));
}

TEST_F(ImatrixModels, SmallerBatchesGiveTheSameStatisticsAndCounts) {
  const auto model = LlamaModel::load(synth_->string());
  const EvalChunks chunks(some_tokens(2 * kCtx, model->params().n_vocab), kCtx, 0, eval_bos_id(model->vocab()));
  const ImportanceMatrix whole = collect_imatrix(*make_context(*model, kCtx), chunks);
  const ImportanceMatrix split = collect_imatrix(*make_context(*model, 16), chunks);  // 4 forward steps per chunk
  ASSERT_EQ(whole.entries.size(), split.entries.size());
  for (const auto& [name, entry] : whole.entries) {
    const auto& other = split.entries.at(name);
    EXPECT_EQ(other.ncall, 2) << name;  // chunks, not forward steps
    ASSERT_EQ(other.values.size(), entry.values.size()) << name;
    for (std::size_t j = 0; j < entry.values.size(); ++j) {
      EXPECT_NEAR(other.values[j], entry.values[j], 1e-3f * entry.values[j] + 1e-6f) << name << " column " << j;
    }
  }
}

TEST_F(ImatrixModels, ObservingLeavesLogitsUnchanged) {
  const auto model = LlamaModel::load(synth_->string());
  const auto context = make_context(*model);
  const auto tokens = some_tokens(40, model->params().n_vocab);
  const auto plain_span = context->eval(tokens, true);
  const std::vector<float> plain(plain_span.begin(), plain_span.end());

  ImatrixCollector collector(/*record_output=*/true);
  context->reset();
  context->set_matmul_observer(&collector);
  const auto observed_span = context->eval(tokens, true);
  const std::vector<float> observed(observed_span.begin(), observed_span.end());
  context->set_matmul_observer(nullptr);
  EXPECT_EQ(plain, observed);
  collector.finish_chunk();
  EXPECT_EQ(collector.result("x").entries.size(), 7u * 4u + 1u);
}

TEST_F(ImatrixModels, ContextTooSmallForTheChunksIsAnError) {
  const auto model = LlamaModel::load(synth_->string());
  const auto context = make_context(*model);
  const EvalChunks chunks(some_tokens(4 * kCtx, model->params().n_vocab), 2 * kCtx, 0, -1);
  EXPECT_THROW(collect_imatrix(*context, chunks), Error);
}

}  // namespace
}  // namespace piquant
