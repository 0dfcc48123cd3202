#pragma once
// LoRA adapter files: llama.cpp's GGUF adapters and PEFT folders, written and read.
//
// GGUF (what llama.cpp's llama_adapter_lora loader and convert_lora_to_gguf.py use):
// general.type = "adapter", adapter.type = "lora", adapter.lora.alpha (FLOAT32),
// general.architecture = the base's ("llama" or "deci") plus the base's hyperparameter
// keys, and for each adapted weight "<gguf weight name>.lora_a" of ggml shape
// {cols, rank} and ".lora_b" of shape {rank, rows} — row-major, A is rank × cols and B
// rows × rank, the LoraMatrix layout. Q/K rows of B are in GGUF's interleaved order.
// llama.cpp scales by alpha / rank, or by 1 when alpha is 0 or missing; the reader
// gives such a file alpha = rank so the scale is the same.
//
// PEFT (peft's save_pretrained): DIR/adapter_model.safetensors with
// "base_model.model.<HF module>.lora_A.weight" (rank × in) and ".lora_B.weight"
// (out × rank), and DIR/adapter_config.json (peft_type LORA, r, lora_alpha,
// target_modules, ...). Q/K rows of B in Hugging Face's half-split order. PEFT scales
// by lora_alpha / r; options that change that or add parameters (use_rslora, use_dora,
// rank_pattern, alpha_pattern, bias, fan_in_fan_out, modules_to_save) are refused.
//
// Adaptable weights: attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up, ffn_down
// of any layer, and output (lm_head) when the base does not tie it to the embedding.
// Values round-trip bit-exactly in F32 (the default); F16/BF16 files round each value.
// Readers check everything against the base and throw piquant::Error (FormatError)
// naming the file and the tensor or key. Every file is written atomically.
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "engine/lora.h"
#include "formats/ggml_type.h"
#include "formats/llama_params.h"
#include "formats/tensor_names.h"
#include "kernels/rope.h"

namespace piquant {

struct LoraFileOptions {
  GgmlType type = GgmlType::F32;  // GGUF: F32 or F16; PEFT: F32, F16 or BF16
  std::string base_model;         // general.name / base_model_name_or_path (may be empty)
};

void write_gguf_lora(const LoraAdapter& adapter, const LlamaParams& base, const std::string& path,
                     const LoraFileOptions& options = {});
LoraAdapter read_gguf_lora(const std::string& path, const LlamaParams& base, RopePairing want_layout);

void write_peft_lora(const LoraAdapter& adapter, const LlamaParams& base, const std::string& dir,
                     const LoraFileOptions& options = {});
LoraAdapter read_peft_lora(const std::string& dir, const LlamaParams& base, RopePairing want_layout);

// A GGUF file or a PEFT folder, told apart by content.
LoraAdapter read_lora(const std::string& path, const LlamaParams& base, RopePairing want_layout);
// "gguf" or "peft": what read_lora would read at path (throws when neither).
std::string lora_file_format(const std::string& path);

// The same adapter with Q/K rows of B in `layout` (a copy; the values are only moved).
LoraAdapter with_layout(const LoraAdapter& adapter, const LlamaParams& base, RopePairing layout);

// The (rows, cols) a LoRA pair for weight `id` of this base must have, or nullopt when
// the weight cannot carry an adapter (norms, the embedding, a tied output, a layer
// outside the model).
std::optional<std::pair<std::int64_t, std::int64_t>> lora_weight_shape(const LlamaParams& base, WeightId id);

// PEFT's module name of an adaptable weight: "q_proj", ..., "down_proj", "lm_head".
std::string peft_module_name(WeightKind kind);

}  // namespace piquant
