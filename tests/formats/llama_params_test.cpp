#include "formats/llama_params.h"

#include <functional>

#include "core/error.h"
#include "support/test_support.h"

namespace piquant {
namespace {

LlamaParams llama31_8b() {
  LlamaParams p;
  p.n_vocab = 128256;
  p.n_embd = 4096;
  p.n_layer = 32;
  p.n_head = 32;
  p.n_head_kv = 8;
  p.head_dim = 128;
  p.n_ff.assign(32, 14336);
  p.n_ctx_train = 131072;
  p.rms_norm_eps = 1e-5;
  p.rope_theta = 500000.0;
  p.rope_scaling = RopeScaling{"llama3", 8.0, 1.0, 4.0, 8192};
  p.bos_token_id = 128000;
  p.eos_token_ids = {128001};
  return p;
}

LlamaParams llama32_1b() {
  LlamaParams p = llama31_8b();
  p.n_embd = 2048;
  p.n_layer = 16;
  p.head_dim = 64;
  p.n_ff.assign(16, 8192);
  p.rope_scaling->factor = 32.0;
  p.tie_word_embeddings = true;
  return p;
}

LlamaParams llama2_7b() {
  LlamaParams p;
  p.n_vocab = 32000;
  p.n_embd = 4096;
  p.n_layer = 32;
  p.n_head = 32;
  p.n_head_kv = 32;
  p.head_dim = 128;
  p.n_ff.assign(32, 11008);
  p.n_ctx_train = 4096;
  p.bos_token_id = 1;
  p.eos_token_ids = {2};
  return p;
}

// Published parameter counts (the model cards / safetensors totals ÷ 2 bytes).
TEST(LlamaParams, ParameterCountsMatchPublishedModels) {
  EXPECT_EQ(llama31_8b().n_params(), 8'030'261'248);
  EXPECT_EQ(llama32_1b().n_params(), 1'235'814'400);
  EXPECT_EQ(llama2_7b().n_params(), 6'738'415'616);
}

TEST(LlamaParams, PrunedSeedShapeCountsPerLayerWidths) {
  LlamaParams p = llama31_8b();
  for (int layer = 4; layer <= 27; ++layer) p.n_ff[static_cast<std::size_t>(layer)] = 10752;
  EXPECT_FALSE(p.uniform_ff());
  EXPECT_EQ(p.n_params(), 6'973'296'640);
  EXPECT_NO_THROW(p.validate("pruned"));
}

TEST(LlamaParams, UniformFf) {
  EXPECT_TRUE(llama31_8b().uniform_ff());
  LlamaParams p = llama31_8b();
  p.n_ff.back() = 14335;
  EXPECT_FALSE(p.uniform_ff());
}

TEST(LlamaParams, PublishedShapesValidate) {
  EXPECT_NO_THROW(llama31_8b().validate("a"));
  EXPECT_NO_THROW(llama32_1b().validate("b"));
  EXPECT_NO_THROW(llama2_7b().validate("c"));
}

TEST(LlamaParams, ValidateRejectsAbsurdValues) {
  struct Case {
    const char* field;
    std::function<void(LlamaParams&)> damage;
  };
  const std::vector<Case> cases = {
      {"vocab_size", [](LlamaParams& p) { p.n_vocab = 0; }},
      {"hidden_size", [](LlamaParams& p) { p.n_embd = -4096; }},
      {"num_hidden_layers", [](LlamaParams& p) { p.n_layer = 0; }},
      {"num_attention_heads", [](LlamaParams& p) { p.n_head = 0; }},
      {"num_key_value_heads", [](LlamaParams& p) { p.n_head_kv = 5; }},
      {"head_dim", [](LlamaParams& p) { p.head_dim = 127; }},
      {"intermediate_size", [](LlamaParams& p) { p.n_ff.pop_back(); }},
      {"intermediate_size", [](LlamaParams& p) { p.n_ff[3] = 0; }},
      {"max_position_embeddings", [](LlamaParams& p) { p.n_ctx_train = 0; }},
      {"rms_norm_eps", [](LlamaParams& p) { p.rms_norm_eps = 0.0; }},
      {"rope_theta", [](LlamaParams& p) { p.rope_theta = -1.0; }},
      {"rope_scaling.rope_type", [](LlamaParams& p) { p.rope_scaling->type = "yarn"; }},
      {"rope_scaling.factor", [](LlamaParams& p) { p.rope_scaling->factor = 0.0; }},
      {"rope_scaling.high_freq_factor", [](LlamaParams& p) { p.rope_scaling->high_freq_factor = 0.5; }},
      {"bos_token_id", [](LlamaParams& p) { p.bos_token_id = 128256; }},
      {"eos_token_id", [](LlamaParams& p) { p.eos_token_ids = {200000}; }},
      {"hidden_size", [](LlamaParams& p) { p.n_embd = std::int64_t{1} << 40; }},
      {"ffn_down bias", [](LlamaParams& p) { p.ffn_down_bias.assign(31, true); }},
  };
  for (const auto& c : cases) {
    LlamaParams p = llama31_8b();
    c.damage(p);
    try {
      p.validate("my/config.json");
      ADD_FAILURE() << "no error for a bad " << c.field;
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find("my/config.json"), std::string::npos) << message;
      EXPECT_NE(message.find(c.field), std::string::npos) << message;
    }
  }
}

TEST(LlamaParams, NoRopeScalingMeansNoFactors) {
  EXPECT_TRUE(llama2_7b().rope_freq_factors().empty());
}

// Expected values computed independently with numpy 1.24 (vectorised, float64, cast
// to float32), for head_dim H, theta 500000, low 1, high 4, original context 8192:
//   inv_freq = 1 / theta ** (np.arange(0, H, 2) / H); wavelen = 2 * np.pi / inv_freq
//   smooth = (8192 / wavelen - 1) / (4 - 1)
//   f = np.where(wavelen < 8192 / 4, 1, np.where(wavelen > 8192 / 1, factor,
//                1 / ((1 - smooth) / factor + smooth))).astype(np.float32)
TEST(LlamaParams, RopeFreqFactorsMatchNumpyForLlama31) {
  const std::vector<float> expected = {
      1.f, 1.f, 1.f, 1.f, 1.f, 1.f, 1.f, 1.f, 1.f, 1.f, 1.f, 1.f, 1.f, 1.f, 1.f, 1.f,
      1.f, 1.f, 1.f, 1.f, 1.f, 1.f, 1.f, 1.f, 1.f, 1.f, 1.f, 1.f, 1.f, 1.20748389f,
      1.55341458f, 2.0263133f, 2.69452977f, 3.6842525f, 5.2573266f, 8.f, 8.f, 8.f, 8.f, 8.f,
      8.f, 8.f, 8.f, 8.f, 8.f, 8.f, 8.f, 8.f, 8.f, 8.f, 8.f, 8.f, 8.f, 8.f,
      8.f, 8.f, 8.f, 8.f, 8.f, 8.f, 8.f, 8.f, 8.f, 8.f};
  const auto factors = llama31_8b().rope_freq_factors();
  ASSERT_EQ(factors.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    EXPECT_NEAR(factors[i], expected[i], 1e-6 * expected[i]) << "pair " << i;
  }
}

TEST(LlamaParams, RopeFreqFactorsMatchNumpyForLlama32_1B) {
  // Same computation with H = 64 and factor 32.
  const std::vector<float> expected = {
      1.f, 1.f, 1.f, 1.f, 1.f, 1.f, 1.f, 1.f, 1.f, 1.f, 1.f, 1.f, 1.f, 1.f, 1.f, 1.65132928f,
      3.29226208f, 9.66672897f, 32.f, 32.f, 32.f, 32.f, 32.f, 32.f, 32.f, 32.f, 32.f, 32.f, 32.f, 32.f,
      32.f, 32.f};
  const auto factors = llama32_1b().rope_freq_factors();
  ASSERT_EQ(factors.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    EXPECT_NEAR(factors[i], expected[i], 1e-6 * expected[i]) << "pair " << i;
  }
}

TEST(LlamaParams, FfnDownBiasFlagsCountNEmbdEach) {
  LlamaParams p = llama31_8b();
  const std::int64_t without = p.n_params();
  p.ffn_down_bias.assign(32, false);
  EXPECT_EQ(p.n_params(), without);
  p.ffn_down_bias[3] = p.ffn_down_bias[31] = true;
  EXPECT_EQ(p.n_params(), without + 2 * 4096);
  EXPECT_TRUE(p.has_ffn_down_bias(3));
  EXPECT_FALSE(p.has_ffn_down_bias(4));
  EXPECT_FALSE(p.has_ffn_down_bias(32));
  EXPECT_FALSE(p.has_ffn_down_bias(-1));
  p.validate("c.json");
}

// A GGUF keeps llama3 scaling only as its factors; config.json needs the parameters back.
TEST(LlamaParams, Llama3ScalingRecoveredFromFactors) {
  for (LlamaParams p : {llama31_8b(), llama32_1b()}) {
    const std::vector<float> factors = p.rope_freq_factors();
    const RopeScaling expected = *p.rope_scaling;
    p.rope_scaling.reset();
    const auto found = llama3_scaling_from_factors(p, factors, "m.gguf");
    ASSERT_TRUE(found.has_value());
    EXPECT_EQ(found->type, "llama3");
    EXPECT_EQ(found->factor, expected.factor);
    EXPECT_EQ(found->low_freq_factor, 1.0);
    EXPECT_EQ(found->high_freq_factor, 4.0);
    EXPECT_EQ(found->original_max_position_embeddings, 8192);
  }
  // Unusual settings: some scaling that gives the same factors.
  LlamaParams p = llama31_8b();
  p.rope_scaling = RopeScaling{"llama3", 16.0, 1.0, 2.5, 4096};
  const std::vector<float> factors = p.rope_freq_factors();
  p.rope_scaling.reset();
  const auto found = llama3_scaling_from_factors(p, factors, "m.gguf");
  ASSERT_TRUE(found.has_value());
  p.rope_scaling = found;
  const std::vector<float> again = p.rope_freq_factors();
  for (std::size_t i = 0; i < factors.size(); ++i) EXPECT_NEAR(again[i], factors[i], 1e-6 * factors[i]) << i;

  p.rope_scaling.reset();
  EXPECT_FALSE(llama3_scaling_from_factors(p, std::vector<float>(64, 1.0f), "m.gguf").has_value());
  std::vector<float> odd(64, 1.0f);
  odd[3] = 5.0f;
  try {
    llama3_scaling_from_factors(p, odd, "m.gguf");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("m.gguf"), std::string::npos) << e.what();
  }
  EXPECT_THROW(llama3_scaling_from_factors(p, std::vector<float>(63, 1.0f), "m.gguf"), Error);
}

}  // namespace
}  // namespace piquant
