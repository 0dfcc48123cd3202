// load_vocab_llama2c: llama2.c's tokenizer.bin. Layout (little-endian): i32
// max_token_length, then n_vocab × (f32 score, i32 length, length bytes). The
// vocab size is not in the file; it comes from the checkpoint's config.
//
// llama2.c's exporter wrote SentencePiece pieces with '▁' turned into ' ' and BOS/EOS
// as "\n<s>\n" / "\n</s>\n"; run.c hard-codes unk 0, BOS 1, EOS 2. We undo that so the
// vocab reads like the GGUF one llama.cpp's converter makes.
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

#include "core/error.h"
#include "core/mapped_file.h"
#include "tokenizer/spm_byte_token.h"
#include "tokenizer/vocab.h"

namespace piquant {

namespace {

static_assert(std::endian::native == std::endian::little, "tokenizer.bin is read as little-endian bytes");

constexpr std::size_t kUnkId = 0;
constexpr std::size_t kBosId = 1;
constexpr std::size_t kEosId = 2;
constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";  // U+2581 '▁'

template <typename T>
T read_scalar(const MappedFile& file, std::uint64_t& offset, const std::string& what) {
  const auto bytes = file.bytes(offset, sizeof(T), what);
  T value;
  std::memcpy(&value, bytes.data(), sizeof(T));
  offset += sizeof(T);
  return value;
}

std::string escape_spaces(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    if (c == ' ') {
      out += kSpaceMarker;
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

Vocab load_vocab_llama2c(const std::string& tokenizer_bin_path, std::int64_t n_vocab) {
  if (n_vocab <= 0 || n_vocab > INT32_MAX) {
    throw Error(tokenizer_bin_path + ": vocab size " + std::to_string(n_vocab) + " from the checkpoint is invalid");
  }
  const MappedFile file(tokenizer_bin_path);
  std::uint64_t offset = 0;
  const auto max_token_length = read_scalar<std::int32_t>(file, offset, "max_token_length");
  if (max_token_length < 0) {
    throw FormatError(tokenizer_bin_path, "max_token_length", "negative (" + std::to_string(max_token_length) + ")");
  }

  Vocab vocab;
  vocab.kind = TokenizerKind::Spm;
  vocab.pre = "default";
  vocab.add_bos = true;
  vocab.add_eos = false;
  vocab.add_space_prefix = true;
  const auto count = static_cast<std::size_t>(n_vocab);
  vocab.tokens.reserve(count);
  vocab.scores.reserve(count);
  vocab.types.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    const std::string field = "token " + std::to_string(i);
    const auto score = read_scalar<float>(file, offset, field + " score");
    if (std::isnan(score)) throw FormatError(tokenizer_bin_path, field, "score is NaN");
    const auto length = read_scalar<std::int32_t>(file, offset, field + " length");
    if (length < 0) throw FormatError(tokenizer_bin_path, field, "negative length " + std::to_string(length));
    const auto bytes = file.bytes(offset, static_cast<std::uint64_t>(length), field + " text");
    offset += static_cast<std::uint64_t>(length);
    const std::string_view raw(reinterpret_cast<const char*>(bytes.data()), bytes.size());

    std::string text;
    TokenType type = TokenType::Normal;
    if (i == kUnkId) {
      text = "<unk>";
      type = TokenType::Unknown;
    } else if (i == kBosId) {
      text = "<s>";
      type = TokenType::Control;
    } else if (i == kEosId) {
      text = "</s>";
      type = TokenType::Control;
    } else if (parse_byte_token(raw)) {
      text = std::string(raw);
      type = TokenType::Byte;
    } else {
      text = escape_spaces(raw);
    }
    vocab.tokens.push_back(std::move(text));
    vocab.scores.push_back(score);
    vocab.types.push_back(type);
  }
  if (offset != file.size()) {
    // A tokenizer for a different vocab size (e.g. the 32000-token default with a small
    // model) would otherwise load silently with the wrong pieces.
    throw FormatError(tokenizer_bin_path, "tokens",
                      std::to_string(file.size() - offset) + " bytes left after the " + std::to_string(n_vocab) +
                          " tokens the checkpoint declares; the tokenizer does not match the model");
  }
  const auto id_if_present = [count](std::size_t id) { return id < count ? static_cast<std::int32_t>(id) : -1; };
  vocab.unk_id = id_if_present(kUnkId);
  vocab.bos_id = id_if_present(kBosId);
  vocab.eos_id = id_if_present(kEosId);
  if (vocab.bos_id < 0) vocab.add_bos = false;
  vocab.validate(tokenizer_bin_path);
  return vocab;
}

}  // namespace piquant
