// piquant chat: a conversation on stdin/stdout. The conversation stays in the KV
// cache, so each turn evaluates only its own new tokens.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <string_view>

#include "cli/commands.h"
#include "cli/inference_options.h"
#include "core/error.h"
#include "core/logger.h"
#include "generate/chat_template.h"
#include "generate/generator.h"

namespace piquant::cli {
namespace {

struct ChatArgs {
  InferenceArgs inference;
  std::string system;
  std::int64_t n_predict = -1;
};

// One conversation: the messages so far and what the context holds of them.
class Conversation {
 public:
  Conversation(const ChatArgs& args, LlamaContext& context)
      : context_(context),
        tokenizer_(context.model().tokenizer()),
        format_(detect_chat_format(tokenizer_.vocab())),
        end_of_turn_(end_of_turn_token(format_, tokenizer_.vocab())),
        sampler_(args.inference.sampling) {
    if (!args.system.empty()) system_.push_back({"system", args.system});
    history_ = system_;
    options_.max_new_tokens = args.n_predict;
    options_.stop_tokens = end_of_generation_tokens(context.model());
    if (std::find(options_.stop_tokens.begin(), options_.stop_tokens.end(), end_of_turn_) == options_.stop_tokens.end()) {
      options_.stop_tokens.push_back(end_of_turn_);
    }
    log::debug("chat: ", chat_format_name(format_), " format");
  }

  void reply_to(const std::string& user_text) {
    const ChatMessage user{"user", user_text};
    std::vector<std::int32_t> tokens = turn_tokens(user);
    if (context_.n_past() + static_cast<std::int64_t>(tokens.size()) >= context_.n_ctx()) {
      log::warn("chat: the conversation fills the context of ", context_.n_ctx(),
                " tokens; starting over (the system prompt stays)");
      context_.reset();
      history_ = system_;
      last_ = {};
      tokens = turn_tokens(user);
      if (static_cast<std::int64_t>(tokens.size()) >= context_.n_ctx()) {
        log::error("chat: that message takes ", tokens.size(), " tokens, more than the context of ", context_.n_ctx(),
                   " leaves room for (raise --ctx); it was skipped");
        return;
      }
    }

    std::string reply;
    const GenerateStats stats = generate(context_, sampler_, tokens, options_, [&](std::string_view text) {
      reply += text;
      write_to_stdout(text);
    });
    write_to_stdout("\n");
    if (stats.stop_reason == StopReason::ContextFull) log::warn("chat: the context is full; the reply was cut short");
    log::debug("chat: ", stats.n_prompt, " prompt tokens (", stats.prompt_tokens_per_second(), " tokens/s), ",
               stats.n_generated, " generated (", stats.generated_tokens_per_second(), " tokens/s), stopped by ",
               stop_reason_name(stats.stop_reason));
    history_.push_back(user);
    history_.push_back({"assistant", reply});
    last_ = stats;
  }

 private:
  // The tokens that bring the context from the end of the last reply to the start of
  // the next: the last sampled token (never evaluated), the end of the assistant's
  // turn if the model did not end it itself, then the user's turn and the reply header.
  std::vector<std::int32_t> turn_tokens(const ChatMessage& user) const {
    std::vector<std::int32_t> tokens;
    if (context_.n_past() == 0) {  // a fresh context: the whole conversation, system prompt included
      std::vector<ChatMessage> messages = history_;
      messages.push_back(user);
      return tokenize_chat(tokenizer_, render_chat(format_, messages, true));
    }
    if (last_.last_token >= 0) tokens.push_back(last_.last_token);
    if (last_.stop_reason != StopReason::EndOfGeneration) tokens.push_back(end_of_turn_);
    const std::vector<std::int32_t> turn = tokenize_chat(tokenizer_, render_chat_continuation(format_, history_, user));
    tokens.insert(tokens.end(), turn.begin(), turn.end());
    return tokens;
  }

  LlamaContext& context_;
  const Tokenizer& tokenizer_;
  ChatFormat format_;
  std::int32_t end_of_turn_;
  Sampler sampler_;
  GenerateOptions options_;
  std::vector<ChatMessage> system_;
  std::vector<ChatMessage> history_;
  GenerateStats last_;
};

void run_chat(const ChatArgs& args) {
  LoadedModel loaded = load_model_and_context(args.inference);
  const bool interactive = ::isatty(0) != 0;
  if (interactive) log::info("chat: loaded in ", loaded.load_seconds, " s; type a message, end with Ctrl-D");
  Conversation conversation(args, *loaded.context);
  std::string line;
  for (;;) {
    if (interactive) write_to_stdout("> ");
    if (!std::getline(std::cin, line)) break;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    conversation.reply_to(line);
  }
  if (interactive) write_to_stdout("\n");
}

}  // namespace

void register_chat(CLI::App& app) {
  auto args = std::make_shared<ChatArgs>();
  CLI::App* cmd = app.add_subcommand("chat", "Chat with a model: one user message per line on stdin (EOF ends)");
  add_model_options(*cmd, args->inference);
  cmd->add_option("--system", args->system, "System prompt");
  cmd->add_option("-n,--n-predict", args->n_predict, "Tokens per reply at most (-1: until the model ends its turn)")
      ->capture_default_str();
  add_sampling_options(*cmd, args->inference.sampling);
  cmd->callback([args] { run_chat(*args); });
}

}  // namespace piquant::cli
