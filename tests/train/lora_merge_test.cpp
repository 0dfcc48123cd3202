// Merging LoRA adapters: the merged weights against a double computation, the merged
// model against the engine's on-the-fly adapter, PEFT and GGUF adapters merging to the
// same file, Hugging Face and GGUF bases, and `piquant merge` itself.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "core/error.h"
#include "engine/llama_model.h"
#include "formats/gguf.h"
#include "support/model_fixtures.h"
#include "support/test_support.h"
#include "train/lora_files.h"
#include "train/lora_merge.h"
#include "train/lora_test_support.h"

namespace piquant::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::vector<std::int32_t> test_tokens(std::int64_t n_vocab, int n) {
  std::vector<std::int32_t> tokens{1};
  for (int i = 1; i < n; ++i) tokens.push_back(static_cast<std::int32_t>((i * 53 + 7) % n_vocab));
  return tokens;
}

// stories260K converted to an F32 GGUF in dir (the test skips without the shared data).
#define STORIES_F32(dir)                                                                  \
  convert_stories260k(dir, PIQUANT_SHARED_FILE("models/stories260K/stories260K.bin"),     \
                      PIQUANT_SHARED_FILE("models/stories260K/tok512.bin"), "f32")

TEST(LoraMerge, MergedRowsAreWPlusScaledBA) {
  const TempDir dir;
  const auto base_path = STORIES_F32(dir);
  const auto base = open_checkpoint(base_path.string());
  const LlamaParams& p = base->params();
  const LoraAdapter adapter = random_lora(p, all_block_kinds(), 3, 5.0f, RopePairing::Interleaved, 0.5f, 4);
  const LoraMergedCheckpoint merged(*base, adapter, 2);
  ASSERT_EQ(merged.tensors().size(), base->tensors().size());
  const double scale = adapter.scale();  // the float alpha / rank, as the contract says

  for (const std::string name : {"blk.0.attn_q.weight", "blk.1.attn_k.weight", "blk.2.ffn_down.weight", "blk.4.ffn_gate.weight"}) {
    const CheckpointTensor& t = *base->find(name);
    const LoraMatrix& m = *adapter.find(t.id);
    const std::int64_t cols = t.row_length(), first = 3, n = t.n_rows() - 5;  // an inner range of rows
    std::vector<float> w(static_cast<std::size_t>(n * cols)), got(w.size());
    base->read_rows(t, first, n, w.data());
    merged.read_rows(t, first, n, got.data());
    double worst_ulps = 0, moved = 0;
    for (std::int64_t r = 0; r < n; ++r) {
      for (std::int64_t c = 0; c < cols; ++c) {
        long double delta = 0;
        for (std::int64_t k = 0; k < m.rank; ++k) delta += static_cast<long double>(m.b[(first + r) * m.rank + k]) * m.a[k * cols + c];
        const long double want = w[static_cast<std::size_t>(r * cols + c)] + scale * delta;
        const double g = got[static_cast<std::size_t>(r * cols + c)];
        const double ulp = std::ldexp(1.0, std::ilogb(static_cast<double>(want)) - 23);
        worst_ulps = std::max(worst_ulps, std::fabs(static_cast<double>(g - want)) / ulp);
        moved = std::max(moved, std::fabs(static_cast<double>(scale * delta)));
      }
    }
    // One rounding to float at the end: half an ulp (plus double's error in the sum).
    EXPECT_LE(worst_ulps, 0.51) << name;
    EXPECT_GT(moved, 0.1) << name;
  }
  // Weights without an adapter pass through untouched.
  for (const std::string name : {"token_embd.weight", "blk.0.attn_norm.weight"}) {
    const CheckpointTensor& t = *base->find(name);
    std::vector<float> w(static_cast<std::size_t>(t.n_elements())), got(w.size());
    base->read_rows(t, 0, t.n_rows(), w.data());
    merged.read_rows(t, 0, t.n_rows(), got.data());
    EXPECT_EQ(std::memcmp(w.data(), got.data(), w.size() * 4), 0) << name;
  }
}

TEST(LoraMerge, MergedModelMatchesTheEnginesOnTheFlyAdapter) {
  const TempDir dir;
  const auto base_path = STORIES_F32(dir);
  const auto base = LlamaModel::load(base_path.string());
  const LlamaParams& p = base->params();
  const LoraAdapter adapter = random_lora(p, all_block_kinds(), 4, 8.0f, RopePairing::Interleaved, 0.1f, 17);
  const auto adapter_path = dir / "adapter.gguf";
  write_gguf_lora(adapter, p, adapter_path.string());
  const auto merged_path = dir / "merged.gguf";
  GgufExportOptions options;
  options.type = GgmlType::F32;
  const LoraMergeSummary summary = merge_lora(base_path.string(), adapter_path.string(), merged_path.string(), options);
  EXPECT_EQ(summary.adapter_format, "gguf");
  EXPECT_EQ(summary.adapted_tensors, static_cast<std::size_t>(7 * p.n_layer));
  EXPECT_EQ(summary.rank, 4);
  EXPECT_EQ(summary.alpha, 8.0f);
  const auto merged = LlamaModel::load(merged_path.string());

  const auto tokens = test_tokens(p.n_vocab, 48);
  const std::vector<float> on_the_fly = forward_logits(*base, tokens, &adapter);
  const std::vector<float> from_merged = forward_logits(*merged, tokens, nullptr);
  const std::vector<float> plain = forward_logits(*base, tokens, nullptr);
  const double size = max_abs(on_the_fly);
  const double effect = max_abs_diff(on_the_fly, plain);
  const double diff = max_abs_diff(from_merged, on_the_fly);
  std::cout << "logits up to " << size << ", the adapter moves them by up to " << effect << ", merged vs on the fly: " << diff
            << "\n";
  EXPECT_GT(effect, 0.1 * size);
  // (W + sBA)·x vs W·x + s·B·(A·x): float rounding of sums of 64-512 terms through 5
  // layers (measured 6e-7 relative).
  EXPECT_LE(diff, 2e-5 * size);
}

// PEFT (half-split) and GGUF (interleaved) files of one adapter merge into the same
// bytes, through the CLI; the JSON summary says what was done.
TEST(LoraMerge, CliMergesPeftAndGgufAdaptersIntoTheSameFile) {
  const TempDir dir;
  const auto base_path = STORIES_F32(dir);
  const auto base = open_checkpoint(base_path.string());
  const LlamaParams& p = base->params();
  const LoraAdapter adapter = random_lora(p, all_block_kinds(), 2, 3.0f, RopePairing::HalfSplit, 0.2f, 8);
  write_gguf_lora(adapter, p, (dir / "adapter.gguf").string());
  write_peft_lora(adapter, p, (dir / "peft").string());

  const auto merge = [&](const std::string& lora, const std::string& out) {
    const CommandResult r = run_cli("merge -m " + shell_quote(base_path.string()) + " --lora " + shell_quote(lora) + " -o " +
                                    shell_quote(out) + " --type f32 --json -t 2");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return json::parse(r.output);
  };
  const json from_gguf = merge((dir / "adapter.gguf").string(), (dir / "a.gguf").string());
  const json from_peft = merge((dir / "peft").string(), (dir / "b.gguf").string());
  EXPECT_EQ(from_gguf.at("lora_format"), "gguf");
  EXPECT_EQ(from_peft.at("lora_format"), "peft");
  for (const json* j : {&from_gguf, &from_peft}) {
    EXPECT_EQ(j->at("adapted_tensors"), 7 * p.n_layer);
    EXPECT_EQ(j->at("rank"), 2);
    EXPECT_EQ(j->at("alpha"), 3.0);
    EXPECT_EQ(j->at("type"), "f32");
    EXPECT_EQ(j->at("architecture"), "llama");
    EXPECT_EQ(j->at("tensor_count"), base->tensors().size());
  }
  const std::string a = read_file(dir / "a.gguf");
  EXPECT_TRUE(a == read_file(dir / "b.gguf"));
  EXPECT_FALSE(a == read_file(base_path));  // the merge changed something

  // f16 output, and the plain summary line.
  const CommandResult f16 = run_cli("merge -m " + shell_quote(base_path.string()) + " --lora " +
                                    shell_quote((dir / "adapter.gguf").string()) + " -o " + shell_quote((dir / "c.gguf").string()));
  EXPECT_EQ(f16.exit_code, 0) << f16.output;
  EXPECT_NE(f16.output.find("merged into 35 of"), std::string::npos) << f16.output;
  EXPECT_EQ(GgufFile((dir / "c.gguf").string()).tensor("blk.0.attn_q.weight").type, GgmlType::F16);

  const CommandResult help = run_cli("merge --help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.output.find("--lora"), std::string::npos);
  const CommandResult no_lora = run_cli("merge -m " + shell_quote(base_path.string()) + " -o " + shell_quote((dir / "d.gguf").string()));
  EXPECT_NE(no_lora.exit_code, 0);
  const CommandResult bad_lora = run_cli("merge -m " + shell_quote(base_path.string()) + " --lora " +
                                         shell_quote(base_path.string()) + " -o " + shell_quote((dir / "d.gguf").string()));
  EXPECT_NE(bad_lora.exit_code, 0);
  EXPECT_NE(bad_lora.output.find("general.type"), std::string::npos) << bad_lora.output;  // a model is not an adapter
  EXPECT_FALSE(fs::exists(dir / "d.gguf"));
}

// A Hugging Face folder as the base: the merged GGUF equals the merge into the same
// model converted to GGUF first, and runs like the HF model with the adapter on the fly
// (which checks the HF base's Q/K path through the engine's half-split RoPE).
TEST(LoraMerge, HfFolderBaseMergesLikeItsGgufConversion) {
  const TempDir dir;
  const auto hf_dir = synth_tiny(dir, "tiny", "96,128,64,160", 0.25f);
  const auto gguf_base = dir / "tiny-f32.gguf";
  run_piquant("convert " + shell_quote(hf_dir.string()) + " --type f32 -o " + shell_quote(gguf_base.string()));
  const auto hf_model = LlamaModel::load(hf_dir.string());
  const LlamaParams& p = hf_model->params();
  const LoraAdapter adapter = random_lora(p, all_block_kinds(), 4, 8.0f, RopePairing::HalfSplit, 0.15f, 23);
  write_peft_lora(adapter, p, (dir / "peft").string());

  GgufExportOptions options;
  options.type = GgmlType::F32;
  merge_lora(hf_dir.string(), (dir / "peft").string(), (dir / "from-hf.gguf").string(), options);
  merge_lora(gguf_base.string(), (dir / "peft").string(), (dir / "from-gguf.gguf").string(), options);
  const GgufFile from_hf((dir / "from-hf.gguf").string());
  const GgufFile from_gguf((dir / "from-gguf.gguf").string());
  ASSERT_EQ(from_hf.tensors().size(), from_gguf.tensors().size());
  for (const GgufTensorInfo& t : from_hf.tensors()) {
    const auto x = from_hf.tensor_data(t);
    const auto y = from_gguf.tensor_data(from_gguf.tensor(t.name));
    ASSERT_EQ(x.size(), y.size()) << t.name;
    EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size()), 0) << t.name;
  }

  const auto merged = LlamaModel::load((dir / "from-hf.gguf").string());
  const auto tokens = test_tokens(p.n_vocab, 24);
  const std::vector<float> on_the_fly = forward_logits(*hf_model, tokens, &adapter);
  const std::vector<float> from_merged = forward_logits(*merged, tokens, nullptr);
  const double size = max_abs(on_the_fly);
  const double diff = max_abs_diff(from_merged, on_the_fly);
  std::cout << "HF + adapter on the fly vs merged GGUF: " << diff << " (logits up to " << size << ")\n";
  // Float rounding (merged weights, BF16 vs F32 kernels): measured 1e-5 relative.
  EXPECT_LE(diff, 1e-4 * size);
  EXPECT_GT(max_abs_diff(on_the_fly, forward_logits(*hf_model, tokens, nullptr)), 0.1 * size);
}

TEST(LoraMerge, RefusesQuantizedBasesAndAdaptersTheBaseCannotTake) {
  const TempDir dir;
  const auto base_path = STORIES_F32(dir);
  const auto q8 = dir / "q8.gguf";
  run_piquant("-q quantize " + shell_quote(base_path.string()) + " " + shell_quote(q8.string()) + " Q8_0");
  const auto base = open_checkpoint(base_path.string());
  const LlamaParams& p = base->params();
  const LoraAdapter adapter = random_lora(p, {WeightKind::AttnQ}, 2, 4.0f, RopePairing::Interleaved, 0.2f, 1);
  write_gguf_lora(adapter, p, (dir / "adapter.gguf").string());
  GgufExportOptions options;
  try {
    merge_lora(q8.string(), (dir / "adapter.gguf").string(), (dir / "out.gguf").string(), options);
    ADD_FAILURE() << "merged into a quantized base";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("quantized"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(q8.string()), std::string::npos) << e.what();
  }
  const CommandResult cli = run_cli("merge -m " + shell_quote(q8.string()) + " --lora " +
                                    shell_quote((dir / "adapter.gguf").string()) + " -o " + shell_quote((dir / "out.gguf").string()));
  EXPECT_NE(cli.exit_code, 0);
  EXPECT_NE(cli.output.find("quantized"), std::string::npos) << cli.output;
  EXPECT_FALSE(fs::exists(dir / "out.gguf"));

  // An adapter for another model shape.
  LlamaParams other = p;
  other.n_embd *= 2;
  other.head_dim *= 2;
  write_gguf_lora(random_lora(other, {WeightKind::AttnV}, 2, 4.0f, RopePairing::Interleaved, 0.2f, 1), other,
                  (dir / "other.gguf").string());
  EXPECT_THROW(merge_lora(base_path.string(), (dir / "other.gguf").string(), (dir / "out.gguf").string(), options), Error);
  // The decorator itself checks the base has every adapted weight (a tied output here).
  ASSERT_TRUE(p.tie_word_embeddings) << "stories260K ties its output";
  LlamaParams untied = p;
  untied.tie_word_embeddings = false;
  const LoraAdapter output = random_lora(untied, {WeightKind::Output}, 2, 4.0f, RopePairing::Interleaved, 0.2f, 1);
  EXPECT_THROW(LoraMergedCheckpoint(*base, output), Error);
  options.type = GgmlType::Q8_0;
  EXPECT_THROW(merge_lora(base_path.string(), (dir / "adapter.gguf").string(), (dir / "out.gguf").string(), options), Error);
  EXPECT_FALSE(fs::exists(dir / "out.gguf"));
}

}  // namespace
}  // namespace piquant::testing
