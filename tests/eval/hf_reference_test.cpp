// The whole forward pass, and with it the Hugging Face -> GGUF Q/K row order, checked
// against an independent reference: tests/eval/hf_reference_forward.py computes the
// logits in numpy float64 straight from the synthesized checkpoint's safetensors
// (Hugging Face's rotate_half RoPE with the llama3 inverse frequencies, GQA, SwiGLU).
// piquant runs the GGUF that `piquant convert` made from the same checkpoint, and
// the checkpoint folder itself.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/eval_test_support.h"
#include "engine/llama_context.h"
#include "engine/llama_model.h"

namespace piquant::testing {
namespace {

constexpr std::size_t kTokens = 48;
constexpr double kTolerance = 1e-3;  // of each row's largest |logit|

struct Reference {
  std::vector<std::int32_t> tokens;
  std::filesystem::path hf_dir;
  std::filesystem::path gguf;
};

// numpy's logits (kTokens × n_vocab) for the checkpoint, optionally a deliberately wrong variant.
std::vector<float> numpy_logits(const TempDir& dir, const Reference& ref, const std::string& variant) {
  const auto out = dir / ("numpy-" + (variant.empty() ? std::string("hf") : variant) + ".f32");
  std::string command = "/usr/bin/python3 " + shell_quote(std::string(PIQUANT_SOURCE_DIR) + "/tests/eval/hf_reference_forward.py") +
                        " " + shell_quote(ref.hf_dir.string()) + " " + shell_quote(nlohmann::json(ref.tokens).dump()) + " " +
                        shell_quote(out.string());
  if (!variant.empty()) command += " --variant " + variant;
  const CommandResult result = run_command(command);
  if (result.exit_code != 0) throw std::runtime_error(command + " failed (Debian's python3 with numpy is required):\n" + result.output);
  return read_floats(out);
}

std::vector<float> piquant_logits(const std::string& path, const std::vector<std::int32_t>& tokens) {
  const auto model = LlamaModel::load(path);
  ContextOptions options;
  options.n_ctx = static_cast<std::int64_t>(tokens.size());
  options.kv_type = GgmlType::F32;
  LlamaContext context(*model, options);
  const auto logits = context.eval(tokens, /*all_logits=*/true);
  return {logits.begin(), logits.end()};
}

// Largest |a - b| relative to the row's largest |b|, over all rows.
double max_relative_difference(const std::vector<float>& a, const std::vector<float>& b, std::size_t n_vocab) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  for (std::size_t row = 0; row + n_vocab <= std::min(a.size(), b.size()); row += n_vocab) {
    double scale = 1e-6, diff = 0;
    for (std::size_t i = row; i < row + n_vocab; ++i) {
      scale = std::max(scale, std::fabs(static_cast<double>(b[i])));
      diff = std::max(diff, std::fabs(static_cast<double>(a[i]) - b[i]));
    }
    worst = std::max(worst, diff / scale);
  }
  return worst;
}

TEST(HfReference, EngineMatchesNumpyForwardPassOfTheHuggingFaceCheckpoint) {
  const TempDir dir;
  Reference ref;
  // stddev 0.25: peaked attention and outputs, so errors in rotation or grouping show.
  ref.hf_dir = synth_tiny(dir, "tiny-hf", "96,128,64,160", 0.25f, 11);
  ref.gguf = dir / "tiny-f32.gguf";
  run_piquant("convert " + shell_quote(ref.hf_dir.string()) + " --type f32 -o " + shell_quote(ref.gguf.string()));
  const auto model = LlamaModel::load(ref.gguf.string());
  const auto n_vocab = static_cast<std::size_t>(model->params().n_vocab);
  std::string text;
  while (text.size() < 1000) text += "The quick brown fox jumps over the lazy dog while the cat sleeps. ";
  ref.tokens = model->tokenizer().encode(text, /*add_special=*/true, /*parse_special=*/false);
  ASSERT_GE(ref.tokens.size(), kTokens);
  ref.tokens.resize(kTokens);

  const std::vector<float> reference = numpy_logits(dir, ref, "");
  ASSERT_EQ(reference.size(), kTokens * n_vocab);
  const double gguf_diff = max_relative_difference(piquant_logits(ref.gguf.string(), ref.tokens), reference, n_vocab);
  const double hf_diff = max_relative_difference(piquant_logits(ref.hf_dir.string(), ref.tokens), reference, n_vocab);
  // Deliberately wrong references: the check must be able to see these mistakes.
  const double wrong_pairing = max_relative_difference(numpy_logits(dir, ref, "interleaved"), reference, n_vocab);
  const double wrong_scaling = max_relative_difference(numpy_logits(dir, ref, "no-rope-scaling"), reference, n_vocab);
  std::cout << "max |Δlogit| / max |logit| vs numpy: GGUF " << gguf_diff << ", HF folder " << hf_diff
            << "; wrong RoPE pairing would give " << wrong_pairing << ", no llama3 scaling " << wrong_scaling << "\n";
  EXPECT_LE(gguf_diff, kTolerance);
  EXPECT_LE(hf_diff, kTolerance);
  EXPECT_GT(wrong_pairing, 10 * kTolerance);
  EXPECT_GT(wrong_scaling, 10 * kTolerance);
}

}  // namespace
}  // namespace piquant::testing
