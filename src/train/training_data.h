#pragma once
// Training data: sequences of token ids with a per-target loss mask, read from an
// Alpaca-style instruction file or a plain-text corpus; a stable held-out split; and an
// epoch iterator whose position can be saved and restored exactly.
//
// Tokenization never parses control-token text inside the data (a record that contains
// "<|eot_id|>" trains on those characters, not on the control token); BOS and EOS are
// added as ids, by the rules below.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace piquant {

// One training sequence of n = tokens.size() - 1 positions: position t reads
// tokens[0..t] and predicts tokens[t + 1]. loss_mask[t] (n entries, 0 or 1) says
// whether that prediction (the target tokens[t + 1]) counts in the loss.
struct TrainingExample {
  std::vector<std::int32_t> tokens;
  std::vector<std::uint8_t> loss_mask;

  std::int64_t n_positions() const { return static_cast<std::int64_t>(loss_mask.size()); }
  std::span<const std::int32_t> inputs() const { return std::span(tokens).first(loss_mask.size()); }
  std::span<const std::int32_t> targets() const { return std::span(tokens).subspan(1); }
  std::int64_t n_loss_targets() const;  // positions whose mask is 1
};

struct DataStats {
  std::int64_t records = 0;         // alpaca records read (or 1 for a text file)
  std::int64_t examples = 0;        // sequences produced
  std::int64_t truncated = 0;       // alpaca: examples kept but cut to max_seq positions
  std::int64_t dropped = 0;         // alpaca: records left with no loss target after truncation (not in truncated)
  std::int64_t boundary_merged = 0; // alpaca: prompt's last token merged with the output's first (see below)
  std::int64_t tokens = 0;          // Σ tokens.size() over the sequences (packed text: the shared token twice)
  std::int64_t loss_targets = 0;    // positions with mask 1, over all sequences
  std::int64_t dropped_tokens = 0;  // text: the tail that did not fill a sequence
};

struct TrainingData {
  std::vector<TrainingExample> examples;
  DataStats stats;
};

struct AlpacaOptions {
  std::int64_t max_seq = 512;      // positions per sequence at most (tokens at most max_seq + 1)
  std::int64_t max_records = 0;    // 0: all; else only the first max_records records are tokenized
};

// The Alpaca prompt for one record (input empty or absent: the shorter form):
//   "Below is an instruction that describes a task[, paired with an input that provides
//   further context]. Write a response that appropriately completes the request.\n\n
//   ### Instruction:\n{instruction}\n\n[### Input:\n{input}\n\n]### Response:\n"
std::string alpaca_prompt(std::string_view instruction, std::string_view input);

// Reads a JSON array of objects {"instruction": str, "input": str (may be "" or absent),
// "output": str}; other keys are ignored. Every record is validated before any is
// tokenized; malformed data throws Error naming the file and the record's index (and for
// a JSON syntax error, the byte offset from 0 where parsing failed).
//
// Per record: text = alpaca_prompt(...) + output, tokens = [BOS if the vocab adds BOS] +
// encode(text) + [EOS if the vocab has one]. The loss targets are the tokens after the
// longest common prefix of encode(text) and encode(prompt), i.e. the output's tokens and
// EOS: when the prompt's tokens are a prefix of the text's (the usual case, the template
// ends in "\n"), they decode to exactly the output. When a merge crosses the boundary,
// the merged token is a target too (counted in stats.boundary_merged).
// Truncation: a sequence longer than max_seq positions keeps its first max_seq + 1
// tokens (the end of the output and EOS are dropped; counted in stats.truncated); a
// record with no loss target left (a prompt of max_seq tokens or more) is dropped
// (stats.dropped). Examples keep the file's order.
TrainingData load_alpaca(const std::string& path, const Tokenizer& tokenizer, const AlpacaOptions& options);
// The same from JSON text in memory; `source` names it in errors.
TrainingData parse_alpaca(std::string_view json_text, const std::string& source, const Tokenizer& tokenizer,
                          const AlpacaOptions& options);

struct TextOptions {
  std::int64_t max_seq = 512;  // positions per sequence
  // The tail: the last (n_tokens - 1) mod max_seq targets do not fill a sequence. false:
  // they are dropped (stats.dropped_tokens); true: they form one shorter last sequence.
  bool keep_tail = false;
};

// The whole file, tokenized once ([BOS if the vocab adds BOS] + encode(text)), packed
// into sequences of max_seq + 1 tokens that overlap by one token: sequence i holds
// tokens[i·max_seq .. i·max_seq + max_seq], so every token after the first is a target
// exactly once. Loss everywhere (mask all 1). Throws Error when the text holds fewer
// than max_seq + 1 tokens and keep_tail is false (or fewer than 2 tokens).
TrainingData load_text(const std::string& path, const Tokenizer& tokenizer, const TextOptions& options);
TrainingData pack_text(std::string_view text, const std::string& source, const Tokenizer& tokenizer, const TextOptions& options);
// The packing alone, of a token stream.
TrainingData pack_tokens(std::span<const std::int32_t> tokens, const std::string& source, const TextOptions& options);

// ---------------------------------------------------------------- held-out split

struct HeldOut {
  double fraction = 0.0;   // used when count is 0: round(fraction · n), ties away from zero
  std::int64_t count = 0;  // examples held out; wins over fraction when > 0
};

struct DataSplit {
  std::vector<TrainingExample> train;     // in the original order
  std::vector<TrainingExample> held_out;  // in the original order
};

// The held-out examples are the first h of a Fisher-Yates shuffle of 0..n-1 (shuffle in
// split_mix64.h) with the stream stream_seed(seed, kSplitPurpose, 0): the same seed and
// n give the same split on any machine. Throws Error when h would leave no training
// example, or the fraction is not in [0, 1), or count is negative.
inline constexpr std::uint64_t kSplitPurpose = 0x73706c6974;  // "split"
DataSplit split_held_out(std::vector<TrainingExample> examples, const HeldOut& held_out, std::uint64_t seed);
// The indices only: {train, held_out}, each ascending.
std::pair<std::vector<std::int64_t>, std::vector<std::int64_t>> held_out_indices(std::int64_t n, const HeldOut& held_out,
                                                                                 std::uint64_t seed);

// ---------------------------------------------------------------- epochs

// Where an epoch iterator stands: the next example is number `index` (from 0) of epoch
// `epoch`'s order.
struct DataPosition {
  std::int64_t epoch = 0;
  std::int64_t index = 0;
  bool operator==(const DataPosition&) const = default;
};

// Visits 0..n-1 once per epoch. With shuffle, epoch e's order is a Fisher-Yates shuffle
// of 0..n-1 (in ascending order before shuffling) with the stream
// stream_seed(seed, kEpochPurpose, e), so it depends only on (seed, n, e); without
// shuffle it is 0..n-1. After k calls of next() from position {0, 0} the position is
// {k / n, k % n}; an iterator constructed at a saved position continues exactly as the
// saved one would have.
inline constexpr std::uint64_t kEpochPurpose = 0x65706f6368;  // "epoch"
class EpochIterator {
 public:
  // Throws Error for n < 1 or a position outside [0, ∞) × [0, n).
  EpochIterator(std::int64_t n, std::uint64_t seed, bool shuffle = true, DataPosition start = {});

  std::int64_t next();  // the next example's index; moves into the next epoch after the last
  DataPosition position() const { return position_; }
  void seek(DataPosition position);
  std::int64_t size() const { return n_; }
  std::uint64_t seed() const { return seed_; }
  // Epoch `epoch`'s order (a pure function of seed, n, shuffle and epoch).
  std::vector<std::int64_t> order(std::int64_t epoch) const;

 private:
  std::int64_t n_;
  std::uint64_t seed_;
  bool shuffle_;
  DataPosition position_;
  std::vector<std::int64_t> order_;  // of position_.epoch
};

}  // namespace piquant
