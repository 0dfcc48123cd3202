#pragma once
// Models made for tests by the piquant CLI in a test's temporary folder.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "support/test_support.h"

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

// Reads a whole file of little-endian float32.
std::vector<float> read_floats(const std::filesystem::path& path);

}  // namespace piquant::testing
