#pragma once
// Shared by the LoRA file and merge tests: random adapters, and a whole forward pass
// through the engine's blocks with an adapter applied on the fly (ForwardEnv::lora).
#include <cstdint>
#include <span>
#include <vector>

#include "engine/llama_model.h"
#include "engine/lora.h"
#include "formats/llama_params.h"
#include "formats/tensor_names.h"

namespace piquant::testing {

// An adapter of the base's shapes on `kinds` in every layer, A and B uniform in
// [-scale, scale] from a seeded generator (B non-zero, unlike a fresh training run's).
LoraAdapter random_lora(const LlamaParams& base, const std::vector<WeightKind>& kinds, std::int64_t rank, float alpha,
                        RopePairing layout, float scale, std::uint32_t seed);

// The seven linear weights of a block.
std::vector<WeightKind> all_block_kinds();

// Logits (tokens × n_vocab) of one pass over `tokens` from an empty cache, every linear
// product through linear() with env.lora = lora (nullptr: none), F32 KV cache.
std::vector<float> forward_logits(const LlamaModel& model, std::span<const std::int32_t> tokens, const LoraAdapter* lora);

// max |x - y| over two equally long vectors, and max |x|.
double max_abs_diff(std::span<const float> x, std::span<const float> y);
double max_abs(std::span<const float> x);

}  // namespace piquant::testing
