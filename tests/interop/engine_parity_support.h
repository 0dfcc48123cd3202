#pragma once
// Shared by the engine parity tests: models converted by the piquant CLI into a
// test's temporary folder, and small numeric helpers that do not use piquant's own
// evaluation code (so they can check it).
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "support/test_support.h"

namespace piquant::testing {

// Runs the piquant CLI; throws std::runtime_error with its output if it fails.
void run_piquant(const std::string& args);

// stories260K (shared llama2.c checkpoint + tokenizer) converted to `type` GGUF in dir.
std::filesystem::path convert_stories260k(const TempDir& dir, const std::filesystem::path& checkpoint,
                                          const std::filesystem::path& tokenizer, const std::string& type = "f32");

// `piquant synth --preset tiny --mlp-widths widths` in dir/name, then its weights
// rewritten with standard deviation `stddev` (synth's 0.02 leaves a random model's
// next-token distributions nearly uniform, which would make a comparison weak).
std::filesystem::path synth_tiny(const TempDir& dir, const std::string& name, const std::string& widths, float stddev);

// Softmax in double.
std::vector<double> softmax(std::span<const float> logits);

// Reads a whole file of little-endian float32.
std::vector<float> read_floats(const std::filesystem::path& path);

}  // namespace piquant::testing
