#include "generate/generator.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "generate/text_stream.h"

namespace piquant {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

std::string_view stop_reason_name(StopReason reason) {
  switch (reason) {
    case StopReason::EndOfGeneration: return "end of generation";
    case StopReason::StopString: return "stop string";
    case StopReason::MaxTokens: return "max tokens";
    case StopReason::ContextFull: return "context full";
  }
  return "unknown";
}

std::vector<std::int32_t> end_of_generation_tokens(const LlamaModel& model) {
  std::vector<std::int32_t> tokens;
  const auto add = [&](std::int64_t id) {
    if (id < 0 || id >= static_cast<std::int64_t>(model.vocab().size())) return;
    const auto token = static_cast<std::int32_t>(id);
    if (std::find(tokens.begin(), tokens.end(), token) == tokens.end()) tokens.push_back(token);
  };
  const Vocab& vocab = model.vocab();
  add(vocab.eos_id);
  add(vocab.eot_id);
  add(vocab.eom_id);
  for (const std::int64_t id : model.params().eos_token_ids) add(id);
  return tokens;
}

GenerateStats generate(LlamaContext& context, Sampler& sampler, std::span<const std::int32_t> prompt,
                       const GenerateOptions& options, const TextCallback& on_text) {
  if (prompt.empty()) throw Error("generate: the prompt has no tokens (a completion needs at least one to follow)");
  const std::int64_t room = context.n_ctx() - context.n_past();
  if (static_cast<std::int64_t>(prompt.size()) > room) {
    throw Error("generate: the prompt's " + std::to_string(prompt.size()) + " tokens do not fit the context (" +
                std::to_string(room) + " of " + std::to_string(context.n_ctx()) + " positions free; raise --ctx)");
  }

  GenerateStats stats;
  stats.n_prompt = static_cast<std::int64_t>(prompt.size());
  const auto prompt_start = std::chrono::steady_clock::now();
  std::span<const float> logits = context.eval(prompt);
  stats.prompt_seconds = seconds_since(prompt_start);
  for (const std::int32_t token : prompt) sampler.accept(token);

  const Tokenizer& tokenizer = context.model().tokenizer();
  TextStream text(options.stop_strings, on_text);
  const auto is_stop_token = [&](std::int32_t token) {
    return std::find(options.stop_tokens.begin(), options.stop_tokens.end(), token) != options.stop_tokens.end();
  };
  const auto reached_max = [&] { return options.max_new_tokens >= 0 && stats.n_generated >= options.max_new_tokens; };

  const auto decode_start = std::chrono::steady_clock::now();
  stats.stop_reason = StopReason::MaxTokens;
  while (!reached_max()) {
    const std::int32_t token = sampler.sample(logits);
    sampler.accept(token);
    stats.last_token = token;
    if (is_stop_token(token)) {
      stats.stop_reason = StopReason::EndOfGeneration;
      break;
    }
    ++stats.n_generated;
    if (text.push(tokenizer.token_to_piece(token))) {
      stats.stop_reason = StopReason::StopString;
      break;
    }
    if (reached_max()) break;
    if (context.n_past() >= context.n_ctx()) {
      stats.stop_reason = StopReason::ContextFull;
      break;
    }
    const std::int32_t next[1] = {token};
    logits = context.eval(next);
  }
  text.finish();
  stats.decode_seconds = seconds_since(decode_start);
  return stats;
}

}  // namespace piquant
