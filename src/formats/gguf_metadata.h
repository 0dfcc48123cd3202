#pragma once
// The model hyperparameters as llama.cpp reads them from GGUF: "<arch>.*" keys
// for architectures "llama" (one MLP width) and "deci" (per-layer widths as an
// INT32 array, which stock llama.cpp's llama architecture cannot load).
#include <cstdint>
#include <string>

#include "formats/llama_params.h"

namespace piquant {

class GgufFile;
class GgufWriter;

// llama.cpp's general.file_type values (enum llama_ftype).
enum class LlamaFileType : std::uint32_t {
  AllF32 = 0,
  MostlyF16 = 1,
  MostlyQ4_0 = 2,
  MostlyQ4_1 = 3,
  MostlyQ8_0 = 7,
  MostlyQ5_0 = 8,
  MostlyQ5_1 = 9,
  MostlyQ2_K = 10,
  MostlyQ3_K_S = 11,
  MostlyQ3_K_M = 12,
  MostlyQ3_K_L = 13,
  MostlyQ4_K_S = 14,
  MostlyQ4_K_M = 15,
  MostlyQ5_K_S = 16,
  MostlyQ5_K_M = 17,
  MostlyQ6_K = 18,
  MostlyBF16 = 32,
};

std::string llama_file_type_name(std::uint32_t file_type);  // "F16", "Q4_K - Medium", ...

// "deci" when MLP widths differ between layers, else "llama".
std::string architecture_for(const LlamaParams& params);

// Writes general.architecture, general.name, general.file_type and the <arch>.* keys.
void write_model_metadata(const LlamaParams& params, const std::string& model_name, LlamaFileType file_type,
                          GgufWriter& writer);

// Reads a llama or deci GGUF's hyperparameters; throws FormatError naming the key.
// rope_scaling stays empty: a GGUF carries llama3 scaling as the rope_freqs tensor.
// ffn_down_bias flags the layers that have a blk.N.ffn_down.bias tensor (their shape
// and type are the reader's to check).
LlamaParams read_model_params(const GgufFile& gguf);

}  // namespace piquant
