#pragma once
// Learns a small byte-level BPE vocabulary (Llama 3 style: 256 byte tokens, merges,
// Llama 3's special tokens) from text. It gives synthetic models a real, self-contained
// tokenizer, and later the project's own small model its vocabulary.
#include <cstddef>
#include <string_view>

#include "tokenizer/vocab.h"

namespace piquant {

struct BpeTrainerOptions {
  std::size_t vocab_size = 512;  // bytes + merges + special tokens
  std::size_t special_tokens = 8;  // Llama 3's first special tokens (begin/end of text, headers, eot, ...)
};

Vocab train_byte_level_bpe(std::string_view text, const BpeTrainerOptions& options);

// A few kilobytes of plain English written for this project, to train on when no text is given.
std::string_view builtin_training_text();

}  // namespace piquant
