#include "train/training_data.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <set>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "support/test_support.h"
#include "tokenizer/bpe_llama3_fixture.h"
#include "core/split_mix64.h"

namespace piquant {
namespace {

using testing::TempDir;

const Tokenizer& stories_tokenizer(const std::filesystem::path& tok512) {
  static std::unique_ptr<Tokenizer> tokenizer = Tokenizer::create(load_vocab_llama2c(tok512.string(), 512));
  return *tokenizer;
}

// The Alpaca template, written out here independently of alpaca_prompt().
std::string expected_prompt(const std::string& instruction, const std::string& input) {
  if (input.empty()) {
    return "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
           "### Instruction:\n" + instruction + "\n\n### Response:\n";
  }
  return "Below is an instruction that describes a task, paired with an input that provides further context. Write a response "
         "that appropriately completes the request.\n\n### Instruction:\n" + instruction + "\n\n### Input:\n" + input +
         "\n\n### Response:\n";
}

std::string pieces(const Tokenizer& tokenizer, std::span<const std::int32_t> ids) {
  std::string text;
  for (const auto id : ids) text += tokenizer.token_to_piece(id);
  return text;
}

// Every example: BOS first, EOS last, the mask a contiguous run to the end whose targets
// decode to exactly the record's output, and the tokens before it to exactly the prompt.
void check_alpaca_examples(const Tokenizer& tokenizer, const nlohmann::json& records, const TrainingData& data) {
  const Vocab& vocab = tokenizer.vocab();
  ASSERT_EQ(data.examples.size(), static_cast<std::size_t>(data.stats.records));
  EXPECT_EQ(data.stats.boundary_merged, 0);
  EXPECT_EQ(data.stats.truncated, 0);
  std::int64_t targets = 0;
  for (std::size_t i = 0; i < data.examples.size(); ++i) {
    SCOPED_TRACE("record " + std::to_string(i));
    const TrainingExample& ex = data.examples[i];
    const std::string instruction = records[i]["instruction"];
    const std::string input = records[i].value("input", "");
    const std::string output = records[i]["output"];
    ASSERT_EQ(ex.loss_mask.size() + 1, ex.tokens.size());
    ASSERT_EQ(ex.tokens.front(), vocab.bos_id);
    ASSERT_EQ(ex.tokens.back(), vocab.eos_id);
    const auto first = static_cast<std::size_t>(std::find(ex.loss_mask.begin(), ex.loss_mask.end(), 1) - ex.loss_mask.begin());
    ASSERT_LT(first, ex.loss_mask.size());
    for (std::size_t t = first; t < ex.loss_mask.size(); ++t) ASSERT_EQ(ex.loss_mask[t], 1) << "mask gap at " << t;
    // Targets first .. end are tokens first+1 .. end: the output, then EOS (decodes to "").
    const auto masked = std::span(ex.tokens).subspan(first + 1);
    EXPECT_EQ(pieces(tokenizer, masked.first(masked.size() - 1)), output);
    EXPECT_EQ(tokenizer.decode(std::span(ex.tokens).subspan(1, first)), expected_prompt(instruction, input));
    targets += static_cast<std::int64_t>(masked.size());
  }
  EXPECT_EQ(data.stats.loss_targets, targets);
}

TEST(TrainingData, AlpacaPromptTemplate) {
  EXPECT_EQ(alpaca_prompt("Say hi.", ""), expected_prompt("Say hi.", ""));
  EXPECT_EQ(alpaca_prompt("Translate.", "chat"), expected_prompt("Translate.", "chat"));
}

TEST(TrainingData, AlpacaWordnetMaskIsTheOutputStories260K) {
  const auto path = PIQUANT_SHARED_FILE("instruct/wordnet_define_alpaca.json");
  const auto tok = PIQUANT_SHARED_FILE("models/stories260K/tok512.bin");
  const Tokenizer& tokenizer = stories_tokenizer(tok);
  const auto records = nlohmann::json::parse(testing::read_file(path));
  const TrainingData data = load_alpaca(path.string(), tokenizer, {.max_seq = 4096, .max_records = 200});
  ASSERT_EQ(data.stats.records, 200);
  check_alpaca_examples(tokenizer, records, data);
}

TEST(TrainingData, AlpacaWordnetMaskIsTheOutputLlama3) {
  const auto path = PIQUANT_SHARED_FILE("instruct/wordnet_define_alpaca.json");
  const auto tok = PIQUANT_SHARED_FILE(testing::kLlama3TokenizerJson);
  const Tokenizer& tokenizer = *testing::cached_bpe(tok.string()).tokenizer;
  const auto records = nlohmann::json::parse(testing::read_file(path));
  // Records from the middle of the file too, through a smaller file with an input field.
  nlohmann::json picked = nlohmann::json::array();
  for (std::size_t i = 0; i < records.size(); i += records.size() / 150) picked.push_back(records[i]);
  picked.push_back({{"instruction", "Use the word in a sentence."}, {"input", "ephemeral"}, {"output", "Fame is ephemeral ✓ 😀."}});
  picked.push_back({{"instruction", "Say <|eot_id|> literally."}, {"output", " <|eot_id|> and a leading space"}});
  const TempDir dir;
  testing::write_file(dir / "picked.json", picked.dump());
  const TrainingData data = load_alpaca((dir / "picked.json").string(), tokenizer, {.max_seq = 4096});
  check_alpaca_examples(tokenizer, picked, data);
  // Control-token text in the data stays text.
  const auto& last = data.examples.back().tokens;
  ASSERT_GE(tokenizer.vocab().eot_id, 0);
  EXPECT_EQ(std::count(last.begin(), last.end() - 1, tokenizer.vocab().eot_id), 0);  // the last is EOS
}

TEST(TrainingData, AlpacaTruncationKeepsTheFirstTokensAndDropsRecordsWithoutTargets) {
  const auto tok = PIQUANT_SHARED_FILE("models/stories260K/tok512.bin");
  const Tokenizer& tokenizer = stories_tokenizer(tok);
  const std::string json = R"([{"instruction": "Tell a story.", "output": "Once upon a time there was a cat."},
                               {"instruction": "Tell a story.", "input": "", "output": ""}])";
  const TrainingData full = parse_alpaca(json, "inline", tokenizer, {.max_seq = 4096});
  ASSERT_EQ(full.examples.size(), 2u);
  const TrainingExample& whole = full.examples[0];
  const auto prompt_tokens = static_cast<std::int64_t>(std::find(whole.loss_mask.begin(), whole.loss_mask.end(), 1) - whole.loss_mask.begin()) + 1;
  // The empty output trains on EOS alone.
  EXPECT_EQ(full.examples[1].n_loss_targets(), 1);

  // Cut 3 tokens into the output: the first max_seq + 1 tokens, mask cut alike.
  const std::int64_t max_seq = prompt_tokens + 2;
  const TrainingData cut = parse_alpaca(json, "inline", tokenizer, {.max_seq = max_seq});
  ASSERT_EQ(cut.examples.size(), 2u);
  EXPECT_EQ(cut.stats.truncated, 1);
  EXPECT_EQ(cut.stats.dropped, 0);
  const TrainingExample& ex = cut.examples[0];
  ASSERT_EQ(ex.tokens.size(), static_cast<std::size_t>(max_seq + 1));
  EXPECT_TRUE(std::equal(ex.tokens.begin(), ex.tokens.end(), whole.tokens.begin()));
  EXPECT_TRUE(std::equal(ex.loss_mask.begin(), ex.loss_mask.end(), whole.loss_mask.begin()));
  EXPECT_EQ(ex.n_loss_targets(), 3);

  // A limit inside the prompt leaves no target: both records are dropped.
  const TrainingData none = parse_alpaca(json, "inline", tokenizer, {.max_seq = prompt_tokens - 5});
  EXPECT_TRUE(none.examples.empty());
  EXPECT_EQ(none.stats.dropped, 2);
  EXPECT_EQ(none.stats.truncated, 0);  // dropped records are not counted as truncated examples
  EXPECT_EQ(none.stats.records, 2);
}

struct MalformedCase {
  const char* name;
  std::string json;
  std::vector<std::string> expected;  // substrings of the message
};

TEST(TrainingData, MalformedAlpacaIsRefusedNamingFileAndRecord) {
  const auto tok = PIQUANT_SHARED_FILE("models/stories260K/tok512.bin");
  const Tokenizer& tokenizer = stories_tokenizer(tok);
  const std::string good = R"({"instruction": "a", "output": "b"})";
  const std::vector<MalformedCase> cases = {
      {"not an array", R"({"instruction": "a", "output": "b"})", {"expected an array", "object"}},
      {"element not an object", "[" + good + ", 7]", {"record 1", "not an object", "number"}},
      {"missing instruction", "[" + good + R"(, {"output": "b"}])", {"record 1", "\"instruction\" is missing"}},
      {"missing output", "[" + good + "," + good + R"(, {"instruction": "a", "input": "x"}])", {"record 2", "\"output\" is missing"}},
      {"input not a string", R"([{"instruction": "a", "input": 3, "output": "b"}])", {"record 0", "\"input\" is not a string", "number"}},
      {"instruction null", R"([{"instruction": null, "output": "b"}])", {"record 0", "\"instruction\" is not a string", "null"}},
      {"output an array", R"([{"instruction": "a", "output": ["b"]}])", {"record 0", "\"output\" is not a string", "array"}},
      // Offsets from 0, counted by hand: the second ',' is byte 37; the end of input is the size.
      {"syntax error", R"([{"instruction": "a", "output": "b"},,])", {"syntax error at byte offset 37"}},
      {"unterminated", R"([{"instruction": "a", "output": "b"})", {"syntax error at byte offset 36"}},
      {"empty file", "", {"syntax error at byte offset 0"}},
  };
  const TempDir dir;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const auto path = (dir / "bad.json").string();
    testing::write_file(path, c.json);
    try {
      load_alpaca(path, tokenizer, {});
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find(path), std::string::npos) << message;
      for (const auto& part : c.expected) EXPECT_NE(message.find(part), std::string::npos) << "'" << part << "' not in: " << message;
    }
  }
  EXPECT_THROW(load_alpaca((dir / "absent.json").string(), tokenizer, {}), Error);
  EXPECT_THROW(parse_alpaca("[]", "x", tokenizer, {.max_seq = 0}), Error);
}

TEST(TrainingData, TextPackingOverlapsByOneTokenAndReportsTheTail) {
  const auto corpus = PIQUANT_SHARED_FILE("corpora/austen.txt");
  const auto tok = PIQUANT_SHARED_FILE("models/stories260K/tok512.bin");
  const Tokenizer& tokenizer = stories_tokenizer(tok);
  std::string text = testing::read_file(corpus).substr(0, 20000);
  text.resize(text.rfind('\n') + 1);
  const TempDir dir;
  testing::write_file(dir / "slice.txt", text);

  // The reference stream, built here: BOS (stories260K adds it), then the text.
  std::vector<std::int32_t> stream{tokenizer.vocab().bos_id};
  const auto body = tokenizer.encode(text, false, false);
  stream.insert(stream.end(), body.begin(), body.end());
  ASSERT_EQ(tokenizer.decode(body), text);
  const auto n = static_cast<std::int64_t>(stream.size());

  const std::int64_t seq = 100;
  const TrainingData data = load_text((dir / "slice.txt").string(), tokenizer, {.max_seq = seq});
  const std::int64_t full = (n - 1) / seq;
  ASSERT_EQ(static_cast<std::int64_t>(data.examples.size()), full);
  EXPECT_EQ(data.stats.dropped_tokens, (n - 1) % seq);
  EXPECT_NE(data.stats.dropped_tokens, 0);  // this slice does leave a tail, so the count is tested
  std::vector<std::int32_t> all_targets;
  for (std::int64_t i = 0; i < full; ++i) {
    const TrainingExample& ex = data.examples[static_cast<std::size_t>(i)];
    ASSERT_EQ(ex.tokens.size(), static_cast<std::size_t>(seq + 1));
    EXPECT_TRUE(std::equal(ex.tokens.begin(), ex.tokens.end(), stream.begin() + i * seq)) << "sequence " << i;
    EXPECT_EQ(ex.n_loss_targets(), seq);
    all_targets.insert(all_targets.end(), ex.targets().begin(), ex.targets().end());
  }
  // Every token after the first is a target exactly once, in order.
  EXPECT_TRUE(std::equal(all_targets.begin(), all_targets.end(), stream.begin() + 1));
  EXPECT_EQ(data.stats.loss_targets, full * seq);

  const TrainingData tail = load_text((dir / "slice.txt").string(), tokenizer, {.max_seq = seq, .keep_tail = true});
  ASSERT_EQ(static_cast<std::int64_t>(tail.examples.size()), full + 1);
  const TrainingExample& last = tail.examples.back();
  EXPECT_EQ(last.n_positions(), (n - 1) % seq);
  EXPECT_TRUE(std::equal(last.tokens.begin(), last.tokens.end(), stream.end() - static_cast<std::ptrdiff_t>(last.tokens.size())));
  EXPECT_EQ(tail.stats.dropped_tokens, 0);

  EXPECT_THROW(load_text((dir / "slice.txt").string(), tokenizer, {.max_seq = n}), Error);
  const TrainingData one = load_text((dir / "slice.txt").string(), tokenizer, {.max_seq = n - 1});
  EXPECT_EQ(one.examples.size(), 1u);
}

TEST(TrainingData, PackTokensEdgeCases) {
  const std::vector<std::int32_t> tokens{5, 6, 7, 8, 9, 10, 11};  // 6 targets
  const TrainingData exact = pack_tokens(tokens, "t", {.max_seq = 3});
  ASSERT_EQ(exact.examples.size(), 2u);
  EXPECT_EQ(exact.examples[1].tokens, (std::vector<std::int32_t>{8, 9, 10, 11}));
  EXPECT_EQ(exact.stats.dropped_tokens, 0);
  const TrainingData tail = pack_tokens(tokens, "t", {.max_seq = 4, .keep_tail = true});
  ASSERT_EQ(tail.examples.size(), 2u);
  EXPECT_EQ(tail.examples[1].tokens, (std::vector<std::int32_t>{9, 10, 11}));
  EXPECT_THROW(pack_tokens(std::vector<std::int32_t>{1}, "t", {.max_seq = 1, .keep_tail = true}), Error);
  EXPECT_THROW(pack_tokens(std::vector<std::int32_t>{1, 2, 3}, "t", {.max_seq = 3}), Error);
}

// ---------------------------------------------------------------- RNG, split, epochs

TEST(TrainingData, GoldenValuesPinTheBoundedDrawsShufflesAndSplits) {
  // Computed with an independent Python implementation of the header's definitions.
  SplitMix64 rng(7);
  const std::uint64_t below[] = {7, 4, 6, 3, 4, 5, 8, 2};
  for (const auto value : below) EXPECT_EQ(rng.below(10), value);
  EXPECT_EQ(rng.state(), 17418742259747381423ull);
  EpochIterator epochs(10, 42);
  EXPECT_EQ(epochs.order(0), (std::vector<std::int64_t>{6, 0, 9, 8, 7, 3, 4, 1, 2, 5}));
  EXPECT_EQ(epochs.order(1), (std::vector<std::int64_t>{8, 9, 5, 2, 3, 7, 6, 4, 0, 1}));
  EXPECT_EQ(epochs.order(2), (std::vector<std::int64_t>{7, 5, 9, 4, 2, 3, 1, 0, 6, 8}));
  // Split shuffle [4, 1, 0, 3, 8, 6, 2, 5, 9, 7]: holding out 3 takes {4, 1, 0}.
  const auto [train, held] = held_out_indices(10, {.count = 3}, 42);
  EXPECT_EQ(held, (std::vector<std::int64_t>{0, 1, 4}));
  EXPECT_EQ(train, (std::vector<std::int64_t>{2, 3, 5, 6, 7, 8, 9}));
}

TEST(TrainingData, HeldOutSplitIsStableDisjointAndKeepsOrder) {
  std::vector<TrainingExample> examples(50);
  for (int i = 0; i < 50; ++i) examples[static_cast<std::size_t>(i)].tokens = {i, i + 1};
  for (auto& e : examples) e.loss_mask = {1};
  const DataSplit a = split_held_out(examples, {.fraction = 0.1}, 5);
  const DataSplit b = split_held_out(examples, {.fraction = 0.1}, 5);
  const DataSplit c = split_held_out(examples, {.fraction = 0.1}, 6);
  ASSERT_EQ(a.held_out.size(), 5u);
  ASSERT_EQ(a.train.size(), 45u);
  std::set<std::int32_t> seen;
  const auto ids = [](const std::vector<TrainingExample>& v) {
    std::vector<std::int32_t> out;
    for (const auto& e : v) out.push_back(e.tokens[0]);
    return out;
  };
  for (const auto id : ids(a.train)) seen.insert(id);
  for (const auto id : ids(a.held_out)) EXPECT_TRUE(seen.insert(id).second) << id << " in both";
  EXPECT_EQ(seen.size(), 50u);
  const auto train_ids = ids(a.train);
  const auto held_ids = ids(a.held_out);
  EXPECT_TRUE(std::is_sorted(train_ids.begin(), train_ids.end()));
  EXPECT_TRUE(std::is_sorted(held_ids.begin(), held_ids.end()));
  EXPECT_EQ(ids(a.held_out), ids(b.held_out));
  EXPECT_NE(ids(a.held_out), ids(c.held_out));
  EXPECT_EQ(split_held_out(examples, {.fraction = 0.5, .count = 2}, 5).held_out.size(), 2u);  // count wins
  EXPECT_EQ(split_held_out(examples, {.fraction = 0.05}, 5).held_out.size(), 3u);            // 2.5 rounds up
  EXPECT_EQ(split_held_out(examples, {}, 5).train.size(), 50u);
  EXPECT_THROW(split_held_out(examples, {.count = 50}, 5), Error);
  EXPECT_THROW(split_held_out(examples, {.fraction = 1.0}, 5), Error);
  EXPECT_THROW(split_held_out(examples, {.count = -1}, 5), Error);
}

TEST(TrainingData, EpochIteratorVisitsEachExampleOncePerEpochAndResumesExactly) {
  const std::int64_t n = 13;
  EpochIterator it(n, 2024);
  std::vector<std::int64_t> seen;
  for (std::int64_t k = 0; k < 4 * n; ++k) {
    EXPECT_EQ(it.position(), (DataPosition{k / n, k % n}));
    seen.push_back(it.next());
  }
  for (std::int64_t e = 0; e < 4; ++e) {
    std::vector<std::int64_t> epoch(seen.begin() + e * n, seen.begin() + (e + 1) * n);
    EXPECT_EQ(epoch, it.order(e));
    std::sort(epoch.begin(), epoch.end());
    std::vector<std::int64_t> all(static_cast<std::size_t>(n));
    std::iota(all.begin(), all.end(), 0);
    EXPECT_EQ(epoch, all) << "epoch " << e;
  }
  EXPECT_NE(it.order(0), it.order(1));

  // Save after 30 draws, restore in a new iterator: the next 40 agree.
  EpochIterator first(n, 2024);
  for (int i = 0; i < 30; ++i) first.next();
  const DataPosition saved = first.position();
  EpochIterator resumed(n, 2024, true, saved);
  for (int i = 0; i < 40; ++i) ASSERT_EQ(resumed.next(), first.next()) << "draw " << i;
  EXPECT_EQ(resumed.position(), first.position());

  EpochIterator plain(4, 1, /*shuffle=*/false);
  EXPECT_EQ(plain.order(3), (std::vector<std::int64_t>{0, 1, 2, 3}));
  EXPECT_THROW(EpochIterator(0, 1), Error);
  EXPECT_THROW(EpochIterator(4, 1, true, {0, 4}), Error);
  EXPECT_THROW(EpochIterator(4, 1, true, {-1, 0}), Error);
}

}  // namespace
}  // namespace piquant
