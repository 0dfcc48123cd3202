#include "tokenizer/spm_piece_table.h"

#include <cmath>
#include <limits>

#include "tokenizer/spm_byte_token.h"

namespace piquant {

namespace {

// True if every '▁' in the piece is preceded only by '▁'s (i.e. the piece is '▁'* then
// text without '▁').
bool spaces_only_lead(std::string_view piece) {
  std::size_t lead = 0;
  while (piece.substr(lead).starts_with(kSpmSpaceMarker)) lead += kSpmSpaceMarker.size();
  return piece.find(kSpmSpaceMarker, lead) == std::string_view::npos;
}

}  // namespace

SpmPieceTable::SpmPieceTable(const Vocab& vocab) {
  const std::size_t n = vocab.tokens.size();
  offsets_.reserve(n + 1);
  offsets_.push_back(0);
  for (const auto& token : vocab.tokens) {
    pool_ += token;
    offsets_.push_back(pool_.size());
  }
  std::size_t slots = 16;
  while (slots < 2 * n) slots *= 2;
  slots_.assign(slots, Slot{0, -1});
  slot_mask_ = slots - 1;

  scores_.resize(n, 0.0f);
  for (std::size_t id = 0; id < n; ++id) {
    const std::string_view text = piece(static_cast<std::int32_t>(id));
    insert(static_cast<std::int32_t>(id));
    max_piece_bytes_ = std::max(max_piece_bytes_, text.size());
    if (!spaces_only_lead(text)) can_split_before_spaces_ = false;
    // A NaN would break the ordering of merge candidates; treat it as "never preferred".
    const float score = id < vocab.scores.size() ? vocab.scores[id] : 0.0f;
    scores_[id] = std::isnan(score) ? -std::numeric_limits<float>::infinity() : score;
  }

  for (int byte = 0; byte < 256; ++byte) {
    const auto b = static_cast<std::uint8_t>(byte);
    std::int32_t id = find(byte_token_text(b));
    if (id < 0) id = find(std::string(1, static_cast<char>(b)));
    if (id < 0) id = vocab.unk_id;
    byte_fallback_[b] = id;
  }
}

void SpmPieceTable::insert(std::int32_t id) {
  const std::string_view text = piece(id);
  const std::uint32_t hash = hash_text(text);
  for (std::size_t slot = hash & slot_mask_;; slot = (slot + 1) & slot_mask_) {
    Slot& s = slots_[slot];
    if (s.id < 0) {
      s = Slot{hash, id};
      return;
    }
    // A repeated text maps to its last id, as llama.cpp's text->id map does.
    if (s.hash == hash && piece(s.id) == text) {
      s.id = id;
      return;
    }
  }
}

}  // namespace piquant
