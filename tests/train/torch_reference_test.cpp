// An independent reference: tests/train/python/torch_lora_reference.py builds the same
// tiny model in PyTorch (float64, autograd) from the same safetensors — grouped-query
// attention, llama3 RoPE factors, a different MLP width per layer — with a random LoRA
// adapter it writes as a PEFT folder, and computes one batch's loss and the adapter's
// gradients. piquant reads the PEFT folder, runs its training pass, and must agree; its
// merge of that adapter must equal PyTorch's W + (alpha / r) · B · A.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "checkpoint/checkpoint.h"
#include "checkpoint/gguf_export.h"
#include "formats/safetensors.h"
#include "support/model_fixtures.h"
#include "support/test_support.h"
#include "train/lora_files.h"
#include "train/lora_merge.h"
#include "train/training_pass.h"

namespace piquant {
namespace {

constexpr const char* kPython = "/usr/bin/python3";

bool torch_available() { return testing::run_command(std::string(kPython) + " -c 'import torch' 2>&1").exit_code == 0; }

std::vector<float> tensor_floats(const SafetensorsFile& file, const std::string& name) {
  const SafeTensor* t = file.find(name);
  if (t == nullptr) throw std::runtime_error("missing " + name + " in " + file.path());
  if (t->dtype != SafeDtype::F32) throw std::runtime_error(name + " is not F32");
  std::vector<float> v(static_cast<std::size_t>(t->n_elements()));
  std::memcpy(v.data(), t->data.data(), v.size() * sizeof(float));
  return v;
}

TEST(TorchReference, LossAndLoraGradientsAndMergeMatchPyTorch) {
  if (!torch_available()) {
    if (testing::in_ci()) FAIL() << kPython << " cannot import torch: install python3-torch (scripts/setup.sh)";
    GTEST_SKIP() << kPython << " cannot import torch (python3-torch)";
  }
  const testing::TempDir dir;
  const auto model_dir = testing::synth_tiny(dir, "tiny", "96,128,64,160", 0.1f);
  const auto out = dir / "torch";
  const auto batch_path = dir / "batch.json";
  std::mt19937 rng(31);
  nlohmann::json batch;
  const int T = 11;
  for (int t = 0; t < T; ++t) {
    batch["inputs"].push_back(static_cast<int>(rng() % 512));
    batch["targets"].push_back(t == 4 ? -1 : static_cast<int>(rng() % 512));
    batch["weights"].push_back(t == 4 ? 0.0 : 1.0 / 10);
  }
  std::ofstream(batch_path) << batch.dump();
  const std::string script = std::string(PIQUANT_SOURCE_DIR) + "/tests/train/python/torch_lora_reference.py";
  const testing::CommandResult r = testing::run_command(std::string(kPython) + " " + testing::shell_quote(script) + " " +
                                                        testing::shell_quote(model_dir.string()) + " " +
                                                        testing::shell_quote(batch_path.string()) + " " +
                                                        testing::shell_quote(out.string()) + " --rank 4 --alpha 8 2>&1");
  ASSERT_EQ(r.exit_code, 0) << r.output;

  auto model = LlamaModel::load(model_dir.string());
  ASSERT_EQ(model->rope_pairing(), RopePairing::HalfSplit);
  ASSERT_FALSE(model->rope_factors().empty());
  LoraAdapter lora = read_peft_lora((out / "adapter").string(), model->params(), model->rope_pairing());
  LoraAdapter grads(lora.rank(), lora.alpha(), lora.layout());
  for (WeightId id : lora.ids()) grads.add(id, lora.find(id)->rows, lora.find(id)->cols);

  std::vector<std::int32_t> inputs, targets;
  std::vector<float> weights;
  for (int t = 0; t < T; ++t) {
    inputs.push_back(batch["inputs"][static_cast<std::size_t>(t)]);
    targets.push_back(batch["targets"][static_cast<std::size_t>(t)]);
    weights.push_back(batch["weights"][static_cast<std::size_t>(t)].get<float>());
  }
  ThreadPool pool(2);
  TrainingPass pass(*model, &lora, pool, T, 4);
  TrainingGradients g;
  g.lora = &grads;
  const double loss = pass.forward_backward({inputs, targets, weights, {}}, {}, g);
  nlohmann::json torch_loss;
  std::ifstream(out / "loss.json") >> torch_loss;
  EXPECT_NEAR(loss, torch_loss["loss"].get<double>(), 1e-4 * std::fabs(torch_loss["loss"].get<double>()));

  // Gradients: PEFT names, HF row order — the adapter piquant read is in the model's own
  // (HF) layout, so rows line up.
  const SafetensorsFile torch_grads((out / "grads.safetensors").string());
  std::size_t compared = 0;
  double worst = 0.0;
  for (WeightId id : grads.ids()) {
    const std::string prefix = "base_model.model." + hf_tensor_name(id).substr(0, hf_tensor_name(id).size() - std::string(".weight").size());
    for (const auto& [suffix, mine] : {std::pair{".lora_A.weight", &grads.find(id)->a}, {".lora_B.weight", &grads.find(id)->b}}) {
      const std::vector<float> theirs = tensor_floats(torch_grads, prefix + suffix);
      ASSERT_EQ(theirs.size(), mine->size()) << prefix << suffix;
      // Relative error of the whole tensor, ‖mine − theirs‖ / ‖theirs‖ (float arithmetic
      // against float64: a few 1e-6 on every SIMD level).
      double norm = 0.0, err = 0.0;
      for (std::size_t i = 0; i < theirs.size(); ++i) {
        norm += static_cast<double>(theirs[i]) * theirs[i];
        const double d = static_cast<double>(theirs[i]) - (*mine)[i];
        err += d * d;
      }
      EXPECT_GT(norm, 0.0) << prefix << suffix;
      EXPECT_LE(std::sqrt(err), 1e-4 * std::sqrt(norm)) << prefix << suffix;
      worst = std::max(worst, std::sqrt(err / norm));
      ++compared;
    }
  }
  EXPECT_EQ(compared, 2u * 7u * 4u);
  std::printf("LoRA gradients vs PyTorch float64: worst relative error %.2e over %zu tensors\n", worst, compared);

  // Merge the PyTorch-written PEFT adapter with piquant, compare with PyTorch's merge.
  const auto merged_path = dir / "merged.gguf";
  GgufExportOptions options;
  options.type = GgmlType::F32;
  options.file_type = LlamaFileType::AllF32;
  merge_lora(model_dir.string(), (out / "adapter").string(), merged_path.string(), options);
  const auto merged = open_checkpoint(merged_path.string());
  const SafetensorsFile torch_merged((out / "merged.safetensors").string());
  const std::int64_t D = model->params().head_dim;
  for (WeightId id : lora.ids()) {
    const CheckpointTensor* t = merged->find(gguf_tensor_name(id));
    ASSERT_NE(t, nullptr);
    std::vector<float> rows(static_cast<std::size_t>(t->n_elements()));
    merged->read_rows(*t, 0, t->n_rows(), rows.data());
    const std::vector<float> theirs = tensor_floats(torch_merged, hf_tensor_name(id));
    const bool permuted = id.kind == WeightKind::AttnQ || id.kind == WeightKind::AttnK;  // GGUF rows interleave
    const std::int64_t cols = t->row_length();
    double max_err = 0.0, max_abs = 0.0;
    for (std::int64_t row = 0; row < t->n_rows(); ++row) {
      const std::int64_t hf_row = permuted ? hf_row_for_gguf_row(row, D) : row;
      for (std::int64_t c = 0; c < cols; ++c) {
        const double a = rows[static_cast<std::size_t>(row * cols + c)], b = theirs[static_cast<std::size_t>(hf_row * cols + c)];
        max_abs = std::max(max_abs, std::fabs(b));
        max_err = std::max(max_err, std::fabs(a - b));
      }
    }
    EXPECT_LE(max_err, 1e-6 * max_abs) << gguf_tensor_name(id);
  }
}

}  // namespace
}  // namespace piquant
