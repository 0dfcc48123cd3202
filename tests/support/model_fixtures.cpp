#include "support/model_fixtures.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include <random>

#include "formats/llama_params.h"
#include "checkpoint/synthetic.h"
#include "tokenizer/bpe_trainer.h"
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

std::filesystem::path write_tiny_hf(const TempDir& dir, const std::string& name, const std::string& widths, float stddev,
                                    std::uint64_t seed) {
  const auto model_dir = dir / name;
  LlamaParams params = synth_preset("tiny");
  apply_mlp_widths(params, widths);
  BpeTrainerOptions trainer;
  trainer.vocab_size = static_cast<std::size_t>(params.n_vocab);
  const Vocab vocab = train_byte_level_bpe(builtin_training_text(), trainer);
  params.bos_token_id = vocab.bos_id;
  params.eos_token_ids = {vocab.eos_id};
  std::filesystem::create_directories(model_dir);
  save_vocab_hf(vocab, model_dir.string());
  SynthOptions options;
  options.stddev = stddev;
  options.seed = seed;
  options.threads = 2;
  write_synthetic_weights(params, model_dir.string(), options);
  return model_dir;
}

std::vector<float> random_values(std::int64_t n, float stddev, std::uint64_t seed) {
  // Box-Muller on 53-bit uniforms from mt19937_64 (its output is fixed by the standard).
  std::mt19937_64 rng(seed);
  std::vector<float> out(static_cast<std::size_t>(n));
  for (float& v : out) {
    const double u1 = (static_cast<double>(rng() >> 11) + 1.0) * 0x1.0p-53;
    const double u2 = static_cast<double>(rng() >> 11) * 0x1.0p-53;
    v = static_cast<float>(stddev * std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
  }
  return out;
}

namespace {

class BiasedCheckpoint : public Checkpoint {
 public:
  BiasedCheckpoint(std::unique_ptr<Checkpoint> base, std::map<std::int64_t, std::vector<float>> biases)
      : base_(std::move(base)), biases_(std::move(biases)), params_(base_->params()) {
    params_.ffn_down_bias.assign(static_cast<std::size_t>(params_.n_layer), false);
    for (const auto& [layer, values] : biases_) params_.ffn_down_bias.at(static_cast<std::size_t>(layer)) = true;
    for (const CheckpointTensor& t : base_->tensors()) {
      if (t.id.kind == WeightKind::FfnDownBias && biases_.count(t.id.layer) != 0) continue;  // replaced
      tensors_.push_back(t);
      if (t.id.kind != WeightKind::FfnDown) continue;
      const auto bias = biases_.find(t.id.layer);
      if (bias == biases_.end()) continue;
      const WeightId id{WeightKind::FfnDownBias, t.id.layer};
      tensors_.push_back(
          CheckpointTensor{gguf_tensor_name(id), id, {static_cast<std::int64_t>(bias->second.size())}, GgmlType::F32});
    }
  }
  const std::string& path() const override { return base_->path(); }
  std::string format() const override { return base_->format(); }
  const LlamaParams& params() const override { return params_; }
  const Vocab& vocab() const override { return base_->vocab(); }
  std::string model_name() const override { return base_->model_name(); }
  const std::vector<CheckpointTensor>& tensors() const override { return tensors_; }
  void read_rows(const CheckpointTensor& tensor, std::int64_t first_row, std::int64_t n_rows, float* out) const override {
    const auto bias = biases_.find(tensor.id.layer);
    if (tensor.id.kind == WeightKind::FfnDownBias && bias != biases_.end()) {
      std::copy(bias->second.begin(), bias->second.end(), out);
      return;
    }
    const CheckpointTensor* own = base_->find(tensor.name);
    if (own == nullptr) throw std::runtime_error("BiasedCheckpoint: no tensor " + tensor.name);
    base_->read_rows(*own, first_row, n_rows, out);
  }

 private:
  std::unique_ptr<Checkpoint> base_;
  std::map<std::int64_t, std::vector<float>> biases_;
  LlamaParams params_;
  std::vector<CheckpointTensor> tensors_;
};

}  // namespace

std::unique_ptr<Checkpoint> with_ffn_down_bias(std::unique_ptr<Checkpoint> base,
                                               std::map<std::int64_t, std::vector<float>> biases) {
  return std::make_unique<BiasedCheckpoint>(std::move(base), std::move(biases));
}

LlamaParams tiny_llama_params(std::vector<std::int64_t> n_ff, std::int64_t n_embd) {
  LlamaParams p;
  p.n_vocab = 512;
  p.n_embd = n_embd;
  p.n_layer = static_cast<std::int64_t>(n_ff.size());
  p.n_head = 4;
  p.n_head_kv = 2;
  p.head_dim = n_embd / 4;
  p.n_ff = std::move(n_ff);
  p.rope_theta = 10000.0;
  p.rope_scaling = RopeScaling{"llama3", 8.0, 1.0, 4.0, 32};
  p.rms_norm_eps = 1e-5;
  return p;
}

Vocab stories260k_vocab() {
  return load_vocab_llama2c((shared_dir() / "models/stories260K/tok512.bin").string(), 512);
}

std::vector<float> read_floats(const std::filesystem::path& path) {
  const std::string bytes = read_file(path);
  if (bytes.size() % 4 != 0) throw std::runtime_error(path.string() + ": not a whole number of float32");
  std::vector<float> values(bytes.size() / 4);
  std::memcpy(values.data(), bytes.data(), bytes.size());
  return values;
}

}  // namespace piquant::testing
