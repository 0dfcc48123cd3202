#include "quantize/recipe.h"

#include <array>
#include <cctype>
#include <cstdio>
#include <optional>
#include <regex>

#include "core/error.h"

namespace piquant {
namespace {

const std::array<QuantRecipe, 10> kRecipes{{
    {"Q8_0", LlamaFileType::MostlyQ8_0, GgmlType::Q8_0},
    {"Q6_K", LlamaFileType::MostlyQ6_K, GgmlType::Q6_K},
    {"Q5_K_M", LlamaFileType::MostlyQ5_K_M, GgmlType::Q5_K},
    {"Q5_K_S", LlamaFileType::MostlyQ5_K_S, GgmlType::Q5_K},
    {"Q4_K_M", LlamaFileType::MostlyQ4_K_M, GgmlType::Q4_K},
    {"Q4_K_S", LlamaFileType::MostlyQ4_K_S, GgmlType::Q4_K},
    {"Q3_K_M", LlamaFileType::MostlyQ3_K_M, GgmlType::Q3_K},
    {"Q3_K_S", LlamaFileType::MostlyQ3_K_S, GgmlType::Q3_K},
    {"Q2_K", LlamaFileType::MostlyQ2_K, GgmlType::Q2_K},
    {"Q4_0", LlamaFileType::MostlyQ4_0, GgmlType::Q4_0},
}};

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

// llama.cpp's "use more bits" layer set: the first and last eighth of the layers
// and every third layer in between.
bool use_more_bits(std::int64_t i, std::int64_t n) {
  return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

// Norms and biases stay F32 whatever their shape, as llama-quantize keeps them.
bool stays_f32(WeightKind kind) {
  return kind == WeightKind::AttnNorm || kind == WeightKind::FfnNorm || kind == WeightKind::OutputNorm ||
         kind == WeightKind::FfnDownBias;
}

// What the recipe's rules give one quantizable tensor, before overrides and fallback.
struct RuleContext {
  LlamaFileType ftype;
  GgmlType base;
  std::int64_t n_layer;
  std::int64_t n_gqa;
  bool is_70b;       // llama.cpp's LLM_TYPE_70B: 80 layers with grouped-query attention
  bool has_output;   // without output.weight the token embedding doubles as the output
  bool has_imatrix;
};

GgmlType rule_type(const RuleContext& c, const std::optional<WeightId>& id, std::int64_t row_length) {
  using F = LlamaFileType;
  GgmlType t = c.base;
  if (!id) return t;
  const std::int64_t i = id->layer;
  const std::int64_t n = c.n_layer;
  switch (id->kind) {
    case WeightKind::Output:
    case WeightKind::TokenEmbedding:
      if (id->kind == WeightKind::TokenEmbedding && c.has_output) return t;  // no rule for our recipes
      if (row_length % ggml_type_info(c.base).block_size != 0) return GgmlType::Q8_0;
      return c.base == GgmlType::Q8_0 ? GgmlType::Q8_0 : GgmlType::Q6_K;
    case WeightKind::AttnV:
      if (c.ftype == F::MostlyQ2_K) {
        t = c.n_gqa >= 4 ? GgmlType::Q4_K : GgmlType::Q3_K;
      } else if (c.ftype == F::MostlyQ3_K_M) {
        t = i < 2 ? GgmlType::Q5_K : GgmlType::Q4_K;
      } else if ((c.ftype == F::MostlyQ4_K_M || c.ftype == F::MostlyQ5_K_M) && use_more_bits(i, n)) {
        t = GgmlType::Q6_K;
      } else if (c.ftype == F::MostlyQ4_K_S && i < 4) {
        t = GgmlType::Q5_K;
      }
      // 70B's attn_v is 8x smaller than attn_q: more bits cost almost nothing.
      if (c.is_70b && (t == GgmlType::Q3_K || t == GgmlType::Q4_K)) t = GgmlType::Q5_K;
      return t;
    case WeightKind::FfnDown:
      if (c.ftype == F::MostlyQ2_K) return GgmlType::Q3_K;
      if (c.ftype == F::MostlyQ3_K_M) return i < n / 16 ? GgmlType::Q5_K : GgmlType::Q4_K;
      if (c.ftype == F::MostlyQ4_K_M) return use_more_bits(i, n) ? GgmlType::Q6_K : t;
      if (c.ftype == F::MostlyQ5_K_M) return use_more_bits(i, n) ? GgmlType::Q6_K : t;
      if (c.ftype == F::MostlyQ4_K_S) return i < n / 8 ? GgmlType::Q5_K : t;
      if (c.ftype == F::MostlyQ4_0 && c.has_imatrix && i < n / 8) return GgmlType::Q4_1;
      return t;
    case WeightKind::AttnOutput:
      if (c.ftype == F::MostlyQ2_K) return GgmlType::Q3_K;
      if (c.ftype == F::MostlyQ3_K_M) return GgmlType::Q4_K;
      return t;
    default:
      return t;
  }
}

double bits_per_weight(GgmlType type) {
  const GgmlTypeInfo& info = ggml_type_info(type);
  return 8.0 * info.block_bytes / info.block_size;
}

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t k = 0; k < shape.size(); ++k) s += (k ? ", " : "") + std::to_string(shape[k]);
  return s + "]";
}

}  // namespace

const QuantRecipe& quant_recipe(std::string_view name) {
  const std::string wanted = upper(name);
  for (const auto& r : kRecipes) {
    if (r.name == wanted) return r;
  }
  std::string known;
  for (const auto& r : kRecipes) known += (known.empty() ? "" : ", ") + r.name;
  throw Error("unknown quantization recipe '" + std::string(name) + "' (known: " + known + ")");
}

std::vector<std::string> quant_recipe_names() {
  std::vector<std::string> names;
  for (const auto& r : kRecipes) names.push_back(r.name);
  return names;
}

TensorTypeOverride parse_tensor_type_override(std::string_view spec) {
  const std::size_t eq = spec.rfind('=');
  if (eq == std::string_view::npos || eq == 0 || eq + 1 == spec.size()) {
    throw Error("--tensor-type '" + std::string(spec) + "': expected REGEX=TYPE");
  }
  TensorTypeOverride o;
  o.pattern = std::string(spec.substr(0, eq));
  const std::string_view type_name = spec.substr(eq + 1);
  const auto type = ggml_type_from_name(type_name);
  if (!type) throw Error("--tensor-type '" + std::string(spec) + "': unknown type '" + std::string(type_name) + "'");
  o.type = *type;
  try {
    std::regex check(o.pattern);
  } catch (const std::regex_error& e) {
    throw Error("--tensor-type '" + std::string(spec) + "': bad regex '" + o.pattern + "': " + e.what());
  }
  return o;
}

GgmlType row_length_fallback(GgmlType type, std::int64_t row_length) {
  if (row_length % ggml_type_info(type).block_size == 0) return type;
  GgmlType next = GgmlType::F16;
  switch (type) {
    // llama.cpp now falls back to IQ4_NL here; piquant has no IQ4_NL, so it uses
    // Q4_0 as llama.cpp did before IQ4_NL existed (same 4.5 bits per weight).
    case GgmlType::Q2_K:
    case GgmlType::Q3_K: next = GgmlType::Q4_0; break;
    case GgmlType::Q4_K: next = GgmlType::Q5_0; break;
    case GgmlType::Q5_K: next = GgmlType::Q5_1; break;
    case GgmlType::Q6_K: next = GgmlType::Q8_0; break;
    default: next = GgmlType::F16; break;  // llama.cpp refuses; F16 still loads everywhere
  }
  if (row_length % ggml_type_info(next).block_size != 0) next = GgmlType::F16;
  return next;
}

bool plan_quantizes(std::string_view name, const std::vector<std::int64_t>& shape) {
  const auto id = parse_gguf_tensor_name(name);
  return shape.size() >= 2 && !(id && stays_f32(id->kind));
}

std::int64_t PlannedTensor::n_elements() const {
  std::int64_t n = 1;
  for (std::int64_t d : shape) n *= d;
  return n;
}

std::uint64_t PlannedTensor::n_bytes() const {
  return ggml_nbytes(type, static_cast<std::uint64_t>(n_elements()));
}

const PlannedTensor* QuantPlan::find(std::string_view name) const {
  for (const auto& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

QuantPlan plan_quantization(const QuantRecipe& recipe, const LlamaParams& params,
                            const std::vector<CheckpointTensor>& tensors, const PlanOptions& options) {
  if (params.n_layer <= 0 || params.n_head <= 0 || params.n_head_kv <= 0) {
    throw Error("quantization plan: model has no layers or heads (n_layer " + std::to_string(params.n_layer) +
                ", n_head " + std::to_string(params.n_head) + ", n_head_kv " + std::to_string(params.n_head_kv) + ")");
  }
  std::vector<std::regex> patterns;
  for (const auto& o : options.overrides) {
    try {
      patterns.emplace_back(o.pattern);
    } catch (const std::regex_error& e) {
      throw Error("--tensor-type: bad regex '" + o.pattern + "': " + e.what());
    }
  }

  RuleContext ctx{};
  ctx.ftype = recipe.file_type;
  ctx.base = recipe.base_type;
  ctx.n_layer = params.n_layer;
  ctx.n_gqa = params.n_head / params.n_head_kv;
  ctx.is_70b = params.n_layer == 80 && params.n_head != params.n_head_kv;
  ctx.has_imatrix = options.has_imatrix;
  for (const auto& t : tensors) {
    if (t.name == "output.weight") ctx.has_output = true;
  }

  QuantPlan plan{recipe, {}};
  plan.tensors.reserve(tensors.size());
  for (const auto& t : tensors) {
    if (t.shape.empty()) throw Error("quantization plan: tensor " + t.name + " has no shape");
    for (std::int64_t d : t.shape) {
      if (d <= 0) throw Error("quantization plan: tensor " + t.name + " has shape " + shape_text(t.shape));
    }
    const auto id = parse_gguf_tensor_name(t.name);
    if (id && id->layer >= params.n_layer) {
      throw Error("quantization plan: tensor " + t.name + " is past the model's " + std::to_string(params.n_layer) +
                  " layers");
    }
    PlannedTensor p{t.name, t.shape, GgmlType::F32};
    if (plan_quantizes(t.name, t.shape)) {
      const std::int64_t row = t.shape[0];
      GgmlType chosen = options.pure ? recipe.base_type : rule_type(ctx, id, row);
      for (std::size_t k = 0; k < patterns.size(); ++k) {
        if (std::regex_search(t.name, patterns[k])) {
          chosen = options.overrides[k].type;
          p.overridden = true;
          break;
        }
      }
      p.type = row_length_fallback(chosen, row);
      p.fallback = p.type != chosen;
    }
    plan.tensors.push_back(std::move(p));
  }
  return plan;
}

LlamaFileType mixed_plan_file_type(const std::vector<PlannedTensor>& tensors) {
  std::map<GgmlType, std::int64_t> weights;
  for (const PlannedTensor& t : tensors) {
    if (plan_quantizes(t.name, t.shape)) weights[t.type] += t.n_elements();
  }
  GgmlType most = GgmlType::F32;
  std::int64_t most_weights = 0;
  for (const auto& [type, n] : weights) {
    if (n > most_weights || (n == most_weights && bits_per_weight(type) > bits_per_weight(most))) {
      most = type;
      most_weights = n;
    }
  }
  using F = LlamaFileType;
  switch (most) {
    case GgmlType::F32: return F::AllF32;
    case GgmlType::F16: return F::MostlyF16;
    case GgmlType::BF16: return F::MostlyBF16;
    case GgmlType::Q4_0: return F::MostlyQ4_0;
    case GgmlType::Q4_1: return F::MostlyQ4_1;
    case GgmlType::Q5_0: return F::MostlyQ5_0;
    case GgmlType::Q5_1: return F::MostlyQ5_1;
    case GgmlType::Q8_0: return F::MostlyQ8_0;
    case GgmlType::Q2_K: return F::MostlyQ2_K;
    case GgmlType::Q3_K: return F::MostlyQ3_K_M;
    case GgmlType::Q4_K: return F::MostlyQ4_K_M;
    case GgmlType::Q5_K: return F::MostlyQ5_K_M;
    case GgmlType::Q6_K: return F::MostlyQ6_K;
    default: throw Error("no GGUF file type for a plan mostly of " + ggml_type_name(most));
  }
}

PlanSummary plan_summary(const QuantPlan& plan) {
  PlanSummary s;
  for (const auto& t : plan.tensors) {
    const std::uint64_t bytes = t.n_bytes();
    s.total_bytes += bytes;
    s.n_elements += static_cast<std::uint64_t>(t.n_elements());
    s.tensor_counts[t.type] += 1;
    s.bytes_by_type[t.type] += bytes;
  }
  s.gib = static_cast<double>(s.total_bytes) / (1024.0 * 1024.0 * 1024.0);
  s.bits_per_weight = s.n_elements ? 8.0 * static_cast<double>(s.total_bytes) / static_cast<double>(s.n_elements) : 0;
  return s;
}

std::string format_plan_summary(const QuantPlan& plan, const PlanSummary& summary) {
  char line[160];
  std::snprintf(line, sizeof line, "%s: %zu tensors, %.2f GiB of tensor data, %.2f bits per weight\n",
                plan.recipe.name.c_str(), plan.tensors.size(), summary.gib, summary.bits_per_weight);
  std::string out = line;
  for (const auto& [type, count] : summary.tensor_counts) {
    std::snprintf(line, sizeof line, "  %-5s %4lld tensors %10.2f MiB\n", ggml_type_name(type).c_str(),
                  static_cast<long long>(count),
                  static_cast<double>(summary.bytes_by_type.at(type)) / (1024.0 * 1024.0));
    out += line;
  }
  return out;
}

}  // namespace piquant
