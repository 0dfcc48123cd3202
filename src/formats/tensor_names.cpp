#include "formats/tensor_names.h"

#include <array>
#include <charconv>

#include "core/error.h"

namespace piquant {
namespace {

struct NamePair {
  WeightKind kind;
  const char* gguf;  // suffix after "blk.N." for per-layer weights
  const char* hf;    // suffix after "model.layers.N." for per-layer weights
};

constexpr std::array<NamePair, 14> kNames{{
    {WeightKind::TokenEmbedding, "token_embd.weight", "model.embed_tokens.weight"},
    {WeightKind::AttnNorm, "attn_norm.weight", "input_layernorm.weight"},
    {WeightKind::AttnQ, "attn_q.weight", "self_attn.q_proj.weight"},
    {WeightKind::AttnK, "attn_k.weight", "self_attn.k_proj.weight"},
    {WeightKind::AttnV, "attn_v.weight", "self_attn.v_proj.weight"},
    {WeightKind::AttnOutput, "attn_output.weight", "self_attn.o_proj.weight"},
    {WeightKind::FfnNorm, "ffn_norm.weight", "post_attention_layernorm.weight"},
    {WeightKind::FfnGate, "ffn_gate.weight", "mlp.gate_proj.weight"},
    {WeightKind::FfnUp, "ffn_up.weight", "mlp.up_proj.weight"},
    {WeightKind::FfnDown, "ffn_down.weight", "mlp.down_proj.weight"},
    {WeightKind::FfnDownBias, "ffn_down.bias", "mlp.down_proj.bias"},
    {WeightKind::OutputNorm, "output_norm.weight", "model.norm.weight"},
    {WeightKind::Output, "output.weight", "lm_head.weight"},
    {WeightKind::RopeFreqs, "rope_freqs.weight", ""},
}};

const NamePair& names_of(WeightKind kind) {
  for (const auto& n : kNames) {
    if (n.kind == kind) return n;
  }
  throw Error("unknown weight kind");
}

// Parses "<prefix><layer>.<suffix>" and looks the suffix up; nullopt if it does not fit.
std::optional<WeightId> parse_layered(std::string_view name, std::string_view prefix, bool gguf) {
  if (name.substr(0, prefix.size()) != prefix) return std::nullopt;
  name.remove_prefix(prefix.size());
  const std::size_t dot = name.find('.');
  if (dot == std::string_view::npos || dot == 0) return std::nullopt;
  std::int64_t layer = -1;
  const auto [ptr, ec] = std::from_chars(name.data(), name.data() + dot, layer);
  if (ec != std::errc() || ptr != name.data() + dot || layer < 0) return std::nullopt;
  const std::string_view suffix = name.substr(dot + 1);
  for (const auto& n : kNames) {
    if (!is_per_layer(n.kind)) continue;
    if (suffix == (gguf ? n.gguf : n.hf)) return WeightId{n.kind, layer};
  }
  return std::nullopt;
}

}  // namespace

bool is_per_layer(WeightKind kind) {
  switch (kind) {
    case WeightKind::TokenEmbedding:
    case WeightKind::OutputNorm:
    case WeightKind::Output:
    case WeightKind::RopeFreqs:
      return false;
    default:
      return true;
  }
}

std::string gguf_tensor_name(WeightId id) {
  const NamePair& n = names_of(id.kind);
  if (is_per_layer(id.kind)) return "blk." + std::to_string(id.layer) + "." + n.gguf;
  return n.gguf;
}

std::string hf_tensor_name(WeightId id) {
  const NamePair& n = names_of(id.kind);
  if (id.kind == WeightKind::RopeFreqs) throw Error("rope_freqs has no Hugging Face tensor (it comes from config.json)");
  if (is_per_layer(id.kind)) return "model.layers." + std::to_string(id.layer) + "." + n.hf;
  return n.hf;
}

std::optional<WeightId> parse_gguf_tensor_name(std::string_view name) {
  for (const auto& n : kNames) {
    if (!is_per_layer(n.kind) && name == n.gguf) return WeightId{n.kind, -1};
  }
  return parse_layered(name, "blk.", true);
}

std::optional<WeightId> parse_hf_tensor_name(std::string_view name) {
  for (const auto& n : kNames) {
    if (!is_per_layer(n.kind) && n.kind != WeightKind::RopeFreqs && name == n.hf) return WeightId{n.kind, -1};
  }
  return parse_layered(name, "model.layers.", false);
}

}  // namespace piquant
