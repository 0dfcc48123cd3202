#pragma once
// Chat prompts for the two Llama conversation formats: rendering a conversation as
// the model was trained to see it, and knowing which format a model expects.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace piquant {

enum class ChatFormat {
  Llama3,  // <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>
  Llama2,  // <s>[INST] <<SYS>>\n...\n<</SYS>>\n\nuser [/INST] assistant </s>
};

std::string_view chat_format_name(ChatFormat format);  // "llama3", "llama2"

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

// The format a Jinja chat template (tokenizer.chat_template) writes, judged by the
// markers it contains; nullopt if it is neither.
std::optional<ChatFormat> chat_format_from_template(std::string_view jinja);

// The vocab's chat template if it is recognised, else Llama 3 when the vocab has
// <|start_header_id|>, else Llama 2.
ChatFormat detect_chat_format(const Vocab& vocab);

// The conversation as text, contents trimmed of surrounding whitespace as both
// templates do, with the BOS text in front. With add_generation_prompt it ends where
// the assistant's reply begins. Llama 2 allows one leading system message, then user
// and assistant turns alternating from a user turn; other orders throw Error.
std::string render_chat(ChatFormat format, std::span<const ChatMessage> messages, bool add_generation_prompt);

// Text that follows `history` (which ends with an assistant reply, or is only a
// system message or empty) when `message` is added, up to the generation prompt:
// render_chat(history + message, true) minus render_chat(history, false).
std::string render_chat_continuation(ChatFormat format, std::span<const ChatMessage> history, const ChatMessage& message);

// The token that closes an assistant turn: <|eot_id|> (Llama 3) or EOS (Llama 2).
// Throws Error if the vocab lacks it.
std::int32_t end_of_turn_token(ChatFormat format, const Vocab& vocab);

// Rendered text as tokens: control token texts (<|eot_id|>, <s>) become their ids, the
// BOS written in the text is the only one (no BOS is added).
std::vector<std::int32_t> tokenize_chat(const Tokenizer& tokenizer, std::string_view rendered);

}  // namespace piquant
