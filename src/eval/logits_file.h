#pragma once
// A base model's next-token distributions, saved by `piquant kld --save-logits` so
// that `--base-logits` can compare other models against it without running the
// base again (a big base model is the slow, memory-hungry half of a KLD run).
//
// File layout (little-endian; every size is checked by the reader):
//   offset 0   char[8]  magic "PQLOGPRB"
//          8   u32      version = 1
//         12   u32      row encoding = 1 (u16 linear log-probabilities, below)
//         16   u64      n_vocab
//         24   u64      n_ctx               chunk length the tokens were cut into
//         32   u64      n_chunks
//         40   u64      rows per chunk      = n_ctx - 1 - n_ctx/2 (the scored positions)
//         48   i64      bos_id              token that replaced each chunk's first, or -1
//         56   u64      reserved = 0
//         64   i32      tokens[n_chunks × n_ctx]   the text's tokens (before BOS replacement),
//                                                   so another text or n_ctx is detected
//              zero padding to a multiple of 8
//              rows[n_chunks × rows per chunk], chunk by chunk, position by position:
//                f32 target_log_prob   log p(the actual next token), exact
//                i32 argmax            the most likely token
//                f32 top               its log-probability (the largest, <= 0)
//                f32 step              quantization step (>= 0)
//                u16 q[n_vocab]        log p_i ≈ top - q_i · step; 65535: "below the range"
//                zero padding to a multiple of 4 bytes
//              u64 checksum            FNV-1a 64 of every byte before it
//
// The step spreads min(top - min log p, 50) over 65534 levels, so a log-probability
// is kept to within step/2 <= 4e-4 (tokens more than e^50 times less likely than the
// top one are clamped: they carry no weight). Decoding renormalises, which removes
// any common offset; KL divergences computed from a saved file agree with a direct
// run to ~1e-5 for close models, and the base perplexity is exact (target_log_prob).
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/checksummed_writer.h"
#include "core/mapped_file.h"
#include "eval/eval_chunks.h"

namespace piquant {

// Bytes of one encoded row for a vocabulary of n_vocab.
std::size_t logits_row_bytes(std::int64_t n_vocab);

// Encodes one position's base distribution (log-probabilities, normalised) into
// out (logits_row_bytes(log_probs.size()) bytes). target: the actual next token.
void encode_logits_row(std::span<const double> log_probs, std::int32_t target, std::span<std::uint8_t> out);

class BaseLogitsWriter {
 public:
  // Writes the header and tokens; rows follow through write_rows, in order.
  BaseLogitsWriter(std::string path, std::int64_t n_vocab, const EvalChunks& chunks);
  std::size_t row_bytes() const { return row_bytes_; }
  // n whole encoded rows (n × row_bytes() bytes).
  void write_rows(std::span<const std::uint8_t> encoded);
  // Checks that every row was written, appends the checksum and moves the file into place.
  void commit();

 private:

  ChecksummedWriter out_;
  std::size_t row_bytes_;
  std::int64_t rows_expected_;
  std::int64_t rows_written_ = 0;
};

class BaseLogitsFile {
 public:
  // Maps the file and validates all of it (header, sizes, checksum, tokens, rows);
  // throws FormatError naming the file and the field.
  explicit BaseLogitsFile(std::string path);

  const std::string& path() const { return file_.path(); }
  std::int64_t n_vocab() const { return n_vocab_; }
  std::int64_t n_ctx() const { return n_ctx_; }
  std::int64_t n_chunks() const { return n_chunks_; }
  std::int64_t rows_per_chunk() const { return rows_per_chunk_; }
  std::int32_t bos_id() const { return bos_id_; }
  std::span<const std::int32_t> tokens() const { return tokens_; }

  // Throws Error when the file cannot stand in for the base model on these chunks:
  // another vocabulary size, n_ctx, BOS rule, fewer chunks, or other tokens.
  void check_matches(const EvalChunks& chunks, std::int64_t n_vocab) const;

  struct Row {
    std::int32_t argmax = 0;
    double target_log_prob = 0.0;
  };
  // Decodes the row of position first_scored + row of chunk c into normalised
  // log-probabilities (resized to n_vocab).
  Row decode(std::int64_t chunk, std::int64_t row, std::vector<double>& log_probs) const;

 private:
  const std::uint8_t* row_data(std::int64_t chunk, std::int64_t row) const;

  MappedFile file_;
  std::int64_t n_vocab_ = 0;
  std::int64_t n_ctx_ = 0;
  std::int64_t n_chunks_ = 0;
  std::int64_t rows_per_chunk_ = 0;
  std::int32_t bos_id_ = -1;
  std::vector<std::int32_t> tokens_;
  std::uint64_t rows_offset_ = 0;
  std::size_t row_bytes_ = 0;
};

}  // namespace piquant
