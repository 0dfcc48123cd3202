#include "support/model_fixtures.h"

#include <cstring>
#include <fstream>
#include <stdexcept>

#include "formats/llama_params.h"
#include "checkpoint/synthetic.h"
#include "tokenizer/vocab.h"

namespace piquant::testing {

std::string shell_quote(const std::string& arg) {
  std::string quoted = "'";
  for (const char c : arg) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

void run_piquant(const std::string& args) {
  const CommandResult result = run_cli(args);
  if (result.exit_code != 0) {
    throw std::runtime_error("piquant " + args + " exited with " + std::to_string(result.exit_code) + ":\n" + result.output);
  }
}

std::filesystem::path convert_stories260k(const TempDir& dir, const std::filesystem::path& checkpoint,
                                          const std::filesystem::path& tokenizer, const std::string& type) {
  const auto out = dir / ("stories260K-" + type + ".gguf");
  run_piquant("convert " + shell_quote(checkpoint.string()) + " --tokenizer " + shell_quote(tokenizer.string()) + " --type " +
              type + " -o " + shell_quote(out.string()));
  return out;
}

std::filesystem::path synth_tiny(const TempDir& dir, const std::string& name, const std::string& widths, float stddev,
                                 std::uint64_t seed) {
  const auto model_dir = dir / name;
  run_piquant("synth --preset tiny --mlp-widths " + widths + " -o " + shell_quote(model_dir.string()));
  // The same shape and special tokens the CLI wrote, with larger weights.
  LlamaParams params = synth_preset("tiny");
  apply_mlp_widths(params, widths);
  const Vocab vocab = load_vocab_hf((model_dir / "tokenizer.json").string());
  params.bos_token_id = vocab.bos_id;
  params.eos_token_ids = {vocab.eos_id};
  SynthOptions options;
  options.stddev = stddev;
  options.seed = seed;
  write_synthetic_weights(params, model_dir.string(), options);
  return model_dir;
}

std::vector<float> read_floats(const std::filesystem::path& path) {
  const std::string bytes = read_file(path);
  if (bytes.size() % 4 != 0) throw std::runtime_error(path.string() + ": not a whole number of float32");
  std::vector<float> values(bytes.size() / 4);
  std::memcpy(values.data(), bytes.data(), bytes.size());
  return values;
}

}  // namespace piquant::testing
