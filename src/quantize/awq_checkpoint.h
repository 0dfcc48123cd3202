#pragma once
// The model AWQ's scales describe, as a Checkpoint decorator that export_gguf streams
// out: every tensor a group touches reads scaled, everything else passes through.
//   attn_input  l:  attn_norm ÷ s;  attn_q, attn_k, attn_v columns × s
//   mlp_input   l:  ffn_norm ÷ s;   ffn_gate, ffn_up columns × s
//   mlp_down    l:  ffn_up rows ÷ s; ffn_down columns × s
//   attn_output l:  attn_v rows ÷ s; attn_output columns × s
// A value reads as float((double(w) · c_j) · r_i), c_j the product in double of the
// column factors (s_j or 1/s_j) and r_i of the row factors, one rounding: the same bits
// whichever row range is read. The function of the float model is unchanged up to that
// rounding; write the touched tensors as F32 to keep it (awq_output_type).
#include <map>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "quantize/awq.h"

namespace piquant {

class AwqScaledCheckpoint : public ForwardingCheckpoint {
 public:
  // `base` must outlive this. Throws Error when a group's tensor is missing from the base
  // or a scale vector's length is not the dimension it scales.
  AwqScaledCheckpoint(const Checkpoint& base, const std::vector<AwqGroup>& groups);

  void read_rows(const CheckpointTensor& tensor, std::int64_t first_row, std::int64_t n_rows, float* out) const override;

  // Whether any group scales this tensor.
  bool touched(const std::string& tensor_name) const { return factors_.count(tensor_name) != 0; }

 private:
  struct Factors {
    std::vector<double> columns;  // empty: all 1
    std::vector<double> rows;     // empty: all 1
  };
  void scale_columns(const std::string& name, const std::vector<float>& s, bool divide);
  void scale_rows(const std::string& name, const std::vector<float>& s, bool divide);

  std::map<std::string, Factors> factors_;
};

// The type a tensor is written in: F32 when touched, so that the scaled weights keep the
// float model's function, and for 1-D tensors (norms, biases) as llama.cpp wants them;
// untouched matrices keep the type they are stored in (α = 0 everywhere: the same file).
GgmlType awq_output_type(const AwqScaledCheckpoint& checkpoint, const CheckpointTensor& tensor);

}  // namespace piquant
