#pragma once
// Writes any Checkpoint as a GGUF that stock llama.cpp loads: model metadata
// (llama, or deci when MLP widths vary), the full tokenizer, and every tensor (a
// layer's blk.N.ffn_down.bias too, F32 and 1-D like the norms: both graphs add it),
// streamed in row chunks so the peak memory stays far below the model size.
#include <cstdint>
#include <functional>
#include <string>

#include "formats/ggml_type.h"
#include "checkpoint/checkpoint.h"
#include "formats/gguf_metadata.h"

namespace piquant {

struct GgufExportOptions {
  GgmlType type = GgmlType::F16;  // for 2-D weights; norms, ffn_down biases and rope_freqs stay F32
  // A per-tensor type (a quantization plan) instead of `type`, with the file type to record.
  std::function<GgmlType(const CheckpointTensor&)> type_for;
  LlamaFileType file_type = LlamaFileType::MostlyF16;
  // Per-column importance for a tensor's quantization (an imatrix), or empty for the default.
  std::function<std::vector<float>(const CheckpointTensor&)> importance;
  unsigned n_threads = 1;  // rows of a chunk are encoded in parallel
  std::size_t chunk_bytes = 64u << 20;  // float rows converted per step
  // Called after each tensor: (tensors done, tensors total, bytes written so far).
  std::function<void(std::size_t, std::size_t, std::uint64_t)> progress;
};

struct GgufExportSummary {
  std::uint64_t tensor_bytes = 0;  // tensor data written (the file adds header and padding)
  std::uint64_t tensor_count = 0;
  std::string architecture;
};

GgufExportSummary export_gguf(const Checkpoint& checkpoint, const std::string& out_path, const GgufExportOptions& options);

// How export_gguf with these options lays its file out, computed without encoding or
// writing anything: exact, byte for byte. The header's size does not depend on the
// tensor types (a type is a u32, an offset a u64), so only the data section changes
// with a plan: file_bytes = data_offset + Σ align_up(tensor bytes, alignment).
struct GgufExportLayout {
  std::uint64_t alignment = 0;
  std::uint64_t data_offset = 0;   // header (metadata, tokenizer, tensor infos) and its padding
  std::uint64_t tensor_bytes = 0;  // Σ tensor bytes, without padding
  std::uint64_t file_bytes = 0;    // the whole file
};
GgufExportLayout gguf_export_layout(const Checkpoint& checkpoint, const GgufExportOptions& options);

// The vocab padded with unused "[PAD<id>]" tokens up to n_vocab, as llama.cpp expects
// the token list to match the embedding's rows.
Vocab padded_vocab(const Vocab& vocab, std::int64_t n_vocab, const std::string& source);

}  // namespace piquant
