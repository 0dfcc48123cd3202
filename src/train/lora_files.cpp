#include "train/lora_files.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <span>
#include <vector>

#include <nlohmann/json.hpp>

#include "checkpoint/checkpoint.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/half.h"
#include "formats/gguf.h"
#include "formats/gguf_metadata.h"
#include "formats/safetensors.h"

namespace piquant {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kPeftPrefix = "base_model.model.";
constexpr const char* kPeftConfig = "adapter_config.json";
constexpr const char* kPeftWeights = "adapter_model.safetensors";

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

// Why weight `id` cannot carry an adapter of this base (lora_weight_shape said no).
std::string why_not_adaptable(const LlamaParams& base, WeightId id) {
  if (id.kind == WeightKind::Output && base.tie_word_embeddings) {
    return "the base ties its output to the token embedding, so it has no output matrix to adapt";
  }
  if (is_per_layer(id.kind) && (id.layer < 0 || id.layer >= base.n_layer)) {
    return "layer " + std::to_string(id.layer) + " is outside the base's " + std::to_string(base.n_layer) + " layers";
  }
  return "only attn_q/k/v/output, ffn_gate/up/down and output carry LoRA adapters here";
}

// Every matrix of `adapter` fits the base and the adapter's rank (writers check before writing).
void check_adapter(const LoraAdapter& adapter, const LlamaParams& base, const std::string& target) {
  if (adapter.empty()) throw Error(target + ": the LoRA adapter has no matrices");
  if (!std::isfinite(adapter.alpha())) throw Error(target + ": LoRA alpha is not finite");
  for (const WeightId id : adapter.ids()) {
    const LoraMatrix& m = *adapter.find(id);
    const std::string name = gguf_tensor_name(id);
    const auto shape = lora_weight_shape(base, id);
    if (!shape) throw Error(target + ": LoRA " + name + ": " + why_not_adaptable(base, id));
    if (m.rows != shape->first || m.cols != shape->second || m.rank != adapter.rank() ||
        m.a.size() != static_cast<std::size_t>(m.rank * m.cols) || m.b.size() != static_cast<std::size_t>(m.rows * m.rank)) {
      throw Error(target + ": LoRA " + name + " is " + std::to_string(m.rows) + " × " + std::to_string(m.cols) + " of rank " +
                  std::to_string(m.rank) + " for a " + std::to_string(shape->first) + " × " + std::to_string(shape->second) +
                  " weight and an adapter of rank " + std::to_string(adapter.rank()));
    }
  }
}

// Floats of a tensor stored as F32/F16/BF16 (`type` already checked).
void decode_floats(GgmlType type, std::span<const std::uint8_t> bytes, std::vector<float>& out) {
  const std::size_t n = out.size();
  if (type == GgmlType::F32) {
    std::memcpy(out.data(), bytes.data(), n * 4);
    return;
  }
  for (std::size_t i = 0; i < n; ++i) {
    std::uint16_t h;
    std::memcpy(&h, bytes.data() + 2 * i, 2);
    out[i] = type == GgmlType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
  }
}

// `values` encoded as `type` (F32, F16 or BF16), little-endian.
std::vector<std::uint8_t> encode_floats(GgmlType type, const std::vector<float>& values) {
  std::vector<std::uint8_t> out(values.size() * (type == GgmlType::F32 ? 4 : 2));
  if (type == GgmlType::F32) {
    std::memcpy(out.data(), values.data(), out.size());
    return out;
  }
  for (std::size_t i = 0; i < values.size(); ++i) {
    const std::uint16_t h = type == GgmlType::F16 ? f32_to_f16(values[i]) : f32_to_bf16(values[i]);
    std::memcpy(out.data() + 2 * i, &h, 2);
  }
  return out;
}

LlamaFileType gguf_file_type(GgmlType type) { return type == GgmlType::F32 ? LlamaFileType::AllF32 : LlamaFileType::MostlyF16; }

bool starts_with_gguf_magic(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  return in.gcount() == 4 && std::memcmp(magic, "GGUF", 4) == 0;
}

// One LoRA pair being assembled by a reader: where each half lives.
template <typename Info>
struct PairSource {
  WeightId id{WeightKind::AttnQ, -1};
  const Info* a = nullptr;
  const Info* b = nullptr;
};
using PairKey = std::pair<std::int64_t, int>;
PairKey pair_key(WeightId id) { return {id.layer, static_cast<int>(id.kind)}; }

}  // namespace

std::optional<std::pair<std::int64_t, std::int64_t>> lora_weight_shape(const LlamaParams& p, WeightId id) {
  if (id.kind == WeightKind::Output) {
    if (id.layer != -1 || p.tie_word_embeddings) return std::nullopt;
    return std::pair{p.n_vocab, p.n_embd};
  }
  if (!is_per_layer(id.kind) || id.layer < 0 || id.layer >= p.n_layer) return std::nullopt;
  const std::int64_t q_dim = p.n_head * p.head_dim;
  const std::int64_t kv_dim = p.n_head_kv * p.head_dim;
  const std::int64_t ff = p.n_ff.at(static_cast<std::size_t>(id.layer));
  switch (id.kind) {
    case WeightKind::AttnQ: return std::pair{q_dim, p.n_embd};
    case WeightKind::AttnK:
    case WeightKind::AttnV: return std::pair{kv_dim, p.n_embd};
    case WeightKind::AttnOutput: return std::pair{p.n_embd, q_dim};
    case WeightKind::FfnGate:
    case WeightKind::FfnUp: return std::pair{ff, p.n_embd};
    case WeightKind::FfnDown: return std::pair{p.n_embd, ff};
    default: return std::nullopt;
  }
}

std::string peft_module_name(WeightKind kind) {
  switch (kind) {
    case WeightKind::AttnQ: return "q_proj";
    case WeightKind::AttnK: return "k_proj";
    case WeightKind::AttnV: return "v_proj";
    case WeightKind::AttnOutput: return "o_proj";
    case WeightKind::FfnGate: return "gate_proj";
    case WeightKind::FfnUp: return "up_proj";
    case WeightKind::FfnDown: return "down_proj";
    case WeightKind::Output: return "lm_head";
    default: throw Error("weight kind " + std::to_string(static_cast<int>(kind)) + " has no PEFT LoRA module");
  }
}

LoraAdapter with_layout(const LoraAdapter& adapter, const LlamaParams& base, RopePairing layout) {
  LoraAdapter out(adapter.rank(), adapter.alpha(), layout);
  const std::int64_t D = base.head_dim;
  for (const WeightId id : adapter.ids()) {
    const LoraMatrix& m = *adapter.find(id);
    LoraMatrix& copy = out.add(id, m.rows, m.cols);
    copy.a = m.a;
    const bool rotated = id.kind == WeightKind::AttnQ || id.kind == WeightKind::AttnK;
    if (!rotated || layout == adapter.layout()) {
      copy.b = m.b;
      continue;
    }
    if (D <= 0 || D % 2 != 0 || m.rows % D != 0) {
      throw Error("LoRA " + gguf_tensor_name(id) + ": " + std::to_string(m.rows) + " rows are not whole heads of " +
                  std::to_string(D));
    }
    // GGUF row g holds HF row hf_row_for_gguf_row(g): move whole rows of rank floats.
    const auto r = static_cast<std::size_t>(m.rank);
    for (std::int64_t g = 0; g < m.rows; ++g) {
      const std::int64_t h = hf_row_for_gguf_row(g, D);
      const std::int64_t from = layout == RopePairing::Interleaved ? h : g;
      const std::int64_t to = layout == RopePairing::Interleaved ? g : h;
      std::copy_n(m.b.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(from) * r), r,
                  copy.b.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(to) * r));
    }
  }
  return out;
}

// ---------------------------------------------------------------- GGUF

void write_gguf_lora(const LoraAdapter& adapter, const LlamaParams& base, const std::string& path,
                     const LoraFileOptions& options) {
  check_adapter(adapter, base, path);
  if (options.type != GgmlType::F32 && options.type != GgmlType::F16) {
    throw Error(path + ": GGUF LoRA tensors are written as F32 or F16, not " + ggml_type_name(options.type));
  }
  // llama.cpp reads alpha 0 as "no alpha" and then scales by 1, not by 0.
  if (adapter.alpha() == 0.0f) throw Error(path + ": LoRA alpha 0 cannot be stored in a GGUF adapter (llama.cpp would scale by 1)");
  const LoraAdapter gguf = with_layout(adapter, base, RopePairing::Interleaved);

  GgufWriter writer(path);
  writer.set("general.type", "adapter");
  write_model_metadata(base, options.base_model.empty() ? "LoRA adapter" : options.base_model, gguf_file_type(options.type),
                       writer);
  writer.set("adapter.type", "lora");
  writer.set("adapter.lora.alpha", gguf.alpha());
  const auto r = gguf.rank();
  for (const WeightId id : gguf.ids()) {
    const LoraMatrix& m = *gguf.find(id);
    writer.add_tensor(gguf_tensor_name(id) + ".lora_a", options.type, {m.cols, r});
    writer.add_tensor(gguf_tensor_name(id) + ".lora_b", options.type, {r, m.rows});
  }
  writer.write_header();
  for (const WeightId id : gguf.ids()) {
    const LoraMatrix& m = *gguf.find(id);
    writer.write_tensor(gguf_tensor_name(id) + ".lora_a", encode_floats(options.type, m.a));
    writer.write_tensor(gguf_tensor_name(id) + ".lora_b", encode_floats(options.type, m.b));
  }
  writer.finish();
}

LoraAdapter read_gguf_lora(const std::string& path, const LlamaParams& base, RopePairing want_layout) {
  const GgufFile file(path);
  const auto require_string = [&](const char* key, const std::string& want) {
    const GgufValue* v = file.find(key);
    if (v == nullptr) throw FormatError(path, key, "missing (a llama.cpp LoRA adapter has " + std::string(key) + " = \"" + want + "\")");
    if (v->type() != GgufType::STRING) throw FormatError(path, key, std::string("is ") + gguf_type_name(v->type()) + ", not a string");
    if (v->as_string() != want) throw FormatError(path, key, "is \"" + v->as_string() + "\", not \"" + want + "\"");
  };
  require_string("general.type", "adapter");
  require_string("adapter.type", "lora");
  require_string("general.architecture", architecture_for(base));

  float alpha = 0.0f;
  if (const GgufValue* v = file.find("adapter.lora.alpha")) {
    if (v->type() != GgufType::FLOAT32) {
      throw FormatError(path, "adapter.lora.alpha", std::string("is ") + gguf_type_name(v->type()) + "; llama.cpp reads it as FLOAT32");
    }
    alpha = static_cast<float>(v->as_float());
    if (!std::isfinite(alpha)) throw FormatError(path, "adapter.lora.alpha", "is not finite");
  }

  std::map<PairKey, PairSource<GgufTensorInfo>> pairs;
  for (const GgufTensorInfo& info : file.tensors()) {
    const std::string field = "tensor '" + info.name + "'";
    const bool is_a = ends_with(info.name, ".lora_a");
    if (!is_a && !ends_with(info.name, ".lora_b")) {
      throw FormatError(path, field, "is not a LoRA tensor (names end in .lora_a or .lora_b)");
    }
    const std::string weight = info.name.substr(0, info.name.size() - 7);
    const auto id = parse_gguf_tensor_name(weight);
    if (!id) throw FormatError(path, field, "'" + weight + "' is not a weight of a llama model");
    if (!lora_weight_shape(base, *id)) throw FormatError(path, field, why_not_adaptable(base, *id));
    if (info.type != GgmlType::F32 && info.type != GgmlType::F16) {
      throw FormatError(path, field + " type", ggml_type_name(info.type) + " is not supported (F32 or F16)");
    }
    if (info.shape.size() != 2) throw FormatError(path, field + " shape", shape_text(info.shape) + " is not 2-D");
    PairSource<GgufTensorInfo>& pair = pairs[pair_key(*id)];
    pair.id = *id;
    (is_a ? pair.a : pair.b) = &info;
  }
  if (pairs.empty()) throw FormatError(path, "tensors", "no LoRA tensors");

  std::int64_t rank = 0;
  for (const auto& [key, pair] : pairs) {
    const std::string weight = gguf_tensor_name(pair.id);
    if (pair.a == nullptr || pair.b == nullptr) {
      throw FormatError(path, "tensor '" + weight + (pair.a ? ".lora_b'" : ".lora_a'"),
                        std::string("missing (its ") + (pair.a ? "lora_a" : "lora_b") + " is present)");
    }
    const auto [rows, cols] = *lora_weight_shape(base, pair.id);
    const std::int64_t r = pair.a->shape[1];
    if (rank == 0) rank = r;
    if (pair.a->shape[0] != cols || r != rank) {
      throw FormatError(path, "tensor '" + pair.a->name + "' shape",
                        shape_text(pair.a->shape) + " (ggml order), expected " + shape_text({cols, rank}) + " for the base's " +
                            std::to_string(rows) + " × " + std::to_string(cols) + " weight at rank " + std::to_string(rank));
    }
    if (pair.b->shape != std::vector<std::int64_t>{rank, rows}) {
      throw FormatError(path, "tensor '" + pair.b->name + "' shape",
                        shape_text(pair.b->shape) + " (ggml order), expected " + shape_text({rank, rows}) + " for the base's " +
                            std::to_string(rows) + " × " + std::to_string(cols) + " weight at rank " + std::to_string(rank));
    }
  }

  // No alpha (or 0): llama.cpp scales by 1, which is alpha = rank here.
  LoraAdapter adapter(rank, alpha == 0.0f ? static_cast<float>(rank) : alpha, RopePairing::Interleaved);
  for (const auto& [key, pair] : pairs) {
    const auto [rows, cols] = *lora_weight_shape(base, pair.id);
    LoraMatrix& m = adapter.add(pair.id, rows, cols);
    decode_floats(pair.a->type, file.tensor_data(*pair.a), m.a);
    decode_floats(pair.b->type, file.tensor_data(*pair.b), m.b);
  }
  return want_layout == RopePairing::Interleaved ? adapter : with_layout(adapter, base, want_layout);
}

// ---------------------------------------------------------------- PEFT

void write_peft_lora(const LoraAdapter& adapter, const LlamaParams& base, const std::string& dir,
                     const LoraFileOptions& options) {
  check_adapter(adapter, base, dir);
  SafeDtype dtype;
  switch (options.type) {
    case GgmlType::F32: dtype = SafeDtype::F32; break;
    case GgmlType::F16: dtype = SafeDtype::F16; break;
    case GgmlType::BF16: dtype = SafeDtype::BF16; break;
    default: throw Error(dir + ": PEFT LoRA tensors are written as F32, F16 or BF16, not " + ggml_type_name(options.type));
  }
  const LoraAdapter hf = with_layout(adapter, base, RopePairing::HalfSplit);

  // The weights first, the config last: a folder with a config has complete weights.
  SafetensorsWriter writer(dir, UINT64_MAX, "adapter_model");
  writer.set_metadata("format", "pt");
  std::set<std::string> modules;
  const auto peft_name = [](WeightId id, const char* half) {
    const std::string hf_name = hf_tensor_name(id);  // "....q_proj.weight"
    return kPeftPrefix + hf_name.substr(0, hf_name.size() - 7) + "." + half + ".weight";
  };
  for (const WeightId id : hf.ids()) {
    const LoraMatrix& m = *hf.find(id);
    writer.add(peft_name(id, "lora_A"), dtype, {m.rank, m.cols});
    writer.add(peft_name(id, "lora_B"), dtype, {m.rows, m.rank});
    modules.insert(peft_module_name(id.kind));
  }
  for (const WeightId id : hf.ids()) {
    const LoraMatrix& m = *hf.find(id);
    writer.write(encode_floats(options.type, m.a));
    writer.write(encode_floats(options.type, m.b));
  }
  writer.finish();

  const float alpha = hf.alpha();
  json config = {
      {"peft_type", "LORA"},
      {"task_type", "CAUSAL_LM"},
      {"r", hf.rank()},
      {"target_modules", std::vector<std::string>(modules.begin(), modules.end())},
      {"bias", "none"},
      {"fan_in_fan_out", false},
      {"use_rslora", false},
      {"use_dora", false},
      {"lora_dropout", 0.0},
      {"inference_mode", true},
      {"init_lora_weights", true},
      {"modules_to_save", nullptr},
      {"layers_to_transform", nullptr},
      {"layers_pattern", nullptr},
      {"rank_pattern", json::object()},
      {"alpha_pattern", json::object()},
      {"revision", nullptr},
      {"base_model_name_or_path", options.base_model.empty() ? json(nullptr) : json(options.base_model)},
  };
  // PEFT writes integral alphas as integers; others as the float's exact double.
  if (std::floor(alpha) == alpha && std::fabs(alpha) < 2e9f) {
    config["lora_alpha"] = static_cast<std::int64_t>(alpha);
  } else {
    config["lora_alpha"] = static_cast<double>(alpha);
  }
  const std::string text = config.dump(2) + "\n";
  AtomicFileWriter out((fs::path(dir) / kPeftConfig).string());
  out.write(text.data(), text.size());
  out.commit();
}

LoraAdapter read_peft_lora(const std::string& dir, const LlamaParams& base, RopePairing want_layout) {
  const std::string config_path = (fs::path(dir) / kPeftConfig).string();
  const std::string weights_path = (fs::path(dir) / kPeftWeights).string();
  std::error_code ec;
  if (!fs::is_regular_file(config_path, ec)) throw FormatError(dir, kPeftConfig, "missing (not a PEFT adapter folder)");
  if (!fs::is_regular_file(weights_path, ec)) {
    if (fs::exists(fs::path(dir) / "adapter_model.bin", ec)) {
      throw FormatError(dir, kPeftWeights, "missing; only adapter_model.bin (a PyTorch pickle) is there, which is not read "
                                           "(save the adapter with safe_serialization)");
    }
    throw FormatError(dir, kPeftWeights, "missing");
  }

  json config;
  {
    std::ifstream in(config_path, std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    try {
      config = json::parse(text);
    } catch (const json::exception& e) {
      throw FormatError(config_path, "JSON", e.what());
    }
  }
  if (!config.is_object()) throw FormatError(config_path, "JSON", "is not an object");
  const auto field = [&](const char* key) -> const json* {
    const auto it = config.find(key);
    return it == config.end() || it->is_null() ? nullptr : &*it;
  };
  const json* peft_type = field("peft_type");
  if (peft_type == nullptr || !peft_type->is_string() || peft_type->get<std::string>() != "LORA") {
    throw FormatError(config_path, "peft_type", peft_type ? peft_type->dump() + " is not \"LORA\"" : "missing");
  }
  const json* r_json = field("r");
  if (r_json == nullptr) throw FormatError(config_path, "r", "missing");
  if (!r_json->is_number_integer() || r_json->get<std::int64_t>() <= 0) {
    throw FormatError(config_path, "r", r_json->dump() + " is not a positive integer");
  }
  const std::int64_t rank = r_json->get<std::int64_t>();
  const json* alpha_json = field("lora_alpha");
  if (alpha_json == nullptr) throw FormatError(config_path, "lora_alpha", "missing");
  if (!alpha_json->is_number()) throw FormatError(config_path, "lora_alpha", alpha_json->dump() + " is not a number");
  const auto alpha = static_cast<float>(alpha_json->get<double>());
  if (!std::isfinite(alpha)) throw FormatError(config_path, "lora_alpha", "is not finite");

  // Options that change the update beyond scale · B · A.
  const auto refuse_true = [&](const char* key, const char* why) {
    const json* v = field(key);
    if (v == nullptr) return;
    if (!v->is_boolean()) throw FormatError(config_path, key, v->dump() + " is not true or false");
    if (v->get<bool>()) throw FormatError(config_path, key, std::string("true is not supported: ") + why);
  };
  refuse_true("use_rslora", "rank-stabilised LoRA scales by lora_alpha / sqrt(r), piquant's adapters by lora_alpha / r");
  refuse_true("use_dora", "DoRA adds a magnitude vector that is not a low-rank update");
  refuse_true("fan_in_fan_out", "the base stores its weights transposed (Conv1D), which a Llama model does not");
  refuse_true("lora_bias", "a LoRA bias has no place in a bias-free Llama model");
  if (const json* bias = field("bias"); bias != nullptr && *bias != "none") {
    throw FormatError(config_path, "bias", bias->dump() + " is not supported (only \"none\": a Llama model has no biases)");
  }
  for (const char* key : {"rank_pattern", "alpha_pattern"}) {
    const json* v = field(key);
    if (v != nullptr && !(v->is_object() && v->empty())) {
      throw FormatError(config_path, key, v->dump() + ": per-module ranks or alphas are not supported (one r and lora_alpha)");
    }
  }
  if (const json* v = field("modules_to_save"); v != nullptr && !(v->is_array() && v->empty())) {
    throw FormatError(config_path, "modules_to_save", v->dump() + ": fully trained modules are not supported, only LoRA pairs");
  }

  const SafetensorsFile file(weights_path);
  std::map<PairKey, PairSource<SafeTensor>> pairs;
  for (const SafeTensor& t : file.tensors()) {
    const std::string tensor_field = "tensor '" + t.name + "'";
    const bool is_a = ends_with(t.name, ".lora_A.weight");
    const bool prefixed = t.name.rfind(kPeftPrefix, 0) == 0;
    if (!prefixed || (!is_a && !ends_with(t.name, ".lora_B.weight"))) {
      throw FormatError(weights_path, tensor_field,
                        "is not a LoRA tensor (base_model.model.<module>.lora_A.weight or .lora_B.weight)");
    }
    const std::string module =
        t.name.substr(std::string_view(kPeftPrefix).size(), t.name.size() - std::string_view(kPeftPrefix).size() - 14);
    const auto id = parse_hf_tensor_name(module + ".weight");
    if (!id) throw FormatError(weights_path, tensor_field, "module '" + module + "' is not a linear layer of a Llama model");
    if (!lora_weight_shape(base, *id)) throw FormatError(weights_path, tensor_field, why_not_adaptable(base, *id));
    if (t.dtype != SafeDtype::F32 && t.dtype != SafeDtype::F16 && t.dtype != SafeDtype::BF16) {
      throw FormatError(weights_path, tensor_field + " dtype", std::string(safe_dtype_name(t.dtype)) + " is not supported (F32, F16 or BF16)");
    }
    if (t.shape.size() != 2) throw FormatError(weights_path, tensor_field + " shape", shape_text(t.shape) + " is not 2-D");
    PairSource<SafeTensor>& pair = pairs[pair_key(*id)];
    pair.id = *id;
    (is_a ? pair.a : pair.b) = &t;
  }
  if (pairs.empty()) throw FormatError(weights_path, "tensors", "no LoRA tensors");

  for (const auto& [key, pair] : pairs) {
    const std::string hf_name = hf_tensor_name(pair.id);
    const std::string stem = kPeftPrefix + hf_name.substr(0, hf_name.size() - 7);
    if (pair.a == nullptr || pair.b == nullptr) {
      throw FormatError(weights_path, "tensor '" + stem + (pair.a ? ".lora_B.weight'" : ".lora_A.weight'"),
                        std::string("missing (its ") + (pair.a ? "lora_A" : "lora_B") + " is present)");
    }
    const auto [rows, cols] = *lora_weight_shape(base, pair.id);
    const auto check = [&](const SafeTensor& t, std::vector<std::int64_t> want) {
      if (t.shape == want) return;
      const std::int64_t r = &t == pair.a ? t.shape[0] : t.shape[1];
      const std::string why = r != rank ? " (rank " + std::to_string(r) + ", but adapter_config.json says r = " + std::to_string(rank) + ")"
                                        : " for the base's " + std::to_string(rows) + " × " + std::to_string(cols) + " weight";
      throw FormatError(weights_path, "tensor '" + t.name + "' shape", shape_text(t.shape) + ", expected " + shape_text(want) + why);
    };
    check(*pair.a, {rank, cols});
    check(*pair.b, {rows, rank});
  }

  LoraAdapter adapter(rank, alpha, RopePairing::HalfSplit);
  const auto ggml_of = [](SafeDtype d) { return d == SafeDtype::F32 ? GgmlType::F32 : d == SafeDtype::F16 ? GgmlType::F16 : GgmlType::BF16; };
  for (const auto& [key, pair] : pairs) {
    const auto [rows, cols] = *lora_weight_shape(base, pair.id);
    LoraMatrix& m = adapter.add(pair.id, rows, cols);
    decode_floats(ggml_of(pair.a->dtype), pair.a->data, m.a);
    decode_floats(ggml_of(pair.b->dtype), pair.b->data, m.b);
  }
  return want_layout == RopePairing::HalfSplit ? adapter : with_layout(adapter, base, want_layout);
}

// ---------------------------------------------------------------- either

std::string lora_file_format(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return "peft";
  if (!fs::exists(path, ec)) throw Error(path + ": no such LoRA adapter file or folder");
  if (starts_with_gguf_magic(path)) return "gguf";
  const std::string name = fs::path(path).filename().string();
  if (name == kPeftConfig || name == kPeftWeights) return "peft";
  throw Error(path + ": not a LoRA adapter (a GGUF adapter file or a PEFT folder with adapter_config.json)");
}

LoraAdapter read_lora(const std::string& path, const LlamaParams& base, RopePairing want_layout) {
  if (lora_file_format(path) == "gguf") return read_gguf_lora(path, base, want_layout);
  std::error_code ec;
  const std::string dir = fs::is_directory(path, ec) ? path : fs::path(path).parent_path().string();
  return read_peft_lora(dir.empty() ? "." : dir, base, want_layout);
}

}  // namespace piquant
