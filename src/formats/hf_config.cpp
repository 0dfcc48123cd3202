// Hugging Face LlamaForCausalLM config.json <-> LlamaParams.
#include "formats/hf_config.h"

#include <fstream>
#include <limits>
#include <optional>
#include <sstream>

#include "core/error.h"

namespace piquant {
namespace {

using nlohmann::json;

// Reads the fields of one JSON object, naming the file and the field in every error.
// A field set to null counts as absent, as it does for transformers.
class FieldReader {
 public:
  FieldReader(const json& object, std::string source, std::string prefix = "")
      : object_(object), source_(std::move(source)), prefix_(std::move(prefix)) {}

  const json* find(const char* field) const {
    const auto it = object_.find(field);
    return it == object_.end() || it->is_null() ? nullptr : &*it;
  }

  [[noreturn]] void fail(const char* field, const std::string& problem) const {
    throw FormatError(source_, prefix_ + field, problem);
  }

  std::int64_t integer(const json& value, const char* field) const {
    if (!value.is_number_integer()) fail(field, "must be an integer, got " + value.dump());
    if (value.is_number_unsigned() &&
        value.get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      fail(field, value.dump() + " is too large");
    }
    return value.get<std::int64_t>();
  }

  std::int64_t required_int(const char* field) const {
    const json* value = find(field);
    if (value == nullptr) fail(field, "missing");
    return integer(*value, field);
  }

  std::int64_t optional_int(const char* field, std::int64_t fallback) const {
    const json* value = find(field);
    return value == nullptr ? fallback : integer(*value, field);
  }

  double number(const char* field, std::optional<double> fallback) const {
    const json* value = find(field);
    if (value == nullptr) {
      if (!fallback) fail(field, "missing");
      return *fallback;
    }
    if (!value->is_number()) fail(field, "must be a number, got " + value->dump());
    return value->get<double>();
  }

  bool boolean(const char* field, bool fallback) const {
    const json* value = find(field);
    if (value == nullptr) return fallback;
    if (!value->is_boolean()) fail(field, "must be true or false, got " + value->dump());
    return value->get<bool>();
  }

  std::optional<std::string> string(const char* field) const {
    const json* value = find(field);
    if (value == nullptr) return std::nullopt;
    if (!value->is_string()) fail(field, "must be a string, got " + value->dump());
    return value->get<std::string>();
  }

  // An integer, or a list of integers (for eos_token_id and per-layer widths).
  std::vector<std::int64_t> int_or_list(const char* field) const {
    const json* value = find(field);
    if (value == nullptr) return {};
    if (!value->is_array()) return {integer(*value, field)};
    std::vector<std::int64_t> values;
    for (const auto& item : *value) values.push_back(integer(item, field));
    return values;
  }

 private:
  const json& object_;
  std::string source_;
  std::string prefix_;
};

void check_architecture(const FieldReader& config) {
  const auto model_type = config.string("model_type");
  if (!model_type) {
    // Tolerate a config without model_type only when it declares the Llama class.
    const json* architectures = config.find("architectures");
    if (architectures != nullptr && architectures->is_array()) {
      for (const auto& a : *architectures) {
        if (a == "LlamaForCausalLM") return;
      }
    }
    config.fail("model_type", "missing; piquant reads Llama models (model_type \"llama\")");
  }
  if (*model_type != "llama") {
    config.fail("model_type", "'" + *model_type + "' is not supported; piquant reads Llama models (model_type \"llama\")");
  }
  if (const auto act = config.string("hidden_act"); act && *act != "silu") {
    config.fail("hidden_act", "'" + *act + "' is not supported; Llama uses silu");
  }
  if (config.boolean("attention_bias", false)) config.fail("attention_bias", "biased attention projections are not supported");
  if (config.boolean("mlp_bias", false)) config.fail("mlp_bias", "biased MLP projections are not supported");
}

std::optional<RopeScaling> parse_rope_scaling(const json& config, const std::string& source) {
  const auto it = config.find("rope_scaling");
  if (it == config.end() || it->is_null()) return std::nullopt;
  if (!it->is_object()) throw FormatError(source, "rope_scaling", "must be an object or null, got " + it->dump());
  const FieldReader fields(*it, source, "rope_scaling.");
  // transformers reads "rope_type" and, from older configs, "type".
  auto type = fields.string("rope_type");
  if (!type) type = fields.string("type");
  if (!type) fields.fail("rope_type", "missing");
  if (*type == "default") return std::nullopt;
  if (*type != "llama3") {
    fields.fail("rope_type", "'" + *type + "' scaling is not supported (piquant handles \"llama3\" only)");
  }
  RopeScaling scaling;
  scaling.type = *type;
  scaling.factor = fields.number("factor", std::nullopt);
  scaling.low_freq_factor = fields.number("low_freq_factor", std::nullopt);
  scaling.high_freq_factor = fields.number("high_freq_factor", std::nullopt);
  scaling.original_max_position_embeddings = fields.required_int("original_max_position_embeddings");
  return scaling;
}

}  // namespace

LlamaParams parse_hf_config(const json& config, const std::string& source) {
  if (!config.is_object()) throw FormatError(source, "JSON", "config is not a JSON object");
  const FieldReader fields(config, source);
  check_architecture(fields);

  LlamaParams p;
  p.n_embd = fields.required_int("hidden_size");
  p.n_layer = fields.required_int("num_hidden_layers");
  p.n_head = fields.required_int("num_attention_heads");
  p.n_head_kv = fields.optional_int("num_key_value_heads", p.n_head);
  p.n_vocab = fields.required_int("vocab_size");
  if (fields.find("head_dim") != nullptr) {
    p.head_dim = fields.required_int("head_dim");
  } else if (p.n_head > 0) {
    if (p.n_embd % p.n_head != 0) {
      fields.fail("head_dim", "missing, and hidden_size " + std::to_string(p.n_embd) +
                                  " is not a multiple of num_attention_heads " + std::to_string(p.n_head));
    }
    p.head_dim = p.n_embd / p.n_head;
  }

  const json* ff = fields.find("intermediate_size");
  if (ff == nullptr) fields.fail("intermediate_size", "missing");
  if (ff->is_array()) {
    p.n_ff = fields.int_or_list("intermediate_size");
  } else if (p.n_layer > 0) {
    p.n_ff.assign(static_cast<std::size_t>(std::min<std::int64_t>(p.n_layer, std::int64_t{1} << 20)),
                  fields.integer(*ff, "intermediate_size"));
  }

  p.n_ctx_train = fields.optional_int("max_position_embeddings", 2048);  // transformers' default
  p.rms_norm_eps = fields.number("rms_norm_eps", 1e-6);                  // transformers' default
  p.rope_theta = fields.number("rope_theta", 10000.0);
  p.rope_scaling = parse_rope_scaling(config, source);
  p.tie_word_embeddings = fields.boolean("tie_word_embeddings", false);
  p.bos_token_id = fields.optional_int("bos_token_id", -1);
  p.eos_token_ids = fields.int_or_list("eos_token_id");
  p.validate(source);
  return p;
}

LlamaParams load_hf_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw_system_error(path, "open");
  std::stringstream text;
  text << in.rdbuf();
  json config;
  try {
    config = json::parse(text.str());
  } catch (const json::exception& e) {
    throw FormatError(path, "JSON", std::string("not valid JSON: ") + e.what());
  }
  return parse_hf_config(config, path);
}

json hf_config_to_json(const LlamaParams& p) {
  json config = {
      {"architectures", {"LlamaForCausalLM"}},
      {"attention_bias", false},
      {"attention_dropout", 0.0},
      {"head_dim", p.head_dim},
      {"hidden_act", "silu"},
      {"hidden_size", p.n_embd},
      {"initializer_range", 0.02},
      {"max_position_embeddings", p.n_ctx_train},
      {"mlp_bias", false},
      {"model_type", "llama"},
      {"num_attention_heads", p.n_head},
      {"num_hidden_layers", p.n_layer},
      {"num_key_value_heads", p.n_head_kv},
      {"pretraining_tp", 1},
      {"rms_norm_eps", p.rms_norm_eps},
      {"rope_theta", p.rope_theta},
      {"tie_word_embeddings", p.tie_word_embeddings},
      {"torch_dtype", "bfloat16"},
      {"use_cache", true},
      {"vocab_size", p.n_vocab},
  };
  // A list of widths is piquant's extension for pruned models; uniform stays an int.
  if (!p.n_ff.empty() && p.uniform_ff()) {
    config["intermediate_size"] = p.n_ff.front();
  } else {
    config["intermediate_size"] = p.n_ff;
  }
  if (p.rope_scaling) {
    config["rope_scaling"] = {
        {"rope_type", p.rope_scaling->type},
        {"factor", p.rope_scaling->factor},
        {"low_freq_factor", p.rope_scaling->low_freq_factor},
        {"high_freq_factor", p.rope_scaling->high_freq_factor},
        {"original_max_position_embeddings", p.rope_scaling->original_max_position_embeddings},
    };
  } else {
    config["rope_scaling"] = nullptr;
  }
  if (p.bos_token_id >= 0) config["bos_token_id"] = p.bos_token_id;
  if (p.eos_token_ids.size() == 1) {
    config["eos_token_id"] = p.eos_token_ids.front();
  } else if (!p.eos_token_ids.empty()) {
    config["eos_token_id"] = p.eos_token_ids;
  }
  return config;
}

}  // namespace piquant
