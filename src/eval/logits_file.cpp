#include "eval/logits_file.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "eval/log_softmax.h"

namespace piquant {
namespace {

static_assert(std::endian::native == std::endian::little, "the logits file is written in host order: little-endian only");

constexpr char kMagic[8] = {'P', 'Q', 'L', 'O', 'G', 'P', 'R', 'B'};
constexpr std::uint32_t kVersion = 1;
constexpr std::uint32_t kEncodingU16Linear = 1;
constexpr std::uint64_t kHeaderBytes = 64;
constexpr std::size_t kRowFixedBytes = 16;  // target_log_prob, argmax, top, step
constexpr double kMaxRange = 50.0;          // log-prob span kept below the top
constexpr std::uint16_t kBelowRange = 65535;
constexpr double kLevels = 65534.0;
constexpr std::int64_t kMaxDimension = std::int64_t{1} << 31;
// Log-probabilities are <= 0; rounding may leave a hair above.
constexpr double kLogProbSlack = 1e-4;


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

std::uint64_t tokens_end(std::uint64_t n_tokens) { return kHeaderBytes + 4 * n_tokens; }
std::uint64_t align8(std::uint64_t n) { return (n + 7) & ~std::uint64_t{7}; }

}  // namespace

std::size_t logits_row_bytes(std::int64_t n_vocab) {
  return kRowFixedBytes + ((static_cast<std::size_t>(n_vocab) * 2 + 3) & ~std::size_t{3});
}

void encode_logits_row(std::span<const double> log_probs, std::int32_t target, std::span<std::uint8_t> out) {
  const std::size_t n = log_probs.size();
  if (n == 0 || out.size() != logits_row_bytes(static_cast<std::int64_t>(n))) {
    throw Error("encode_logits_row: " + std::to_string(out.size()) + " bytes do not fit a row of " + std::to_string(n) + " tokens");
  }
  if (target < 0 || static_cast<std::size_t>(target) >= n) throw Error("encode_logits_row: target token " + std::to_string(target) + " is outside the vocabulary");
  const std::int32_t best = argmax(log_probs);
  const double top = log_probs[static_cast<std::size_t>(best)];
  if (!std::isfinite(top)) throw Error("the base model's log-probabilities are not finite (NaN or infinite logits)");
  double low = top;
  for (const double lp : log_probs) {
    if (std::isnan(lp)) throw Error("the base model's log-probabilities contain NaN");
    low = std::min(low, lp);
  }
  const double range = std::min(top - low, kMaxRange);  // -inf entries make it kMaxRange
  const double step = range / kLevels;
  store(out.data(), static_cast<float>(log_probs[static_cast<std::size_t>(target)]));
  store(out.data() + 4, best);
  store(out.data() + 8, static_cast<float>(top));
  store(out.data() + 12, static_cast<float>(step));
  std::uint8_t* q = out.data() + kRowFixedBytes;
  for (std::size_t i = 0; i < n; ++i) {
    const double level = step > 0.0 ? std::round((top - log_probs[i]) / step) : 0.0;
    const std::uint16_t value = level <= kLevels ? static_cast<std::uint16_t>(level) : kBelowRange;
    store(q + 2 * i, value);
  }
  std::fill(out.begin() + static_cast<std::ptrdiff_t>(kRowFixedBytes + 2 * n), out.end(), std::uint8_t{0});
}

// ---------------------------------------------------------------------------- writer

BaseLogitsWriter::BaseLogitsWriter(std::string path, std::int64_t n_vocab, const EvalChunks& chunks)
    : out_(std::move(path)),
      row_bytes_(logits_row_bytes(n_vocab)),
      rows_expected_(chunks.n_scored()) {
  if (n_vocab <= 0 || n_vocab >= kMaxDimension) throw Error(out_.path() + ": vocabulary size " + std::to_string(n_vocab) + " cannot be saved");
  std::uint8_t header[kHeaderBytes] = {};
  std::memcpy(header, kMagic, sizeof kMagic);
  store(header + 8, kVersion);
  store(header + 12, kEncodingU16Linear);
  store(header + 16, static_cast<std::uint64_t>(n_vocab));
  store(header + 24, static_cast<std::uint64_t>(chunks.n_ctx()));
  store(header + 32, static_cast<std::uint64_t>(chunks.n_chunks()));
  store(header + 40, static_cast<std::uint64_t>(chunks.scored_per_chunk()));
  store(header + 48, static_cast<std::int64_t>(chunks.bos_id()));
  out_.write(header, sizeof header);
  const auto tokens = chunks.tokens();
  out_.write(tokens.data(), tokens.size_bytes());
  const std::uint8_t zeros[8] = {};
  out_.write(zeros, align8(out_.position()) - out_.position());
}

void BaseLogitsWriter::write_rows(std::span<const std::uint8_t> encoded) {
  if (encoded.size() % row_bytes_ != 0) throw Error(out_.path() + ": write_rows: not a whole number of rows");
  const auto n = static_cast<std::int64_t>(encoded.size() / row_bytes_);
  if (rows_written_ + n > rows_expected_) throw Error(out_.path() + ": more rows than the chunks have");
  out_.write(encoded.data(), encoded.size());
  rows_written_ += n;
}

void BaseLogitsWriter::commit() {
  if (rows_written_ != rows_expected_) {
    throw Error(out_.path() + ": " + std::to_string(rows_written_) + " of " + std::to_string(rows_expected_) +
                " rows written; not saving an incomplete file");
  }
  out_.commit();
}

// ---------------------------------------------------------------------------- reader

BaseLogitsFile::BaseLogitsFile(std::string path) : file_(std::move(path)) {
  const std::string& name = file_.path();
  const auto fail = [&](const std::string& field, const std::string& problem) { throw FormatError(name, field, problem); };
  if (file_.size() < kHeaderBytes + 8) {
    fail("header", "the file has " + std::to_string(file_.size()) + " bytes, too short for a saved-logits file");
  }
  const std::uint8_t* h = file_.data();
  if (std::memcmp(h, kMagic, sizeof kMagic) != 0) fail("magic", "not a piquant saved-logits file (expected \"PQLOGPRB\")");
  if (const auto v = load<std::uint32_t>(h + 8); v != kVersion) fail("version", std::to_string(v) + " is not supported (this piquant reads version 1)");
  if (const auto e = load<std::uint32_t>(h + 12); e != kEncodingU16Linear) fail("encoding", "unknown row encoding " + std::to_string(e));
  const auto n_vocab = load<std::uint64_t>(h + 16);
  const auto n_ctx = load<std::uint64_t>(h + 24);
  const auto n_chunks = load<std::uint64_t>(h + 32);
  const auto rows_per_chunk = load<std::uint64_t>(h + 40);
  const auto bos_id = load<std::int64_t>(h + 48);
  const auto limit = static_cast<std::uint64_t>(kMaxDimension);
  if (n_vocab == 0 || n_vocab >= limit) fail("n_vocab", std::to_string(n_vocab) + " is not a vocabulary size");
  if (n_ctx < 4 || n_ctx >= limit) fail("n_ctx", std::to_string(n_ctx) + " is not a usable context length");
  if (n_chunks == 0 || n_chunks >= limit) fail("n_chunks", std::to_string(n_chunks) + " is not a chunk count");
  if (rows_per_chunk != n_ctx - 1 - n_ctx / 2) {
    fail("rows_per_chunk", std::to_string(rows_per_chunk) + " does not match n_ctx " + std::to_string(n_ctx) + " (expected " +
                               std::to_string(n_ctx - 1 - n_ctx / 2) + ")");
  }
  if (bos_id < -1 || bos_id >= static_cast<std::int64_t>(n_vocab)) fail("bos_id", std::to_string(bos_id) + " is outside the vocabulary");
  if (load<std::uint64_t>(h + 56) != 0) fail("reserved", "must be 0");

  // Each factor is below 2^31, so these products fit in 64 bits.
  n_vocab_ = static_cast<std::int64_t>(n_vocab);
  n_ctx_ = static_cast<std::int64_t>(n_ctx);
  n_chunks_ = static_cast<std::int64_t>(n_chunks);
  rows_per_chunk_ = static_cast<std::int64_t>(rows_per_chunk);
  bos_id_ = static_cast<std::int32_t>(bos_id);
  row_bytes_ = logits_row_bytes(n_vocab_);
  const std::uint64_t n_tokens = n_chunks * n_ctx;
  rows_offset_ = align8(tokens_end(n_tokens));
  const unsigned __int128 expected =
      static_cast<unsigned __int128>(rows_offset_) + static_cast<unsigned __int128>(n_chunks * rows_per_chunk) * row_bytes_ + 8;
  if (expected != file_.size()) {
    fail("size", "the header describes " + std::to_string(static_cast<std::uint64_t>(std::min<unsigned __int128>(expected, ~0ull))) +
                     " bytes but the file has " + std::to_string(file_.size()) + " (truncated or not written completely)");
  }
  if (!checksum_trailer_matches(file_.data(), file_.size())) fail("checksum", "does not match the content (the file is corrupt)");

  tokens_.resize(n_tokens);
  std::memcpy(tokens_.data(), file_.data() + kHeaderBytes, n_tokens * 4);
  for (std::size_t i = 0; i < tokens_.size(); ++i) {
    if (tokens_[i] < 0 || tokens_[i] >= n_vocab_) fail("tokens[" + std::to_string(i) + "]", std::to_string(tokens_[i]) + " is outside the vocabulary");
  }
  for (std::int64_t c = 0; c < n_chunks_; ++c) {
    for (std::int64_t r = 0; r < rows_per_chunk_; ++r) {
      const std::uint8_t* row = row_data(c, r);
      const std::string field = "row " + std::to_string(r) + " of chunk " + std::to_string(c);
      const auto target_lp = load<float>(row);
      const auto best = load<std::int32_t>(row + 4);
      const auto top = load<float>(row + 8);
      const auto step = load<float>(row + 12);
      if (!std::isfinite(target_lp) || target_lp > kLogProbSlack) fail(field, "target log-probability " + std::to_string(target_lp) + " is not a log-probability");
      if (best < 0 || best >= n_vocab_) fail(field, "argmax " + std::to_string(best) + " is outside the vocabulary");
      if (!std::isfinite(top) || top > kLogProbSlack) fail(field, "top log-probability " + std::to_string(top) + " is not a log-probability");
      if (!std::isfinite(step) || step < 0 || step > kMaxRange / kLevels * 1.001) fail(field, "quantization step " + std::to_string(step) + " is out of range");
      if (load<std::uint16_t>(row + kRowFixedBytes + 2 * static_cast<std::size_t>(best)) != 0) fail(field, "the argmax token is not at the top level");
    }
  }
}

void BaseLogitsFile::check_matches(const EvalChunks& chunks, std::int64_t n_vocab) const {
  const std::string& name = path();
  if (n_vocab != n_vocab_) {
    throw Error(name + ": saved for a vocabulary of " + std::to_string(n_vocab_) + " tokens, the model has " + std::to_string(n_vocab));
  }
  if (chunks.n_ctx() != n_ctx_) {
    throw Error(name + ": saved with n_ctx " + std::to_string(n_ctx_) + " but this run uses --ctx " + std::to_string(chunks.n_ctx()));
  }
  if (chunks.bos_id() != bos_id_) {
    throw Error(name + ": saved with BOS id " + std::to_string(bos_id_) + " at each chunk's start, this model uses " + std::to_string(chunks.bos_id()));
  }
  if (chunks.n_chunks() > n_chunks_) {
    throw Error(name + ": holds " + std::to_string(n_chunks_) + " chunks but this run evaluates " + std::to_string(chunks.n_chunks()) +
                " (pass --chunks " + std::to_string(n_chunks_) + " or save the base logits again)");
  }
  const auto ours = chunks.tokens();
  for (std::size_t i = 0; i < ours.size(); ++i) {
    if (ours[i] != tokens_[i]) {
      throw Error(name + ": token " + std::to_string(i) + " of the text is " + std::to_string(ours[i]) + " but the file was saved with " +
                  std::to_string(tokens_[i]) + ": the base logits belong to another text or tokenizer");
    }
  }
}

const std::uint8_t* BaseLogitsFile::row_data(std::int64_t chunk, std::int64_t row) const {
  if (chunk < 0 || chunk >= n_chunks_ || row < 0 || row >= rows_per_chunk_) {
    throw Error(path() + ": row " + std::to_string(row) + " of chunk " + std::to_string(chunk) + " is not in the file");
  }
  return file_.data() + rows_offset_ + static_cast<std::uint64_t>(chunk * rows_per_chunk_ + row) * row_bytes_;
}

BaseLogitsFile::Row BaseLogitsFile::decode(std::int64_t chunk, std::int64_t row, std::vector<double>& log_probs) const {
  const std::uint8_t* data = row_data(chunk, row);
  const double top = load<float>(data + 8);
  const double step = load<float>(data + 12);
  log_probs.resize(static_cast<std::size_t>(n_vocab_));
  const std::uint8_t* q = data + kRowFixedBytes;
  double sum = 0.0;
  for (std::size_t i = 0; i < log_probs.size(); ++i) {
    log_probs[i] = top - static_cast<double>(load<std::uint16_t>(q + 2 * i)) * step;
    sum += std::exp(log_probs[i] - top);
  }
  const double lse = top + std::log(sum);
  for (double& lp : log_probs) lp -= lse;
  return Row{load<std::int32_t>(data + 4), static_cast<double>(load<float>(data))};
}

}  // namespace piquant
