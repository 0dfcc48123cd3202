// export_hf and the ffn_down bias through every format: GGUF (llama / deci) <-> Hugging
// Face (LlamaForCausalLM / DeciLM) round trips keep every tensor, and the readers
// reject a damaged bias or block_configs naming the file and the place.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include <nlohmann/json.hpp>

#include "checkpoint/checkpoint.h"
#include "checkpoint/gguf_checkpoint.h"
#include "checkpoint/gguf_export.h"
#include "checkpoint/hf_checkpoint.h"
#include "checkpoint/hf_export.h"
#include "core/error.h"
#include "core/half.h"
#include "formats/gguf.h"
#include "formats/hf_config.h"
#include "formats/safetensors.h"
#include "quant/dequantize.h"
#include "support/model_fixtures.h"

namespace piquant {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::random_values;
using testing::TempDir;
using testing::with_ffn_down_bias;
using testing::write_tiny_hf;

std::vector<float> all_rows(const Checkpoint& c, const CheckpointTensor& t) {
  std::vector<float> out(static_cast<std::size_t>(t.n_elements()));
  c.read_rows(t, 0, t.n_rows(), out.data());
  return out;
}

// Every tensor of `b` is in `a` with the same name, shape and values, and the other way round.
void expect_same_tensors(const Checkpoint& a, const Checkpoint& b) {
  ASSERT_EQ(a.tensors().size(), b.tensors().size());
  for (const CheckpointTensor& t : a.tensors()) {
    const CheckpointTensor* u = b.find(t.name);
    ASSERT_NE(u, nullptr) << t.name;
    EXPECT_EQ(u->shape, t.shape) << t.name;
    const std::vector<float> x = all_rows(a, t), y = all_rows(b, *u);
    ASSERT_EQ(x.size(), y.size()) << t.name;
    EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size() * sizeof(float)), 0) << t.name;
  }
}

json read_json(const fs::path& path) {
  std::ifstream in(path);
  return json::parse(in);
}

// A tiny model with per-layer widths (multiples of 256) and ffn_down biases on layers 1 and 3, as an F32 GGUF.
fs::path biased_deci_gguf(const TempDir& dir) {
  const auto hf = write_tiny_hf(dir, "src", "256,512,768,256", 0.1f);
  auto biased = with_ffn_down_bias(open_checkpoint(hf.string()), {{1, random_values(256, 0.5f, 1)}, {3, random_values(256, 0.5f, 3)}});
  GgufExportOptions options;
  options.type = GgmlType::F32;
  const auto gguf = dir / "deci.gguf";
  export_gguf(*biased, gguf.string(), options);
  return gguf;
}

TEST(FfnDownBias, GgufWritesAndReadsTheBias) {
  TempDir dir;
  const auto path = biased_deci_gguf(dir);
  const GgufFile file(path.string());
  EXPECT_EQ(file.get_string("general.architecture"), "deci");
  const GgufTensorInfo& bias = file.tensor("blk.1.ffn_down.bias");
  EXPECT_EQ(bias.type, GgmlType::F32);
  EXPECT_EQ(bias.shape, std::vector<std::int64_t>{256});
  EXPECT_EQ(file.find_tensor("blk.0.ffn_down.bias"), nullptr);
  // The bias comes right after its layer's ffn_down, as llama_tensor_layout lists it.
  std::vector<std::string> names;
  for (const auto& t : file.tensors()) names.push_back(t.name);
  const auto down = std::find(names.begin(), names.end(), "blk.3.ffn_down.weight");
  ASSERT_NE(down, names.end());
  EXPECT_EQ(*(down + 1), "blk.3.ffn_down.bias");

  const auto checkpoint = open_checkpoint(path.string());
  EXPECT_EQ(checkpoint->params().ffn_down_bias, (std::vector<bool>{false, true, false, true}));
  const CheckpointTensor* t = checkpoint->find("blk.3.ffn_down.bias");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(all_rows(*checkpoint, *t), random_values(256, 0.5f, 3));
  LlamaParams without = checkpoint->params();
  without.ffn_down_bias.clear();
  EXPECT_EQ(checkpoint->params().n_params(), without.n_params() + 2 * 256);
}

TEST(FfnDownBias, UniformWidthsStayLlamaWithTheBias) {
  TempDir dir;
  const auto hf = write_tiny_hf(dir, "src", "512,512,512,512", 0.1f);
  auto biased = with_ffn_down_bias(open_checkpoint(hf.string()), {{0, random_values(256, 0.5f, 9)}});
  GgufExportOptions options;
  options.type = GgmlType::F16;
  export_gguf(*biased, (dir / "llama.gguf").string(), options);
  const GgufFile file((dir / "llama.gguf").string());
  EXPECT_EQ(file.get_string("general.architecture"), "llama");
  EXPECT_EQ(file.tensor("blk.0.ffn_down.bias").type, GgmlType::F32);  // 1-D: F32 like the norms
  EXPECT_EQ(file.tensor("blk.0.ffn_down.weight").type, GgmlType::F16);

  // GGUF -> GGUF (convert) keeps it bit for bit.
  const auto again = open_checkpoint((dir / "llama.gguf").string());
  export_gguf(*again, (dir / "again.gguf").string(), options);
  expect_same_tensors(*again, *open_checkpoint((dir / "again.gguf").string()));

  // Hugging Face output: LlamaForCausalLM with the extra down_proj.bias, read back the same.
  HfExportOptions hf_options;
  hf_options.dtype = SafeDtype::F32;
  const HfExportSummary summary = export_hf(*again, (dir / "hf").string(), hf_options);
  EXPECT_EQ(summary.layout, "llama");
  const json config = read_json(dir / "hf" / "config.json");
  EXPECT_EQ(config["architectures"], json::array({"LlamaForCausalLM"}));
  EXPECT_EQ(config["intermediate_size"], 512);
  EXPECT_EQ(config["torch_dtype"], "float32");
  const SafetensorsFiles st((dir / "hf").string());
  EXPECT_EQ(st.tensor("model.layers.0.mlp.down_proj.bias").shape, std::vector<std::int64_t>{256});
  EXPECT_EQ(st.find("model.layers.1.mlp.down_proj.bias"), nullptr);
  const auto back = open_checkpoint((dir / "hf").string());
  EXPECT_EQ(back->params().ffn_down_bias, (std::vector<bool>{true, false, false, false}));
  expect_same_tensors(*again, *back);
}

TEST(HfExport, DeciLmRoundTripKeepsEveryTensor) {
  TempDir dir;
  const auto gguf = biased_deci_gguf(dir);
  const auto first = open_checkpoint(gguf.string());

  HfExportOptions options;
  options.dtype = SafeDtype::F32;
  options.max_shard_bytes = 1 << 20;  // several shards
  const HfExportSummary summary = export_hf(*first, (dir / "hf").string(), options);
  EXPECT_EQ(summary.layout, "decilm");
  EXPECT_TRUE(fs::exists(dir / "hf" / "model.safetensors.index.json"));
  EXPECT_TRUE(fs::exists(dir / "hf" / "tokenizer.json"));

  const json config = read_json(dir / "hf" / "config.json");
  EXPECT_EQ(config["architectures"], json::array({"DeciLMForCausalLM"}));
  EXPECT_EQ(config["model_type"], "nemotron-nas");
  EXPECT_TRUE(config["intermediate_size"].is_null());
  EXPECT_TRUE(config["num_key_value_heads"].is_null());
  ASSERT_EQ(config["block_configs"].size(), 4u);
  // hidden_size 256: width = 2/3 · ffn_mult · 256, so 256, 512, 768 are ffn_mult 1.5, 3, 4.5.
  const std::vector<double> mults = {1.5, 3.0, 4.5, 1.5};
  for (std::size_t l = 0; l < 4; ++l) {
    const json& block = config["block_configs"][l];
    EXPECT_EQ(block["attention"], json({{"n_heads_in_group", 2}, {"no_op", false}, {"replace_with_linear", false}}));
    EXPECT_EQ(block["ffn"], json({{"ffn_mult", mults[l]}, {"no_op", false}, {"replace_with_linear", false}}));
  }
  // The GGUF keeps llama3 scaling only as rope_freqs; config.json gets the scaling back.
  EXPECT_EQ(config["rope_scaling"],
            json({{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                  {"original_max_position_embeddings", 8192}}));
  const SafetensorsFiles st((dir / "hf").string());
  EXPECT_EQ(st.find("rope_freqs.weight"), nullptr);
  EXPECT_EQ(st.tensor("model.layers.2.mlp.up_proj.weight").shape, (std::vector<std::int64_t>{768, 256}));
  EXPECT_EQ(st.tensor("model.layers.3.mlp.down_proj.bias").dtype, SafeDtype::F32);

  // HF -> GGUF -> HF: every tensor as it was (Q/K rows back in GGUF order, rope_freqs from config.json).
  const auto hf = open_checkpoint((dir / "hf").string());
  EXPECT_EQ(hf->params().n_ff, (std::vector<std::int64_t>{256, 512, 768, 256}));
  EXPECT_EQ(hf->params().n_head_kv, 2);
  EXPECT_EQ(hf->params().ffn_down_bias, (std::vector<bool>{false, true, false, true}));
  expect_same_tensors(*first, *hf);
  GgufExportOptions gguf_options;
  gguf_options.type = GgmlType::F32;
  export_gguf(*hf, (dir / "back.gguf").string(), gguf_options);
  const auto back = open_checkpoint((dir / "back.gguf").string());
  expect_same_tensors(*first, *back);
  EXPECT_EQ(GgufFile((dir / "back.gguf").string()).get_string("general.architecture"), "deci");

  // Q/K in the HF file are in HF's order: its row hf_row_for_gguf_row(r) is GGUF row r.
  const SafeTensor& q = st.tensor("model.layers.1.self_attn.q_proj.weight");
  const std::vector<float> gq = all_rows(*first, *first->find("blk.1.attn_q.weight"));
  for (std::int64_t r : {0, 1, 2, 63, 64, 65, 255}) {
    float v;
    std::memcpy(&v, q.data.data() + 4 * (hf_row_for_gguf_row(r, 64) * 256 + 7), 4);
    EXPECT_EQ(v, gq[static_cast<std::size_t>(r * 256 + 7)]) << r;
  }
}

TEST(HfExport, Bf16ByDefaultAndTheTokenizerCopied) {
  TempDir dir;
  const auto src = write_tiny_hf(dir, "src", "256,512,768,256", 0.1f);
  auto biased = with_ffn_down_bias(open_checkpoint(src.string()), {{2, random_values(256, 0.5f, 2)}});
  export_hf(*biased, (dir / "hf").string());
  const json config = read_json(dir / "hf" / "config.json");
  EXPECT_EQ(config["torch_dtype"], "bfloat16");
  // From an HF folder the tokenizer files are copied as they are.
  EXPECT_EQ(testing::read_file(dir / "hf" / "tokenizer.json"), testing::read_file(src / "tokenizer.json"));
  EXPECT_EQ(testing::read_file(dir / "hf" / "tokenizer_config.json"), testing::read_file(src / "tokenizer_config.json"));
  const SafetensorsFiles st((dir / "hf").string());
  const SafeTensor& bias = st.tensor("model.layers.2.mlp.down_proj.bias");
  ASSERT_EQ(bias.dtype, SafeDtype::BF16);
  const std::vector<float> values = random_values(256, 0.5f, 2);
  for (std::size_t i = 0; i < values.size(); ++i) {
    std::uint16_t h;
    std::memcpy(&h, bias.data.data() + 2 * i, 2);
    ASSERT_EQ(h, f32_to_bf16(values[i])) << i;
  }
  // The source's BF16 weights come out bit for bit.
  const SafetensorsFiles original(src.string());
  const SafeTensor& a = original.tensor("model.layers.1.mlp.gate_proj.weight");
  const SafeTensor& b = st.tensor("model.layers.1.mlp.gate_proj.weight");
  ASSERT_EQ(a.data.size(), b.data.size());
  EXPECT_EQ(std::memcmp(a.data.data(), b.data.data(), a.data.size()), 0);
  const SafeTensor& qa = original.tensor("model.layers.0.self_attn.q_proj.weight");
  const SafeTensor& qb = st.tensor("model.layers.0.self_attn.q_proj.weight");
  EXPECT_EQ(std::memcmp(qa.data.data(), qb.data.data(), qa.data.size()), 0);

  // From a GGUF the vocabulary is written (save_vocab_hf) and reads back the same.
  GgufExportOptions gguf_options;
  export_gguf(*biased, (dir / "m.gguf").string(), gguf_options);
  const auto gguf = open_checkpoint((dir / "m.gguf").string());
  HfExportOptions f16;
  f16.dtype = SafeDtype::F16;
  export_hf(*gguf, (dir / "from-gguf").string(), f16);
  const auto back = open_checkpoint((dir / "from-gguf").string());
  EXPECT_EQ(back->vocab().tokens, gguf->vocab().tokens);
  EXPECT_EQ(back->vocab().merges, gguf->vocab().merges);
  // The GGUF's F16 matrices and its norms of 1 survive F16; its F32 bias is rounded to F16.
  ASSERT_EQ(back->tensors().size(), gguf->tensors().size());
  for (const CheckpointTensor& t : gguf->tensors()) {
    const CheckpointTensor* u = back->find(t.name);
    ASSERT_NE(u, nullptr) << t.name;
    std::vector<float> expected = all_rows(*gguf, t);
    if (t.id.kind == WeightKind::FfnDownBias) {
      for (float& v : expected) v = f16_to_f32(f32_to_f16(v));
    }
    EXPECT_EQ(all_rows(*back, *u), expected) << t.name;
  }
}

TEST(HfExport, UniformWidthsCanBeWrittenAsDeciLm) {
  TempDir dir;
  const auto src = write_tiny_hf(dir, "src", "512,512,512,512", 0.1f);
  HfExportOptions options;
  options.decilm = true;
  options.dtype = SafeDtype::F32;
  const auto checkpoint = open_checkpoint(src.string());
  EXPECT_EQ(export_hf(*checkpoint, (dir / "hf").string(), options).layout, "decilm");
  const json config = read_json(dir / "hf" / "config.json");
  EXPECT_EQ(config["block_configs"][0]["ffn"]["ffn_mult"], 3.0);
  expect_same_tensors(*checkpoint, *open_checkpoint((dir / "hf").string()));
}

TEST(HfExport, DeciLmWidthNotAMultipleOf256IsRefusedBeforeWriting) {
  TempDir dir;
  const auto src = write_tiny_hf(dir, "src", "256,512,300,256", 0.1f);
  const auto checkpoint = open_checkpoint(src.string());
  const std::string out = (dir / "out").string();
  try {
    export_hf(*checkpoint, out);
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(out), std::string::npos) << message;
    EXPECT_NE(message.find("layer 2"), std::string::npos) << message;
    EXPECT_NE(message.find("300"), std::string::npos) << message;
    EXPECT_NE(message.find("multiple of 256"), std::string::npos) << message;
    EXPECT_NE(message.find("GGUF"), std::string::npos) << message;
    EXPECT_NE(message.find("--align 256"), std::string::npos) << message;
  }
  EXPECT_FALSE(fs::exists(out));
  // A GGUF keeps that width.
  GgufExportOptions options;
  export_gguf(*checkpoint, (dir / "m.gguf").string(), options);
  EXPECT_EQ(open_checkpoint((dir / "m.gguf").string())->params().n_ff[2], 300);
}

TEST(HfExport, SentencePieceVocabularyNeedsATokenizerJson) {
  const auto model = PIQUANT_SHARED_FILE("models/stories260K/stories260K.bin");
  const auto tokenizer = PIQUANT_SHARED_FILE("models/stories260K/tok512.bin");
  TempDir dir;
  CheckpointOptions options;
  options.tokenizer_path = tokenizer.string();
  const auto checkpoint = open_checkpoint(model.string(), options);
  try {
    export_hf(*checkpoint, (dir / "out").string());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.json"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir / "out"));
}

// The CLI: convert to a folder and back, quantize; the bias stays F32 and exact.
TEST(FfnDownBias, ConvertToAFolderAndBackThenQuantize) {
  TempDir dir;
  const auto gguf = biased_deci_gguf(dir);
  const auto folder = dir / "folder";
  const auto back = dir / "back.gguf";
  const auto q8 = dir / "q8.gguf";
  testing::run_piquant("convert " + testing::shell_quote(gguf.string()) + " --type f32 -o " + testing::shell_quote(folder.string()));
  EXPECT_EQ(read_json(folder / "config.json")["model_type"], "nemotron-nas");
  testing::run_piquant("convert " + testing::shell_quote(folder.string()) + " --type f32 -o " + testing::shell_quote(back.string()));
  expect_same_tensors(*open_checkpoint(gguf.string()), *open_checkpoint(back.string()));
  testing::run_piquant("quantize " + testing::shell_quote(back.string()) + " " + testing::shell_quote(q8.string()) + " Q8_0");
  const GgufFile quantized(q8.string());
  EXPECT_EQ(quantized.get_string("general.architecture"), "deci");
  const GgufTensorInfo& bias = quantized.tensor("blk.3.ffn_down.bias");
  EXPECT_EQ(bias.type, GgmlType::F32);
  std::vector<float> values(256);
  std::memcpy(values.data(), quantized.tensor_data(bias).data(), 256 * sizeof(float));
  EXPECT_EQ(values, random_values(256, 0.5f, 3));
  EXPECT_EQ(quantized.tensor("blk.3.ffn_down.weight").type, GgmlType::Q8_0);
  // Without --type a folder is BF16.
  testing::run_piquant("convert " + testing::shell_quote(gguf.string()) + " -o " + testing::shell_quote((dir / "bf16").string()));
  EXPECT_EQ(read_json(dir / "bf16" / "config.json")["torch_dtype"], "bfloat16");
}

// Damaged biases and block_configs: FormatError naming the file and the place.
TEST(FfnDownBias, WrongLengthIsAFormatErrorInEveryReader) {
  TempDir dir;
  const auto src = write_tiny_hf(dir, "src", "256,512,768,256", 0.1f);
  auto damaged = with_ffn_down_bias(open_checkpoint(src.string()), {{1, random_values(255, 0.5f, 1)}});
  GgufExportOptions options;
  options.type = GgmlType::F32;
  export_gguf(*damaged, (dir / "bad.gguf").string(), options);
  HfExportOptions hf_options;
  hf_options.dtype = SafeDtype::F32;
  export_hf(*damaged, (dir / "bad-hf").string(), hf_options);

  const auto expect_format_error = [](const std::function<void()>& open, const std::string& file, const std::string& where) {
    try {
      open();
      ADD_FAILURE() << "no error for " << file;
    } catch (const FormatError& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find(file), std::string::npos) << message;
      EXPECT_NE(message.find(where), std::string::npos) << message;
    }
  };
  const std::string gguf = (dir / "bad.gguf").string();
  expect_format_error([&] { open_checkpoint(gguf); }, gguf, "blk.1.ffn_down.bias");
  expect_format_error([&] { open_checkpoint((dir / "bad-hf").string()); }, (dir / "bad-hf").string(),
                      "model.layers.1.mlp.down_proj.bias");
}

TEST(HfExport, DamagedBlockConfigsNameConfigJsonAndTheBlock) {
  TempDir dir;
  const auto src = write_tiny_hf(dir, "src", "256,512,768,256", 0.1f);
  HfExportOptions options;
  export_hf(*open_checkpoint(src.string()), (dir / "hf").string(), options);
  const json good = read_json(dir / "hf" / "config.json");
  struct Case {
    const char* where;
    std::function<void(json&)> damage;
  };
  const std::vector<Case> cases = {
      {"block_configs", [](json& c) { c["block_configs"].erase(3); }},
      {"block_configs[2].ffn.no_op", [](json& c) { c["block_configs"][2]["ffn"]["no_op"] = true; }},
      {"block_configs[1].attention.no_op", [](json& c) { c["block_configs"][1]["attention"]["no_op"] = true; }},
      {"block_configs[0].ffn.replace_with_linear", [](json& c) { c["block_configs"][0]["ffn"]["replace_with_linear"] = true; }},
      {"block_configs[3].attention.n_heads_in_group", [](json& c) { c["block_configs"][3]["attention"]["n_heads_in_group"] = 4; }},
  };
  const std::string config = (dir / "hf" / "config.json").string();
  for (const Case& c : cases) {
    json damaged = good;
    c.damage(damaged);
    testing::write_file(config, damaged.dump(2));
    try {
      open_checkpoint((dir / "hf").string());
      ADD_FAILURE() << "no error for " << c.where;
    } catch (const FormatError& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find(config), std::string::npos) << message;
      EXPECT_NE(message.find(c.where), std::string::npos) << message;
    }
  }
}

}  // namespace
}  // namespace piquant
