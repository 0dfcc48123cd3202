// Acceptance: piquant's engine continues prompts exactly as stock llama.cpp does.
// stories260K, converted by piquant to F32 GGUF; greedy decoding on both sides
// (llama.cpp through node-llama-cpp at temperature 0; piquant: LlamaContext and
// argmax), each with its default F16 KV cache.
// Quantized files: engine_parity_quantized.cpp.
#include <algorithm>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "eval/log_softmax.h"
#include "interop/engine_parity_support.h"
#include "interop/llama_cpp_runner.h"
#include "generate/generator.h"
#include "engine/llama_context.h"
#include "engine/llama_model.h"

namespace piquant::testing {
namespace {

constexpr int kTokens = 40;

// Top logit minus the runner-up: how close greedy decoding was to a tie.
float top_margin(std::span<const float> logits) {
  std::vector<float> sorted(logits.begin(), logits.end());
  std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<>());
  return sorted[0] - sorted[1];
}

TEST(EngineParity, GreedyContinuationsOfStories260KMatchLlamaCpp) {
  const auto checkpoint = PIQUANT_SHARED_FILE("models/stories260K/stories260K.bin");
  const auto tokenizer = PIQUANT_SHARED_FILE("models/stories260K/tok512.bin");
  const TempDir dir;
  const auto gguf = convert_stories260k(dir, checkpoint, tokenizer, "f32");
  const auto model = LlamaModel::load(gguf.string());
  const std::vector<std::int32_t> stops = end_of_generation_tokens(*model);

  const std::vector<std::string> prompts = {"Once upon a time", "Tom and his mom went to the park", "The cat was sad because"};
  for (const std::string& prompt : prompts) {
    SCOPED_TRACE("prompt: " + prompt);
    const auto answer = run_llama_cpp({"generate", gguf.string(), prompt, std::to_string(kTokens)});
    const auto prompt_tokens = answer.at("prompt_tokens").get<std::vector<std::int32_t>>();
    const auto expected = answer.at("tokens").get<std::vector<std::int32_t>>();
    // The same prompt tokens (piquant's tokenizer and BOS rule).
    EXPECT_EQ(model->tokenizer().encode(prompt, /*add_special=*/true, /*parse_special=*/false), prompt_tokens);

    ContextOptions options;
    options.n_ctx = 128;
    LlamaContext context(*model, options);
    std::vector<std::int32_t> got;
    std::ostringstream margins;
    std::span<const float> logits = context.eval(prompt_tokens);
    while (static_cast<int>(got.size()) < kTokens) {
      const std::int32_t next = argmax(logits);
      margins << top_margin(logits) << ' ';
      if (std::find(stops.begin(), stops.end(), next) != stops.end()) break;
      got.push_back(next);
      const std::int32_t token[1] = {next};
      logits = context.eval(token);
    }
    if (answer.at("stop") == "eog") {
      // llama.cpp stopped at an end-of-generation token: piquant must stop there too.
      EXPECT_LT(expected.size(), static_cast<std::size_t>(kTokens));
    } else {
      EXPECT_EQ(expected.size(), static_cast<std::size_t>(kTokens));
    }
    EXPECT_EQ(got, expected) << "llama.cpp: " << answer.at("text") << "\npiquant:  "
                             << model->tokenizer().decode(got) << "\ntop-1 margins: " << margins.str();
  }
}

}  // namespace
}  // namespace piquant::testing
