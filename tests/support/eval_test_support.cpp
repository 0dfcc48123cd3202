#include "support/eval_test_support.h"

#include <cstring>
#include <stdexcept>

#include "checkpoint/synthetic.h"
#include "tokenizer/vocab.h"

namespace piquant::testing {

std::string text_head(const std::filesystem::path& path, std::size_t bytes) {
  std::string text = read_file(path).substr(0, bytes);
  const std::size_t end = text.rfind('\n');
  if (end != std::string::npos) text.resize(end + 1);
  return text;
}

}  // namespace piquant::testing
