#pragma once
// Any loaded model (mapped or in memory) seen as a Checkpoint, so export_gguf writes it:
// a trained in-memory model, or a base with an adapter merged on the fly. Rows come out
// as float (dequantized), Q/K rows in GGUF's order whatever the model's own layout.
#include <memory>
#include <string>

#include "checkpoint/checkpoint.h"
#include "engine/llama_model.h"

namespace piquant {

// The model must outlive the checkpoint. name: general.name of an exported file.
std::unique_ptr<Checkpoint> checkpoint_of(const LlamaModel& model, const std::string& name);

// The matrix of weight `id` in a model (layer weights, embedding, output).
const MatrixView& model_matrix(const LlamaModel& model, WeightId id);

}  // namespace piquant
