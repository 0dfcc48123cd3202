// Writes a Vocab as Hugging Face tokenizer.json + tokenizer_config.json, in the shape of
// Meta's Llama 3 files, so that load_vocab_hf (and Hugging Face) read it back.
#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "tokenizer/bpe_hf_conventions.h"
#include "tokenizer/bpe_pretokenizer.h"
#include "tokenizer/vocab.h"

namespace piquant {
namespace {

using nlohmann::json;

json added_token_json(std::size_t id, const std::string& text, bool special) {
  return {{"id", id},           {"content", text}, {"single_word", false}, {"lstrip", false},
          {"rstrip", false},    {"normalized", false}, {"special", special}};
}

json pre_tokenizer_json(const Vocab& vocab) {
  if (vocab.pre == kPreGpt2) {
    return {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  }
  return {{"type", "Sequence"},
          {"pretokenizers",
           {{{"type", "Split"},
             {"pattern", {{"Regex", std::string(kLlama3SplitRegex)}}},
             {"behavior", "Isolated"},
             {"invert", false}},
            {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}};
}

json post_processor_json(const Vocab& vocab) {
  const bool bos = vocab.add_bos && vocab.bos_id >= 0;
  const bool eos = vocab.add_eos && vocab.eos_id >= 0;
  const auto special = [&](std::int32_t id, int type_id) {
    return json{{"SpecialToken", {{"id", vocab.tokens[id]}, {"type_id", type_id}}}};
  };
  const auto sequence = [](const char* name, int type_id) { return json{{"Sequence", {{"id", name}, {"type_id", type_id}}}}; };
  json single = json::array();
  json pair = json::array();
  json specials = json::object();
  for (const auto& [enabled, id] : {std::pair{bos, vocab.bos_id}, std::pair{eos, vocab.eos_id}}) {
    if (enabled) specials[vocab.tokens[id]] = {{"id", vocab.tokens[id]}, {"ids", {id}}, {"tokens", {vocab.tokens[id]}}};
  }
  if (bos) single.push_back(special(vocab.bos_id, 0));
  single.push_back(sequence("A", 0));
  if (eos) single.push_back(special(vocab.eos_id, 0));
  if (bos) pair.push_back(special(vocab.bos_id, 0));
  pair.push_back(sequence("A", 0));
  if (eos) pair.push_back(special(vocab.eos_id, 0));
  if (bos) pair.push_back(special(vocab.bos_id, 1));
  pair.push_back(sequence("B", 1));
  if (eos) pair.push_back(special(vocab.eos_id, 1));
  return {{"type", "Sequence"},
          {"processors",
           {{{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}, {"use_regex", true}},
            {{"type", "TemplateProcessing"}, {"single", single}, {"pair", pair}, {"special_tokens", specials}}}}};
}

json tokenizer_json(const Vocab& vocab) {
  json model_vocab = json::object();
  json added = json::array();
  for (std::size_t id = 0; id < vocab.tokens.size(); ++id) {
    const std::string& text = vocab.tokens[id];
    const TokenType type = vocab.types[id];
    if (type == TokenType::Control || type == TokenType::UserDefined) {
      added.push_back(added_token_json(id, text, type == TokenType::Control));
      continue;
    }
    if (type == TokenType::Unused && text == pad_token_text(id)) continue;  // a hole; load_vocab_hf refills it
    if (model_vocab.contains(text)) {
      throw Error("save_vocab_hf: token text '" + text + "' appears twice; tokenizer.json cannot hold that");
    }
    model_vocab[text] = id;
  }
  json model = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", vocab.unk_id >= 0 ? json(vocab.tokens[vocab.unk_id]) : json(nullptr)},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"ignore_merges", vocab.pre != kPreGpt2},
                {"vocab", std::move(model_vocab)},
                {"merges", vocab.merges}};
  return {{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens", std::move(added)},
          {"normalizer", nullptr},
          {"pre_tokenizer", pre_tokenizer_json(vocab)},
          {"post_processor", post_processor_json(vocab)},
          {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
          {"model", std::move(model)}};
}

json tokenizer_config_json(const Vocab& vocab) {
  const auto token_or_null = [&](std::int32_t id) { return id >= 0 ? json(vocab.tokens[id]) : json(nullptr); };
  json decoder = json::object();
  for (std::size_t id = 0; id < vocab.tokens.size(); ++id) {
    const TokenType type = vocab.types[id];
    if (type != TokenType::Control && type != TokenType::UserDefined) continue;
    json entry = added_token_json(id, vocab.tokens[id], type == TokenType::Control);
    entry.erase("id");
    decoder[std::to_string(id)] = std::move(entry);
  }
  json config = {{"add_bos_token", vocab.add_bos},
                 {"add_eos_token", vocab.add_eos},
                 {"added_tokens_decoder", std::move(decoder)},
                 {"bos_token", token_or_null(vocab.bos_id)},
                 {"eos_token", token_or_null(vocab.eos_id)},
                 {"clean_up_tokenization_spaces", true},
                 {"model_input_names", {"input_ids", "attention_mask"}},
                 {"tokenizer_class", "PreTrainedTokenizerFast"}};
  if (vocab.pad_id >= 0) config["pad_token"] = vocab.tokens[vocab.pad_id];
  if (vocab.unk_id >= 0) config["unk_token"] = vocab.tokens[vocab.unk_id];
  if (!vocab.chat_template.empty()) config["chat_template"] = vocab.chat_template;
  return config;
}

void write_json(const json& document, const std::filesystem::path& path) {
  const std::string text = document.dump(2, ' ', false, json::error_handler_t::strict);
  AtomicFileWriter out(path.string());
  out.write(text.data(), text.size());
  out.write("\n", 1);
  out.commit();
}

}  // namespace

void save_vocab_hf(const Vocab& vocab, const std::string& dir) {
  if (vocab.kind != TokenizerKind::Bpe) throw Error("save_vocab_hf: only byte-level BPE vocabularies can be saved");
  vocab.validate("vocabulary to save");
  std::filesystem::create_directories(dir);
  json tokenizer;
  json config;
  try {
    tokenizer = tokenizer_json(vocab);
    config = tokenizer_config_json(vocab);
  } catch (const json::exception& e) {
    throw Error(std::string("save_vocab_hf: ") + e.what());
  }
  try {
    write_json(tokenizer, std::filesystem::path(dir) / "tokenizer.json");
    write_json(config, std::filesystem::path(dir) / "tokenizer_config.json");
  } catch (const json::exception& e) {  // e.g. a token that is not valid UTF-8
    throw Error("save_vocab_hf: " + std::string(e.what()));
  }
}

}  // namespace piquant
