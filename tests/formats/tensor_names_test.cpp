#include <gtest/gtest.h>

#include <sstream>

#include "checkpoint/checkpoint.h"
#include "formats/tensor_names.h"
#include "support/test_support.h"

namespace piquant {
namespace {

TEST(TensorNames, GgufAndHfNamesMapBothWays) {
  const std::vector<std::pair<std::string, std::string>> pairs = {
      {"token_embd.weight", "model.embed_tokens.weight"},
      {"blk.0.attn_norm.weight", "model.layers.0.input_layernorm.weight"},
      {"blk.31.attn_q.weight", "model.layers.31.self_attn.q_proj.weight"},
      {"blk.2.attn_k.weight", "model.layers.2.self_attn.k_proj.weight"},
      {"blk.2.attn_v.weight", "model.layers.2.self_attn.v_proj.weight"},
      {"blk.2.attn_output.weight", "model.layers.2.self_attn.o_proj.weight"},
      {"blk.7.ffn_norm.weight", "model.layers.7.post_attention_layernorm.weight"},
      {"blk.7.ffn_gate.weight", "model.layers.7.mlp.gate_proj.weight"},
      {"blk.7.ffn_up.weight", "model.layers.7.mlp.up_proj.weight"},
      {"blk.10.ffn_down.weight", "model.layers.10.mlp.down_proj.weight"},
      {"output_norm.weight", "model.norm.weight"},
      {"output.weight", "lm_head.weight"},
  };
  for (const auto& [gguf, hf] : pairs) {
    const auto from_gguf = parse_gguf_tensor_name(gguf);
    const auto from_hf = parse_hf_tensor_name(hf);
    ASSERT_TRUE(from_gguf) << gguf;
    ASSERT_TRUE(from_hf) << hf;
    EXPECT_EQ(*from_gguf, *from_hf) << gguf;
    EXPECT_EQ(gguf_tensor_name(*from_gguf), gguf);
    EXPECT_EQ(hf_tensor_name(*from_hf), hf);
  }
  EXPECT_FALSE(parse_gguf_tensor_name("blk.x.attn_q.weight"));
  EXPECT_FALSE(parse_gguf_tensor_name("blk.-1.attn_q.weight"));
  EXPECT_FALSE(parse_gguf_tensor_name("blk.1.attn_q.bias"));
  EXPECT_FALSE(parse_hf_tensor_name("model.layers.1.mlp.gate_proj.bias"));
  EXPECT_EQ(parse_gguf_tensor_name("rope_freqs.weight")->kind, WeightKind::RopeFreqs);
}

// The Q/K row order against convert_hf_to_gguf's formulation of the same fact,
// computed by numpy: w.reshape(n_head, 2, d/2, ...).swapaxes(1, 2).
TEST(TensorNames, QkRowOrderMatchesNumpyReshapeSwapaxes) {
  const auto probe = testing::run_command("/usr/bin/python3 -c 'import numpy'");
  if (probe.exit_code != 0) {
    if (testing::in_ci()) FAIL() << "numpy missing: " << probe.output;
    GTEST_SKIP() << "Debian python3-numpy not installed";
  }
  for (const auto& [n_head, head_dim] : {std::pair{8, 8}, std::pair{4, 64}, std::pair{2, 128}}) {
    const std::string script = "import numpy as np; n=" + std::to_string(n_head) + "; d=" + std::to_string(head_dim) +
                               "; print(' '.join(map(str, np.arange(n*d).reshape(n, 2, d//2).swapaxes(1, 2).reshape(-1))))";
    const auto result = testing::run_command("/usr/bin/python3 -c \"" + script + "\"");
    ASSERT_EQ(result.exit_code, 0) << result.output;
    std::istringstream in(result.output);
    for (std::int64_t row = 0; row < n_head * head_dim; ++row) {
      std::int64_t expected = -1;
      in >> expected;
      ASSERT_EQ(hf_row_for_gguf_row(row, head_dim), expected) << "row " << row << " head_dim " << head_dim;
    }
  }
}

}  // namespace
}  // namespace piquant
