// Reads a Hugging Face tokenizer.json (+ tokenizer_config.json) into a Vocab, for
// byte-level BPE. The writer is in bpe_hf_save.cpp.
#include <algorithm>
#include <filesystem>
#include <optional>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mapped_file.h"
#include "tokenizer/bpe_hf_conventions.h"
#include "tokenizer/bpe_pretokenizer.h"
#include "tokenizer/vocab.h"

namespace piquant {
namespace {

using nlohmann::json;

constexpr std::int64_t kMaxTokenId = (std::int64_t{1} << 24) - 1;  // far above any real vocabulary

json parse_json_file(const std::string& path) {
  const MappedFile file(path);
  const auto* begin = reinterpret_cast<const char*>(file.data());
  try {
    return json::parse(begin, begin + file.size());
  } catch (const json::exception& e) {
    throw FormatError(path, "json", e.what());
  }
}

// `field` makes the field name only when needed: this runs once per token.
template <typename FieldName>
std::int32_t token_id_field(const json& value, const std::string& path, FieldName field) {
  if (!value.is_number_integer()) throw FormatError(path, field(), "token id is not an integer");
  const auto id = value.get<std::int64_t>();
  if (id < 0 || id > kMaxTokenId) throw FormatError(path, field(), "token id " + std::to_string(id) + " out of range");
  return static_cast<std::int32_t>(id);
}

// The id → text table from model.vocab and added_tokens, with llama.cpp's fill for holes.
void read_tokens(const json& root, const std::string& path, Vocab& vocab) {
  const json& model = root["model"];
  if (!model.contains("vocab") || !model["vocab"].is_object()) throw FormatError(path, "model.vocab", "missing or not an object");
  std::unordered_map<std::int32_t, std::pair<std::string, TokenType>> by_id;
  std::int64_t max_id = -1;
  for (const auto& [text, value] : model["vocab"].items()) {
    const std::int32_t id = token_id_field(value, path, [&] { return "model.vocab[\"" + text + "\"]"; });
    const auto [it, inserted] = by_id.try_emplace(id, text, TokenType::Normal);
    if (!inserted) {
      throw FormatError(path, "model.vocab", "id " + std::to_string(id) + " is used by both '" + it->second.first +
                                                 "' and '" + text + "'");
    }
    max_id = std::max<std::int64_t>(max_id, id);
  }
  if (root.contains("added_tokens") && !root["added_tokens"].is_null()) {
    const json& added = root["added_tokens"];
    if (!added.is_array()) throw FormatError(path, "added_tokens", "not an array");
    for (std::size_t i = 0; i < added.size(); ++i) {
      const std::string field = "added_tokens[" + std::to_string(i) + "]";
      const json& token = added[i];
      if (!token.is_object() || !token.contains("id") || !token.contains("content") || !token["content"].is_string()) {
        throw FormatError(path, field, "needs an integer id and a string content");
      }
      const std::int32_t id = token_id_field(token["id"], path, [&] { return field + ".id"; });
      const bool special = token.contains("special") && token["special"].is_boolean() && token["special"].get<bool>();
      // An added token overrides a model.vocab entry with the same id, as in the tokenizer's own vocab.
      by_id[id] = {token["content"].get<std::string>(), special ? TokenType::Control : TokenType::UserDefined};
      max_id = std::max<std::int64_t>(max_id, id);
    }
  }
  if (max_id < 0) throw FormatError(path, "model.vocab", "no tokens");
  const auto n = static_cast<std::size_t>(max_id) + 1;
  vocab.tokens.resize(n);
  vocab.types.resize(n);
  for (std::size_t id = 0; id < n; ++id) {
    auto it = by_id.find(static_cast<std::int32_t>(id));
    if (it == by_id.end()) {
      vocab.tokens[id] = pad_token_text(id);
      vocab.types[id] = TokenType::Unused;
    } else {
      vocab.tokens[id] = std::move(it->second.first);
      vocab.types[id] = it->second.second;
    }
  }
}

void read_merges(const json& model, const std::string& path, Vocab& vocab) {
  if (!model.contains("merges")) throw FormatError(path, "model.merges", "missing");
  const json& merges = model["merges"];
  if (!merges.is_array()) throw FormatError(path, "model.merges", "not an array");
  vocab.merges.reserve(merges.size());
  for (std::size_t i = 0; i < merges.size(); ++i) {
    const json& merge = merges[i];
    if (merge.is_string()) {
      vocab.merges.push_back(merge.get<std::string>());  // "left right", checked by validate()
    } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {
      vocab.merges.push_back(merge[0].get<std::string>() + " " + merge[1].get<std::string>());
    } else {
      throw FormatError(path, "model.merges[" + std::to_string(i) + "]", "neither \"left right\" nor [left, right]");
    }
  }
}

// Collects the pre-tokenizers of a (possibly nested) Sequence, in order.
void flatten_pre_tokenizers(const json& node, std::vector<const json*>& out) {
  if (!node.is_object()) return;
  if (node.value("type", "") == "Sequence" && node.contains("pretokenizers") && node["pretokenizers"].is_array()) {
    for (const json& child : node["pretokenizers"]) flatten_pre_tokenizers(child, out);
  } else {
    out.push_back(&node);
  }
}

// tokenizer.ggml.pre for a byte-level pre-tokenizer we can reproduce exactly.
std::string detect_pre(const json& root, const std::string& path) {
  std::vector<const json*> steps;
  if (root.contains("pre_tokenizer")) flatten_pre_tokenizers(root["pre_tokenizer"], steps);
  std::string regex;
  bool byte_level = false;
  bool byte_level_regex = false;
  for (const json* step : steps) {
    const std::string type = step->value("type", "");
    if (type == "Split" && step->contains("pattern") && (*step)["pattern"].is_object()) {
      const json& pattern = (*step)["pattern"];
      if (pattern.contains("Regex") && pattern["Regex"].is_string()) regex = pattern["Regex"].get<std::string>();
      if (pattern.contains("String") && pattern["String"].is_string()) regex = pattern["String"].get<std::string>();
    } else if (type == "ByteLevel") {
      byte_level = true;
      byte_level_regex = !step->contains("use_regex") || ((*step)["use_regex"].is_boolean() && (*step)["use_regex"].get<bool>());
    }
  }
  if (!byte_level) throw FormatError(path, "pre_tokenizer", "not a byte-level BPE tokenizer (no ByteLevel step)");
  if (regex == kLlama3SplitRegex && !byte_level_regex) return std::string(kPreLlama3);
  if (regex.empty() && byte_level_regex) return std::string(kPreGpt2);
  throw FormatError(path, "pre_tokenizer",
                    regex.empty() ? std::string("unsupported pre-tokenizer") : "unsupported split regex " + regex);
}

// BOS / EOS texts that the post-processor's TemplateProcessing wraps a single sequence in.
struct Template {
  std::optional<std::string> first;
  std::optional<std::string> last;
};

void find_template(const json& node, Template& result) {
  if (!node.is_object()) return;
  const std::string type = node.value("type", "");
  if (type == "Sequence" && node.contains("processors") && node["processors"].is_array()) {
    for (const json& child : node["processors"]) find_template(child, result);
    return;
  }
  if (type != "TemplateProcessing" || !node.contains("single") || !node["single"].is_array()) return;
  const json& single = node["single"];
  const auto special_text = [](const json& item) -> std::optional<std::string> {
    if (item.is_object() && item.contains("SpecialToken") && item["SpecialToken"].is_object() &&
        item["SpecialToken"].contains("id") && item["SpecialToken"]["id"].is_string()) {
      return item["SpecialToken"]["id"].get<std::string>();
    }
    return std::nullopt;
  };
  if (single.size() >= 2) {
    result.first = special_text(single.front());
    result.last = special_text(single.back());
  }
}

// A token named in tokenizer_config.json: a string, an AddedToken object, or null.
// nullopt: key absent; "": explicitly null.
std::optional<std::string> config_token(const json& config, const char* key, const std::string& path) {
  if (!config.contains(key)) return std::nullopt;
  const json& value = config[key];
  if (value.is_null()) return std::string();
  if (value.is_string()) return value.get<std::string>();
  if (value.is_object() && value.contains("content") && value["content"].is_string()) {
    return value["content"].get<std::string>();
  }
  throw FormatError(path, key, "neither a token text nor an object with \"content\"");
}

std::optional<bool> config_bool(const json& config, const char* key, const std::string& path) {
  if (!config.contains(key) || config[key].is_null()) return std::nullopt;
  if (!config[key].is_boolean()) throw FormatError(path, key, "not true or false");
  return config[key].get<bool>();
}

std::string config_chat_template(const json& config, const std::string& path) {
  if (!config.contains("chat_template") || config["chat_template"].is_null()) return {};
  const json& value = config["chat_template"];
  if (value.is_string()) return value.get<std::string>();
  if (value.is_array()) {  // [{"name": ..., "template": ...}]: the default one
    for (const json& item : value) {
      if (item.is_object() && item.value("name", "") == "default" && item.contains("template") &&
          item["template"].is_string()) {
        return item["template"].get<std::string>();
      }
    }
  }
  throw FormatError(path, "chat_template", "neither a string nor a list with a \"default\" template");
}

void read_special_tokens(const json& root, const std::string& path, Vocab& vocab) {
  std::unordered_map<std::string_view, std::int32_t> id_of;
  for (std::size_t id = 0; id < vocab.tokens.size(); ++id) id_of.emplace(vocab.tokens[id], static_cast<std::int32_t>(id));
  const auto lookup = [&](std::string_view text) {
    const auto it = id_of.find(text);
    return it == id_of.end() ? -1 : it->second;
  };

  const std::filesystem::path config_path = std::filesystem::path(path).parent_path() / "tokenizer_config.json";
  const std::string config_name = config_path.string();
  json config = json::object();
  if (std::filesystem::exists(config_path)) {
    config = parse_json_file(config_name);
    if (!config.is_object()) throw FormatError(config_name, "json", "not a JSON object");
  }
  Template wrap;
  if (root.contains("post_processor")) find_template(root["post_processor"], wrap);

  const auto resolve = [&](const char* key, const std::optional<std::string>& text) {
    if (!text || text->empty()) return -1;
    const std::int32_t id = lookup(*text);
    if (id < 0) throw FormatError(config_name, key, "'" + *text + "' is not a token in " + path);
    return id;
  };

  // BOS: the config's bos_token, else what the post-processor prepends, else Llama 3's.
  const auto bos_text = config_token(config, "bos_token", config_name);
  if (bos_text) {
    vocab.bos_id = resolve("bos_token", bos_text);
  } else if (wrap.first) {
    vocab.bos_id = lookup(*wrap.first);
  } else {
    vocab.bos_id = lookup(kBeginOfText);
  }
  // EOS: Llama 3 instruct configs name <|eot_id|> as eos_token; it is kept as EOT and
  // EOS stays <|end_of_text|>, as in llama.cpp's vocab for Llama 3. Every end token ends generation.
  const auto eos_text = config_token(config, "eos_token", config_name);
  const bool eos_is_turn_end = eos_text && (*eos_text == kEndOfTurn || *eos_text == kEndOfMessage);
  if (eos_text && !eos_is_turn_end) {
    vocab.eos_id = resolve("eos_token", eos_text);
  } else if (lookup(kEndOfText) >= 0) {
    vocab.eos_id = lookup(kEndOfText);
  } else {
    vocab.eos_id = eos_text ? resolve("eos_token", eos_text) : -1;
  }
  vocab.eot_id = lookup(kEndOfTurn);
  vocab.eom_id = lookup(kEndOfMessage);
  vocab.pad_id = resolve("pad_token", config_token(config, "pad_token", config_name));
  const auto unk_text = config_token(config, "unk_token", config_name);
  if (unk_text) {
    vocab.unk_id = resolve("unk_token", unk_text);
  } else if (root["model"].contains("unk_token") && root["model"]["unk_token"].is_string()) {
    vocab.unk_id = lookup(root["model"]["unk_token"].get<std::string>());
  }
  if (vocab.unk_id >= 0 && vocab.types[vocab.unk_id] == TokenType::Normal) vocab.types[vocab.unk_id] = TokenType::Unknown;

  vocab.add_bos = config_bool(config, "add_bos_token", config_name).value_or(wrap.first.has_value());
  vocab.add_eos = config_bool(config, "add_eos_token", config_name).value_or(wrap.last.has_value());
  vocab.chat_template = config_chat_template(config, config_name);
}

Vocab read_vocab_hf(const std::string& path, const json& root) {
  if (!root.is_object()) throw FormatError(path, "json", "not a JSON object");
  if (!root.contains("model") || !root["model"].is_object()) throw FormatError(path, "model", "missing or not an object");
  const json& model = root["model"];
  const std::string type = model.contains("type") && model["type"].is_string() ? model["type"].get<std::string>() : "BPE";
  if (type != "BPE") throw FormatError(path, "model.type", "'" + type + "' is not supported (only BPE)");
  if (model.contains("byte_fallback") && model["byte_fallback"].is_boolean() && model["byte_fallback"].get<bool>()) {
    throw FormatError(path, "model.byte_fallback",
                      "a SentencePiece-style BPE with byte fallback; load its tokenizer.model instead");
  }

  Vocab vocab;
  vocab.kind = TokenizerKind::Bpe;
  vocab.add_space_prefix = false;
  vocab.pre = detect_pre(root, path);
  read_tokens(root, path, vocab);
  read_merges(model, path, vocab);
  read_special_tokens(root, path, vocab);
  vocab.validate(path);
  return vocab;
}

}  // namespace

Vocab load_vocab_hf(const std::string& tokenizer_json_path) {
  const std::string& path = tokenizer_json_path;
  try {
    return read_vocab_hf(path, parse_json_file(path));
  } catch (const json::exception& e) {  // a field of an unexpected JSON type somewhere
    throw FormatError(path, "json", e.what());
  }
}

}  // namespace piquant
