#pragma once
// What the SPM merge needs from a vocab, in a form that is fast to query: piece
// text -> id, merge scores, and the byte-fallback token for each byte.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
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
    const std::uint32_t hash = hash_text(text);
    for (std::size_t slot = hash & slot_mask_;; slot = (slot + 1) & slot_mask_) {
      const Slot& s = slots_[slot];
      if (s.id < 0) return -1;
      if (s.hash == hash && piece(s.id) == text) return s.id;
    }
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
  // Open addressing with linear probing: a flat table keeps a lookup to one or two
  // cache lines, which matters because merging does about two lookups per character.
  struct Slot {
    std::uint32_t hash;
    std::int32_t id;  // -1: empty
  };
  static std::uint32_t hash_text(std::string_view text) {
    std::uint32_t h = 2166136261u;  // FNV-1a: pieces are short, so a byte loop is cheap
    for (const char c : text) h = (h ^ static_cast<std::uint8_t>(c)) * 16777619u;
    return h;
  }
  std::string_view piece(std::int32_t id) const {
    const auto i = static_cast<std::size_t>(id);
    return {pool_.data() + offsets_[i], offsets_[i + 1] - offsets_[i]};
  }
  void insert(std::int32_t id);

  std::string pool_;                  // all piece texts back to back
  std::vector<std::size_t> offsets_;  // piece i is pool_[offsets_[i], offsets_[i + 1])
  std::vector<Slot> slots_;           // size a power of two, at most half full
  std::size_t slot_mask_ = 0;
  std::vector<float> scores_;
  std::array<std::int32_t, 256> byte_fallback_{};
  std::size_t max_piece_bytes_ = 0;
  bool can_split_before_spaces_ = true;
};

}  // namespace piquant
