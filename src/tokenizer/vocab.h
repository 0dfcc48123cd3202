#pragma once
// A tokenizer's vocabulary as GGUF stores it (tokenizer.ggml.*), whatever file it
// was read from. Loaders for each source live in their own files.
#include <cstdint>
#include <string>
#include <vector>

namespace piquant {

class GgufFile;
class GgufWriter;

enum class TokenizerKind {
  Bpe,  // byte-level BPE with merges (GGUF tokenizer.ggml.model "gpt2"; Llama 3)
  Spm,  // SentencePiece-style BPE by scores with byte fallback (GGUF "llama"; Llama 2)
};

// Values as in GGUF tokenizer.ggml.token_type.
enum class TokenType : std::int32_t {
  Undefined = 0,
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6,
};

struct Vocab {
  TokenizerKind kind = TokenizerKind::Bpe;
  std::string pre = "default";  // tokenizer.ggml.pre: "llama-bpe" for Llama 3, "default" for SPM
  std::vector<std::string> tokens;  // token text as stored (byte-level chars for BPE, '▁' for SPM spaces)
  std::vector<float> scores;        // SPM merge priorities; may be empty for BPE
  std::vector<TokenType> types;
  std::vector<std::string> merges;  // BPE: "left right", highest priority first
  std::int32_t bos_id = -1;
  std::int32_t eos_id = -1;
  std::int32_t eot_id = -1;  // end of turn (Llama 3 <|eot_id|>); -1 if none
  std::int32_t eom_id = -1;
  std::int32_t unk_id = -1;
  std::int32_t pad_id = -1;
  bool add_bos = true;
  bool add_eos = false;
  bool add_space_prefix = true;  // SPM: prepend ' ' before encoding
  std::string chat_template;     // Jinja text from tokenizer_config.json, if any

  std::size_t size() const { return tokens.size(); }
  // Throws Error naming `source` if sizes disagree or special ids are out of range.
  void validate(const std::string& source) const;
};

// Loaders. Each validates what it reads and names the file in its errors.
// tokenizer.json (+ tokenizer_config.json beside it, for add_bos and chat_template, if present).
Vocab load_vocab_hf(const std::string& tokenizer_json_path);
Vocab load_vocab_gguf(const GgufFile& gguf);
Vocab load_vocab_llama2c(const std::string& tokenizer_bin_path, std::int64_t n_vocab);
Vocab load_vocab_sentencepiece(const std::string& tokenizer_model_path);  // SentencePiece ModelProto

// Writes a Hugging Face tokenizer.json (BPE kinds: byte-level model with merges, the
// Llama 3 pre-tokenizer split + ByteLevel, ByteLevel decoder, added_tokens for the
// special tokens, a post-processor that adds BOS when add_bos) and tokenizer_config.json
// (bos/eos tokens, add_bos_token, chat_template) into `dir`, each written atomically.
// load_vocab_hf reads them back to an equal Vocab.
void save_vocab_hf(const Vocab& vocab, const std::string& dir);

// Writes tokenizer.ggml.* keys (model, pre, tokens, scores, token_type, merges, special ids,
// add_bos/add_eos/add_space_prefix, chat_template) as llama.cpp's converter does.
void write_vocab_gguf(const Vocab& vocab, GgufWriter& writer);

}  // namespace piquant
