#pragma once
// The core of SPM encoding, on text already escaped ('▁' for spaces, any prefix added):
// split into UTF-8 characters, repeatedly merge the adjacent pair whose concatenation is
// a piece with the highest score (ties: leftmost), then emit each symbol's piece id, or
// byte-fallback tokens for a symbol that is not a piece.
#include <cstdint>
#include <string_view>
#include <vector>

#include "tokenizer/spm_piece_table.h"

namespace piquant {

// Appends the ids for `escaped` to `out`. Throws Error if a byte has no fallback token.
void spm_merge_encode(const SpmPieceTable& table, std::string_view escaped, std::vector<std::int32_t>& out);

}  // namespace piquant
