#pragma once
// Learns a byte-level BPE vocabulary (Llama 3 style: 256 byte tokens, merges, Llama 3's
// special tokens) from text. It gives synthetic models a real, self-contained tokenizer
// and the project's own default model its vocabulary (`piquant train-tokenizer`).
//
// Contract: each step merges the most frequent adjacent pair of symbols, counted over
// every word occurrence (overlapping pairs such as "a a" in "aaa" each count); ties go to
// the lexicographically smallest (left, right) byte strings. Merges never cross word
// boundaries. train_byte_level_bpe keeps pair counts incrementally (only words that
// contain the merged pair are revisited); reference::train_byte_level_bpe recounts every
// pair every step and must give the same vocabulary.
#include <cstddef>
#include <string_view>

#include "tokenizer/vocab.h"

namespace piquant {

enum class BpeWordSplit {
  Simple,  // an optional leading space + a run of letters, up to 3 digits or other symbols
  Llama3,  // Llama 3's pre-tokenizer regex, the split the tokenizer applies when encoding (UTF-8 text)
};

struct BpeTrainerOptions {
  std::size_t vocab_size = 512;    // bytes + merges + special tokens
  std::size_t special_tokens = 8;  // Llama 3's first special tokens (begin/end of text, headers, eot, ...)
  BpeWordSplit word_split = BpeWordSplit::Simple;
};

Vocab train_byte_level_bpe(std::string_view text, const BpeTrainerOptions& options);

namespace reference {
Vocab train_byte_level_bpe(std::string_view text, const BpeTrainerOptions& options);
}  // namespace reference

// A few kilobytes of plain English written for this project, to train on when no text is given.
std::string_view builtin_training_text();

}  // namespace piquant
