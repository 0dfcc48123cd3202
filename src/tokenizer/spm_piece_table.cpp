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
  std::size_t total = 0;
  for (const auto& token : vocab.tokens) total += token.size();
  pool_.reserve(total);
  for (const auto& token : vocab.tokens) pool_ += token;

  ids_.reserve(vocab.tokens.size());
  scores_.resize(vocab.tokens.size(), 0.0f);
  std::size_t offset = 0;
  for (std::size_t id = 0; id < vocab.tokens.size(); ++id) {
    const std::string_view text(pool_.data() + offset, vocab.tokens[id].size());
    offset += text.size();
    ids_.insert_or_assign(text, static_cast<std::int32_t>(id));
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

}  // namespace piquant
