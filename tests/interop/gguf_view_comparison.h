#pragma once
// Compares two readers' views of one GGUF file: node-llama-cpp's (`llama_cpp.mjs
// metadata`) and piquant's (`piquant inspect FILE --json`).
#include <nlohmann/json.hpp>

namespace piquant::testing {

// Adds a gtest failure for every metadata key present in only one view or with
// different values, and for every tensor whose name, type, shape or offset differ.
// `piquant_view` is {"metadata": {key: value}, "tensors": [{"name", "type", "shape",
// "offset"}]}; a tensor type may be ggml's numeric id or its name ("f32", "q4_K").
void expect_same_gguf_view(const nlohmann::json& llama_cpp_view, const nlohmann::json& piquant_view);

}  // namespace piquant::testing
