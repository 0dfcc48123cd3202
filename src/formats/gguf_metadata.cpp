#include "formats/gguf_metadata.h"

#include "core/error.h"
#include "formats/gguf.h"
#include "formats/tensor_names.h"

namespace piquant {

std::string llama_file_type_name(std::uint32_t file_type) {
  switch (static_cast<LlamaFileType>(file_type)) {
    case LlamaFileType::AllF32: return "all F32";
    case LlamaFileType::MostlyF16: return "F16";
    case LlamaFileType::MostlyQ4_0: return "Q4_0";
    case LlamaFileType::MostlyQ4_1: return "Q4_1";
    case LlamaFileType::MostlyQ8_0: return "Q8_0";
    case LlamaFileType::MostlyQ5_0: return "Q5_0";
    case LlamaFileType::MostlyQ5_1: return "Q5_1";
    case LlamaFileType::MostlyQ2_K: return "Q2_K - Medium";
    case LlamaFileType::MostlyQ3_K_S: return "Q3_K - Small";
    case LlamaFileType::MostlyQ3_K_M: return "Q3_K - Medium";
    case LlamaFileType::MostlyQ3_K_L: return "Q3_K - Large";
    case LlamaFileType::MostlyQ4_K_S: return "Q4_K - Small";
    case LlamaFileType::MostlyQ4_K_M: return "Q4_K - Medium";
    case LlamaFileType::MostlyQ5_K_S: return "Q5_K - Small";
    case LlamaFileType::MostlyQ5_K_M: return "Q5_K - Medium";
    case LlamaFileType::MostlyQ6_K: return "Q6_K";
    case LlamaFileType::MostlyBF16: return "BF16";
  }
  return "file type " + std::to_string(file_type);
}

std::string architecture_for(const LlamaParams& params) { return params.uniform_ff() ? "llama" : "deci"; }

void write_model_metadata(const LlamaParams& params, const std::string& model_name, LlamaFileType file_type,
                          GgufWriter& writer) {
  const std::string arch = architecture_for(params);
  const auto u32 = [](std::int64_t v) { return static_cast<std::uint32_t>(v); };
  writer.set("general.architecture", arch);
  writer.set("general.name", model_name);
  writer.set("general.file_type", static_cast<std::uint32_t>(file_type));
  writer.set(arch + ".vocab_size", u32(params.n_vocab));
  writer.set(arch + ".context_length", u32(params.n_ctx_train));
  writer.set(arch + ".embedding_length", u32(params.n_embd));
  writer.set(arch + ".block_count", u32(params.n_layer));
  if (arch == "llama") {
    writer.set(arch + ".feed_forward_length", u32(params.n_ff.at(0)));
  } else {
    std::vector<std::int32_t> widths(params.n_ff.begin(), params.n_ff.end());
    writer.set(arch + ".feed_forward_length", GgufValue::int32_array(widths));
  }
  writer.set(arch + ".attention.head_count", u32(params.n_head));
  writer.set(arch + ".attention.head_count_kv", u32(params.n_head_kv));
  writer.set(arch + ".rope.freq_base", static_cast<float>(params.rope_theta));
  writer.set(arch + ".attention.layer_norm_rms_epsilon", static_cast<float>(params.rms_norm_eps));
  writer.set(arch + ".rope.dimension_count", u32(params.head_dim));
  if (params.head_dim * params.n_head != params.n_embd) {
    writer.set(arch + ".attention.key_length", u32(params.head_dim));
    writer.set(arch + ".attention.value_length", u32(params.head_dim));
  }
}

LlamaParams read_model_params(const GgufFile& gguf) {
  const std::string arch = gguf.get_string("general.architecture");
  if (arch != "llama" && arch != "deci") {
    throw FormatError(gguf.path(), "key 'general.architecture'",
                      "'" + arch + "' is not supported (piquant runs 'llama' and 'deci')");
  }
  const auto key = [&](const char* name) { return arch + "." + name; };
  LlamaParams p;
  p.n_embd = gguf.get_int(key("embedding_length"));
  p.n_layer = gguf.get_int(key("block_count"));
  p.n_ctx_train = gguf.get_int(key("context_length"), 2048);
  p.n_head = gguf.get_int(key("attention.head_count"));
  p.n_head_kv = gguf.get_int(key("attention.head_count_kv"), p.n_head);
  p.rms_norm_eps = gguf.get_float(key("attention.layer_norm_rms_epsilon"), 1e-5);
  p.rope_theta = gguf.get_float(key("rope.freq_base"), 10000.0);
  p.head_dim = gguf.get_int(key("attention.key_length"), p.n_head > 0 ? p.n_embd / p.n_head : 0);
  const GgufValue& ff = gguf.at(key("feed_forward_length"));
  if (ff.is_array()) {
    p.n_ff = ff.as_int_array();
    if (static_cast<std::int64_t>(p.n_ff.size()) != p.n_layer) {
      throw FormatError(gguf.path(), "key '" + key("feed_forward_length") + "'",
                        "has " + std::to_string(p.n_ff.size()) + " widths for " + std::to_string(p.n_layer) + " layers");
    }
  } else {
    if (p.n_layer < 0 || p.n_layer > 100000) throw FormatError(gguf.path(), "key '" + key("block_count") + "'", "absurd value");
    p.n_ff.assign(static_cast<std::size_t>(p.n_layer), ff.as_int());
  }
  // Per-layer head counts (deci allows arrays) must be uniform for piquant's engine.
  for (const char* name : {"attention.head_count", "attention.head_count_kv"}) {
    if (const GgufValue* v = gguf.find(key(name)); v != nullptr && v->is_array()) {
      throw FormatError(gguf.path(), "key '" + key(name) + "'", "per-layer head counts are not supported");
    }
  }
  const GgufTensorInfo* embd = gguf.find_tensor("token_embd.weight");
  p.n_vocab = gguf.get_int(key("vocab_size"), 0);
  if (p.n_vocab == 0 && embd != nullptr && embd->shape.size() == 2) p.n_vocab = embd->shape[1];
  if (p.n_vocab == 0) {
    if (const GgufValue* tokens = gguf.find("tokenizer.ggml.tokens")) p.n_vocab = static_cast<std::int64_t>(tokens->as_array().size());
  }
  p.tie_word_embeddings = gguf.find_tensor("output.weight") == nullptr;
  // An optional blk.N.ffn_down.bias per layer, as llama.cpp's llama and deci graphs load it.
  // A bias past block_count is the tensor reader's to reject.
  for (const GgufTensorInfo& t : gguf.tensors()) {
    const auto id = parse_gguf_tensor_name(t.name);
    if (!id || id->kind != WeightKind::FfnDownBias || id->layer >= p.n_layer) continue;
    p.ffn_down_bias.resize(static_cast<std::size_t>(p.n_layer), false);
    p.ffn_down_bias[static_cast<std::size_t>(id->layer)] = true;
  }
  p.bos_token_id = gguf.get_int("tokenizer.ggml.bos_token_id", -1);
  if (const std::int64_t eos = gguf.get_int("tokenizer.ggml.eos_token_id", -1); eos >= 0) p.eos_token_ids.push_back(eos);
  p.validate(gguf.path());
  return p;
}

}  // namespace piquant
