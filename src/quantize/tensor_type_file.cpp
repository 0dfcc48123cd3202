#include "quantize/tensor_type_file.h"

#include <fstream>
#include <sstream>

#include "core/error.h"

namespace piquant {

std::string exact_tensor_type_line(std::string_view name, GgmlType type) {
  std::string line = "^";
  for (const char c : name) {
    if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) line += '\\';
    line += c;
  }
  return line + "$=" + ggml_type_name(type);
}

std::string format_tensor_type_file(const QuantPlan& plan, const std::string& header) {
  std::string out;
  std::istringstream lines(header);
  for (std::string line; std::getline(lines, line);) out += "# " + line + "\n";
  for (const PlannedTensor& t : plan.tensors) {
    if (plan_quantizes(t.name, t.shape)) out += exact_tensor_type_line(t.name, t.type) + "\n";
  }
  return out;
}

std::vector<TensorTypeOverride> read_tensor_type_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw_system_error(path, "open");
  std::vector<TensorTypeOverride> overrides;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const std::size_t first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#') continue;
    const std::size_t last = line.find_last_not_of(" \t");
    try {
      overrides.push_back(parse_tensor_type_override(std::string_view(line).substr(first, last + 1 - first)));
    } catch (const Error& e) {
      throw Error(path + ":" + std::to_string(number) + ": " + e.what());
    }
  }
  if (in.bad()) throw_system_error(path, "read");
  return overrides;
}

}  // namespace piquant
