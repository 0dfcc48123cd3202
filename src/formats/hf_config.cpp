// Hugging Face LlamaForCausalLM and DeciLMForCausalLM config.json <-> LlamaParams.
#include "formats/hf_config.h"

#include <algorithm>
#include <charconv>
#include <cmath>
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

enum class Layout { Llama, DeciLM };

Layout check_architecture(const FieldReader& config) {
  const auto model_type = config.string("model_type");
  const auto declares = [&](const char* name) {
    const json* architectures = config.find("architectures");
    if (architectures == nullptr || !architectures->is_array()) return false;
    return std::any_of(architectures->begin(), architectures->end(), [&](const json& a) { return a == name; });
  };
  Layout layout = Layout::Llama;
  if (!model_type) {
    // Tolerate a config without model_type only when it declares the Llama or DeciLM class.
    if (declares("DeciLMForCausalLM")) {
      layout = Layout::DeciLM;
    } else if (!declares("LlamaForCausalLM")) {
      config.fail("model_type", "missing; piquant reads Llama models (model_type \"llama\", or \"nemotron-nas\" for DeciLM)");
    }
  } else if (*model_type == "nemotron-nas") {
    layout = Layout::DeciLM;
  } else if (*model_type != "llama") {
    config.fail("model_type", "'" + *model_type +
                                  "' is not supported; piquant reads Llama models (model_type \"llama\", or \"nemotron-nas\" "
                                  "for DeciLM)");
  }
  if (const auto act = config.string("hidden_act"); act && *act != "silu") {
    config.fail("hidden_act", "'" + *act + "' is not supported; Llama uses silu");
  }
  if (config.boolean("attention_bias", false)) config.fail("attention_bias", "biased attention projections are not supported");
  if (config.boolean("mlp_bias", false)) config.fail("mlp_bias", "biased MLP projections are not supported");
  return layout;
}

// DeciLM's block_configs: per-layer widths into p.n_ff, the one KV head count into p.n_head_kv.
void parse_block_configs(const FieldReader& fields, const std::string& source, LlamaParams& p) {
  const json* blocks = fields.find("block_configs");
  if (blocks == nullptr) {
    fields.fail("block_configs", "missing; a DeciLM (nemotron-nas) config gives each layer's attention and MLP there");
  }
  if (!blocks->is_array()) fields.fail("block_configs", "must be a list, got " + blocks->dump());
  if (static_cast<std::int64_t>(blocks->size()) != p.n_layer) {
    fields.fail("block_configs", "has " + std::to_string(blocks->size()) + " entries for num_hidden_layers " +
                                     std::to_string(p.n_layer));
  }
  std::int64_t group = 0;
  for (std::size_t l = 0; l < blocks->size(); ++l) {
    const std::string where = "block_configs[" + std::to_string(l) + "]";
    const json& block = (*blocks)[l];
    if (!block.is_object()) throw FormatError(source, where, "must be an object, got " + block.dump());
    const FieldReader b(block, source, where + ".");
    const auto part = [&](const char* name) {
      const json* value = b.find(name);
      if (value == nullptr) b.fail(name, "missing");
      if (!value->is_object()) b.fail(name, "must be an object, got " + value->dump());
      return FieldReader(*value, source, where + "." + name + ".");
    };
    const FieldReader attention = part("attention");
    const FieldReader ffn = part("ffn");
    for (const FieldReader* r : {&attention, &ffn}) {
      if (r->boolean("no_op", false)) {
        r->fail("no_op", "a block that skips its sublayer is not supported (piquant runs plain Llama blocks)");
      }
      if (r->boolean("replace_with_linear", false)) {
        r->fail("replace_with_linear", "a sublayer replaced by one linear map is not supported (piquant runs plain Llama blocks)");
      }
    }
    const std::int64_t g = attention.required_int("n_heads_in_group");
    if (g <= 0 || p.n_head <= 0 || p.n_head % g != 0) {
      attention.fail("n_heads_in_group", std::to_string(g) + " does not divide num_attention_heads " + std::to_string(p.n_head));
    }
    if (group == 0) {
      group = g;
    } else if (g != group) {
      attention.fail("n_heads_in_group", "is " + std::to_string(g) + " but block 0's is " + std::to_string(group) +
                                             ": piquant needs the same number of KV heads in every layer");
    }
    if (!ffn.boolean("gated", true)) ffn.fail("gated", "an MLP without the SwiGLU gate is not supported");
    const double mult = ffn.number("ffn_mult", std::nullopt);
    if (!(mult > 0.0 && mult < 1e6)) ffn.fail("ffn_mult", "must be a positive number, got " + std::to_string(mult));
    const std::int64_t width = decilm_intermediate_size(mult, p.n_embd);
    if (width <= 0) ffn.fail("ffn_mult", "gives an MLP width of " + std::to_string(width));
    p.n_ff.push_back(width);
  }
  if (group == 0) return;  // no layers: validate() says so
  const std::int64_t n_head_kv = p.n_head / group;
  if (const json* kv = fields.find("num_key_value_heads"); kv != nullptr && fields.integer(*kv, "num_key_value_heads") != n_head_kv) {
    fields.fail("num_key_value_heads", "is " + kv->dump() + " but block_configs' n_heads_in_group " + std::to_string(group) +
                                           " gives " + std::to_string(n_head_kv));
  }
  p.n_head_kv = n_head_kv;
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
  const Layout layout = check_architecture(fields);

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
  if (layout == Layout::DeciLM) {
    parse_block_configs(fields, source, p);  // intermediate_size is null there, and ignored
  } else if (ff == nullptr) {
    fields.fail("intermediate_size", "missing");
  } else if (ff->is_array()) {
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

std::int64_t decilm_intermediate_size(double ffn_mult, std::int64_t n_embd) {
  // Python's int(2 * ffn_mult * n_embd / 3): left to right in double, truncated.
  const double value = 2.0 * ffn_mult * static_cast<double>(n_embd) / 3.0;
  if (!(value >= 0.0 && value < 9.0e15)) {
    throw Error("DeciLM ffn_mult " + std::to_string(ffn_mult) + " with hidden_size " + std::to_string(n_embd) +
                " gives no MLP width");
  }
  const auto n = static_cast<std::int64_t>(value);
  return n % 256 == 0 ? n : n + 256 - n % 256;
}

double decilm_ffn_mult(std::int64_t width, std::int64_t n_embd) {
  if (width <= 0 || width % 256 != 0 || n_embd <= 0) {
    throw Error("MLP width " + std::to_string(width) +
                " is not a positive multiple of 256: DeciLM's ffn_mult expresses multiples of 256 only");
  }
  const double exact = 1.5 * static_cast<double>(width) / static_cast<double>(n_embd);
  for (int digits = 1; digits <= 17; ++digits) {
    char text[64];
    const auto written = std::to_chars(text, text + sizeof text, exact, std::chars_format::general, digits);
    double mult = 0.0;
    std::from_chars(text, written.ptr, mult);
    const double value = 2.0 * mult * static_cast<double>(n_embd) / 3.0;
    if (std::fabs(value - static_cast<double>(width)) < 1.0 && decilm_intermediate_size(mult, n_embd) == width) return mult;
  }
  throw Error("no DeciLM ffn_mult gives MLP width " + std::to_string(width) + " for hidden_size " + std::to_string(n_embd));
}

json decilm_config_to_json(const LlamaParams& p, const std::string& target) {
  if (p.n_head_kv <= 0 || p.n_head % p.n_head_kv != 0) {
    throw Error(target + ": " + std::to_string(p.n_head) + " attention heads over " + std::to_string(p.n_head_kv) +
                " KV heads have no DeciLM n_heads_in_group");
  }
  json blocks = json::array();
  for (std::size_t l = 0; l < p.n_ff.size(); ++l) {
    const std::int64_t width = p.n_ff[l];
    if (width <= 0 || width % 256 != 0) {
      throw Error(target + ": layer " + std::to_string(l) + "'s MLP width " + std::to_string(width) +
                  " is not a multiple of 256, and the DeciLM (nemotron-nas) layout gives each layer's width as an "
                  "ffn_mult that expresses multiples of 256 only: write a GGUF instead (any width), or prune with --align 256");
    }
    blocks.push_back({
        {"attention", {{"n_heads_in_group", p.n_head / p.n_head_kv}, {"no_op", false}, {"replace_with_linear", false}}},
        {"ffn", {{"ffn_mult", decilm_ffn_mult(width, p.n_embd)}, {"no_op", false}, {"replace_with_linear", false}}},
    });
  }
  json config = hf_config_to_json(p);
  config["architectures"] = {"DeciLMForCausalLM"};
  config["model_type"] = "nemotron-nas";
  config["intermediate_size"] = nullptr;
  config["num_key_value_heads"] = nullptr;
  config["block_configs"] = std::move(blocks);
  return config;
}

}  // namespace piquant
