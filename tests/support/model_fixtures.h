#pragma once
// Models made for tests by the piquant CLI in a test's temporary folder.
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "formats/llama_params.h"
#include "support/test_support.h"
#include "tokenizer/vocab.h"

namespace piquant::testing {

// Runs the piquant CLI; throws std::runtime_error with its output if it fails.
void run_piquant(const std::string& args);
std::string shell_quote(const std::string& arg);

// stories260K (shared llama2.c checkpoint + tokenizer) converted to GGUF of `type`
// (f32, f16, bf16) in dir.
std::filesystem::path convert_stories260k(const TempDir& dir, const std::filesystem::path& checkpoint,
                                          const std::filesystem::path& tokenizer, const std::string& type = "f32");

// `piquant synth --preset tiny --mlp-widths widths` in dir/name, then its weights
// rewritten with standard deviation `stddev` (synth's 0.02 leaves a random model's
// next-token distributions nearly uniform, which would make a comparison weak).
std::filesystem::path synth_tiny(const TempDir& dir, const std::string& name, const std::string& widths, float stddev,
                                 std::uint64_t seed = 7);

// The same as synth_tiny, written in-process (no CLI): the tiny preset with `widths`
// (one per layer, or a LAYERS:WIDTH spec), weights ~ N(0, stddev), norms 1, its own
// 512-token BPE tokenizer, as a Hugging Face folder dir/name.
std::filesystem::path write_tiny_hf(const TempDir& dir, const std::string& name, const std::string& widths, float stddev,
                                    std::uint64_t seed = 7);

// n values ~ N(0, stddev²), the same on every machine for a seed.
std::vector<float> random_values(std::int64_t n, float stddev, std::uint64_t seed);

// `base` with blk.N.ffn_down.bias = biases[N] added (or replaced) after each listed
// layer's ffn_down, stored F32, and params().ffn_down_bias flagging those layers. A
// bias of the wrong length makes a tensor of that length (for corrupt-file tests).
std::unique_ptr<Checkpoint> with_ffn_down_bias(std::unique_ptr<Checkpoint> base,
                                               std::map<std::int64_t, std::vector<float>> biases);

// A tiny Llama shape for models built in memory: stories260K's 512-token vocabulary,
// 4 query heads and 2 KV heads of n_embd / 4, llama3 rope scaling over a short original
// context (32 positions, so every factor band is in use), one MLP width per layer.
LlamaParams tiny_llama_params(std::vector<std::int64_t> n_ff, std::int64_t n_embd = 32);

// stories260K's 512-token vocabulary (tok512.bin under the shared folder).
Vocab stories260k_vocab();

// Reads a whole file of little-endian float32.
std::vector<float> read_floats(const std::filesystem::path& path);

}  // namespace piquant::testing
