#pragma once
// A quantization plan as a list of `--tensor-type` overrides, one per line, that
// `quantize --tensor-type-file FILE` replays: "^blk\.3\.ffn_down\.weight$=q6_K" matches
// exactly one tensor name. Blank lines and lines starting with '#' are ignored.
#include <string>
#include <string_view>
#include <vector>

#include "quantize/recipe.h"

namespace piquant {

// The override that gives exactly the tensor `name` the type `type`: the name with
// every regex metacharacter escaped, anchored at both ends.
std::string exact_tensor_type_line(std::string_view name, GgmlType type);

// One exact line per quantized tensor of the plan (F32 tensors are left out: every plan
// keeps them F32), after `header` turned into '#' comment lines.
std::string format_tensor_type_file(const QuantPlan& plan, const std::string& header);

// Reads the overrides, in file order; throws Error naming the file and line of a bad one.
std::vector<TensorTypeOverride> read_tensor_type_file(const std::string& path);

}  // namespace piquant
