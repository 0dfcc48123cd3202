#include "train/training_data.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mapped_file.h"
#include "core/split_mix64.h"

namespace piquant {
namespace {

using nlohmann::json;

std::string_view file_text(const MappedFile& file) {
  return {reinterpret_cast<const char*>(file.data()), file.size()};
}

struct AlpacaRecord {
  std::string_view instruction;
  std::string_view input;
  std::string_view output;
};

// The string field `key` of record `index`; absent is allowed only when `optional`.
std::string_view string_field(const json& record, const char* key, bool optional, const std::string& source, std::size_t index) {
  const std::string field = "record " + std::to_string(index);
  const auto it = record.find(key);
  if (it == record.end()) {
    if (optional) return {};
    throw FormatError(source, field, std::string("\"") + key + "\" is missing");
  }
  if (!it->is_string()) throw FormatError(source, field, std::string("\"") + key + "\" is not a string (it is " + it->type_name() + ")");
  return it->get_ref<const json::string_t&>();
}

// Tokens of `text` with no BOS/EOS and control-token text left as plain text.
std::vector<std::int32_t> encode_plain(const Tokenizer& tokenizer, std::string_view text) {
  return tokenizer.encode(text, /*add_special=*/false, /*parse_special=*/false);
}

std::int32_t bos_of(const Vocab& vocab) { return vocab.add_bos && vocab.bos_id >= 0 ? vocab.bos_id : -1; }

void count(DataStats& stats, const TrainingExample& example) {
  ++stats.examples;
  stats.tokens += static_cast<std::int64_t>(example.tokens.size());
  stats.loss_targets += example.n_loss_targets();
}

}  // namespace

std::int64_t TrainingExample::n_loss_targets() const {
  return std::count(loss_mask.begin(), loss_mask.end(), std::uint8_t{1});
}

std::string alpaca_prompt(std::string_view instruction, std::string_view input) {
  std::string prompt = input.empty()
                           ? "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
                           : "Below is an instruction that describes a task, paired with an input that provides further context. "
                             "Write a response that appropriately completes the request.\n\n";
  prompt += "### Instruction:\n";
  prompt += instruction;
  prompt += "\n\n";
  if (!input.empty()) {
    prompt += "### Input:\n";
    prompt += input;
    prompt += "\n\n";
  }
  prompt += "### Response:\n";
  return prompt;
}

TrainingData load_alpaca(const std::string& path, const Tokenizer& tokenizer, const AlpacaOptions& options) {
  const MappedFile file(path);
  return parse_alpaca(file_text(file), path, tokenizer, options);
}

TrainingData parse_alpaca(std::string_view json_text, const std::string& source, const Tokenizer& tokenizer,
                          const AlpacaOptions& options) {
  if (options.max_seq < 1) throw Error(source + ": max_seq must be at least 1, got " + std::to_string(options.max_seq));
  if (options.max_records < 0) throw Error(source + ": max_records must not be negative");
  json document;
  try {
    document = json::parse(json_text.begin(), json_text.end());
  } catch (const json::parse_error& e) {
    // nlohmann counts bytes from 1 (the offending byte's position); users seek from 0.
    const std::size_t offset = e.byte > 0 ? e.byte - 1 : 0;
    throw FormatError(source, "JSON", "syntax error at byte offset " + std::to_string(offset) + ": " + e.what());
  }
  if (!document.is_array()) throw FormatError(source, "JSON", std::string("expected an array of records, found ") + document.type_name());

  // Validate every record first: a bad record late in a big file fails before hours of work.
  std::vector<AlpacaRecord> records;
  records.reserve(document.size());
  for (std::size_t i = 0; i < document.size(); ++i) {
    const json& record = document[i];
    if (!record.is_object()) {
      throw FormatError(source, "record " + std::to_string(i), std::string("not an object (it is ") + record.type_name() + ")");
    }
    records.push_back({string_field(record, "instruction", false, source, i), string_field(record, "input", true, source, i),
                       string_field(record, "output", false, source, i)});
  }

  const Vocab& vocab = tokenizer.vocab();
  const std::int32_t bos = bos_of(vocab);
  const auto max_tokens = static_cast<std::size_t>(options.max_seq) + 1;
  TrainingData data;
  const std::size_t n = options.max_records > 0 ? std::min(records.size(), static_cast<std::size_t>(options.max_records)) : records.size();
  for (std::size_t i = 0; i < n; ++i) {
    const AlpacaRecord& r = records[i];
    ++data.stats.records;
    const std::string prompt = alpaca_prompt(r.instruction, r.input);
    const std::vector<std::int32_t> prompt_tokens = encode_plain(tokenizer, prompt);
    const std::vector<std::int32_t> text_tokens = encode_plain(tokenizer, prompt + std::string(r.output));
    const std::size_t common =
        static_cast<std::size_t>(std::mismatch(prompt_tokens.begin(), prompt_tokens.end(), text_tokens.begin(), text_tokens.end()).first -
                                 prompt_tokens.begin());
    if (common < prompt_tokens.size()) ++data.stats.boundary_merged;

    TrainingExample example;
    if (bos >= 0) example.tokens.push_back(bos);
    const std::size_t first_target = example.tokens.size() + common;  // index in tokens of the first loss target
    example.tokens.insert(example.tokens.end(), text_tokens.begin(), text_tokens.end());
    if (vocab.eos_id >= 0) example.tokens.push_back(vocab.eos_id);
    const bool truncated = example.tokens.size() > max_tokens;
    if (truncated) example.tokens.resize(max_tokens);
    if (example.tokens.size() < 2 || first_target >= example.tokens.size()) {
      ++data.stats.dropped;
      continue;
    }
    if (truncated) ++data.stats.truncated;
    example.loss_mask.assign(example.tokens.size() - 1, 0);
    // Target t is tokens[t + 1]: targets from first_target on count.
    std::fill(example.loss_mask.begin() + static_cast<std::ptrdiff_t>(std::max<std::size_t>(first_target, 1) - 1),
              example.loss_mask.end(), std::uint8_t{1});
    count(data.stats, example);
    data.examples.push_back(std::move(example));
  }
  return data;
}

TrainingData load_text(const std::string& path, const Tokenizer& tokenizer, const TextOptions& options) {
  const MappedFile file(path);
  return pack_text(file_text(file), path, tokenizer, options);
}

TrainingData pack_text(std::string_view text, const std::string& source, const Tokenizer& tokenizer, const TextOptions& options) {
  std::vector<std::int32_t> tokens;
  const std::int32_t bos = bos_of(tokenizer.vocab());
  if (bos >= 0) tokens.push_back(bos);
  const std::vector<std::int32_t> body = encode_plain(tokenizer, text);
  tokens.insert(tokens.end(), body.begin(), body.end());
  return pack_tokens(tokens, source, options);
}

TrainingData pack_tokens(std::span<const std::int32_t> tokens, const std::string& source, const TextOptions& options) {
  if (options.max_seq < 1) throw Error(source + ": max_seq must be at least 1, got " + std::to_string(options.max_seq));
  const auto n = static_cast<std::int64_t>(tokens.size());
  const std::int64_t seq = options.max_seq;
  const std::int64_t full = n >= 1 ? (n - 1) / seq : 0;  // sequences of seq targets
  const std::int64_t tail = n >= 1 ? (n - 1) % seq : 0;  // targets left over
  if (full == 0 && (!options.keep_tail || tail == 0)) {
    throw Error(source + ": the text has " + std::to_string(n) + " tokens, too few for one sequence of " + std::to_string(seq) +
                " positions (" + std::to_string(seq + 1) + " tokens)");
  }
  TrainingData data;
  data.stats.records = 1;
  const auto add = [&](std::int64_t begin, std::int64_t targets) {
    TrainingExample example;
    example.tokens.assign(tokens.begin() + begin, tokens.begin() + begin + targets + 1);
    example.loss_mask.assign(static_cast<std::size_t>(targets), 1);
    count(data.stats, example);
    data.examples.push_back(std::move(example));
  };
  for (std::int64_t i = 0; i < full; ++i) add(i * seq, seq);
  if (tail > 0 && options.keep_tail) {
    add(full * seq, tail);
  } else {
    data.stats.dropped_tokens = tail;
  }
  return data;
}

// ---------------------------------------------------------------- held-out split

std::pair<std::vector<std::int64_t>, std::vector<std::int64_t>> held_out_indices(std::int64_t n, const HeldOut& held_out,
                                                                                 std::uint64_t seed) {
  if (held_out.count < 0) throw Error("held-out count must not be negative, got " + std::to_string(held_out.count));
  if (!(held_out.fraction >= 0.0 && held_out.fraction < 1.0)) {
    throw Error("held-out fraction must lie in [0, 1), got " + std::to_string(held_out.fraction));
  }
  const std::int64_t h = held_out.count > 0 ? held_out.count : std::llround(held_out.fraction * static_cast<double>(n));
  if (h > 0 && h >= n) {
    throw Error("holding out " + std::to_string(h) + " of " + std::to_string(n) + " examples would leave none to train on");
  }
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  SplitMix64 rng(stream_seed(seed, kSplitPurpose, 0));
  shuffle(order, rng);
  std::vector<std::int64_t> held(order.begin(), order.begin() + h);
  std::vector<std::int64_t> train(order.begin() + h, order.end());
  std::sort(held.begin(), held.end());
  std::sort(train.begin(), train.end());
  return {std::move(train), std::move(held)};
}

DataSplit split_held_out(std::vector<TrainingExample> examples, const HeldOut& held_out, std::uint64_t seed) {
  auto [train, held] = held_out_indices(static_cast<std::int64_t>(examples.size()), held_out, seed);
  DataSplit split;
  split.train.reserve(train.size());
  split.held_out.reserve(held.size());
  for (const auto i : train) split.train.push_back(std::move(examples[static_cast<std::size_t>(i)]));
  for (const auto i : held) split.held_out.push_back(std::move(examples[static_cast<std::size_t>(i)]));
  return split;
}

// ---------------------------------------------------------------- epochs

EpochIterator::EpochIterator(std::int64_t n, std::uint64_t seed, bool shuffle, DataPosition start)
    : n_(n), seed_(seed), shuffle_(shuffle) {
  if (n < 1) throw Error("an epoch iterator needs at least one example, got " + std::to_string(n));
  seek(start);
}

std::vector<std::int64_t> EpochIterator::order(std::int64_t epoch) const {
  std::vector<std::int64_t> order(static_cast<std::size_t>(n_));
  std::iota(order.begin(), order.end(), 0);
  if (shuffle_) {
    SplitMix64 rng(stream_seed(seed_, kEpochPurpose, static_cast<std::uint64_t>(epoch)));
    shuffle(order, rng);
  }
  return order;
}

void EpochIterator::seek(DataPosition position) {
  if (position.epoch < 0 || position.index < 0 || position.index >= n_) {
    throw Error("data position (epoch " + std::to_string(position.epoch) + ", index " + std::to_string(position.index) +
                ") is outside an epoch of " + std::to_string(n_) + " examples");
  }
  if (order_.empty() || position.epoch != position_.epoch) order_ = order(position.epoch);
  position_ = position;
}

std::int64_t EpochIterator::next() {
  const std::int64_t example = order_[static_cast<std::size_t>(position_.index)];
  if (++position_.index == n_) {
    position_ = {position_.epoch + 1, 0};
    order_ = order(position_.epoch);
  }
  return example;
}

}  // namespace piquant
