#pragma once
// How llama.cpp's llama-perplexity cuts a text for evaluation, shared by perplexity
// and KL divergence so both score exactly the same positions:
//  - the whole text is tokenized once, with the vocabulary's special tokens (BOS in
//    front when the vocab adds BOS), without parsing special-token text;
//  - it is split into non-overlapping chunks of n_ctx tokens (a short tail is dropped);
//  - each chunk is evaluated from an empty cache, its first token replaced by BOS
//    when the vocab adds BOS;
//  - only the second half is scored: the logits at positions n_ctx/2 .. n_ctx-2
//    predict the tokens at n_ctx/2+1 .. n_ctx-1, so every scored token has at least
//    n_ctx/2 tokens of context.
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace piquant {

// The token stream of an evaluation text (llama.cpp: common_tokenize(text, add_special=true)).
std::vector<std::int32_t> tokenize_eval_text(const Tokenizer& tokenizer, std::string_view text);

class EvalChunks {
 public:
  // tokens: the text's token stream; max_chunks 0: as many as fit. bos_id: the token
  // that replaces each chunk's first token, or -1 to keep it. Throws Error when n_ctx
  // is below 4 or the text holds fewer than n_ctx tokens.
  EvalChunks(std::vector<std::int32_t> tokens, std::int64_t n_ctx, std::int64_t max_chunks, std::int32_t bos_id);

  std::int64_t n_ctx() const { return n_ctx_; }
  std::int64_t n_chunks() const { return n_chunks_; }
  std::int32_t bos_id() const { return bos_id_; }
  std::int64_t first_scored() const { return n_ctx_ / 2; }                  // first position whose logits are scored
  std::int64_t scored_per_chunk() const { return n_ctx_ - 1 - n_ctx_ / 2; }  // positions first_scored .. n_ctx-2
  std::int64_t n_scored() const { return n_chunks_ * scored_per_chunk(); }
  std::int64_t n_evaluated() const { return n_chunks_ * n_ctx_; }

  // The text's tokens covered by the chunks (n_chunks × n_ctx), as tokenized.
  std::span<const std::int32_t> tokens() const;
  // Chunk c as it is fed to the model (first token replaced by BOS).
  std::vector<std::int32_t> input(std::int64_t chunk) const;
  // The token that the logits at position `pos` of chunk c must predict.
  std::int32_t target(std::int64_t chunk, std::int64_t pos) const;

 private:
  std::vector<std::int32_t> tokens_;
  std::int64_t n_ctx_;
  std::int64_t n_chunks_;
  std::int32_t bos_id_;
};

// The BOS rule of a vocabulary: its BOS id if it adds BOS, else -1.
std::int32_t eval_bos_id(const Vocab& vocab);

}  // namespace piquant
