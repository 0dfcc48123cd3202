#pragma once
// A teacher's top-k logits for distillation, computed once (compute_teacher_logits)
// instead of running the teacher alongside the student.
//
// For every position t of every sequence (the teacher's prediction of target
// tokens[t + 1] from tokens[0..t]; a sequence of n + 1 tokens has n positions) the file
// keeps the k largest logits, largest first (ties: smaller token id first), and
//   lse_tau = log Σ_{v < n_vocab} exp(logit_v / tau)        (in double)
// so that the teacher's probabilities at temperature tau, p_i = exp(logit_i / tau - lse_tau),
// are exact for the kept tokens, and the tail's mass is exactly 1 - Σ_i p_i.
//
// File layout (little-endian; the reader checks every size):
//   offset 0   char[8]  magic "PQTEACHK"
//          8   u32      version = 1
//         12   u32      k                  logits kept per position, 1 <= k <= n_vocab
//         16   u64      n_vocab
//         24   f64      tau                temperature, finite and > 0
//         32   u64      n_sequences
//         40   u64      n_positions        Σ positions over the sequences
//         48   u64      fingerprint        of the sequences (below)
//         56   u64      reserved = 0
//         64   u64      offsets[n_sequences + 1]   sequence s has the records offsets[s] ..
//                                                  offsets[s+1] - 1 (position t: record offsets[s] + t);
//                                                  offsets[0] = 0, offsets[n_sequences] = n_positions
//              records[n_positions], 8 + 8k bytes each:
//                f64 lse_tau
//                i32 ids[k]        token ids, distinct, in [0, n_vocab)
//                f32 logits[k]     the teacher's raw logits (not divided by tau), non-increasing
//              u64 checksum        FNV-1a 64 (core/fnv1a.h) of every byte before it
// Every record starts at a multiple of 8. In numpy:
//   rec = np.dtype([("lse", "<f8"), ("ids", "<i4", (k,)), ("logits", "<f4", (k,))])
//   records = np.frombuffer(data, rec, count=n_positions, offset=64 + 8 * (n_sequences + 1))
//
// Fingerprint: FNV-1a 64 over, for each sequence in order, its token count (tokens.size(),
// u64) then its tokens (i32 each). A file is refused for data with another fingerprint.
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "core/checksummed_writer.h"
#include "core/mapped_file.h"
#include "engine/llama_model.h"
#include "train/training_data.h"

namespace piquant {

inline constexpr int kDefaultTeacherTopK = 64;

std::uint64_t teacher_fingerprint(std::span<const TrainingExample> sequences);

// The top k of one row of logits (ids and logits written to the first k entries of
// `ids` and `top`) and its lse_tau: m = max_v logit_v / tau, then
// lse_tau = m + log Σ_v exp(logit_v / tau - m), all in double, summed in id order.
// Throws Error for a NaN or infinite logit, k outside [1, logits.size()], or tau not > 0.
double teacher_top_k(std::span<const float> logits, int k, double tau, std::span<std::int32_t> ids, std::span<float> top);

class TeacherLogitsWriter {
 public:
  // Writes the header and offsets; records follow through write_position, sequence by
  // sequence, position by position. Throws Error for a bad k, tau or n_vocab, or an
  // example whose mask does not have tokens.size() - 1 entries.
  TeacherLogitsWriter(std::string path, std::int64_t n_vocab, int k, double tau, std::span<const TrainingExample> sequences);
  // One record; ids and logits have k entries each (not checked for order here: the reader does).
  void write_position(double lse_tau, std::span<const std::int32_t> ids, std::span<const float> logits);
  // Checks that every position was written, appends the checksum, moves the file into place.
  void commit();

 private:

  ChecksummedWriter out_;
  int k_;
  std::int64_t positions_expected_;
  std::int64_t positions_written_ = 0;
};

class TeacherLogitsFile {
 public:
  // Maps the file and validates all of it: header, sizes, offsets, checksum, and every
  // record (ids in range and distinct, logits finite and in order, and lse_tau consistent
  // with them: Σ_i p_i <= 1 and lse_tau <= log(Σ_i exp(logit_i/tau) + (n_vocab - k)·exp(logit_k-1/tau)),
  // to 1e-6). Throws FormatError naming the file and the field, record or sequence.
  explicit TeacherLogitsFile(std::string path);

  const std::string& path() const { return file_.path(); }
  std::int64_t n_vocab() const { return n_vocab_; }
  int k() const { return k_; }
  double tau() const { return tau_; }
  std::int64_t n_sequences() const { return static_cast<std::int64_t>(offsets_.size()) - 1; }
  std::int64_t n_positions() const { return offsets_.back(); }
  std::int64_t n_positions(std::int64_t sequence) const;
  std::uint64_t fingerprint() const { return fingerprint_; }

  // Throws Error naming the file when it was computed on other data (the number of
  // sequences, a sequence's length, or the tokens differ) or for another vocabulary size.
  void check_matches(std::span<const TrainingExample> sequences, std::int64_t n_vocab) const;

  struct TopK {
    double lse_tau = 0.0;
    std::span<const std::int32_t> ids;  // k entries, views into the mapped file
    std::span<const float> logits;
  };
  // Position t of sequence s; throws Error when out of range.
  TopK at(std::int64_t sequence, std::int64_t position) const;

 private:
  TopK record(std::uint64_t index) const;

  MappedFile file_;
  std::int64_t n_vocab_ = 0;
  int k_ = 0;
  double tau_ = 1.0;
  std::uint64_t fingerprint_ = 0;
  std::vector<std::int64_t> offsets_;
  std::uint64_t records_offset_ = 0;
  std::size_t record_bytes_ = 0;
};

struct TeacherProgress {
  // Called after each sequence with (sequences done, sequences in all); may be empty.
  std::function<void(std::int64_t, std::int64_t)> on_sequence;
};

// Runs `teacher` over every sequence's inputs (a fresh F32 KV cache per sequence, logits
// for every position) and writes the top-k file to `path`, atomically. n_threads 0: one per
// physical core. Throws Error when a token is outside the teacher's vocabulary.
void compute_teacher_logits(const LlamaModel& teacher, std::span<const TrainingExample> sequences, int k, double tau,
                            unsigned n_threads, const std::string& path, const TeacherProgress& progress = {});

}  // namespace piquant
