#pragma once
// What the SPM merge needs from a vocab, in a form that is fast to query: piece
// text -> id, merge scores, and the byte-fallback token for each byte.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/vocab.h"

namespace piquant {

inline constexpr std::string_view kSpmSpaceMarker = "\xE2\x96\x81";  // U+2581 '▁'

class SpmPieceTable {
 public:
  explicit SpmPieceTable(const Vocab& vocab);
  SpmPieceTable(const SpmPieceTable&) = delete;
  SpmPieceTable& operator=(const SpmPieceTable&) = delete;

  // The id of the piece with exactly this text (the highest id if the vocab repeats a
  // text, as llama.cpp's map ends up with), or -1.
  std::int32_t find(std::string_view text) const {
    if (text.size() > max_piece_bytes_) return -1;
    const auto it = ids_.find(text);
    return it == ids_.end() ? -1 : it->second;
  }
  float score(std::int32_t id) const { return scores_[static_cast<std::size_t>(id)]; }

  // The token that encodes one raw byte: <0xNN>, else a piece that is that single byte,
  // else <unk>; -1 if there is none.
  std::int32_t byte_fallback(std::uint8_t byte) const { return byte_fallback_[byte]; }

  // True when no piece contains '▁' after anything but '▁' (SentencePiece splits on
  // whitespace when training, so real vocabs have this property). Then no merge can
  // cross the start of a run of '▁', and text may be merged chunk by chunk.
  bool can_split_before_spaces() const { return can_split_before_spaces_; }

 private:
  std::string pool_;  // all piece texts back to back; ids_ keys point into it
  std::unordered_map<std::string_view, std::int32_t> ids_;
  std::vector<float> scores_;
  std::array<std::int32_t, 256> byte_fallback_{};
  std::size_t max_piece_bytes_ = 0;
  bool can_split_before_spaces_ = true;
};

}  // namespace piquant
