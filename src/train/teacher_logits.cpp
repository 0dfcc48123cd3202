#include "train/teacher_logits.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <numeric>

#include "core/error.h"
#include "engine/llama_context.h"
#include "core/fnv1a.h"

namespace piquant {
namespace {

static_assert(std::endian::native == std::endian::little, "the teacher logits file is written in host order: little-endian only");

constexpr char kMagic[8] = {'P', 'Q', 'T', 'E', 'A', 'C', 'H', 'K'};
constexpr std::uint32_t kVersion = 1;
constexpr std::uint64_t kHeaderBytes = 64;
constexpr std::int64_t kMaxDimension = std::int64_t{1} << 31;
constexpr double kLseSlack = 1e-6;  // the reader's tolerance on lse_tau's bounds

template <class T>
T load(const std::uint8_t* p) {
  T value;
  std::memcpy(&value, p, sizeof(T));
  return value;
}

template <class T>
void store(std::uint8_t* p, T value) {
  std::memcpy(p, &value, sizeof(T));
}

std::size_t record_bytes(int k) { return 8 + 8 * static_cast<std::size_t>(k); }

void check_parameters(const std::string& path, std::int64_t n_vocab, int k, double tau) {
  if (n_vocab <= 0 || n_vocab >= kMaxDimension) throw Error(path + ": vocabulary size " + std::to_string(n_vocab) + " cannot be saved");
  if (k < 1 || k > n_vocab) throw Error(path + ": top-k " + std::to_string(k) + " must lie in [1, " + std::to_string(n_vocab) + "]");
  if (!(std::isfinite(tau) && tau > 0.0)) throw Error(path + ": temperature " + std::to_string(tau) + " must be finite and positive");
}

std::int64_t positions_of(const TrainingExample& example, const std::string& what) {
  const std::size_t n = example.tokens.size();
  if (n == 0 ? !example.loss_mask.empty() : example.loss_mask.size() != n - 1) {
    throw Error(what + ": a sequence of " + std::to_string(n) + " tokens has a mask of " + std::to_string(example.loss_mask.size()) +
                " entries (expected tokens - 1)");
  }
  return example.n_positions();
}

}  // namespace

std::uint64_t teacher_fingerprint(std::span<const TrainingExample> sequences) {
  std::uint64_t h = kFnv1aOffset;
  for (const auto& s : sequences) {
    const std::uint64_t n = s.tokens.size();
    h = fnv1a64(h, &n, sizeof n);
    h = fnv1a64(h, s.tokens.data(), s.tokens.size() * sizeof(std::int32_t));
  }
  return h;
}

double teacher_top_k(std::span<const float> logits, int k, double tau, std::span<std::int32_t> ids, std::span<float> top) {
  const auto n = static_cast<std::int64_t>(logits.size());
  if (k < 1 || k > n) throw Error("teacher top-k: k " + std::to_string(k) + " must lie in [1, " + std::to_string(n) + "]");
  if (ids.size() < static_cast<std::size_t>(k) || top.size() < static_cast<std::size_t>(k)) throw Error("teacher top-k: output spans hold fewer than k entries");
  if (!(std::isfinite(tau) && tau > 0.0)) throw Error("teacher top-k: temperature must be finite and positive");
  double m = -INFINITY;
  for (std::int64_t v = 0; v < n; ++v) {
    const float l = logits[static_cast<std::size_t>(v)];
    if (!std::isfinite(l)) throw Error("the teacher's logit for token " + std::to_string(v) + " is not finite (" + std::to_string(l) + ")");
    m = std::max(m, static_cast<double>(l) / tau);
  }
  double sum = 0.0;
  for (const float l : logits) sum += std::exp(static_cast<double>(l) / tau - m);
  const double lse = m + std::log(sum);

  // The k best by (logit descending, id ascending): a strict weak order, so the set is unique.
  const auto better = [&](std::int32_t a, std::int32_t b) {
    const float la = logits[static_cast<std::size_t>(a)];
    const float lb = logits[static_cast<std::size_t>(b)];
    return la != lb ? la > lb : a < b;
  };
  // Keep a sorted list of the best k seen so far; most tokens fail the first comparison.
  std::int32_t* best = ids.data();
  int filled = 0;
  for (std::int32_t v = 0; v < static_cast<std::int32_t>(n); ++v) {
    if (filled == k && !better(v, best[k - 1])) continue;
    int pos = filled < k ? filled++ : k - 1;
    while (pos > 0 && better(v, best[pos - 1])) {
      best[pos] = best[pos - 1];
      --pos;
    }
    best[pos] = v;
  }
  for (int i = 0; i < k; ++i) top[static_cast<std::size_t>(i)] = logits[static_cast<std::size_t>(best[i])];
  return lse;
}

// ---------------------------------------------------------------------------- writer

TeacherLogitsWriter::TeacherLogitsWriter(std::string path, std::int64_t n_vocab, int k, double tau,
                                         std::span<const TrainingExample> sequences)
    : out_(std::move(path)), k_(k), positions_expected_(0) {
  check_parameters(out_.path(), n_vocab, k, tau);
  std::vector<std::uint64_t> offsets{0};
  offsets.reserve(sequences.size() + 1);
  for (std::size_t s = 0; s < sequences.size(); ++s) {
    positions_expected_ += positions_of(sequences[s], out_.path() + ": sequence " + std::to_string(s));
    offsets.push_back(static_cast<std::uint64_t>(positions_expected_));
  }
  std::uint8_t header[kHeaderBytes] = {};
  std::memcpy(header, kMagic, sizeof kMagic);
  store(header + 8, kVersion);
  store(header + 12, static_cast<std::uint32_t>(k));
  store(header + 16, static_cast<std::uint64_t>(n_vocab));
  store(header + 24, tau);
  store(header + 32, static_cast<std::uint64_t>(sequences.size()));
  store(header + 40, static_cast<std::uint64_t>(positions_expected_));
  store(header + 48, teacher_fingerprint(sequences));
  out_.write(header, sizeof header);
  out_.write(offsets.data(), offsets.size() * sizeof(std::uint64_t));
}

void TeacherLogitsWriter::write_position(double lse_tau, std::span<const std::int32_t> ids, std::span<const float> logits) {
  if (ids.size() != static_cast<std::size_t>(k_) || logits.size() != static_cast<std::size_t>(k_)) {
    throw Error(out_.path() + ": a record needs " + std::to_string(k_) + " ids and logits, got " + std::to_string(ids.size()) + " and " +
                std::to_string(logits.size()));
  }
  if (positions_written_ == positions_expected_) throw Error(out_.path() + ": more records than the sequences have positions");
  out_.write(&lse_tau, sizeof lse_tau);
  out_.write(ids.data(), ids.size_bytes());
  out_.write(logits.data(), logits.size_bytes());
  ++positions_written_;
}

void TeacherLogitsWriter::commit() {
  if (positions_written_ != positions_expected_) {
    throw Error(out_.path() + ": " + std::to_string(positions_written_) + " of " + std::to_string(positions_expected_) +
                " positions written; not saving an incomplete file");
  }
  out_.commit();
}

// ---------------------------------------------------------------------------- reader

TeacherLogitsFile::TeacherLogitsFile(std::string path) : file_(std::move(path)) {
  const std::string& name = file_.path();
  const auto fail = [&](const std::string& field, const std::string& problem) { throw FormatError(name, field, problem); };
  if (file_.size() < kHeaderBytes + 8 + 8) {
    fail("header", "the file has " + std::to_string(file_.size()) + " bytes, too short for a teacher logits file");
  }
  const std::uint8_t* h = file_.data();
  if (std::memcmp(h, kMagic, sizeof kMagic) != 0) fail("magic", "not a piquant teacher logits file (expected \"PQTEACHK\")");
  if (const auto v = load<std::uint32_t>(h + 8); v != kVersion) fail("version", std::to_string(v) + " is not supported (this piquant reads version 1)");
  const auto k = load<std::uint32_t>(h + 12);
  const auto n_vocab = load<std::uint64_t>(h + 16);
  const auto tau = load<double>(h + 24);
  const auto n_sequences = load<std::uint64_t>(h + 32);
  const auto n_positions = load<std::uint64_t>(h + 40);
  const auto limit = static_cast<std::uint64_t>(kMaxDimension);
  if (n_vocab == 0 || n_vocab >= limit) fail("n_vocab", std::to_string(n_vocab) + " is not a vocabulary size");
  if (k == 0 || k > n_vocab) fail("k", std::to_string(k) + " is not in [1, n_vocab = " + std::to_string(n_vocab) + "]");
  if (!(std::isfinite(tau) && tau > 0.0)) fail("tau", std::to_string(tau) + " is not a positive temperature");
  if (load<std::uint64_t>(h + 56) != 0) fail("reserved", "must be 0");
  n_vocab_ = static_cast<std::int64_t>(n_vocab);
  k_ = static_cast<int>(k);
  tau_ = tau;
  fingerprint_ = load<std::uint64_t>(h + 48);
  record_bytes_ = record_bytes(k_);

  // Sizes, in 128 bits so that no count in a corrupt header can overflow them.
  const unsigned __int128 records_offset = static_cast<unsigned __int128>(kHeaderBytes) + (static_cast<unsigned __int128>(n_sequences) + 1) * 8;
  const unsigned __int128 expected = records_offset + static_cast<unsigned __int128>(n_positions) * record_bytes_ + 8;
  if (expected != file_.size()) {
    fail("size", "the header describes " + std::to_string(static_cast<std::uint64_t>(std::min<unsigned __int128>(expected, ~0ull))) +
                     " bytes but the file has " + std::to_string(file_.size()) + " (truncated or not written completely)");
  }
  records_offset_ = static_cast<std::uint64_t>(records_offset);
  if (!checksum_trailer_matches(file_.data(), file_.size())) fail("checksum", "does not match the content (the file is corrupt)");

  offsets_.resize(n_sequences + 1);
  for (std::uint64_t s = 0; s <= n_sequences; ++s) {
    const auto offset = load<std::uint64_t>(h + kHeaderBytes + 8 * s);
    const std::uint64_t previous = s == 0 ? 0 : static_cast<std::uint64_t>(offsets_[s - 1]);
    if ((s == 0 && offset != 0) || offset < previous || offset > n_positions || (s == n_sequences && offset != n_positions)) {
      fail("offsets[" + std::to_string(s) + "]", std::to_string(offset) + " is out of order or out of range (n_positions " +
                                                    std::to_string(n_positions) + ")");
    }
    offsets_[s] = static_cast<std::int64_t>(offset);
  }

  std::vector<std::int32_t> sorted(k_);
  for (std::uint64_t r = 0; r < n_positions; ++r) {
    const TopK rec = record(r);
    const auto field = [&] {  // built only for the message: most files have millions of records
      const auto s = static_cast<std::size_t>(std::upper_bound(offsets_.begin(), offsets_.end(), static_cast<std::int64_t>(r)) - offsets_.begin() - 1);
      return "record " + std::to_string(r) + " (sequence " + std::to_string(s) + ", position " +
             std::to_string(static_cast<std::int64_t>(r) - offsets_[s]) + ")";
    };
    for (int i = 0; i < k_; ++i) {
      const std::int32_t id = rec.ids[i];
      const float l = rec.logits[i];
      if (id < 0 || id >= n_vocab_) fail(field(), "token id " + std::to_string(id) + " is outside the vocabulary");
      if (!std::isfinite(l)) fail(field(), "logit " + std::to_string(i) + " is not finite");
      if (i > 0 && (l > rec.logits[i - 1] || (l == rec.logits[i - 1] && id < rec.ids[i - 1]))) {
        fail(field(), "logits are not in descending order (ties by ascending id) at entry " + std::to_string(i));
      }
    }
    std::copy(rec.ids.begin(), rec.ids.end(), sorted.begin());
    std::sort(sorted.begin(), sorted.end());
    if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) fail(field(), "a token id appears twice");
    // lse_tau lies between the log of the kept tokens' mass and that mass plus every other
    // token at the k-th logit.
    const double m = static_cast<double>(rec.logits[0]) / tau_;
    double kept = 0.0;
    for (const float l : rec.logits) kept += std::exp(static_cast<double>(l) / tau_ - m);
    const double low = m + std::log(kept);
    const double high = m + std::log(kept + static_cast<double>(n_vocab_ - k_) * std::exp(static_cast<double>(rec.logits[k_ - 1]) / tau_ - m));
    if (!std::isfinite(rec.lse_tau) || rec.lse_tau < low - kLseSlack || rec.lse_tau > high + kLseSlack) {
      fail(field(), "lse_tau " + std::to_string(rec.lse_tau) + " is inconsistent with the logits kept (expected within [" + std::to_string(low) +
                      ", " + std::to_string(high) + "])");
    }
  }
}

TeacherLogitsFile::TopK TeacherLogitsFile::record(std::uint64_t index) const {
  const std::uint8_t* p = file_.data() + records_offset_ + index * record_bytes_;
  // Records start at multiples of 8 in a page-aligned map, so these views are aligned.
  return TopK{load<double>(p), std::span(reinterpret_cast<const std::int32_t*>(p + 8), static_cast<std::size_t>(k_)),
              std::span(reinterpret_cast<const float*>(p + 8 + 4 * static_cast<std::size_t>(k_)), static_cast<std::size_t>(k_))};
}

std::int64_t TeacherLogitsFile::n_positions(std::int64_t sequence) const {
  if (sequence < 0 || sequence >= n_sequences()) throw Error(path() + ": sequence " + std::to_string(sequence) + " is not in the file");
  return offsets_[static_cast<std::size_t>(sequence) + 1] - offsets_[static_cast<std::size_t>(sequence)];
}

TeacherLogitsFile::TopK TeacherLogitsFile::at(std::int64_t sequence, std::int64_t position) const {
  const std::int64_t n = n_positions(sequence);
  if (position < 0 || position >= n) {
    throw Error(path() + ": position " + std::to_string(position) + " of sequence " + std::to_string(sequence) + " is not in the file (it has " +
                std::to_string(n) + ")");
  }
  return record(static_cast<std::uint64_t>(offsets_[static_cast<std::size_t>(sequence)] + position));
}

void TeacherLogitsFile::check_matches(std::span<const TrainingExample> sequences, std::int64_t n_vocab) const {
  const std::string& name = path();
  if (n_vocab != n_vocab_) {
    throw Error(name + ": computed for a vocabulary of " + std::to_string(n_vocab_) + " tokens, the model has " + std::to_string(n_vocab));
  }
  if (static_cast<std::int64_t>(sequences.size()) != n_sequences()) {
    throw Error(name + ": computed on " + std::to_string(n_sequences()) + " sequences, the training data has " + std::to_string(sequences.size()));
  }
  for (std::size_t s = 0; s < sequences.size(); ++s) {
    const std::int64_t n = positions_of(sequences[s], name + ": training sequence " + std::to_string(s));
    if (n != n_positions(static_cast<std::int64_t>(s))) {
      throw Error(name + ": sequence " + std::to_string(s) + " has " + std::to_string(n_positions(static_cast<std::int64_t>(s))) +
                  " positions in the file but " + std::to_string(n) + " in the training data");
    }
  }
  if (teacher_fingerprint(sequences) != fingerprint_) {
    throw Error(name + ": computed on other tokens (the fingerprint differs): the teacher logits belong to another data set, "
                       "tokenizer or sequence length");
  }
}

// ---------------------------------------------------------------------------- compute

void compute_teacher_logits(const LlamaModel& teacher, std::span<const TrainingExample> sequences, int k, double tau,
                            unsigned n_threads, const std::string& path, const TeacherProgress& progress) {
  const std::int64_t n_vocab = teacher.params().n_vocab;
  TeacherLogitsWriter writer(path, n_vocab, k, tau, sequences);
  std::int64_t longest = 1;
  for (const auto& s : sequences) longest = std::max(longest, s.n_positions());
  ContextOptions options;
  options.n_ctx = longest;
  options.kv_type = GgmlType::F32;  // the teacher as exact as the engine can make it
  options.n_threads = n_threads;
  LlamaContext context(teacher, options);

  std::vector<double> lse;
  std::vector<std::int32_t> ids;
  std::vector<float> top;
  const auto total = static_cast<std::int64_t>(sequences.size());
  for (std::int64_t s = 0; s < total; ++s) {
    const TrainingExample& example = sequences[static_cast<std::size_t>(s)];
    const std::int64_t n = example.n_positions();
    if (n > 0) {
      context.reset();
      const std::span<const float> logits = context.eval(example.inputs(), /*all_logits=*/true);
      const auto uk = static_cast<std::size_t>(k);
      lse.resize(static_cast<std::size_t>(n));
      ids.resize(static_cast<std::size_t>(n) * uk);
      top.resize(static_cast<std::size_t>(n) * uk);
      context.pool().parallel_for(n, 1, [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t t = begin; t < end; ++t) {
          const auto row = static_cast<std::size_t>(t);
          lse[row] = teacher_top_k(logits.subspan(row * static_cast<std::size_t>(n_vocab), static_cast<std::size_t>(n_vocab)), k, tau,
                                   std::span(ids).subspan(row * uk, uk), std::span(top).subspan(row * uk, uk));
        }
      });
      for (std::size_t t = 0; t < static_cast<std::size_t>(n); ++t) {
        writer.write_position(lse[t], std::span(ids).subspan(t * uk, uk), std::span(top).subspan(t * uk, uk));
      }
    }
    if (progress.on_sequence) progress.on_sequence(s + 1, total);
  }
  writer.commit();
}

}  // namespace piquant
