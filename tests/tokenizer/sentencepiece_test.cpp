// load_vocab_sentencepiece: the real Llama 2 tokenizer.model against the vocab
// llama.cpp's converter stored in ggml-vocab-llama-spm.gguf, hand-built ModelProtos
// for the fields we read, and corrupt protobufs.
#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "formats/gguf.h"
#include "support/test_support.h"
#include "tokenizer/vocab.h"

namespace piquant {
namespace {

// --- a tiny protobuf encoder, enough to write ModelProtos by hand ---

std::string varint(std::uint64_t v) {
  std::string out;
  do {
    auto byte = static_cast<std::uint8_t>(v & 0x7f);
    v >>= 7;
    if (v != 0) byte |= 0x80;
    out += static_cast<char>(byte);
  } while (v != 0);
  return out;
}
std::string key(std::uint32_t field, int wire) { return varint((static_cast<std::uint64_t>(field) << 3) | wire); }
std::string varint_field(std::uint32_t field, std::uint64_t v) { return key(field, 0) + varint(v); }
std::string bytes_field(std::uint32_t field, const std::string& payload) {
  return key(field, 2) + varint(payload.size()) + payload;
}
std::string float_field(std::uint32_t field, float f) {
  const auto bits = std::bit_cast<std::uint32_t>(f);
  std::string out = key(field, 5);
  for (int i = 0; i < 4; ++i) out += static_cast<char>((bits >> (8 * i)) & 0xff);
  return out;
}
// A ModelProto.pieces entry; type 0 leaves the type out (NORMAL by default).
std::string piece(const std::string& text, float score, int type = 0) {
  std::string body = bytes_field(1, text) + float_field(2, score);
  if (type != 0) body += varint_field(3, static_cast<std::uint64_t>(type));
  return bytes_field(1, body);
}

const std::string kSpace = "\xE2\x96\x81";

std::string mini_model(const std::string& trainer_spec, const std::string& normalizer_spec) {
  std::string model = piece("<unk>", 0, 2) + piece("<s>", 0, 3) + piece("</s>", 0, 3) + piece("<0x41>", 0, 6) +
                      piece(kSpace + "a", -1.5f) + piece("b", -2.0f, 1) + piece("<extra>", 0, 4);
  // Unknown fields of every wire type the reader must skip: fixed64, fixed32, bytes, varint.
  model += key(99, 1) + std::string(8, '\x01');
  model += key(98, 5) + std::string(4, '\x02');
  model += bytes_field(4, bytes_field(1, "self test input"));
  model += varint_field(97, 300);
  model += bytes_field(2, trainer_spec);
  model += bytes_field(3, normalizer_spec);
  return model;
}

// unk 0, bos 1, eos 2, pad -1 (negative int32 values are 10-byte varints), plus noise.
std::string trainer_spec(std::int32_t bos = 1) {
  return bytes_field(1, "input.txt") + varint_field(3, 2) + float_field(10, 0.99995f) + varint_field(40, 0) +
         varint_field(41, static_cast<std::uint64_t>(static_cast<std::int64_t>(bos))) + varint_field(42, 2) +
         varint_field(43, static_cast<std::uint64_t>(std::int64_t{-1})) + bytes_field(45, "<unk>");
}

class SentencePieceMini : public ::testing::Test {
 protected:
  std::string write(const std::string& name, const std::string& bytes) {
    const auto path = (dir_ / name).string();
    testing::write_file(path, bytes);
    return path;
  }
  // The load must fail with a FormatError that names the file and mentions `problem`.
  void expect_format_error(const std::string& bytes, const std::string& problem) {
    const std::string path = write("bad.model", bytes);
    try {
      load_vocab_sentencepiece(path);
      ADD_FAILURE() << "no error for a model that should fail with: " << problem;
    } catch (const FormatError& e) {
      EXPECT_EQ(e.path(), path);
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(problem), std::string::npos) << e.what();
    }
  }
  testing::TempDir dir_;
};

TEST_F(SentencePieceMini, ReadsPiecesScoresTypesAndSpecs) {
  const Vocab v = load_vocab_sentencepiece(write("mini.model", mini_model(trainer_spec(), varint_field(3, 0))));
  EXPECT_EQ(v.kind, TokenizerKind::Spm);
  EXPECT_EQ(v.pre, "default");
  EXPECT_EQ(v.tokens, (std::vector<std::string>{"<unk>", "<s>", "</s>", "<0x41>", kSpace + "a", "b", "<extra>"}));
  EXPECT_EQ(v.scores, (std::vector<float>{0, 0, 0, 0, -1.5f, -2.0f, 0}));
  EXPECT_EQ(v.types, (std::vector<TokenType>{TokenType::Unknown, TokenType::Control, TokenType::Control,
                                             TokenType::Byte, TokenType::Normal, TokenType::Normal,
                                             TokenType::UserDefined}));
  EXPECT_EQ(v.unk_id, 0);
  EXPECT_EQ(v.bos_id, 1);
  EXPECT_EQ(v.eos_id, 2);
  EXPECT_EQ(v.pad_id, -1);
  EXPECT_TRUE(v.add_bos);
  EXPECT_FALSE(v.add_eos);
  EXPECT_FALSE(v.add_space_prefix);  // normalizer_spec.add_dummy_prefix = false
}

TEST_F(SentencePieceMini, AddDummyPrefixDefaultsToTrue) {
  EXPECT_TRUE(load_vocab_sentencepiece(write("a.model", mini_model(trainer_spec(), ""))).add_space_prefix);
  EXPECT_TRUE(load_vocab_sentencepiece(write("b.model", mini_model(trainer_spec(), varint_field(3, 1))))
                  .add_space_prefix);
}

TEST_F(SentencePieceMini, DisabledOrMistypedSpecialIdsAreAbsent) {
  // bos_id -1: the model has no BOS, so none is added.
  Vocab v = load_vocab_sentencepiece(write("a.model", mini_model(trainer_spec(-1), "")));
  EXPECT_EQ(v.bos_id, -1);
  EXPECT_FALSE(v.add_bos);
  // bos_id pointing at a normal piece is not a BOS.
  v = load_vocab_sentencepiece(write("b.model", mini_model(trainer_spec(4), "")));
  EXPECT_EQ(v.bos_id, -1);
  // Without a trainer_spec, SentencePiece's defaults (unk 0, bos 1, eos 2) apply.
  std::string no_trainer = piece("<unk>", 0, 2) + piece("<s>", 0, 3) + piece("</s>", 0, 3) + piece("x", -1);
  v = load_vocab_sentencepiece(write("c.model", no_trainer));
  EXPECT_EQ(v.unk_id, 0);
  EXPECT_EQ(v.bos_id, 1);
  EXPECT_EQ(v.eos_id, 2);
}

TEST_F(SentencePieceMini, CorruptProtobufsAreFormatErrors) {
  const std::string good = mini_model(trainer_spec(), "");
  expect_format_error("", "no pieces");
  expect_format_error(key(1, 2) + std::string(11, '\xff'), "varint");                 // bad length varint
  expect_format_error(std::string(11, '\xff'), "varint");                               // bad key varint
  expect_format_error(key(1, 2) + varint(100) + "12345", "past the end");              // length past end
  expect_format_error(good.substr(0, good.size() - 1), "past the end");                 // truncated last message
  expect_format_error(good.substr(0, 5), "past the end");                               // truncated first piece
  // A piece whose text claims more bytes than the piece message holds.
  expect_format_error(bytes_field(1, key(1, 2) + varint(50) + "abc"), "past the end");
  expect_format_error(bytes_field(1, bytes_field(1, "x") + key(2, 0) + varint(1)), "float");  // score as varint
  expect_format_error(bytes_field(1, bytes_field(1, "x") + varint_field(3, 7)), "piece type 7");
  expect_format_error(bytes_field(1, float_field(2, 1.0f)), "no text");
  expect_format_error(piece("<0xZZ>", 0, 6), "<0xNN>");
  expect_format_error(piece("a", 0) + key(5, 3), "group");                               // start-group
  expect_format_error(piece("a", 0) + key(5, 7), "wire type 7");
  expect_format_error(piece("a", 0) + varint(0) + varint(1), "field number 0");
  expect_format_error(piece("a", 0) + bytes_field(3, key(1, 1) + "1234"), "past the end");
}

TEST_F(SentencePieceMini, RandomCorruptionsLoadOrThrowButNeverCrash) {
  const std::string good = mini_model(trainer_spec(), varint_field(3, 0));
  std::mt19937 rng(1234);
  int failures = 0;
  for (int round = 0; round < 120; ++round) {
    std::string bytes = good;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) bytes[rng() % bytes.size()] = static_cast<char>(rng() & 0xff);
    if (round % 3 == 0) bytes.resize(rng() % bytes.size());
    const std::string path = write("fuzz.model", bytes);
    try {
      const Vocab v = load_vocab_sentencepiece(path);
      EXPECT_EQ(v.tokens.size(), v.types.size());
    } catch (const FormatError& e) {
      EXPECT_EQ(e.path(), path);
      ++failures;
    } catch (const Error& e) {  // e.g. Vocab::validate
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
      ++failures;
    }
  }
  EXPECT_GT(failures, 20);  // the corruptions did reach the checks
}

TEST(SentencePiece, MissingFileIsAnErrorNamingIt) {
  testing::TempDir dir;
  const std::string path = (dir / "missing.model").string();
  try {
    load_vocab_sentencepiece(path);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos);
  }
}

TEST(SentencePiece, Llama2TokenizerModel) {
  const auto path = PIQUANT_SHARED_FILE("tokenizers/llama2/tokenizer.model");
  const Vocab v = load_vocab_sentencepiece(path.string());
  ASSERT_EQ(v.size(), 32000u);
  EXPECT_EQ(v.kind, TokenizerKind::Spm);
  EXPECT_EQ(v.tokens[0], "<unk>");
  EXPECT_EQ(v.tokens[1], "<s>");
  EXPECT_EQ(v.tokens[2], "</s>");
  EXPECT_EQ(v.types[0], TokenType::Unknown);
  EXPECT_EQ(v.types[1], TokenType::Control);
  EXPECT_EQ(v.types[2], TokenType::Control);
  for (int b = 0; b < 256; ++b) EXPECT_EQ(v.types[static_cast<std::size_t>(3 + b)], TokenType::Byte) << b;
  EXPECT_EQ(v.tokens[3 + 0x0A], "<0x0A>");
  for (std::size_t i = 259; i < v.size(); ++i) ASSERT_EQ(v.types[i], TokenType::Normal) << i;
  // Ids llama.cpp's test vectors rely on.
  EXPECT_EQ(v.tokens[29871], kSpace);
  EXPECT_EQ(v.tokens[15043], kSpace + "Hello");
  EXPECT_EQ(v.unk_id, 0);
  EXPECT_EQ(v.bos_id, 1);
  EXPECT_EQ(v.eos_id, 2);
  EXPECT_EQ(v.pad_id, -1);
  EXPECT_TRUE(v.add_bos);
  EXPECT_FALSE(v.add_eos);
  EXPECT_TRUE(v.add_space_prefix);
}

// The converter copied tokens, scores and types straight from the SentencePiece model;
// compare with the raw GGUF arrays (not through load_vocab_gguf).
TEST(SentencePiece, MatchesTheArraysLlamaCppsConverterWrote) {
  const auto model_path = PIQUANT_SHARED_FILE("tokenizers/llama2/tokenizer.model");
  const auto gguf_path = PIQUANT_SHARED_FILE("tokenizers/ggml-vocab/ggml-vocab-llama-spm.gguf");
  const Vocab v = load_vocab_sentencepiece(model_path.string());
  const GgufFile gguf(gguf_path.string());
  EXPECT_EQ(gguf.get_string("tokenizer.ggml.model"), "llama");
  EXPECT_EQ(v.tokens, gguf.at("tokenizer.ggml.tokens").as_string_array());
  EXPECT_EQ(v.scores, gguf.at("tokenizer.ggml.scores").as_float_array());
  std::vector<std::int64_t> types;
  for (const TokenType t : v.types) types.push_back(static_cast<std::int64_t>(t));
  EXPECT_EQ(types, gguf.at("tokenizer.ggml.token_type").as_int_array());
  EXPECT_EQ(v.bos_id, gguf.get_int("tokenizer.ggml.bos_token_id"));
  EXPECT_EQ(v.eos_id, gguf.get_int("tokenizer.ggml.eos_token_id"));
  EXPECT_EQ(v.unk_id, gguf.get_int("tokenizer.ggml.unknown_token_id"));
  EXPECT_EQ(v.add_bos, gguf.get_bool("tokenizer.ggml.add_bos_token"));
  EXPECT_EQ(v.add_eos, gguf.get_bool("tokenizer.ggml.add_eos_token"));
}

// And through load_vocab_gguf: the two loaders give the same Vocab.
TEST(SentencePiece, EqualsTheGgufVocab) {
  const auto model_path = PIQUANT_SHARED_FILE("tokenizers/llama2/tokenizer.model");
  const auto gguf_path = PIQUANT_SHARED_FILE("tokenizers/ggml-vocab/ggml-vocab-llama-spm.gguf");
  const Vocab a = load_vocab_sentencepiece(model_path.string());
  const Vocab b = load_vocab_gguf(GgufFile(gguf_path.string()));
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.pre, b.pre);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.scores, b.scores);
  EXPECT_EQ(a.types, b.types);
  EXPECT_EQ(a.bos_id, b.bos_id);
  EXPECT_EQ(a.eos_id, b.eos_id);
  EXPECT_EQ(a.unk_id, b.unk_id);
  EXPECT_EQ(a.pad_id, b.pad_id);
  EXPECT_EQ(a.eot_id, b.eot_id);
  EXPECT_EQ(a.add_bos, b.add_bos);
  EXPECT_EQ(a.add_eos, b.add_eos);
  EXPECT_EQ(a.add_space_prefix, b.add_space_prefix);
}

TEST(SentencePiece, TruncatedRealModelIsAFormatError) {
  const auto path = PIQUANT_SHARED_FILE("tokenizers/llama2/tokenizer.model");
  const std::string bytes = testing::read_file(path);
  testing::TempDir dir;
  // Cut inside the trainer/normalizer specs at the end, and inside the piece list.
  for (const std::size_t keep : {bytes.size() - 1, bytes.size() - 7, std::size_t{4}}) {
    const std::string cut = (dir / ("cut" + std::to_string(keep) + ".model")).string();
    testing::write_file(cut, bytes.substr(0, keep));
    try {
      load_vocab_sentencepiece(cut);
      ADD_FAILURE() << "no error for the first " << keep << " bytes";
    } catch (const FormatError& e) {
      EXPECT_EQ(e.path(), cut);
    }
  }
}

}  // namespace
}  // namespace piquant
