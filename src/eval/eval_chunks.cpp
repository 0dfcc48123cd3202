#include "eval/eval_chunks.h"

#include <string>

#include "core/error.h"

namespace piquant {

std::vector<std::int32_t> tokenize_eval_text(const Tokenizer& tokenizer, std::string_view text) {
  return tokenizer.encode(text, /*add_special=*/true, /*parse_special=*/false);
}

std::int32_t eval_bos_id(const Vocab& vocab) { return vocab.add_bos && vocab.bos_id >= 0 ? vocab.bos_id : -1; }

EvalChunks::EvalChunks(std::vector<std::int32_t> tokens, std::int64_t n_ctx, std::int64_t max_chunks, std::int32_t bos_id)
    : tokens_(std::move(tokens)), n_ctx_(n_ctx), n_chunks_(0), bos_id_(bos_id) {
  // Below 4 the scored half would be empty or start at position 0 without context.
  if (n_ctx_ < 4) throw Error("context length " + std::to_string(n_ctx_) + " is too small to evaluate (at least 4)");
  if (max_chunks < 0) throw Error("chunk count " + std::to_string(max_chunks) + " is negative");
  const auto available = static_cast<std::int64_t>(tokens_.size()) / n_ctx_;
  if (available == 0) {
    throw Error("the text has " + std::to_string(tokens_.size()) + " tokens, fewer than one chunk of " +
                std::to_string(n_ctx_) + " (use a longer text or a smaller --ctx)");
  }
  n_chunks_ = max_chunks > 0 ? std::min(max_chunks, available) : available;
  tokens_.resize(static_cast<std::size_t>(n_chunks_ * n_ctx_));
}

std::span<const std::int32_t> EvalChunks::tokens() const { return tokens_; }

std::vector<std::int32_t> EvalChunks::input(std::int64_t chunk) const {
  if (chunk < 0 || chunk >= n_chunks_) throw Error("chunk " + std::to_string(chunk) + " is out of range");
  const auto begin = tokens_.begin() + static_cast<std::ptrdiff_t>(chunk * n_ctx_);
  std::vector<std::int32_t> input(begin, begin + static_cast<std::ptrdiff_t>(n_ctx_));
  if (bos_id_ >= 0) input[0] = bos_id_;
  return input;
}

std::int32_t EvalChunks::target(std::int64_t chunk, std::int64_t pos) const {
  return tokens_[static_cast<std::size_t>(chunk * n_ctx_ + pos + 1)];
}

}  // namespace piquant
