// Chat prompts: rendered text and token ids written out by hand from Meta's formats
// (ids looked up in the tokenizer files' own vocabularies).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "generate/chat_template.h"
#include "support/test_support.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab.h"

namespace piquant {
namespace {

const std::vector<ChatMessage> kConversation{
    {"system", "You are helpful."},
    {"user", " Hi there \n"},
    {"assistant", "Hello!"},
    {"user", "Hi"},
};

TEST(ChatTemplate, Llama3Text) {
  EXPECT_EQ(render_chat(ChatFormat::Llama3, kConversation, true),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  const std::vector<ChatMessage> one{{"user", "Hi"}};
  EXPECT_EQ(render_chat(ChatFormat::Llama3, one, false),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
  EXPECT_EQ(render_chat(ChatFormat::Llama3, {}, false), "");
}

TEST(ChatTemplate, Llama2Text) {
  EXPECT_EQ(render_chat(ChatFormat::Llama2, kConversation, true),
            "<s>[INST] <<SYS>>\nYou are helpful.\n<</SYS>>\n\n Hi there [/INST] Hello! </s><s>[INST] Hi [/INST]");
  const std::vector<ChatMessage> no_system{{"user", "Hi"}, {"assistant", " Hello "}};
  EXPECT_EQ(render_chat(ChatFormat::Llama2, no_system, false), "<s>[INST] Hi [/INST] Hello </s>");
  EXPECT_EQ(render_chat(ChatFormat::Llama2, std::span(kConversation).first(1), true), "");
}

TEST(ChatTemplate, Llama2RejectsTurnsOutOfOrder) {
  const std::vector<ChatMessage> two_users{{"user", "a"}, {"user", "b"}};
  EXPECT_THROW(render_chat(ChatFormat::Llama2, two_users, true), Error);
  const std::vector<ChatMessage> assistant_first{{"system", "s"}, {"assistant", "a"}};
  EXPECT_THROW(render_chat(ChatFormat::Llama2, assistant_first, true), Error);
  const std::vector<ChatMessage> late_system{{"user", "a"}, {"assistant", "b"}, {"system", "c"}};
  EXPECT_THROW(render_chat(ChatFormat::Llama2, late_system, true), Error);
}

// What a chat loop evaluates for each new turn is the full rendering's new tail.
TEST(ChatTemplate, ContinuationIsTheNewTail) {
  const std::span<const ChatMessage> history = std::span(kConversation).first(3);
  EXPECT_EQ(render_chat_continuation(ChatFormat::Llama3, history, kConversation[3]),
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(render_chat_continuation(ChatFormat::Llama2, history, kConversation[3]), "<s>[INST] Hi [/INST]");
  for (const ChatFormat format : {ChatFormat::Llama3, ChatFormat::Llama2}) {
    for (const std::size_t h : {1, 3}) {  // after the system prompt, after a reply
      const auto history = std::span(kConversation).first(h);
      EXPECT_EQ(render_chat(format, history, false) + render_chat_continuation(format, history, kConversation[h]),
                render_chat(format, std::span(kConversation).first(h + 1), true))
          << chat_format_name(format) << " after " << h << " messages";
    }
    EXPECT_EQ(render_chat_continuation(format, {}, kConversation[1]),
              render_chat(format, std::span(kConversation).subspan(1, 1), true));
  }
  // Llama 2 puts the system prompt inside the first user turn, so that turn is all of it.
  EXPECT_EQ(render_chat_continuation(ChatFormat::Llama2, std::span(kConversation).first(1), kConversation[1]),
            "<s>[INST] <<SYS>>\nYou are helpful.\n<</SYS>>\n\n Hi there [/INST]");
}

TEST(ChatTemplate, DetectsTheRealLlama3Template) {
  const auto config_path = PIQUANT_SHARED_FILE("tokenizers/llama3/tokenizer_config.json");
  const auto config = nlohmann::json::parse(testing::read_file(config_path));
  EXPECT_EQ(chat_format_from_template(config.at("chat_template").get<std::string>()), ChatFormat::Llama3);
}

TEST(ChatTemplate, DetectsByTemplateThenByVocab) {
  // Meta's Llama 2 chat template as published with Llama-2-7b-chat-hf (abridged).
  const std::string llama2 =
      "{% for message in loop_messages %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + "
      "content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + "
      "eos_token }}{% endif %}{% endfor %}";
  EXPECT_EQ(chat_format_from_template(llama2), ChatFormat::Llama2);
  EXPECT_EQ(chat_format_from_template("{{ messages }}"), std::nullopt);

  Vocab vocab;
  vocab.tokens = {"a", "b", "<|start_header_id|>"};
  EXPECT_EQ(detect_chat_format(vocab), ChatFormat::Llama3);
  vocab.chat_template = llama2;  // the template wins over the vocab
  EXPECT_EQ(detect_chat_format(vocab), ChatFormat::Llama2);
  vocab.chat_template = "{{ messages }}";
  EXPECT_EQ(detect_chat_format(vocab), ChatFormat::Llama3);
  vocab.tokens = {"<s>", "</s>", "a"};
  EXPECT_EQ(detect_chat_format(vocab), ChatFormat::Llama2);
}

TEST(ChatTemplate, Llama3TokenIds) {
  const auto path = PIQUANT_SHARED_FILE("tokenizers/llama3/tokenizer.json");
  const auto tokenizer = Tokenizer::create(load_vocab_hf(path.string()));
  EXPECT_EQ(detect_chat_format(tokenizer->vocab()), ChatFormat::Llama3);  // its tokenizer_config.json's template
  EXPECT_EQ(end_of_turn_token(ChatFormat::Llama3, tokenizer->vocab()), 128009);
  const std::vector<std::int32_t> expected{
      128000, 128006, 9125, 128007, 271, 2675, 527, 11190, 13, 128009,  // system: You are helpful.
      128006, 882, 128007, 271, 13347, 1070, 128009,                     // user: Hi there
      128006, 78191, 128007, 271, 9906, 0, 128009,                       // assistant: Hello!
      128006, 882, 128007, 271, 13347, 128009,                           // user: Hi
      128006, 78191, 128007, 271};                                       // assistant header
  EXPECT_EQ(tokenize_chat(*tokenizer, render_chat(ChatFormat::Llama3, kConversation, true)), expected);
}

TEST(ChatTemplate, Llama2TokenIds) {
  const auto path = PIQUANT_SHARED_FILE("tokenizers/llama2/tokenizer.model");
  const auto tokenizer = Tokenizer::create(load_vocab_sentencepiece(path.string()));
  const Vocab& vocab = tokenizer->vocab();
  EXPECT_EQ(detect_chat_format(vocab), ChatFormat::Llama2);
  EXPECT_EQ(end_of_turn_token(ChatFormat::Llama2, vocab), 2);
  // "<s>[INST] Hi [/INST] Hello </s><s>[INST] Hi [/INST]" as Meta's reference code
  // encodes it turn by turn: [INST] is ▁[ INST ], the reply keeps its trailing ▁.
  const std::vector<ChatMessage> conversation{{"user", "Hi"}, {"assistant", "Hello"}, {"user", "Hi"}};
  const std::vector<std::int32_t> expected{1, 518, 25580, 29962, 6324, 518, 29914, 25580, 29962, 15043, 29871, 2,
                                           1, 518, 25580, 29962, 6324, 518, 29914, 25580, 29962};
  EXPECT_EQ(tokenize_chat(*tokenizer, render_chat(ChatFormat::Llama2, conversation, true)), expected);
  // The ids are the pieces they should be.
  EXPECT_EQ(vocab.tokens[518], "\xE2\x96\x81[");
  EXPECT_EQ(vocab.tokens[25580], "INST");
  EXPECT_EQ(vocab.tokens[29962], "]");
  EXPECT_EQ(vocab.tokens[29914], "/");
  EXPECT_EQ(vocab.tokens[6324], "\xE2\x96\x81Hi");
  EXPECT_EQ(vocab.tokens[15043], "\xE2\x96\x81Hello");
  EXPECT_EQ(vocab.tokens[29871], "\xE2\x96\x81");
}

TEST(ChatTemplate, EndOfTurnNeedsTheToken) {
  Vocab vocab;
  vocab.tokens = {"a"};
  EXPECT_THROW(end_of_turn_token(ChatFormat::Llama3, vocab), Error);
  EXPECT_THROW(end_of_turn_token(ChatFormat::Llama2, vocab), Error);
  vocab.eos_id = 0;
  EXPECT_EQ(end_of_turn_token(ChatFormat::Llama3, vocab), 0);  // no EOT: EOS ends the turn
}

}  // namespace
}  // namespace piquant
