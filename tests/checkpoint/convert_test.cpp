// Conversions end to end: what convert writes equals what the source holds.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "core/half.h"
#include "formats/gguf.h"
#include "formats/llama2c.h"
#include "formats/safetensors.h"
#include "checkpoint/checkpoint.h"
#include "checkpoint/gguf_export.h"
#include "formats/gguf_metadata.h"
#include "checkpoint/synthetic.h"
#include "quant/dequantize.h"
#include "support/test_support.h"
#include "tokenizer/bpe_trainer.h"
#include "tokenizer/tokenizer.h"

namespace piquant {
namespace {

std::vector<float> gguf_floats(const GgufFile& file, const std::string& name) {
  const GgufTensorInfo& info = file.tensor(name);
  std::vector<float> out(static_cast<std::size_t>(info.n_elements()));
  dequantize_row(info.type, file.tensor_data(info).data(), out.data(), info.n_elements());
  return out;
}

TEST(Convert, Stories260KTensorsAndMetadata) {
  const auto model = PIQUANT_SHARED_FILE("models/stories260K/stories260K.bin");
  const auto tokenizer = PIQUANT_SHARED_FILE("models/stories260K/tok512.bin");
  testing::TempDir dir;
  CheckpointOptions options;
  options.tokenizer_path = tokenizer.string();
  const auto checkpoint = open_checkpoint(model.string(), options);
  GgufExportOptions export_options;
  export_options.type = GgmlType::F32;
  export_gguf(*checkpoint, (dir / "m.gguf").string(), export_options);

  const GgufFile gguf((dir / "m.gguf").string());
  EXPECT_EQ(gguf.get_string("general.architecture"), "llama");
  EXPECT_EQ(gguf.get_int("llama.embedding_length"), 64);
  EXPECT_EQ(gguf.get_int("llama.feed_forward_length"), 172);
  EXPECT_EQ(gguf.get_int("llama.block_count"), 5);
  EXPECT_EQ(gguf.get_int("llama.attention.head_count"), 8);
  EXPECT_EQ(gguf.get_int("llama.attention.head_count_kv"), 4);
  EXPECT_EQ(gguf.get_int("llama.context_length"), 512);
  EXPECT_EQ(gguf.get_string("tokenizer.ggml.model"), "llama");
  EXPECT_EQ(gguf.at("tokenizer.ggml.tokens").as_array().size(), 512u);
  EXPECT_EQ(gguf.find_tensor("output.weight"), nullptr);  // shared classifier

  // Every value equals the llama2.c file's, in place (llama2.c's Q/K order is GGUF's already).
  const Llama2cFile raw(model.string());
  const auto wq = raw.layer_data(raw.array("wq"), 3);
  const auto converted = gguf_floats(gguf, "blk.3.attn_q.weight");
  ASSERT_EQ(converted.size(), wq.size());
  for (std::size_t i = 0; i < wq.size(); ++i) ASSERT_EQ(converted[i], wq[i]) << i;
  const auto w2 = raw.layer_data(raw.array("w2"), 4);
  const auto down = gguf_floats(gguf, "blk.4.ffn_down.weight");
  EXPECT_EQ(gguf.tensor("blk.4.ffn_down.weight").shape, (std::vector<std::int64_t>{172, 64}));
  for (std::size_t i = 0; i < w2.size(); ++i) ASSERT_EQ(down[i], w2[i]) << i;

  // Reading the GGUF back as a checkpoint gives the same model, and GGUF -> GGUF
  // conversion to F16 holds every weight rounded to F16.
  const auto again = open_checkpoint((dir / "m.gguf").string());
  EXPECT_EQ(again->params().n_ff, checkpoint->params().n_ff);
  EXPECT_EQ(again->vocab().tokens, checkpoint->vocab().tokens);
  EXPECT_EQ(again->vocab().scores, checkpoint->vocab().scores);
  export_options.type = GgmlType::F16;
  export_gguf(*again, (dir / "m16.gguf").string(), export_options);
  const GgufFile half((dir / "m16.gguf").string());
  EXPECT_EQ(half.get_int("general.file_type"), 1);
  const auto q16 = gguf_floats(half, "blk.3.attn_q.weight");
  for (std::size_t i = 0; i < wq.size(); ++i) ASSERT_EQ(q16[i], f16_to_f32(f32_to_f16(wq[i]))) << i;
  EXPECT_EQ(half.tensor("blk.3.attn_norm.weight").type, GgmlType::F32);
}

TEST(Convert, TinySynthWithVaryingWidthsBecomesDeci) {
  testing::TempDir dir;
  const std::string hf = (dir / "hf").string();
  LlamaParams params = synth_preset("tiny");
  apply_mlp_widths(params, "96,128,64,160");
  BpeTrainerOptions trainer;
  trainer.vocab_size = static_cast<std::size_t>(params.n_vocab);
  const Vocab vocab = train_byte_level_bpe(builtin_training_text(), trainer);
  params.bos_token_id = vocab.bos_id;
  params.eos_token_ids = {vocab.eos_id};
  std::filesystem::create_directories(hf);
  save_vocab_hf(vocab, hf);
  SynthOptions synth;
  synth.max_shard_bytes = 1 << 20;  // several shards
  write_synthetic_weights(params, hf, synth);
  EXPECT_TRUE(std::filesystem::exists(dir / "hf" / "model.safetensors.index.json"));

  const auto checkpoint = open_checkpoint(hf);
  GgufExportOptions options;
  options.type = GgmlType::F16;
  export_gguf(*checkpoint, (dir / "m.gguf").string(), options);
  const GgufFile gguf((dir / "m.gguf").string());
  EXPECT_EQ(gguf.get_string("general.architecture"), "deci");
  const GgufValue& widths = gguf.at("deci.feed_forward_length");
  EXPECT_EQ(widths.element_type(), GgufType::INT32);
  EXPECT_EQ(widths.as_int_array(), (std::vector<std::int64_t>{96, 128, 64, 160}));
  EXPECT_EQ(gguf.tensor("blk.2.ffn_up.weight").shape, (std::vector<std::int64_t>{256, 64}));
  EXPECT_EQ(gguf.tensor("blk.0.attn_norm.weight").type, GgmlType::F32);
  EXPECT_EQ(gguf.tensor("blk.0.attn_q.weight").type, GgmlType::F16);

  // rope_freqs: llama3 scaling factors, 1 for the fastest pair, `factor` for the slowest.
  const auto factors = gguf_floats(gguf, "rope_freqs.weight");
  ASSERT_EQ(factors.size(), 32u);
  EXPECT_EQ(factors.front(), 1.0f);
  EXPECT_EQ(factors.back(), 8.0f);

  // Q rows are permuted from HF's order; every other tensor is a straight copy.
  const SafetensorsFiles st(hf);
  const SafeTensor& q = st.tensor("model.layers.1.self_attn.q_proj.weight");
  const auto gq = gguf_floats(gguf, "blk.1.attn_q.weight");
  for (std::int64_t row = 0; row < 256; ++row) {
    const std::int64_t src = hf_row_for_gguf_row(row, 64);
    for (std::int64_t c = 0; c < 256; ++c) {
      std::uint16_t h;
      std::memcpy(&h, q.data.data() + 2 * (src * 256 + c), 2);
      ASSERT_EQ(gq[static_cast<std::size_t>(row * 256 + c)], f16_to_f32(f32_to_f16(bf16_to_f32(h))));
    }
  }
  const SafeTensor& k = st.tensor("model.layers.0.self_attn.k_proj.weight");
  const auto gk = gguf_floats(gguf, "blk.0.attn_k.weight");
  std::uint16_t h;
  std::memcpy(&h, k.data.data() + 2 * (hf_row_for_gguf_row(1, 64) * 256 + 5), 2);
  EXPECT_EQ(gk[256 + 5], f16_to_f32(f32_to_f16(bf16_to_f32(h))));
  EXPECT_NE(hf_row_for_gguf_row(1, 64), 1);
}

TEST(Convert, SynthWeightsAreNormalWithTheRequestedSpread) {
  testing::TempDir dir;
  LlamaParams params = synth_preset("tiny");
  params.bos_token_id = 1;
  SynthOptions synth;
  write_synthetic_weights(params, dir.path().string(), synth);
  const SafetensorsFiles st(dir.path().string());
  const SafeTensor& t = st.tensor("model.layers.0.mlp.up_proj.weight");
  double sum = 0, sum2 = 0;
  const std::size_t n = t.data.size() / 2;
  for (std::size_t i = 0; i < n; ++i) {
    std::uint16_t h;
    std::memcpy(&h, t.data.data() + 2 * i, 2);
    const double v = bf16_to_f32(h);
    sum += v;
    sum2 += v * v;
  }
  EXPECT_NEAR(sum / n, 0.0, 0.001);
  EXPECT_NEAR(std::sqrt(sum2 / n), 0.02, 0.0005);
  std::uint16_t norm;
  std::memcpy(&norm, st.tensor("model.norm.weight").data.data(), 2);
  EXPECT_EQ(bf16_to_f32(norm), 1.0f);
}

TEST(Convert, MlpWidthSpecs) {
  LlamaParams p = synth_preset("llama-3.1-8b");
  apply_mlp_widths(p, "4-27:10752");
  EXPECT_EQ(p.n_ff[3], 14336);
  EXPECT_EQ(p.n_ff[4], 10752);
  EXPECT_EQ(p.n_ff[27], 10752);
  EXPECT_EQ(p.n_ff[28], 14336);
  EXPECT_EQ(p.n_params(), 6973296640);
  EXPECT_THROW(apply_mlp_widths(p, "1,2,3"), Error);
  EXPECT_THROW(apply_mlp_widths(p, "30-40:10"), Error);
  EXPECT_THROW(apply_mlp_widths(p, "0:x"), Error);
  EXPECT_THROW(synth_preset("llama-9"), Error);
}

TEST(BpeTrainer, LearnsAWorkingTokenizer) {
  BpeTrainerOptions options;
  const Vocab vocab = train_byte_level_bpe(builtin_training_text(), options);
  EXPECT_EQ(vocab.size(), 512u);
  EXPECT_EQ(vocab.tokens[vocab.bos_id], "<|begin_of_text|>");
  EXPECT_EQ(vocab.tokens[vocab.eot_id], "<|eot_id|>");
  const auto tokenizer = Tokenizer::create(vocab);
  const std::string text = "Once upon a time there was a little girl. ünïcødé 12345!";
  const auto ids = tokenizer->encode(text, false, false);
  EXPECT_EQ(tokenizer->decode(ids), text);
  const std::string english = "Once upon a time there was a little girl who lived in a house by the sea.";
  EXPECT_LT(tokenizer->encode(english, false, false).size(), english.size() / 2);  // merges learned from English shorten it
  const auto with_bos = tokenizer->encode("the", true, false);
  EXPECT_EQ(with_bos.front(), vocab.bos_id);
}

}  // namespace
}  // namespace piquant
