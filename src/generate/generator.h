#pragma once
// Streams a completion: evaluates a prompt (appended to whatever the context already
// holds), then samples and evaluates one token at a time until a stop condition,
// handing text to a callback as soon as it is final.
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/llama_context.h"
#include "generate/sampler.h"

namespace piquant {

enum class StopReason {
  EndOfGeneration,  // the model sampled a stop token (EOS, EOT, ...)
  StopString,       // the text reached one of the stop strings
  MaxTokens,        // max_new_tokens were generated
  ContextFull,      // the KV cache has no room for another token
};

std::string_view stop_reason_name(StopReason reason);  // "end of generation", ..., "context full"

struct GenerateOptions {
  std::int64_t max_new_tokens = 128;       // < 0: no limit (until a stop or the context is full)
  std::vector<std::int32_t> stop_tokens;   // see end_of_generation_tokens()
  std::vector<std::string> stop_strings;   // the text stops before the first one that appears
};

struct GenerateStats {
  std::int64_t n_prompt = 0;     // tokens evaluated before the first sample
  std::int64_t n_generated = 0;  // tokens of the completion (a stop token is not counted)
  double prompt_seconds = 0.0;
  double decode_seconds = 0.0;   // sampling and evaluating the generated tokens
  StopReason stop_reason = StopReason::MaxTokens;
  // The last token sampled (the stop token when stop_reason is EndOfGeneration); it was
  // never evaluated, so the context does not hold it. -1: nothing was sampled.
  std::int32_t last_token = -1;

  double prompt_tokens_per_second() const { return prompt_seconds > 0 ? n_prompt / prompt_seconds : 0.0; }
  double generated_tokens_per_second() const { return decode_seconds > 0 ? n_generated / decode_seconds : 0.0; }
};

// Receives each piece of final text (valid UTF-8, never a partial stop string).
using TextCallback = std::function<void(std::string_view)>;

// The model's end-of-generation tokens: the vocab's EOS, EOT and EOM and the
// config's eos_token_ids, each once.
std::vector<std::int32_t> end_of_generation_tokens(const LlamaModel& model);

// Every prompt token is also accepted by the sampler (for the repetition penalty).
// Throws Error if the prompt is empty or does not fit the context's free positions.
// A sampled token is evaluated only when another is to follow, so the context ends
// holding the prompt and every sampled token but the last (stats.last_token).
GenerateStats generate(LlamaContext& context, Sampler& sampler, std::span<const std::int32_t> prompt,
                       const GenerateOptions& options, const TextCallback& on_text);

}  // namespace piquant
