#pragma once
// The two halves of Vocab::validate, for callers that check merges another way
// (BpeTokenizer resolves every merge anyway while building its merge table).
#include <string>

#include "tokenizer/vocab.h"

namespace piquant {

// Sizes of tokens/types/scores, token type values, special ids in range. Throws FormatError.
void check_vocab_tables(const Vocab& vocab, const std::string& source);
// Every merge is "left right" with left, right and left+right all tokens. Throws FormatError.
void check_bpe_merges(const Vocab& vocab, const std::string& source);

}  // namespace piquant
