#include "generate/chat_template.h"

#include <algorithm>

#include "core/error.h"

namespace piquant {
namespace {

constexpr std::string_view kWhitespace = " \t\n\r\f\v";

// Jinja's `trim` / Python's str.strip() on ASCII whitespace.
std::string_view trim(std::string_view text) {
  const auto begin = text.find_first_not_of(kWhitespace);
  if (begin == std::string_view::npos) return {};
  const auto end = text.find_last_not_of(kWhitespace);
  return text.substr(begin, end - begin + 1);
}

// As Meta's Llama 3 template: the BOS text comes with the first message.
std::string render_llama3(std::span<const ChatMessage> messages, bool add_generation_prompt) {
  std::string out;
  for (const ChatMessage& message : messages) {
    if (out.empty()) out += "<|begin_of_text|>";
    out += "<|start_header_id|>";
    out += message.role;
    out += "<|end_header_id|>\n\n";
    out += trim(message.content);
    out += "<|eot_id|>";
  }
  if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

// As Meta's Llama 2 chat template: the system prompt goes inside the first user turn.
std::string render_llama2(std::span<const ChatMessage> messages) {
  std::string system;
  bool has_system = false;
  if (!messages.empty() && messages.front().role == "system") {
    system = messages.front().content;
    has_system = true;
    messages = messages.subspan(1);
  }
  std::string out;
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& message = messages[i];
    const bool user_turn = i % 2 == 0;
    if (message.role != (user_turn ? "user" : "assistant")) {
      throw Error("chat: the Llama 2 format needs user and assistant turns alternating from a user turn (after an "
                  "optional first system message); message " + std::to_string(i + (has_system ? 1 : 0)) +
                  " has role '" + message.role + "'");
    }
    if (user_turn) {
      std::string content = message.content;
      if (i == 0 && has_system) content = "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + content;
      out += "<s>[INST] ";
      out += trim(content);
      out += " [/INST]";
    } else {
      out += ' ';
      out += trim(message.content);
      out += " </s>";
    }
  }
  return out;
}

}  // namespace

std::string_view chat_format_name(ChatFormat format) {
  switch (format) {
    case ChatFormat::Llama3: return "llama3";
    case ChatFormat::Llama2: return "llama2";
  }
  return "unknown";
}

std::optional<ChatFormat> chat_format_from_template(std::string_view jinja) {
  if (jinja.find("<|start_header_id|>") != std::string_view::npos) return ChatFormat::Llama3;
  if (jinja.find("[INST]") != std::string_view::npos) return ChatFormat::Llama2;
  return std::nullopt;
}

ChatFormat detect_chat_format(const Vocab& vocab) {
  if (const auto format = chat_format_from_template(vocab.chat_template)) return *format;
  const bool has_headers =
      std::find(vocab.tokens.begin(), vocab.tokens.end(), "<|start_header_id|>") != vocab.tokens.end();
  return has_headers ? ChatFormat::Llama3 : ChatFormat::Llama2;
}

std::string render_chat(ChatFormat format, std::span<const ChatMessage> messages, bool add_generation_prompt) {
  switch (format) {
    case ChatFormat::Llama3: return render_llama3(messages, add_generation_prompt);
    case ChatFormat::Llama2: return render_llama2(messages);  // the reply follows [/INST] directly
  }
  throw Error("chat: unknown chat format");
}

std::string render_chat_continuation(ChatFormat format, std::span<const ChatMessage> history,
                                     const ChatMessage& message) {
  std::vector<ChatMessage> extended(history.begin(), history.end());
  extended.push_back(message);
  const std::string before = render_chat(format, history, false);
  const std::string after = render_chat(format, extended, true);
  if (!after.starts_with(before)) {
    throw Error("chat: adding a '" + message.role + "' message rewrites the earlier conversation in the " +
                std::string(chat_format_name(format)) + " format");
  }
  return after.substr(before.size());
}

std::int32_t end_of_turn_token(ChatFormat format, const Vocab& vocab) {
  const std::int32_t id = format == ChatFormat::Llama3 && vocab.eot_id >= 0 ? vocab.eot_id : vocab.eos_id;
  if (id < 0) {
    throw Error("chat: the vocab has no " + std::string(format == ChatFormat::Llama3 ? "<|eot_id|> or EOS" : "EOS") +
                " token to end a turn");
  }
  return id;
}

std::vector<std::int32_t> tokenize_chat(const Tokenizer& tokenizer, std::string_view rendered) {
  return tokenizer.encode(rendered, /*add_special=*/false, /*parse_special=*/true);
}

}  // namespace piquant
