#include "formats/llama2c.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "support/test_support.h"

namespace piquant {
namespace {

using piquant::testing::TempDir;

TEST(Llama2c, Stories260kHeaderFacts) {
  const auto path = PIQUANT_SHARED_FILE("models/stories260K/stories260K.bin");
  const Llama2cFile checkpoint(path.string());
  const LlamaParams& p = checkpoint.params();
  EXPECT_EQ(p.n_embd, 64);
  EXPECT_EQ(p.n_ff, std::vector<std::int64_t>(5, 172));
  EXPECT_EQ(p.n_layer, 5);
  EXPECT_EQ(p.n_head, 8);
  EXPECT_EQ(p.n_head_kv, 4);
  EXPECT_EQ(p.head_dim, 8);
  EXPECT_EQ(p.n_vocab, 512);
  EXPECT_EQ(p.n_ctx_train, 512);
  EXPECT_DOUBLE_EQ(p.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(p.rope_theta, 10000.0);
  EXPECT_FALSE(p.rope_scaling.has_value());
  EXPECT_TRUE(checkpoint.shared_classifier());
  EXPECT_TRUE(p.tie_word_embeddings);
  EXPECT_EQ(p.bos_token_id, 1);
  EXPECT_EQ(p.eos_token_ids, std::vector<std::int64_t>{2});
  // shared/README: 264,128 floats, of which the two RoPE tables hold 2 × 512 × 4.
  EXPECT_EQ(p.n_params(), 264'128 - 2 * 512 * 4);
}

TEST(Llama2c, Stories260kArraysTileTheFile) {
  const auto path = PIQUANT_SHARED_FILE("models/stories260K/stories260K.bin");
  const Llama2cFile checkpoint(path.string());
  std::uint64_t end = 28;
  for (const auto& a : checkpoint.arrays()) {
    EXPECT_EQ(a.offset, end) << a.name;
    end = a.offset + checkpoint.data(a).size_bytes();
  }
  EXPECT_EQ(end, checkpoint.file().size());
  EXPECT_EQ(end, 1'056'540u);
  EXPECT_EQ(checkpoint.array("wk").shape, (std::vector<std::int64_t>{5, 32, 64}));
  EXPECT_EQ(checkpoint.array("w2").shape, (std::vector<std::int64_t>{5, 64, 172}));
  EXPECT_THROW(checkpoint.array("wcls"), Error);

  const auto embedding = checkpoint.data(checkpoint.array("token_embedding"));
  ASSERT_EQ(embedding.size(), 512u * 64u);
  double sum_abs = 0;
  for (std::size_t i = 0; i < 64; ++i) {
    EXPECT_TRUE(std::isfinite(embedding[i])) << i;
    EXPECT_LT(std::fabs(embedding[i]), 100.0f) << i;
    sum_abs += std::fabs(embedding[i]);
  }
  EXPECT_GT(sum_abs, 0.0);  // a trained model, not zeros
  // RMSNorm gains of a trained model are positive.
  for (const float g : checkpoint.layer_data(checkpoint.array("rms_att"), 4)) EXPECT_GT(g, 0.0f);
  // freq_cis_real row 0 is cos(0) = 1.
  EXPECT_FLOAT_EQ(checkpoint.data(checkpoint.array("freq_cis_real"))[0], 1.0f);
}

// A tiny checkpoint whose float k holds the value k, so every array's first value
// is its float offset. dim 8, hidden 16, 2 layers, 2 heads, 1 kv head (kv_dim 4),
// vocab 10 (negative: own classifier), seq_len 4.
std::string tiny_checkpoint(std::int32_t vocab_field, std::size_t floats) {
  const std::int32_t header[7] = {8, 16, 2, 2, 1, vocab_field, 4};
  std::string bytes(reinterpret_cast<const char*>(header), sizeof header);
  for (std::size_t k = 0; k < floats; ++k) {
    const float v = static_cast<float>(k);
    bytes.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  return bytes;
}

// Float counts worked out by hand from llama2.c's layout:
// emb 80, rms_att 16, wq 128, wk 64, wv 64, wo 128, rms_ffn 16, w1 256, w2 256,
// w3 256, rms_final 8, freq_cis 2 × 4 × 2 = 16  -> 1288; wcls 80 more.
constexpr std::size_t kSharedFloats = 1288;
constexpr std::size_t kOwnClassifierFloats = 1288 + 80;

TEST(Llama2c, TinySyntheticLayout) {
  TempDir dir;
  testing::write_file(dir / "own.bin", tiny_checkpoint(-10, kOwnClassifierFloats));
  const Llama2cFile own((dir / "own.bin").string());
  EXPECT_FALSE(own.shared_classifier());
  EXPECT_FALSE(own.params().tie_word_embeddings);
  EXPECT_EQ(own.params().n_vocab, 10);
  EXPECT_EQ(own.params().n_head_kv, 1);
  EXPECT_EQ(own.data(own.array("wk"))[0], 80 + 16 + 128);
  EXPECT_EQ(own.data(own.array("w2"))[0], 80 + 16 + 128 + 64 + 64 + 128 + 16 + 256);
  EXPECT_EQ(own.data(own.array("wcls"))[0], 1288);
  EXPECT_EQ(own.data(own.array("wcls")).size(), 80u);
  const auto wq1 = own.layer_data(own.array("wq"), 1);
  EXPECT_EQ(wq1.size(), 64u);
  EXPECT_EQ(wq1[0], 80 + 16 + 64);
  EXPECT_THROW(own.layer_data(own.array("wq"), 2), Error);
  EXPECT_THROW(own.layer_data(own.array("rms_final"), 0), Error);

  testing::write_file(dir / "shared.bin", tiny_checkpoint(10, kSharedFloats));
  const Llama2cFile shared((dir / "shared.bin").string());
  EXPECT_TRUE(shared.shared_classifier());
  EXPECT_EQ(shared.arrays().back().name, "freq_cis_imag");
}

TEST(Llama2c, CorruptFilesAreRejected) {
  TempDir dir;
  const auto with_header = [](std::int32_t index, std::int32_t value, std::size_t floats) {
    std::string bytes = tiny_checkpoint(10, floats);
    std::memcpy(bytes.data() + 4 * index, &value, 4);
    return bytes;
  };
  struct Case {
    const char* what;
    std::string bytes;
    const char* field;
  };
  const std::vector<Case> cases = {
      {"empty file", "", "header"},
      {"truncated header", tiny_checkpoint(10, 0).substr(0, 20), "header"},
      {"header only", tiny_checkpoint(10, 0), "file size"},
      {"one float short", tiny_checkpoint(10, kSharedFloats - 1), "file size"},
      {"one float extra", tiny_checkpoint(10, kSharedFloats + 1), "file size"},
      {"own classifier missing", tiny_checkpoint(-10, kSharedFloats), "file size"},
      {"negative dim", with_header(0, -8, kSharedFloats), "dim"},
      {"zero layers", with_header(2, 0, kSharedFloats), "n_layers"},
      {"negative hidden", with_header(1, -16, kSharedFloats), "hidden_dim"},
      {"zero vocab", with_header(5, 0, kSharedFloats), "vocab_size"},
      {"heads not dividing dim", with_header(3, 3, kSharedFloats), "n_heads"},
      {"kv heads not dividing heads", with_header(4, 3, kSharedFloats), "n_kv_heads"},
      {"absurd sizes", with_header(0, 0x7ffffff0, kSharedFloats), "header"},
  };
  for (const auto& c : cases) {
    const auto path = dir / "bad.bin";
    testing::write_file(path, c.bytes);
    try {
      Llama2cFile checkpoint(path.string());
      ADD_FAILURE() << c.what << ": no error";
    } catch (const FormatError& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find(path.string()), std::string::npos) << c.what << ": " << message;
      EXPECT_NE(message.find(c.field), std::string::npos) << c.what << ": " << message;
    } catch (const std::exception& e) {
      ADD_FAILURE() << c.what << ": not a FormatError: " << e.what();
    }
  }
}

}  // namespace
}  // namespace piquant
