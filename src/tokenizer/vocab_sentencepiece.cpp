// load_vocab_sentencepiece: a SentencePiece tokenizer.model (a serialized ModelProto)
// read by hand. The fields used:
//   ModelProto      1: repeated SentencePiece pieces, 2: TrainerSpec, 3: NormalizerSpec
//   SentencePiece   1: piece (string), 2: score (float), 3: type (enum, default NORMAL)
//   TrainerSpec     40: unk_id (default 0), 41: bos_id (1), 42: eos_id (2), 43: pad_id (-1)
//   NormalizerSpec  3: add_dummy_prefix (bool, default true)
// Everything else is skipped by wire type.
#include <cmath>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "core/mapped_file.h"
#include "tokenizer/protobuf_reader.h"
#include "tokenizer/spm_byte_token.h"
#include "tokenizer/vocab.h"

namespace piquant {

namespace {

constexpr std::uint32_t kModelPieces = 1;
constexpr std::uint32_t kModelTrainerSpec = 2;
constexpr std::uint32_t kModelNormalizerSpec = 3;

constexpr std::uint32_t kPieceText = 1;
constexpr std::uint32_t kPieceScore = 2;
constexpr std::uint32_t kPieceType = 3;

constexpr std::uint32_t kTrainerUnkId = 40;
constexpr std::uint32_t kTrainerBosId = 41;
constexpr std::uint32_t kTrainerEosId = 42;
constexpr std::uint32_t kTrainerPadId = 43;

constexpr std::uint32_t kNormalizerAddDummyPrefix = 3;

// The special ids the trainer declared (SentencePiece's defaults when absent).
struct TrainerIds {
  std::int32_t unk = 0;
  std::int32_t bos = 1;
  std::int32_t eos = 2;
  std::int32_t pad = -1;
};

void read_piece(ProtobufReader& reader, Vocab& vocab, const std::string& path) {
  const std::size_t index = vocab.tokens.size();
  const std::string context = "pieces[" + std::to_string(index) + "]";
  ProtobufReader piece = reader.read_message(context);
  std::string text;
  bool has_text = false;
  float score = 0.0f;
  auto type = TokenType::Normal;
  while (piece.next()) {
    switch (piece.field()) {
      case kPieceText:
        text = std::string(piece.read_string());
        has_text = true;
        break;
      case kPieceScore:
        score = piece.read_float();
        if (std::isnan(score)) piece.fail("score is NaN");
        break;
      case kPieceType: {
        const std::int32_t raw = piece.read_int32();
        if (raw < static_cast<std::int32_t>(TokenType::Normal) || raw > static_cast<std::int32_t>(TokenType::Byte)) {
          piece.fail("unknown piece type " + std::to_string(raw) + " (expected 1..6)");
        }
        type = static_cast<TokenType>(raw);
        break;
      }
      default:
        piece.skip();
    }
  }
  if (!has_text) throw FormatError(path, context, "piece has no text");
  if (type == TokenType::Byte && !parse_byte_token(text)) {
    throw FormatError(path, context, "byte piece '" + text + "' is not of the form <0xNN>");
  }
  vocab.tokens.push_back(std::move(text));
  vocab.scores.push_back(score);
  vocab.types.push_back(type);
}

TrainerIds read_trainer_spec(ProtobufReader& reader) {
  TrainerIds ids;
  ProtobufReader spec = reader.read_message("trainer_spec");
  while (spec.next()) {
    switch (spec.field()) {
      case kTrainerUnkId:
        ids.unk = spec.read_int32();
        break;
      case kTrainerBosId:
        ids.bos = spec.read_int32();
        break;
      case kTrainerEosId:
        ids.eos = spec.read_int32();
        break;
      case kTrainerPadId:
        ids.pad = spec.read_int32();
        break;
      default:
        spec.skip();
    }
  }
  return ids;
}

bool read_add_dummy_prefix(ProtobufReader& reader) {
  bool add_dummy_prefix = true;
  ProtobufReader spec = reader.read_message("normalizer_spec");
  while (spec.next()) {
    if (spec.field() == kNormalizerAddDummyPrefix) {
      add_dummy_prefix = spec.read_bool();
    } else {
      spec.skip();
    }
  }
  return add_dummy_prefix;
}

// The declared id if that piece has the expected type; -1 otherwise (a disabled id is -1 too).
std::int32_t special_id(const Vocab& vocab, std::int32_t declared, TokenType expected) {
  if (declared < 0 || static_cast<std::size_t>(declared) >= vocab.size()) return -1;
  return vocab.types[static_cast<std::size_t>(declared)] == expected ? declared : -1;
}

std::int32_t first_of_type(const Vocab& vocab, TokenType type) {
  for (std::size_t i = 0; i < vocab.size(); ++i) {
    if (vocab.types[i] == type) return static_cast<std::int32_t>(i);
  }
  return -1;
}

}  // namespace

Vocab load_vocab_sentencepiece(const std::string& tokenizer_model_path) {
  const MappedFile file(tokenizer_model_path);
  const std::span<const std::uint8_t> data(file.data(), file.size());
  ProtobufReader model(data, tokenizer_model_path, "ModelProto");

  Vocab vocab;
  vocab.kind = TokenizerKind::Spm;
  vocab.pre = "default";
  vocab.add_bos = true;
  vocab.add_eos = false;
  TrainerIds declared;
  while (model.next()) {
    switch (model.field()) {
      case kModelPieces:
        read_piece(model, vocab, tokenizer_model_path);
        break;
      case kModelTrainerSpec:
        declared = read_trainer_spec(model);
        break;
      case kModelNormalizerSpec:
        vocab.add_space_prefix = read_add_dummy_prefix(model);
        break;
      default:
        model.skip();
    }
  }
  if (vocab.tokens.empty()) throw FormatError(tokenizer_model_path, "pieces", "the model has no pieces");
  if (vocab.tokens.size() > static_cast<std::size_t>(INT32_MAX)) {
    throw FormatError(tokenizer_model_path, "pieces", "too many pieces");
  }

  vocab.unk_id = special_id(vocab, declared.unk, TokenType::Unknown);
  if (vocab.unk_id < 0) vocab.unk_id = first_of_type(vocab, TokenType::Unknown);
  vocab.bos_id = special_id(vocab, declared.bos, TokenType::Control);
  vocab.eos_id = special_id(vocab, declared.eos, TokenType::Control);
  vocab.pad_id = special_id(vocab, declared.pad, TokenType::Control);
  if (vocab.bos_id < 0) vocab.add_bos = false;
  vocab.validate(tokenizer_model_path);
  return vocab;
}

}  // namespace piquant
