#include "interop/engine_parity_support.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "interop/llama_cpp_runner.h"
#include "model/synthetic.h"
#include "tokenizer/vocab.h"

namespace piquant::testing {

std::vector<double> softmax(std::span<const float> logits) {
  const double max = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(logits.size());
  double sum = 0;
  for (std::size_t i = 0; i < p.size(); ++i) sum += p[i] = std::exp(static_cast<double>(logits[i]) - max);
  for (double& v : p) v /= sum;
  return p;
}

}  // namespace piquant::testing
