#pragma once
// Models and texts for the evaluation tests, made by the piquant CLI in a test's
// temporary folder from the shared test data.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "support/test_support.h"

namespace piquant::testing {

// Runs the piquant CLI; throws std::runtime_error with its output if it fails.
void run_piquant(const std::string& args);
std::string quote(const std::string& arg);

// stories260K converted to GGUF of `type` (f32, f16, bf16) in dir.
std::filesystem::path convert_stories260k(const TempDir& dir, const std::filesystem::path& checkpoint,
                                          const std::filesystem::path& tokenizer, const std::string& type);

// `piquant synth --preset tiny --mlp-widths widths` into dir/name, weights rewritten
// with standard deviation `stddev` (synth's 0.02 gives nearly uniform distributions).
std::filesystem::path synth_tiny(const TempDir& dir, const std::string& name, const std::string& widths, float stddev);

// The first `bytes` of a text, cut back to a line end (no split UTF-8 sequence).
std::string text_head(const std::filesystem::path& path, std::size_t bytes);

std::vector<float> read_floats(const std::filesystem::path& path);

}  // namespace piquant::testing
