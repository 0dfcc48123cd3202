#include "formats/hf_config.h"

#include <functional>

#include "core/error.h"
#include "support/test_support.h"

namespace piquant {
namespace {

using nlohmann::json;
using piquant::testing::TempDir;

// The config.json files as Meta published them on the Hugging Face hub.
constexpr const char* kLlama2_7b = R"({
  "_name_or_path": "meta-llama/Llama-2-7b-hf",
  "architectures": ["LlamaForCausalLM"],
  "bos_token_id": 1,
  "eos_token_id": 2,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 11008,
  "max_position_embeddings": 4096,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 32,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": null,
  "tie_word_embeddings": false,
  "torch_dtype": "float16",
  "transformers_version": "4.31.0.dev0",
  "use_cache": true,
  "vocab_size": 32000
})";

constexpr const char* kLlama3_8b = R"({
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 128000,
  "eos_token_id": 128001,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 8192,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": null,
  "rope_theta": 500000.0,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.40.0.dev0",
  "use_cache": true,
  "vocab_size": 128256
})";

constexpr const char* kLlama31_8b = R"({
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 128000,
  "eos_token_id": 128001,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 131072,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3"
  },
  "rope_theta": 500000.0,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.43.0.dev0",
  "use_cache": true,
  "vocab_size": 128256
})";

constexpr const char* kLlama32_1b = R"({
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 128000,
  "eos_token_id": 128001,
  "head_dim": 64,
  "hidden_act": "silu",
  "hidden_size": 2048,
  "initializer_range": 0.02,
  "intermediate_size": 8192,
  "max_position_embeddings": 131072,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 16,
  "num_key_value_heads": 8,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {
    "factor": 32.0,
    "high_freq_factor": 4.0,
    "low_freq_factor": 1.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3"
  },
  "rope_theta": 500000.0,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.45.0.dev0",
  "use_cache": true,
  "vocab_size": 128256
})";

LlamaParams parse(const char* text) { return parse_hf_config(json::parse(text), "config.json"); }

TEST(HfConfig, Llama2_7b) {
  const LlamaParams p = parse(kLlama2_7b);
  EXPECT_EQ(p.n_embd, 4096);
  EXPECT_EQ(p.n_layer, 32);
  EXPECT_EQ(p.n_head, 32);
  EXPECT_EQ(p.n_head_kv, 32);
  EXPECT_EQ(p.head_dim, 128);
  EXPECT_EQ(p.n_ff, std::vector<std::int64_t>(32, 11008));
  EXPECT_EQ(p.n_vocab, 32000);
  EXPECT_EQ(p.n_ctx_train, 4096);
  EXPECT_DOUBLE_EQ(p.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(p.rope_theta, 10000.0);  // absent: the default
  EXPECT_FALSE(p.rope_scaling.has_value());
  EXPECT_FALSE(p.tie_word_embeddings);
  EXPECT_EQ(p.bos_token_id, 1);
  EXPECT_EQ(p.eos_token_ids, std::vector<std::int64_t>{2});
  EXPECT_EQ(p.n_params(), 6'738'415'616);
}

TEST(HfConfig, Llama3_8b) {
  const LlamaParams p = parse(kLlama3_8b);
  EXPECT_EQ(p.n_head_kv, 8);
  EXPECT_EQ(p.n_ff, std::vector<std::int64_t>(32, 14336));
  EXPECT_EQ(p.n_vocab, 128256);
  EXPECT_EQ(p.n_ctx_train, 8192);
  EXPECT_DOUBLE_EQ(p.rope_theta, 500000.0);
  EXPECT_FALSE(p.rope_scaling.has_value());
  EXPECT_EQ(p.bos_token_id, 128000);
  EXPECT_EQ(p.eos_token_ids, std::vector<std::int64_t>{128001});
  EXPECT_EQ(p.n_params(), 8'030'261'248);
}

TEST(HfConfig, Llama31_8b) {
  const LlamaParams p = parse(kLlama31_8b);
  EXPECT_EQ(p.n_ctx_train, 131072);
  ASSERT_TRUE(p.rope_scaling.has_value());
  EXPECT_EQ(p.rope_scaling->type, "llama3");
  EXPECT_DOUBLE_EQ(p.rope_scaling->factor, 8.0);
  EXPECT_DOUBLE_EQ(p.rope_scaling->low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(p.rope_scaling->high_freq_factor, 4.0);
  EXPECT_EQ(p.rope_scaling->original_max_position_embeddings, 8192);
  EXPECT_EQ(p.n_params(), 8'030'261'248);
  EXPECT_EQ(p.rope_freq_factors().size(), 64u);
}

TEST(HfConfig, Llama32_1b) {
  const LlamaParams p = parse(kLlama32_1b);
  EXPECT_EQ(p.n_embd, 2048);
  EXPECT_EQ(p.n_layer, 16);
  EXPECT_EQ(p.n_head, 32);
  EXPECT_EQ(p.n_head_kv, 8);
  EXPECT_EQ(p.head_dim, 64);
  EXPECT_EQ(p.n_ff, std::vector<std::int64_t>(16, 8192));
  EXPECT_TRUE(p.tie_word_embeddings);
  ASSERT_TRUE(p.rope_scaling.has_value());
  EXPECT_DOUBLE_EQ(p.rope_scaling->factor, 32.0);
  EXPECT_EQ(p.n_params(), 1'235'814'400);
}

TEST(HfConfig, InstructEosListAndOldRopeTypeKey) {
  json config = json::parse(kLlama31_8b);
  config["eos_token_id"] = {128001, 128008, 128009};  // as in Llama-3.1-8B-Instruct
  config["rope_scaling"].erase("rope_type");
  config["rope_scaling"]["type"] = "llama3";
  const LlamaParams p = parse_hf_config(config, "config.json");
  EXPECT_EQ(p.eos_token_ids, (std::vector<std::int64_t>{128001, 128008, 128009}));
  ASSERT_TRUE(p.rope_scaling.has_value());
}

TEST(HfConfig, PerLayerIntermediateSize) {
  json config = json::parse(kLlama31_8b);
  std::vector<std::int64_t> widths(32, 14336);
  for (int layer = 4; layer <= 27; ++layer) widths[static_cast<std::size_t>(layer)] = 10752;
  config["intermediate_size"] = widths;
  const LlamaParams p = parse_hf_config(config, "config.json");
  EXPECT_EQ(p.n_ff, widths);
  EXPECT_EQ(p.n_params(), 6'973'296'640);
}

TEST(HfConfig, JsonRoundTrip) {
  for (const char* text : {kLlama2_7b, kLlama3_8b, kLlama31_8b, kLlama32_1b}) {
    const LlamaParams p = parse(text);
    const json out = hf_config_to_json(p);
    EXPECT_EQ(out["architectures"], json::array({"LlamaForCausalLM"}));
    EXPECT_EQ(out["model_type"], "llama");
    EXPECT_EQ(out["torch_dtype"], "bfloat16");
    EXPECT_EQ(out["hidden_act"], "silu");
    EXPECT_EQ(out["attention_bias"], false);
    EXPECT_EQ(out["mlp_bias"], false);
    EXPECT_TRUE(out["intermediate_size"].is_number_integer());
    // Every field the published config states comes back with the same value.
    const json original = json::parse(text);
    for (const char* key : {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                            "num_key_value_heads", "vocab_size", "max_position_embeddings", "bos_token_id",
                            "eos_token_id", "tie_word_embeddings", "rms_norm_eps", "rope_scaling"}) {
      EXPECT_EQ(out[key], original[key]) << key;
    }
    // And parsing what we wrote gives the same params.
    const LlamaParams back = parse_hf_config(json::parse(out.dump()), "out.json");
    EXPECT_EQ(hf_config_to_json(back), out);
    EXPECT_EQ(back.n_params(), p.n_params());
  }
}

TEST(HfConfig, JsonRoundTripPerLayerWidths) {
  json config = json::parse(kLlama32_1b);
  std::vector<std::int64_t> widths(16, 8192);
  widths[7] = 4096;
  config["intermediate_size"] = widths;
  const LlamaParams p = parse_hf_config(config, "config.json");
  const json out = hf_config_to_json(p);
  EXPECT_EQ(out["intermediate_size"], json(widths));
  EXPECT_EQ(parse_hf_config(out, "out.json").n_ff, widths);
}

TEST(HfConfig, LoadFromFile) {
  TempDir dir;
  testing::write_file(dir / "config.json", kLlama32_1b);
  EXPECT_EQ(load_hf_config((dir / "config.json").string()).n_layer, 16);

  testing::write_file(dir / "broken.json", "{\"hidden_size\": ");
  try {
    load_hf_config((dir / "broken.json").string());
    ADD_FAILURE() << "no error";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("broken.json"), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_hf_config((dir / "missing.json").string()), Error);
}

TEST(HfConfig, ErrorsNameFileAndField) {
  struct Case {
    const char* field;  // expected in the message
    std::function<void(json&)> damage;
  };
  const std::vector<Case> cases = {
      {"model_type", [](json& c) { c["model_type"] = "mistral"; }},
      {"model_type", [](json& c) {
         c.erase("model_type");
         c["architectures"] = {"GPT2LMHeadModel"};
       }},
      {"hidden_size", [](json& c) { c.erase("hidden_size"); }},
      {"hidden_size", [](json& c) { c["hidden_size"] = "4096"; }},
      {"hidden_size", [](json& c) { c["hidden_size"] = 4096.5; }},
      {"num_hidden_layers", [](json& c) { c.erase("num_hidden_layers"); }},
      {"num_attention_heads", [](json& c) { c["num_attention_heads"] = true; }},
      {"num_key_value_heads", [](json& c) { c["num_key_value_heads"] = 7; }},
      {"vocab_size", [](json& c) { c.erase("vocab_size"); }},
      {"intermediate_size", [](json& c) { c.erase("intermediate_size"); }},
      {"intermediate_size", [](json& c) { c["intermediate_size"] = {14336, 14336}; }},
      {"intermediate_size", [](json& c) { c["intermediate_size"] = json::array({json::array({1})}); }},
      {"rms_norm_eps", [](json& c) { c["rms_norm_eps"] = "1e-5"; }},
      {"rope_theta", [](json& c) { c["rope_theta"] = -5; }},
      {"rope_scaling", [](json& c) { c["rope_scaling"] = 8; }},
      {"rope_scaling.rope_type", [](json& c) { c["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}}; }},
      {"rope_scaling.rope_type", [](json& c) { c["rope_scaling"]["rope_type"] = "yarn"; }},
      {"rope_scaling.factor", [](json& c) { c["rope_scaling"].erase("factor"); }},
      {"rope_scaling.original_max_position_embeddings",
       [](json& c) { c["rope_scaling"]["original_max_position_embeddings"] = 8192.5; }},
      {"tie_word_embeddings", [](json& c) { c["tie_word_embeddings"] = 1; }},
      {"eos_token_id", [](json& c) { c["eos_token_id"] = "</s>"; }},
      {"eos_token_id", [](json& c) { c["eos_token_id"] = {128001, -3}; }},
      {"bos_token_id", [](json& c) { c["bos_token_id"] = 999999; }},
      {"hidden_act", [](json& c) { c["hidden_act"] = "gelu"; }},
      {"attention_bias", [](json& c) { c["attention_bias"] = true; }},
      {"head_dim", [](json& c) { c["head_dim"] = -64; }},
  };
  for (const auto& c : cases) {
    json config = json::parse(kLlama31_8b);
    c.damage(config);
    try {
      parse_hf_config(config, "models/x/config.json");
      ADD_FAILURE() << "no error for a bad " << c.field << ": " << config.dump();
    } catch (const FormatError& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find("models/x/config.json"), std::string::npos) << message;
      EXPECT_NE(message.find(c.field), std::string::npos) << message;
    }
  }
  EXPECT_THROW(parse_hf_config(json::array(), "a.json"), FormatError);
}

TEST(HfConfig, UnsupportedRopeTypeSaysSo) {
  json config = json::parse(kLlama31_8b);
  config["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}};
  try {
    parse_hf_config(config, "c.json");
    FAIL() << "no error";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("not supported"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("dynamic"), std::string::npos) << e.what();
  }
}

TEST(HfConfig, DefaultsWhenOptionalFieldsAreAbsent) {
  json config = json::parse(kLlama2_7b);
  config.erase("num_key_value_heads");
  config.erase("tie_word_embeddings");
  config.erase("rope_scaling");
  config["eos_token_id"] = nullptr;
  const LlamaParams p = parse_hf_config(config, "c.json");
  EXPECT_EQ(p.n_head_kv, 32);
  EXPECT_FALSE(p.tie_word_embeddings);
  EXPECT_TRUE(p.eos_token_ids.empty());
  EXPECT_FALSE(hf_config_to_json(p).contains("eos_token_id"));
}

// Nvidia's DeciLM layout (Llama-3.1-Nemotron-51B's config.json, cut to 4 layers): the
// widths and KV heads come from block_configs.
constexpr const char* kNemotronNas = R"({
  "architectures": ["DeciLMForCausalLM"],
  "attention_bias": false,
  "block_configs": [
    {"attention": {"n_heads_in_group": 8, "no_op": false, "replace_with_linear": false},
     "ffn": {"ffn_mult": 5.25, "no_op": false, "replace_with_linear": false}},
    {"attention": {"n_heads_in_group": 8, "no_op": false, "replace_with_linear": false},
     "ffn": {"ffn_mult": 2.625, "no_op": false, "replace_with_linear": false}},
    {"attention": {"n_heads_in_group": 8, "no_op": false, "replace_with_linear": false, "sparsify": null},
     "ffn": {"ffn_mult": 1.3125, "no_op": false, "replace_with_linear": false}},
    {"attention": {"n_heads_in_group": 8, "no_op": false, "replace_with_linear": false},
     "ffn": {"ffn_mult": 3.5, "no_op": false, "replace_with_linear": false}}
  ],
  "bos_token_id": 128000,
  "eos_token_id": [128001, 128008, 128009],
  "hidden_act": "silu",
  "hidden_size": 8192,
  "intermediate_size": null,
  "max_position_embeddings": 131072,
  "mlp_bias": false,
  "model_type": "nemotron-nas",
  "num_attention_heads": 64,
  "num_hidden_layers": 4,
  "num_key_value_heads": null,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "vocab_size": 128256
})";

TEST(HfConfig, DeciLmBlockConfigs) {
  const LlamaParams p = parse(kNemotronNas);
  // int(2 · M · 8192 / 3) rounded up to a multiple of 256, computed by hand:
  // 5.25 → 28672, 2.625 → 14336, 1.3125 → 7168, 3.5 → 19114.67 → 19114 → 19200.
  EXPECT_EQ(p.n_ff, (std::vector<std::int64_t>{28672, 14336, 7168, 19200}));
  EXPECT_EQ(p.n_head, 64);
  EXPECT_EQ(p.n_head_kv, 8);
  EXPECT_EQ(p.head_dim, 128);
  EXPECT_EQ(p.n_embd, 8192);
  ASSERT_TRUE(p.rope_scaling.has_value());
  EXPECT_EQ(p.eos_token_ids.size(), 3u);
  EXPECT_TRUE(p.ffn_down_bias.empty());
  // Without model_type, the class name is enough.
  json config = json::parse(kNemotronNas);
  config.erase("model_type");
  EXPECT_EQ(parse_hf_config(config, "c.json").n_ff, p.n_ff);
}

TEST(HfConfig, DeciLmIntermediateSizeFormula) {
  // Python: int(2 * ffn_mult * n_embd / 3), then up to a multiple of 256.
  EXPECT_EQ(decilm_intermediate_size(3.5, 4096), 9728);    // 9557.33 → 9557 → 9728
  EXPECT_EQ(decilm_intermediate_size(3.9375, 4096), 10752);  // exactly 10752
  EXPECT_EQ(decilm_intermediate_size(1.5, 256), 256);
  EXPECT_EQ(decilm_intermediate_size(0.001, 256), 0);       // int(0.17) = 0, already a multiple of 256
}

TEST(HfConfig, DeciLmFfnMultGivesEveryMultipleOf256Exactly) {
  for (const std::int64_t n_embd : {256, 576, 2048, 3072, 4096, 5120, 8192}) {
    for (std::int64_t width = 256; width <= 8 * n_embd; width += 256) {
      const double mult = decilm_ffn_mult(width, n_embd);
      // What a reader sees after JSON: the same double, and the formula gives the width.
      const double read = json::parse(json(mult).dump()).get<double>();
      EXPECT_EQ(read, mult);
      ASSERT_EQ(decilm_intermediate_size(read, n_embd), width) << n_embd << " " << width << " " << json(mult).dump();
    }
  }
  EXPECT_EQ(decilm_ffn_mult(10752, 4096), 3.9375);
  EXPECT_EQ(decilm_ffn_mult(14336, 4096), 5.25);
  EXPECT_THROW(decilm_ffn_mult(10000, 4096), Error);
  EXPECT_THROW(decilm_ffn_mult(0, 4096), Error);
}

TEST(HfConfig, DeciLmJsonRoundTrip) {
  LlamaParams p = parse(kLlama31_8b);
  for (std::size_t l = 0; l < p.n_ff.size(); ++l) p.n_ff[l] = 256 * static_cast<std::int64_t>(8 + 5 * l);
  const json out = decilm_config_to_json(p, "out");
  EXPECT_EQ(out["architectures"], json::array({"DeciLMForCausalLM"}));
  EXPECT_EQ(out["model_type"], "nemotron-nas");
  EXPECT_TRUE(out["intermediate_size"].is_null());
  EXPECT_TRUE(out["num_key_value_heads"].is_null());
  ASSERT_EQ(out["block_configs"].size(), 32u);
  EXPECT_EQ(out["block_configs"][5]["attention"]["n_heads_in_group"], 4);
  const LlamaParams back = parse_hf_config(json::parse(out.dump()), "out.json");
  EXPECT_EQ(back.n_ff, p.n_ff);
  EXPECT_EQ(back.n_head_kv, p.n_head_kv);
  EXPECT_EQ(back.n_params(), p.n_params());
  EXPECT_EQ(hf_config_to_json(back), hf_config_to_json(p));
}

TEST(HfConfig, DeciLmWidthNotAMultipleOf256) {
  LlamaParams p = parse(kLlama31_8b);
  p.n_ff[7] = 10000;
  try {
    decilm_config_to_json(p, "models/out");
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("models/out"), std::string::npos) << message;
    EXPECT_NE(message.find("layer 7"), std::string::npos) << message;
    EXPECT_NE(message.find("multiple of 256"), std::string::npos) << message;
  }
}

TEST(HfConfig, DeciLmErrorsNameFileAndBlock) {
  struct Case {
    const char* field;
    std::function<void(json&)> damage;
  };
  const std::vector<Case> cases = {
      {"block_configs", [](json& c) { c.erase("block_configs"); }},
      {"block_configs", [](json& c) { c["block_configs"] = 3; }},
      {"block_configs", [](json& c) { c["block_configs"].erase(1); }},
      {"block_configs[1]", [](json& c) { c["block_configs"][1] = "block"; }},
      {"block_configs[2].attention", [](json& c) { c["block_configs"][2].erase("attention"); }},
      {"block_configs[2].ffn", [](json& c) { c["block_configs"][2]["ffn"] = json::array(); }},
      {"block_configs[0].attention.no_op", [](json& c) { c["block_configs"][0]["attention"]["no_op"] = true; }},
      {"block_configs[3].ffn.no_op", [](json& c) { c["block_configs"][3]["ffn"]["no_op"] = true; }},
      {"block_configs[1].attention.replace_with_linear",
       [](json& c) { c["block_configs"][1]["attention"]["replace_with_linear"] = true; }},
      {"block_configs[1].ffn.replace_with_linear", [](json& c) { c["block_configs"][1]["ffn"]["replace_with_linear"] = true; }},
      {"block_configs[2].attention.n_heads_in_group",
       [](json& c) { c["block_configs"][2]["attention"]["n_heads_in_group"] = 4; }},  // varies
      {"block_configs[0].attention.n_heads_in_group",
       [](json& c) { c["block_configs"][0]["attention"]["n_heads_in_group"] = 7; }},  // does not divide 64
      {"block_configs[0].attention.n_heads_in_group", [](json& c) { c["block_configs"][0]["attention"].erase("n_heads_in_group"); }},
      {"block_configs[3].ffn.ffn_mult", [](json& c) { c["block_configs"][3]["ffn"]["ffn_mult"] = "3.5"; }},
      {"block_configs[3].ffn.ffn_mult", [](json& c) { c["block_configs"][3]["ffn"]["ffn_mult"] = -1; }},
      {"block_configs[3].ffn.ffn_mult", [](json& c) { c["block_configs"][3]["ffn"].erase("ffn_mult"); }},
      {"block_configs[3].ffn.ffn_mult", [](json& c) { c["block_configs"][3]["ffn"]["ffn_mult"] = 1e-5; }},  // width 0
      {"block_configs[3].ffn.gated", [](json& c) { c["block_configs"][3]["ffn"]["gated"] = false; }},
      {"num_key_value_heads", [](json& c) { c["num_key_value_heads"] = 16; }},
      {"model_type", [](json& c) { c["model_type"] = "deci"; }},
  };
  for (const auto& c : cases) {
    json config = json::parse(kNemotronNas);
    c.damage(config);
    try {
      parse_hf_config(config, "models/x/config.json");
      ADD_FAILURE() << "no error for a bad " << c.field << ": " << config.dump();
    } catch (const FormatError& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find("models/x/config.json: " + std::string(c.field)), std::string::npos) << message;
    }
  }
}

}  // namespace
}  // namespace piquant
