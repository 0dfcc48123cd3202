// Streaming completions: the text stream's hold-back rules on hand-made pieces, and
// generate() on stories260K (a real pretrained model) converted to GGUF.
#include <gtest/gtest.h>

#include <random>

#include "core/error.h"
#include "checkpoint/checkpoint.h"
#include "generate/generator.h"
#include "checkpoint/gguf_export.h"
#include "engine/llama_context.h"
#include "engine/llama_model.h"
#include "generate/text_stream.h"
#include "support/test_support.h"
#include "tokenizer/unicode_utf8.h"

namespace piquant {
namespace {

// Records each delivery.
struct Deliveries {
  std::vector<std::string> pieces;
  TextStream::Callback callback() {
    return [this](std::string_view text) { pieces.emplace_back(text); };
  }
  std::string text() const {
    std::string all;
    for (const auto& piece : pieces) all += piece;
    return all;
  }
};

TEST(TextStream, DeliversPlainTextAtOnce) {
  Deliveries out;
  TextStream stream({}, out.callback());
  EXPECT_FALSE(stream.push("Hello"));
  EXPECT_FALSE(stream.push(" world"));
  EXPECT_EQ(out.pieces, (std::vector<std::string>{"Hello", " world"}));
  stream.finish();
  EXPECT_EQ(out.pieces.size(), 2u);
}

TEST(TextStream, HoldsBackUnfinishedUtf8) {
  Deliveries out;
  TextStream stream({}, out.callback());
  stream.push("caf\xC3");  // é is C3 A9
  EXPECT_EQ(out.text(), "caf");
  stream.push("\xA9!");
  EXPECT_EQ(out.text(), "caf\xC3\xA9!");
  // U+1F600 (F0 9F 98 80) one byte at a time: nothing until the last byte.
  for (const char* byte : {"\xF0", "\x9F", "\x98"}) {
    stream.push(byte);
    EXPECT_EQ(out.text(), "caf\xC3\xA9!");
  }
  stream.push("\x80");
  EXPECT_EQ(out.text(), "caf\xC3\xA9!\xF0\x9F\x98\x80");
}

TEST(TextStream, InvalidAndUnfinishedBytesBecomeReplacementCharacters) {
  Deliveries out;
  TextStream stream({}, out.callback());
  stream.push("a\xFF" "b");
  EXPECT_EQ(out.text(), "a\xEF\xBF\xBD" "b");
  stream.push("c\xE2\x82");  // the start of a 3-byte sequence that never ends
  EXPECT_EQ(out.text(), "a\xEF\xBF\xBD" "bc");
  stream.finish();
  EXPECT_TRUE(is_valid_utf8(out.text()));
  EXPECT_TRUE(out.text().starts_with("a\xEF\xBF\xBD" "bc\xEF\xBF\xBD")) << out.text();
}

TEST(TextStream, StopStringSplitAcrossPieces) {
  Deliveries out;
  TextStream stream({"</end>"}, out.callback());
  EXPECT_FALSE(stream.push("abc<"));
  EXPECT_EQ(out.text(), "abc");  // "<" could begin the stop string
  EXPECT_FALSE(stream.push("/en"));
  EXPECT_EQ(out.text(), "abc");
  EXPECT_TRUE(stream.push("d>tail"));
  EXPECT_TRUE(stream.stopped());
  EXPECT_TRUE(stream.push("more"));
  stream.finish();
  EXPECT_EQ(out.text(), "abc");
}

TEST(TextStream, HeldTextIsReleasedWhenItStopsMatching) {
  Deliveries out;
  TextStream stream({"STOP"}, out.callback());
  stream.push("xS");
  EXPECT_EQ(out.text(), "x");
  stream.push("T");
  EXPECT_EQ(out.text(), "x");
  stream.push("ay");
  EXPECT_EQ(out.text(), "xSTay");
  stream.push("ST");
  stream.finish();  // the end of generation makes held text final
  EXPECT_EQ(out.text(), "xSTayST");
  EXPECT_FALSE(stream.stopped());
}

TEST(TextStream, EarliestStopStringWins) {
  Deliveries out;
  TextStream stream({"two", "", "one"}, out.callback());
  EXPECT_TRUE(stream.push("a one two"));
  EXPECT_EQ(out.text(), "a ");
}

TEST(TextStream, AnySplitGivesTheSameValidText) {
  const std::string text = "Zo\xC3\xAB \xE2\x82\xAC 5 \xF0\x9F\x98\x80 na\xC3\xAFve <|x|> end";
  std::mt19937 rng(5);
  for (int round = 0; round < 200; ++round) {
    Deliveries out;
    TextStream stream({"<|y|>"}, out.callback());
    std::size_t pos = 0;
    while (pos < text.size()) {
      const std::size_t n = std::min<std::size_t>(text.size() - pos, 1 + rng() % 4);
      stream.push(std::string_view(text).substr(pos, n));
      pos += n;
    }
    stream.finish();
    for (const auto& piece : out.pieces) ASSERT_TRUE(is_valid_utf8(piece)) << piece;
    ASSERT_EQ(out.text(), text);
  }
}

TEST(TextStream, CompleteUtf8Prefix) {
  EXPECT_EQ(utf8_complete_prefix(""), 0u);
  EXPECT_EQ(utf8_complete_prefix("abc"), 3u);
  EXPECT_EQ(utf8_complete_prefix("a\xC3"), 1u);
  EXPECT_EQ(utf8_complete_prefix("a\xC3\xA9"), 3u);
  EXPECT_EQ(utf8_complete_prefix("a\xE2\x82"), 1u);
  EXPECT_EQ(utf8_complete_prefix("a\xF0\x9F\x98"), 1u);
  EXPECT_EQ(utf8_complete_prefix("a\xF0\x9F\x98\x80"), 5u);
  EXPECT_EQ(utf8_complete_prefix("a\x80"), 2u);  // a stray continuation byte will never complete
  EXPECT_EQ(utf8_complete_prefix("a\xFF"), 2u);
}

TEST(Generator, StopReasonNames) {
  EXPECT_EQ(stop_reason_name(StopReason::EndOfGeneration), "end of generation");
  EXPECT_EQ(stop_reason_name(StopReason::StopString), "stop string");
  EXPECT_EQ(stop_reason_name(StopReason::MaxTokens), "max tokens");
  EXPECT_EQ(stop_reason_name(StopReason::ContextFull), "context full");
}

// stories260K converted once per test program (to f32, so the weights are exact).
class Stories260K : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto bin = PIQUANT_SHARED_FILE("models/stories260K/stories260K.bin");
    const auto tok = PIQUANT_SHARED_FILE("models/stories260K/tok512.bin");
    static testing::TempDir dir;
    static std::unique_ptr<LlamaModel> loaded;
    if (!loaded) {
      CheckpointOptions options;
      options.tokenizer_path = tok.string();
      GgufExportOptions export_options;
      export_options.type = GgmlType::F32;
      export_gguf(*open_checkpoint(bin.string(), options), (dir / "stories260K.gguf").string(), export_options);
      loaded = LlamaModel::load((dir / "stories260K.gguf").string());
    }
    model = loaded.get();
  }

  std::unique_ptr<LlamaContext> context(std::int64_t n_ctx = 256) const {
    ContextOptions options;
    options.n_ctx = n_ctx;
    options.n_threads = 1;
    return std::make_unique<LlamaContext>(*model, options);
  }
  std::vector<std::int32_t> prompt(const std::string& text = "Once upon a time") const {
    return model->tokenizer().encode(text, true, false);
  }
  static SamplerOptions greedy() {
    SamplerOptions options;
    options.temperature = 0.0f;
    return options;
  }

  const LlamaModel* model = nullptr;
};

struct Completion {
  std::string text;
  GenerateStats stats;
};

Completion complete(LlamaContext& context, Sampler& sampler, const std::vector<std::int32_t>& prompt,
                    const GenerateOptions& options) {
  Completion out;
  out.stats = generate(context, sampler, prompt, options, [&](std::string_view piece) {
    EXPECT_TRUE(is_valid_utf8(piece));
    out.text += piece;
  });
  return out;
}

// llama.cpp's greedy continuation of this prompt on stories260K says the same.
TEST_F(Stories260K, GreedyCompletionIsTheKnownStory) {
  auto ctx = context();
  Sampler sampler(greedy());
  GenerateOptions options;
  options.max_new_tokens = 40;
  options.stop_tokens = end_of_generation_tokens(*model);
  const auto tokens = prompt();
  const Completion out = complete(*ctx, sampler, tokens, options);
  EXPECT_NE(out.text.find("little girl named Lily"), std::string::npos) << out.text;
  EXPECT_EQ(out.stats.n_prompt, static_cast<std::int64_t>(tokens.size()));
  EXPECT_EQ(out.stats.n_generated, 40);
  EXPECT_EQ(out.stats.stop_reason, StopReason::MaxTokens);
  EXPECT_EQ(ctx->n_past(), out.stats.n_prompt + 39);  // the last token is never evaluated
}

// Continuing from the cache (the last token first) gives what one longer run gives.
TEST_F(Stories260K, ContinuingInTheCacheEqualsOneRun) {
  GenerateOptions options;
  options.max_new_tokens = 30;
  auto whole_ctx = context();
  Sampler whole_sampler(greedy());
  const Completion whole = complete(*whole_ctx, whole_sampler, prompt(), options);

  auto ctx = context();
  Sampler sampler(greedy());
  options.max_new_tokens = 12;
  const Completion first = complete(*ctx, sampler, prompt(), options);
  options.max_new_tokens = 18;
  const std::vector<std::int32_t> next{first.stats.last_token};
  const Completion second = complete(*ctx, sampler, next, options);
  EXPECT_EQ(second.stats.n_prompt, 1);
  EXPECT_EQ(first.text + second.text, whole.text);
}

TEST_F(Stories260K, StopsBeforeAStopString) {
  auto ctx = context();
  Sampler sampler(greedy());
  GenerateOptions options;
  options.max_new_tokens = 40;
  options.stop_strings = {"Lily"};
  const Completion out = complete(*ctx, sampler, prompt(), options);
  EXPECT_EQ(out.stats.stop_reason, StopReason::StopString);
  EXPECT_TRUE(out.text.ends_with("little girl named ")) << out.text;
  EXPECT_LT(out.stats.n_generated, 40);
}

TEST_F(Stories260K, StopsAtAStopToken) {
  // The greedy run's third token: the last one sampled when stopping at 3.
  GenerateOptions options;
  options.max_new_tokens = 3;
  auto probe_ctx = context();
  Sampler probe_sampler(greedy());
  const Completion probe = complete(*probe_ctx, probe_sampler, prompt(), options);
  ASSERT_GE(probe.stats.last_token, 0);

  auto ctx = context();
  Sampler sampler(greedy());
  options.max_new_tokens = 10;
  options.stop_tokens = {probe.stats.last_token};
  const Completion out = complete(*ctx, sampler, prompt(), options);
  EXPECT_EQ(out.stats.stop_reason, StopReason::EndOfGeneration);
  EXPECT_EQ(out.stats.last_token, probe.stats.last_token);
  EXPECT_EQ(out.stats.n_generated, 2);
  EXPECT_TRUE(probe.text.starts_with(out.text));
  EXPECT_LT(out.text.size(), probe.text.size());
}

TEST_F(Stories260K, StopsWhenTheContextIsFull) {
  const auto tokens = prompt();
  const std::int64_t n_ctx = static_cast<std::int64_t>(tokens.size()) + 6;
  auto ctx = context(n_ctx);
  Sampler sampler(greedy());
  GenerateOptions options;
  options.max_new_tokens = -1;
  const Completion out = complete(*ctx, sampler, tokens, options);
  EXPECT_EQ(out.stats.stop_reason, StopReason::ContextFull);
  EXPECT_EQ(out.stats.n_generated, 7);  // 6 evaluated, then one more sampled from the last logits
  EXPECT_EQ(ctx->n_past(), n_ctx);
}

TEST_F(Stories260K, BadPromptsThrow) {
  auto ctx = context(4);
  Sampler sampler(greedy());
  GenerateOptions options;
  const auto ignore = [](std::string_view) {};
  EXPECT_THROW(generate(*ctx, sampler, {}, options, ignore), Error);
  const auto tokens = prompt("Once upon a time there was a dog");
  ASSERT_GT(tokens.size(), 4u);
  EXPECT_THROW(generate(*ctx, sampler, tokens, options, ignore), Error);
  EXPECT_EQ(ctx->n_past(), 0);
}

TEST_F(Stories260K, NothingIsSampledForZeroTokens) {
  auto ctx = context();
  Sampler sampler(greedy());
  GenerateOptions options;
  options.max_new_tokens = 0;
  const Completion out = complete(*ctx, sampler, prompt(), options);
  EXPECT_EQ(out.text, "");
  EXPECT_EQ(out.stats.n_generated, 0);
  EXPECT_EQ(out.stats.last_token, -1);
  EXPECT_EQ(out.stats.stop_reason, StopReason::MaxTokens);
}

TEST_F(Stories260K, SameSeedSameTextWithSampling) {
  SamplerOptions sampling;
  sampling.temperature = 1.0f;
  sampling.top_k = 0;
  sampling.top_p = 1.0f;
  sampling.min_p = 0.0f;
  GenerateOptions options;
  options.max_new_tokens = 40;
  const auto run = [&](std::uint64_t seed) {
    sampling.seed = seed;
    auto ctx = context();
    Sampler sampler(sampling);
    return complete(*ctx, sampler, prompt(), options).text;
  };
  const std::string a = run(11);
  EXPECT_EQ(run(11), a);
  EXPECT_NE(run(12), a);  // 40 draws at temperature 1 do not all agree by chance
}

TEST_F(Stories260K, EndOfGenerationTokensAreTheVocabs) {
  const auto tokens = end_of_generation_tokens(*model);
  ASSERT_FALSE(tokens.empty());
  EXPECT_EQ(tokens.front(), model->vocab().eos_id);
  EXPECT_EQ(model->vocab().tokens[static_cast<std::size_t>(model->vocab().eos_id)], "</s>");
}

}  // namespace
}  // namespace piquant
