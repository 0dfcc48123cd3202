// The metadata comparison used by the acceptance tests reports every kind of
// difference (and nothing when the views agree), so its passing means something.
#include <gtest/gtest-spi.h>

#include "interop/gguf_view_comparison.h"
#include "support/test_support.h"

namespace piquant::testing {
namespace {

using nlohmann::json;

// As llama_cpp.mjs prints it: float32 values as JavaScript doubles.
json llama_cpp_view() {
  return json::parse(R"({
    "version": 3, "tensor_count": 2,
    "metadata": {"general.architecture": "deci", "deci.feed_forward_length": [96, 128],
                 "deci.attention.layer_norm_rms_epsilon": 9.999999747378752e-06,
                 "deci.rope.freq_base": 500000, "tokenizer.ggml.tokens": ["a", "b"]},
    "tensors": [{"name": "token_embd.weight", "type": 1, "type_name": "F16", "shape": [64, 512], "offset": 0},
                {"name": "output_norm.weight", "type": 0, "type_name": "F32", "shape": [64], "offset": 65536}]})");
}

// As `piquant inspect --json` might print it: shortest float spellings, type names.
json piquant_view() {
  return json::parse(R"({
    "version": 3,
    "metadata": {"general.architecture": "deci", "deci.feed_forward_length": [96, 128],
                 "deci.attention.layer_norm_rms_epsilon": 1e-05,
                 "deci.rope.freq_base": 500000.0, "tokenizer.ggml.tokens": ["a", "b"]},
    "tensors": [{"name": "token_embd.weight", "type": "f16", "type_id": 1, "shape": [64, 512], "offset": 0},
                {"name": "output_norm.weight", "type": "f32", "shape": [64], "offset": 65536}]})");
}

TEST(GgufViewComparison, AcceptsTheSameFileSpelledDifferently) {
  expect_same_gguf_view(llama_cpp_view(), piquant_view());
}

TEST(GgufViewComparison, ReportsEveryKindOfDifference) {
  const json theirs = llama_cpp_view();
  json ours = piquant_view();
  ours["metadata"]["deci.feed_forward_length"][1] = 129;
  EXPECT_NONFATAL_FAILURE(expect_same_gguf_view(theirs, ours), "first difference at [1]: 128 vs 129");

  ours = piquant_view();
  ours["metadata"].erase("tokenizer.ggml.tokens");
  EXPECT_NONFATAL_FAILURE(expect_same_gguf_view(theirs, ours), "tokenizer.ggml.tokens");

  ours = piquant_view();
  ours["metadata"]["general.extra"] = 1;
  EXPECT_NONFATAL_FAILURE(expect_same_gguf_view(theirs, ours), "general.extra");

  ours = piquant_view();
  ours["metadata"]["deci.attention.layer_norm_rms_epsilon"] = 1e-6;
  EXPECT_NONFATAL_FAILURE(expect_same_gguf_view(theirs, ours), "layer_norm_rms_epsilon");

  ours = piquant_view();
  ours["tensors"][1]["type"] = "f16";
  EXPECT_NONFATAL_FAILURE(expect_same_gguf_view(theirs, ours), "output_norm.weight): type");

  ours = piquant_view();
  ours["tensors"][0]["shape"] = json::array({512, 64});
  EXPECT_NONFATAL_FAILURE(expect_same_gguf_view(theirs, ours), "token_embd.weight): shape");

  ours = piquant_view();
  ours["tensors"][1]["offset"] = 65568;
  EXPECT_NONFATAL_FAILURE(expect_same_gguf_view(theirs, ours), "output_norm.weight): offset");

  ours = piquant_view();
  ours["tensors"].erase(1);
  EXPECT_NONFATAL_FAILURE(expect_same_gguf_view(theirs, ours), "tensor count");
}

}  // namespace
}  // namespace piquant::testing
