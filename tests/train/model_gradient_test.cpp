// Gradients of whole tiny models (TrainingPass) against central finite differences of an
// independent forward pass in double (reference_llama.h): full training on a float model,
// LoRA on a float base, LoRA on Q8_0 and Q4_K bases — with grouped-query attention,
// llama3 RoPE factors and a different MLP width per layer.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <cstring>
#include <random>

#include "checkpoint/gguf_export.h"
#include "engine/owned_model.h"
#include "support/model_fixtures.h"
#include "support/test_support.h"
#include "train/model_checkpoint.h"
#include "train/reference_llama.h"
#include "train/trainable.h"
#include "train/training_pass.h"

namespace piquant {
namespace {

using testing::ReferenceLlama;

struct Batch {
  std::vector<std::int32_t> inputs, targets;
  std::vector<float> weights;
  TrainingTokens view() const { return {inputs, targets, weights, {}}; }
};

Batch random_batch(std::int64_t T, std::uint64_t seed) {
  std::mt19937 rng(static_cast<std::uint32_t>(seed));
  Batch b;
  for (std::int64_t t = 0; t < T; ++t) {
    b.inputs.push_back(static_cast<std::int32_t>(rng() % 512));
    b.targets.push_back(static_cast<std::int32_t>(rng() % 512));
    b.weights.push_back(t == 2 ? 0.0f : 1.0f / static_cast<float>(T));  // one position without loss
  }
  return b;
}

// ∂L/∂v by central differences of the double reference, v a float the reference reads
// through `rebuild`. The steps are the floats actually reached (v ± h rounds), so the
// quotient divides by the true distance.
template <class Rebuild>
double finite_difference(float& v, const Batch& batch, const Rebuild& rebuild) {
  const float original = v;
  const float h = std::max(1e-3f, std::fabs(original) * 1e-2f);
  v = original + h;
  const double plus_at = v;
  const double plus = rebuild().loss(batch.inputs, batch.targets, batch.weights);
  v = original - h;
  const double minus_at = v;
  const double minus = rebuild().loss(batch.inputs, batch.targets, batch.weights);
  v = original;
  return (plus - minus) / (plus_at - minus_at);
}

// Compares analytic and numeric gradients at `count` sampled elements; the error bound
// is relative to the largest gradient sampled in the tensor (float arithmetic in the
// pass, a second-order truncation error of ~1e-4 relative in the differences).
struct Sampled {
  double max_abs = 0.0, max_err = 0.0;
};
template <class Rebuild>
Sampled compare(std::span<float> values, const float* grad, const std::vector<std::size_t>& at, const Batch& batch,
                const Rebuild& rebuild) {
  Sampled s;
  for (std::size_t i : at) {
    const double fd = finite_difference(values[i], batch, rebuild);
    s.max_abs = std::max(s.max_abs, std::fabs(fd));
    s.max_err = std::max(s.max_err, std::fabs(fd - static_cast<double>(grad[i])));
  }
  return s;
}

std::vector<std::size_t> sample(std::size_t n, std::size_t count, std::mt19937& rng) {
  std::vector<std::size_t> at;
  for (std::size_t i = 0; i < std::min(n, count); ++i) at.push_back(rng() % n);
  return at;
}

constexpr double kTolerance = 2e-3;  // of the largest sampled gradient

TEST(ModelGradient, FullTrainingMatchesFiniteDifferences) {
  const Vocab vocab = testing::stories260k_vocab();
  for (RopePairing pairing : {RopePairing::Interleaved, RopePairing::HalfSplit}) {
    auto model = OwnedLlamaModel::random(testing::tiny_llama_params({48, 24}, 32), vocab, pairing, 11, 0.3f);
    const Batch batch = random_batch(7, 3);
    ThreadPool pool(2);
    TrainingPass pass(*model, nullptr, pool, 8, 3);  // chunks of 3: the loss head's chunking runs
    std::map<std::pair<int, std::int64_t>, std::vector<float>> grads;
    TrainingGradients g;
    const auto slot = [&](WeightId id) {
      auto& v = grads[{static_cast<int>(id.kind), id.layer}];
      v.assign(model->weight(id).size(), 0.0f);
      return v.data();
    };
    g.token_embedding = slot({WeightKind::TokenEmbedding, -1});
    g.output_norm = slot({WeightKind::OutputNorm, -1});
    g.output = slot({WeightKind::Output, -1});
    for (std::int64_t l = 0; l < 2; ++l) {
      LayerGrads lg;
      lg.attn_norm = slot({WeightKind::AttnNorm, l});
      lg.wq = slot({WeightKind::AttnQ, l});
      lg.wk = slot({WeightKind::AttnK, l});
      lg.wv = slot({WeightKind::AttnV, l});
      lg.wo = slot({WeightKind::AttnOutput, l});
      lg.ffn_norm = slot({WeightKind::FfnNorm, l});
      lg.w_gate = slot({WeightKind::FfnGate, l});
      lg.w_up = slot({WeightKind::FfnUp, l});
      lg.w_down = slot({WeightKind::FfnDown, l});
      g.layers.push_back(lg);
    }
    const double loss = pass.forward_backward(batch.view(), {}, g);
    EXPECT_NEAR(loss, ReferenceLlama::of(*model).loss(batch.inputs, batch.targets, batch.weights), 1e-5 * loss);

    std::mt19937 rng(5);
    for (WeightId id : model->weight_ids()) {
      std::span<float> values = model->weight(id);
      std::vector<std::size_t> at;
      if (id.kind == WeightKind::TokenEmbedding) {  // rows of tokens in the sequence
        for (int i = 0; i < 6; ++i) at.push_back(static_cast<std::size_t>(batch.inputs[rng() % batch.inputs.size()]) * 32 + rng() % 32);
      } else {
        at = sample(values.size(), 6, rng);
      }
      const Sampled s = compare(values, grads[{static_cast<int>(id.kind), id.layer}].data(), at, batch,
                                [&] { return ReferenceLlama::of(*model); });
      EXPECT_GT(s.max_abs, 0.0) << gguf_tensor_name(id);
      EXPECT_LE(s.max_err, kTolerance * s.max_abs) << gguf_tensor_name(id) << " pairing " << static_cast<int>(pairing);
    }
  }
}

// A pruned model's ffn_down bias is frozen: the forward adds it (the loss is the
// reference's with the bias), no gradient goes to it, and every other gradient is that
// of the biased function. Full training and LoRA.
TEST(ModelGradient, FrozenFfnDownBiasTrainsEverythingElse) {
  LlamaParams params = testing::tiny_llama_params({48, 24}, 32);
  params.ffn_down_bias = {true, false};
  auto model = OwnedLlamaModel::random(params, testing::stories260k_vocab(), RopePairing::Interleaved, 17, 0.3f);
  std::mt19937 init(3);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  for (float& v : model->weight({WeightKind::FfnDownBias, 0})) v = normal(init);

  auto trainable = Trainable::full(*model);
  for (const TrainableTensor& t : trainable->tensors()) EXPECT_EQ(t.name.find("ffn_down.bias"), std::string::npos) << t.name;
  EXPECT_EQ(trainable->parameter_count(), model->params().n_params() - 32);

  const Batch batch = random_batch(6, 4);
  ThreadPool pool(2);
  TrainingPass pass(*model, nullptr, pool, 8, 3);
  double without_bias = 0.0;
  {
    ReferenceLlama plain = ReferenceLlama::of(*model);
    plain.w.erase({static_cast<int>(WeightKind::FfnDownBias), 0});
    without_bias = plain.loss(batch.inputs, batch.targets, batch.weights);
  }
  const double loss = pass.forward_backward(batch.view(), {}, trainable->gradients());
  const double reference = ReferenceLlama::of(*model).loss(batch.inputs, batch.targets, batch.weights);
  EXPECT_NEAR(loss, reference, 1e-5 * loss);
  EXPECT_GT(std::fabs(reference - without_bias), 1e-3 * reference) << "the bias must matter for this test to mean something";

  std::mt19937 rng(6);
  for (const TrainableTensor& t : trainable->tensors()) {
    const std::vector<std::size_t> at = t.name == "token_embd.weight"
                                            ? std::vector<std::size_t>{static_cast<std::size_t>(batch.inputs[1]) * 32 + 5}
                                            : sample(t.value.size(), 3, rng);
    const Sampled s = compare(t.value, t.grad.data(), at, batch, [&] { return ReferenceLlama::of(*model); });
    EXPECT_LE(s.max_err, kTolerance * std::max(s.max_abs, 1e-3)) << t.name;
  }
}

// An adapter with random A and B (B = 0 would leave dA = 0) on every target.
LoraAdapter random_adapter(const LlamaModel& model, std::int64_t rank, float alpha, std::uint64_t seed) {
  LoraAdapter lora(rank, alpha, model.rope_pairing());
  std::mt19937 rng(static_cast<std::uint32_t>(seed));
  std::normal_distribution<float> normal(0.0f, 0.2f);
  for (std::int64_t l = 0; l < model.params().n_layer; ++l) {
    for (WeightKind k : {WeightKind::AttnQ, WeightKind::AttnK, WeightKind::AttnV, WeightKind::AttnOutput, WeightKind::FfnGate,
                         WeightKind::FfnUp, WeightKind::FfnDown}) {
      const MatrixView& w = model_matrix(model, {k, l});
      LoraMatrix& m = lora.add({k, l}, w.rows, w.cols);
      for (float& v : m.a) v = normal(rng);
      for (float& v : m.b) v = normal(rng);
    }
  }
  return lora;
}

LoraAdapter zero_like(const LoraAdapter& lora) {
  LoraAdapter g(lora.rank(), lora.alpha(), lora.layout());
  for (WeightId id : lora.ids()) g.add(id, lora.find(id)->rows, lora.find(id)->cols);
  return g;
}

void check_lora_gradients(const LlamaModel& model, std::int64_t T, double tolerance, const LoraDropout& dropout = {}) {
  LoraAdapter lora = random_adapter(model, 4, 8.0f, 21);
  LoraAdapter grads = zero_like(lora);
  Batch batch = random_batch(T, 9);
  ThreadPool pool(2);
  TrainingPass pass(model, &lora, pool, T, 2);  // loss chunks of 2: the output head's token offsets
  pass.set_lora_dropout(dropout.p);
  TrainingGradients g;
  g.lora = &grads;
  TrainingTokens tokens = batch.view();
  tokens.dropout_seed = dropout.seed;
  const double loss = pass.forward_backward(tokens, {}, g);
  EXPECT_NEAR(loss, ReferenceLlama::of(model, &lora, dropout).loss(batch.inputs, batch.targets, batch.weights), 1e-4 * loss);
  if (dropout.p > 0.0f) {  // the dropout does something: the loss is not the undropped one
    EXPECT_GT(std::fabs(loss - ReferenceLlama::of(model, &lora).loss(batch.inputs, batch.targets, batch.weights)), 1e-3 * loss);
  }
  std::mt19937 rng(8);
  for (WeightId id : lora.ids()) {
    LoraMatrix& m = *lora.find(id);
    const LoraMatrix& d = *grads.find(id);
    const auto rebuild = [&] { return ReferenceLlama::of(model, &lora, dropout); };
    for (auto [values, grad, name] : {std::tuple{std::span<float>(m.a), d.a.data(), "A"}, std::tuple{std::span<float>(m.b), d.b.data(), "B"}}) {
      const Sampled s = compare(values, grad, sample(values.size(), 4, rng), batch, rebuild);
      EXPECT_GT(s.max_abs, 0.0) << gguf_tensor_name(id) << " " << name;
      EXPECT_LE(s.max_err, tolerance * s.max_abs) << gguf_tensor_name(id) << " " << name;
    }
  }
}

TEST(ModelGradient, LoraOnFloatBaseMatchesFiniteDifferences) {
  auto model = OwnedLlamaModel::random(testing::tiny_llama_params({40, 24}, 32), testing::stories260k_vocab(), RopePairing::HalfSplit, 12, 0.3f);
  check_lora_gradients(*model, 6, kTolerance);
}

TEST(ModelGradient, LoraOverABaseWithFfnDownBiasesMatchesFiniteDifferences) {
  LlamaParams params = testing::tiny_llama_params({40, 24}, 32);
  params.ffn_down_bias = {true, true};
  auto model = OwnedLlamaModel::random(params, testing::stories260k_vocab(), RopePairing::HalfSplit, 18, 0.3f);
  std::mt19937 init(4);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  for (std::int64_t l = 0; l < 2; ++l) {
    for (float& v : model->weight({WeightKind::FfnDownBias, l})) v = normal(init);
  }
  check_lora_gradients(*model, 6, kTolerance);
}

// Dropout on the adapter's inputs: the reference applies the adapter apart, position by
// position, with the same mask; the gradients must be those of the dropped function.
TEST(ModelGradient, LoraWithDropoutMatchesFiniteDifferences) {
  auto model = OwnedLlamaModel::random(testing::tiny_llama_params({40, 24}, 32), testing::stories260k_vocab(), RopePairing::Interleaved, 15, 0.3f);
  check_lora_gradients(*model, 6, kTolerance, {0.3f, 77});
}

// A quantized base: the same model exported as Q8_0 / Q4_K and loaded from the file.
TEST(ModelGradient, LoraOnQuantizedBaseMatchesFiniteDifferences) {
  const testing::TempDir dir;
  auto owned = OwnedLlamaModel::random(testing::tiny_llama_params({512}, 256), testing::stories260k_vocab(), RopePairing::Interleaved, 13, 0.08f);
  for (GgmlType type : {GgmlType::Q8_0, GgmlType::Q4_K}) {
    const std::string path = (dir.path() / (std::string(ggml_type_name(type)) + ".gguf")).string();
    GgufExportOptions options;
    options.type_for = [type](const CheckpointTensor& t) { return t.shape.size() == 2 ? type : GgmlType::F32; };
    options.file_type = type == GgmlType::Q8_0 ? LlamaFileType::MostlyQ8_0 : LlamaFileType::MostlyQ4_K_M;
    export_gguf(*checkpoint_of(*owned, "tiny"), path, options);
    auto model = LlamaModel::load(path);
    ASSERT_EQ(model->layer(0).wq.type, type);
    check_lora_gradients(*model, 5, kTolerance);
  }
}

// Same inputs, weights and threads: bit-identical gradients; and the thread count
// changes nothing either.
TEST(ModelGradient, BitIdenticalForAnyThreadCount) {
  auto model = OwnedLlamaModel::random(testing::tiny_llama_params({48, 24}, 32), testing::stories260k_vocab(), RopePairing::Interleaved, 14, 0.3f);
  LoraAdapter lora = random_adapter(*model, 4, 8.0f, 22);
  const Batch batch = random_batch(37, 4);  // attention and MLP steps of odd sizes
  std::vector<std::vector<float>> runs;
  for (unsigned threads : {1u, 2u, 3u, 2u}) {
    ThreadPool pool(threads);
    TrainingPass pass(*model, &lora, pool, 40, 5);
    LoraAdapter grads = zero_like(lora);
    std::vector<float> d_out(model->weight({WeightKind::Output, -1}).size(), 0.0f);
    TrainingGradients g;
    g.lora = &grads;
    g.output = d_out.data();
    pass.forward_backward(batch.view(), {}, g);
    std::vector<float> all = d_out;
    for (WeightId id : grads.ids()) {
      all.insert(all.end(), grads.find(id)->a.begin(), grads.find(id)->a.end());
      all.insert(all.end(), grads.find(id)->b.begin(), grads.find(id)->b.end());
    }
    runs.push_back(all);
  }
  for (std::size_t r = 1; r < runs.size(); ++r) {
    ASSERT_EQ(0, std::memcmp(runs[0].data(), runs[r].data(), runs[0].size() * sizeof(float))) << "run " << r;
  }
}

// Keeping every layer's activations instead of recomputing them changes no bit of the
// loss or the gradients (full training and LoRA with dropout).
TEST(ModelGradient, KeptActivationsGiveTheRecomputedGradientsBitForBit) {
  auto model = OwnedLlamaModel::random(testing::tiny_llama_params({48, 24}, 32), testing::stories260k_vocab(), RopePairing::Interleaved, 16, 0.3f);
  LoraAdapter lora = random_adapter(*model, 4, 8.0f, 23);
  const Batch batch = random_batch(150, 6);  // MLP steps of 128 + 22 tokens
  ThreadPool pool(2);
  std::vector<std::vector<float>> runs;
  std::vector<double> losses;
  for (bool keep : {false, true}) {
    TrainingPass pass(*model, &lora, pool, 150, 7, keep);
    pass.set_lora_dropout(0.2f);
    LoraAdapter grads = zero_like(lora);
    std::vector<std::vector<float>> full(model->weight_ids().size());
    TrainingGradients g;
    g.lora = &grads;
    g.layers.resize(2);
    for (std::size_t i = 0; i < full.size(); ++i) {
      const WeightId id = model->weight_ids()[i];
      full[i].assign(model->weight(id).size(), 0.0f);
      float* d = full[i].data();
      if (id.kind == WeightKind::TokenEmbedding) g.token_embedding = d;
      if (id.kind == WeightKind::OutputNorm) g.output_norm = d;
      if (id.kind == WeightKind::Output) g.output = d;
      if (id.layer >= 0) {
        LayerGrads& lg = g.layers[static_cast<std::size_t>(id.layer)];
        float** slot[] = {&lg.attn_norm, &lg.wq, &lg.wk, &lg.wv, &lg.wo, &lg.ffn_norm, &lg.w_gate, &lg.w_up, &lg.w_down};
        const WeightKind kinds[] = {WeightKind::AttnNorm, WeightKind::AttnQ, WeightKind::AttnK, WeightKind::AttnV, WeightKind::AttnOutput,
                                    WeightKind::FfnNorm, WeightKind::FfnGate, WeightKind::FfnUp, WeightKind::FfnDown};
        for (int k = 0; k < 9; ++k) {
          if (kinds[k] == id.kind) *slot[k] = d;
        }
      }
    }
    TrainingTokens tokens = batch.view();
    tokens.dropout_seed = 99;
    losses.push_back(pass.forward_backward(tokens, {}, g));
    std::vector<float> all;
    for (const auto& v : full) all.insert(all.end(), v.begin(), v.end());
    for (WeightId id : grads.ids()) {
      all.insert(all.end(), grads.find(id)->a.begin(), grads.find(id)->a.end());
      all.insert(all.end(), grads.find(id)->b.begin(), grads.find(id)->b.end());
    }
    runs.push_back(all);
    EXPECT_EQ(pass.plan().kept > 0, keep);
  }
  EXPECT_EQ(losses[0], losses[1]);
  ASSERT_EQ(runs[0].size(), runs[1].size());
  EXPECT_EQ(0, std::memcmp(runs[0].data(), runs[1].data(), runs[0].size() * sizeof(float)));
}

}  // namespace
}  // namespace piquant
