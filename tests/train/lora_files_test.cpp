// LoRA adapter files: GGUF (llama.cpp) and PEFT round trips, their layouts checked
// against the formats' own descriptions, the Q/K row order checked through the engine,
// and tables of corrupt files.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "core/error.h"
#include "engine/llama_model.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "support/model_fixtures.h"
#include "support/test_support.h"
#include "train/lora_files.h"
#include "train/lora_test_support.h"

namespace piquant::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A small Llama shape with GQA (4 query heads over 2 KV heads), head_dim 4 and an
// untied output, so every adaptable weight, and both Q and K permutations, occur.
LlamaParams small_params() {
  LlamaParams p;
  p.n_vocab = 32;
  p.n_embd = 16;
  p.n_layer = 2;
  p.n_head = 4;
  p.n_head_kv = 2;
  p.head_dim = 4;
  p.n_ff = {24, 24};
  p.tie_word_embeddings = false;
  return p;
}

std::vector<WeightKind> kinds_with_output() {
  std::vector<WeightKind> kinds = all_block_kinds();
  kinds.push_back(WeightKind::Output);
  return kinds;
}

bool bits_equal(const std::vector<float>& x, const std::vector<float>& y) {
  return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
}

void expect_same_adapter(const LoraAdapter& got, const LoraAdapter& want, const std::string& label) {
  EXPECT_EQ(got.rank(), want.rank()) << label;
  EXPECT_EQ(got.alpha(), want.alpha()) << label;
  EXPECT_EQ(got.layout(), want.layout()) << label;
  ASSERT_EQ(got.ids().size(), want.ids().size()) << label;
  for (const WeightId id : want.ids()) {
    const LoraMatrix* g = got.find(id);
    ASSERT_NE(g, nullptr) << label << ": " << gguf_tensor_name(id) << " missing";
    const LoraMatrix& w = *want.find(id);
    EXPECT_EQ(g->rows, w.rows) << label;
    EXPECT_EQ(g->cols, w.cols) << label;
    EXPECT_TRUE(bits_equal(g->a, w.a)) << label << ": " << gguf_tensor_name(id) << " A differs";
    EXPECT_TRUE(bits_equal(g->b, w.b)) << label << ": " << gguf_tensor_name(id) << " B differs";
  }
}

const char* layout_name(RopePairing layout) { return layout == RopePairing::Interleaved ? "interleaved" : "half-split"; }

TEST(LoraFiles, GgufAndPeftRoundTripBitExactInBothLayouts) {
  const TempDir dir;
  const LlamaParams p = small_params();
  for (const RopePairing layout : {RopePairing::Interleaved, RopePairing::HalfSplit}) {
    // A non-integral alpha too: PEFT's JSON must carry the float exactly.
    for (const float alpha : {16.0f, 6.3f}) {
      const LoraAdapter original = random_lora(p, kinds_with_output(), 3, alpha, layout, 1.0f, 11);
      const std::string label = std::string(layout_name(layout)) + ", alpha " + std::to_string(alpha);
      const auto gguf = dir / "adapter.gguf";
      const auto peft = dir / "peft";
      write_gguf_lora(original, p, gguf.string());
      write_peft_lora(original, p, peft.string());
      expect_same_adapter(read_gguf_lora(gguf.string(), p, layout), original, "gguf " + label);
      expect_same_adapter(read_peft_lora(peft.string(), p, layout), original, "peft " + label);
      expect_same_adapter(read_lora(gguf.string(), p, layout), original, "read_lora gguf " + label);
      expect_same_adapter(read_lora(peft.string(), p, layout), original, "read_lora peft " + label);
      expect_same_adapter(read_lora((peft / "adapter_config.json").string(), p, layout), original, "read_lora config " + label);
      EXPECT_EQ(lora_file_format(gguf.string()), "gguf");
      EXPECT_EQ(lora_file_format(peft.string()), "peft");
      // Read in the other layout and converted back: nothing lost on the way.
      const RopePairing other = layout == RopePairing::Interleaved ? RopePairing::HalfSplit : RopePairing::Interleaved;
      expect_same_adapter(with_layout(read_gguf_lora(gguf.string(), p, other), p, layout), original, "gguf via other " + label);
      expect_same_adapter(with_layout(read_peft_lora(peft.string(), p, other), p, layout), original, "peft via other " + label);
    }
  }
}

// The files as llama.cpp's loader and PEFT describe them, read with the plain format
// readers: names, ggml shapes {cols, rank} / {rank, rows}, PEFT shapes (r, in) / (out, r),
// the metadata, and the Q/K rows of B moved between GGUF's interleaved order and
// Hugging Face's half-split order as the literal table below says (head_dim 8: GGUF
// rows 0..7 of a head hold HF rows 0 4 1 5 2 6 3 7, GGUF's rotation pair i being HF's
// (i, i + 4); a permutation that is not its own inverse, so direction matters).
TEST(LoraFiles, FilesHaveTheLayoutsLlamaCppAndPeftExpect) {
  const TempDir dir;
  LlamaParams p = small_params();
  p.n_head = 2;  // the same 16-row Q and 8-row K as small_params, in heads of 8
  p.n_head_kv = 1;
  p.head_dim = 8;
  const std::int64_t rank = 2;
  LoraAdapter hf(rank, 8.0f, RopePairing::HalfSplit);
  for (const WeightKind kind : {WeightKind::AttnQ, WeightKind::AttnK, WeightKind::AttnV, WeightKind::FfnDown}) {
    const auto shape = *lora_weight_shape(p, WeightId{kind, 1});
    LoraMatrix& m = hf.add(WeightId{kind, 1}, shape.first, shape.second);
    for (std::size_t i = 0; i < m.a.size(); ++i) m.a[i] = 0.5f + static_cast<float>(i);
    for (std::int64_t row = 0; row < m.rows; ++row) {
      for (std::int64_t k = 0; k < rank; ++k) m.b[static_cast<std::size_t>(row * rank + k)] = static_cast<float>(100 * row + k);
    }
  }
  const auto gguf_path = dir / "a.gguf";
  write_gguf_lora(hf, p, gguf_path.string());
  const GgufFile gguf(gguf_path.string());
  EXPECT_EQ(gguf.get_string("general.type"), "adapter");
  EXPECT_EQ(gguf.get_string("adapter.type"), "lora");
  EXPECT_EQ(gguf.get_string("general.architecture"), "llama");
  ASSERT_NE(gguf.find("adapter.lora.alpha"), nullptr);
  EXPECT_EQ(gguf.find("adapter.lora.alpha")->type(), GgufType::FLOAT32);
  EXPECT_EQ(gguf.get_float("adapter.lora.alpha"), 8.0);
  ASSERT_EQ(gguf.tensors().size(), 8u);
  const auto expect_tensor = [&](const std::string& name, std::vector<std::int64_t> shape) {
    const GgufTensorInfo* t = gguf.find_tensor(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(t->type, GgmlType::F32) << name;
    EXPECT_EQ(t->shape, shape) << name;
  };
  expect_tensor("blk.1.attn_q.weight.lora_a", {16, rank});
  expect_tensor("blk.1.attn_q.weight.lora_b", {rank, 16});
  expect_tensor("blk.1.attn_k.weight.lora_a", {16, rank});
  expect_tensor("blk.1.attn_k.weight.lora_b", {rank, 8});
  expect_tensor("blk.1.ffn_down.weight.lora_a", {24, rank});
  expect_tensor("blk.1.ffn_down.weight.lora_b", {rank, 16});
  const auto b_rows = [&](const std::string& name) {
    const GgufTensorInfo& t = gguf.tensor(name);
    std::vector<float> values(static_cast<std::size_t>(t.n_elements()));
    std::memcpy(values.data(), gguf.tensor_data(t).data(), values.size() * 4);
    std::vector<int> rows;
    for (std::size_t i = 0; i < values.size(); i += rank) rows.push_back(static_cast<int>(values[i]) / 100);
    return rows;
  };
  EXPECT_EQ(b_rows("blk.1.attn_q.weight.lora_b"), (std::vector<int>{0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15}));
  EXPECT_EQ(b_rows("blk.1.attn_k.weight.lora_b"), (std::vector<int>{0, 4, 1, 5, 2, 6, 3, 7}));
  EXPECT_EQ(b_rows("blk.1.attn_v.weight.lora_b"), (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7}));
  // A is never permuted (its rows are rank, its columns the input).
  std::vector<float> a_q(16 * rank);
  std::memcpy(a_q.data(), gguf.tensor_data(gguf.tensor("blk.1.attn_q.weight.lora_a")).data(), a_q.size() * 4);
  EXPECT_TRUE(bits_equal(a_q, hf.find(WeightId{WeightKind::AttnQ, 1})->a));

  // PEFT keeps the half-split order: B rows as given.
  const auto peft_dir = dir / "peft";
  write_peft_lora(with_layout(hf, p, RopePairing::Interleaved), p, peft_dir.string(), {GgmlType::F32, "base-model"});
  const SafetensorsFile st((peft_dir / "adapter_model.safetensors").string());
  const SafeTensor* qa = st.find("base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight");
  const SafeTensor* qb = st.find("base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight");
  const SafeTensor* down_a = st.find("base_model.model.model.layers.1.mlp.down_proj.lora_A.weight");
  ASSERT_TRUE(qa && qb && down_a);
  EXPECT_EQ(st.tensors().size(), 8u);
  EXPECT_EQ(qa->shape, (std::vector<std::int64_t>{rank, 16}));
  EXPECT_EQ(qb->shape, (std::vector<std::int64_t>{16, rank}));
  EXPECT_EQ(down_a->shape, (std::vector<std::int64_t>{rank, 24}));
  EXPECT_EQ(qb->dtype, SafeDtype::F32);
  std::vector<float> qb_values(32);
  std::memcpy(qb_values.data(), qb->data.data(), 128);
  EXPECT_TRUE(bits_equal(qb_values, hf.find(WeightId{WeightKind::AttnQ, 1})->b));
  const json config = json::parse(read_file(peft_dir / "adapter_config.json"));
  EXPECT_EQ(config.at("peft_type"), "LORA");
  EXPECT_EQ(config.at("task_type"), "CAUSAL_LM");
  EXPECT_EQ(config.at("r"), rank);
  EXPECT_EQ(config.at("lora_alpha"), 8);
  EXPECT_EQ(config.at("bias"), "none");
  EXPECT_EQ(config.at("use_rslora"), false);
  EXPECT_EQ(config.at("fan_in_fan_out"), false);
  EXPECT_EQ(config.at("base_model_name_or_path"), "base-model");
  EXPECT_EQ(config.at("target_modules"), (json{"down_proj", "k_proj", "q_proj", "v_proj"}));
}

TEST(LoraFiles, HalfPrecisionFilesRoundEachValue) {
  const TempDir dir;
  const LlamaParams p = small_params();
  const LoraAdapter original = random_lora(p, {WeightKind::AttnQ, WeightKind::FfnUp}, 2, 4.0f, RopePairing::Interleaved, 1.0f, 3);
  write_gguf_lora(original, p, (dir / "a.gguf").string(), {GgmlType::F16, ""});
  write_peft_lora(original, p, (dir / "peft").string(), {GgmlType::BF16, ""});
  EXPECT_EQ(GgufFile((dir / "a.gguf").string()).tensor("blk.0.attn_q.weight.lora_b").type, GgmlType::F16);
  const LoraAdapter f16 = read_lora((dir / "a.gguf").string(), p, RopePairing::Interleaved);
  const LoraAdapter bf16 = read_lora((dir / "peft").string(), p, RopePairing::Interleaved);
  for (const WeightId id : original.ids()) {
    const LoraMatrix& m = *original.find(id);
    for (std::size_t i = 0; i < m.a.size(); ++i) {
      // Half the unit in the last place of |x| < 1: 2^-11 for F16, 2^-8 for BF16.
      EXPECT_LE(std::fabs(f16.find(id)->a[i] - m.a[i]), 0x1p-12f);
      EXPECT_LE(std::fabs(bf16.find(id)->a[i] - m.a[i]), 0x1p-9f);
    }
  }
  EXPECT_THROW(write_gguf_lora(original, p, (dir / "b.gguf").string(), {GgmlType::BF16, ""}), Error);
  EXPECT_THROW(write_peft_lora(original, p, (dir / "q").string(), {GgmlType::Q8_0, ""}), Error);
}

TEST(LoraFiles, WritersRefuseAdaptersThatDoNotFitTheBase) {
  const TempDir dir;
  const LlamaParams p = small_params();
  LoraAdapter wrong_shape(2, 4.0f, RopePairing::Interleaved);
  wrong_shape.add(WeightId{WeightKind::AttnK, 0}, 16, 16);  // K is 8 × 16 here
  EXPECT_THROW(write_gguf_lora(wrong_shape, p, (dir / "a.gguf").string()), Error);
  EXPECT_THROW(write_peft_lora(wrong_shape, p, (dir / "peft").string()), Error);
  LoraAdapter norm(2, 4.0f, RopePairing::Interleaved);
  norm.add(WeightId{WeightKind::AttnNorm, 0}, 1, 16);
  EXPECT_THROW(write_gguf_lora(norm, p, (dir / "a.gguf").string()), Error);
  // A pruned model's ffn_down bias is never an adapter target.
  LlamaParams biased = p;
  biased.ffn_down_bias.assign(static_cast<std::size_t>(p.n_layer), true);
  EXPECT_FALSE(lora_weight_shape(biased, WeightId{WeightKind::FfnDownBias, 0}).has_value());
  LoraAdapter bias(2, 4.0f, RopePairing::Interleaved);
  bias.add(WeightId{WeightKind::FfnDownBias, 0}, 16, 1);
  EXPECT_THROW(write_gguf_lora(bias, biased, (dir / "a.gguf").string()), Error);
  EXPECT_THROW(write_peft_lora(bias, biased, (dir / "peft").string()), Error);
  LoraAdapter zero_alpha = random_lora(p, {WeightKind::AttnV}, 2, 0.0f, RopePairing::Interleaved, 1.0f, 1);
  EXPECT_THROW(write_gguf_lora(zero_alpha, p, (dir / "a.gguf").string()), Error);  // llama.cpp would scale by 1
  EXPECT_THROW(write_gguf_lora(LoraAdapter(2, 4.0f, RopePairing::Interleaved), p, (dir / "a.gguf").string()), Error);
  EXPECT_FALSE(fs::exists(dir / "a.gguf"));
  LlamaParams tied = p;
  tied.tie_word_embeddings = true;
  const LoraAdapter output = random_lora(p, {WeightKind::Output}, 2, 4.0f, RopePairing::Interleaved, 1.0f, 1);
  EXPECT_THROW(write_gguf_lora(output, tied, (dir / "a.gguf").string()), Error);
}

// The independent check of the Q/K row order: the same adapter applied by the engine
// to a Hugging Face checkpoint (half-split RoPE, Q/K as stored) and, through a GGUF
// adapter file, to that checkpoint converted to GGUF (interleaved RoPE, Q/K permuted by
// the converter) gives the same logits. The tiny preset has GQA, so K's permutation
// over fewer heads is covered too.
TEST(LoraFiles, AdapterThroughFilesGivesTheSameLogitsOnHfAndGgufModels) {
  const TempDir dir;
  const auto hf_dir = synth_tiny(dir, "tiny", "96,128,64,160", 0.25f);
  const auto gguf_model = dir / "tiny-f32.gguf";
  run_piquant("convert " + shell_quote(hf_dir.string()) + " --type f32 -o " + shell_quote(gguf_model.string()));
  const auto hf_model = LlamaModel::load(hf_dir.string());
  const auto gguf = LlamaModel::load(gguf_model.string());
  ASSERT_EQ(hf_model->rope_pairing(), RopePairing::HalfSplit);
  ASSERT_EQ(gguf->rope_pairing(), RopePairing::Interleaved);
  const LlamaParams& p = hf_model->params();
  ASSERT_LT(p.n_head_kv, p.n_head);

  const LoraAdapter adapter = random_lora(p, all_block_kinds(), 4, 8.0f, RopePairing::HalfSplit, 0.15f, 21);
  const auto gguf_adapter = dir / "adapter.gguf";
  const auto peft_adapter = dir / "peft";
  write_gguf_lora(adapter, p, gguf_adapter.string());
  write_peft_lora(adapter, p, peft_adapter.string());

  std::vector<std::int32_t> tokens;
  for (int i = 0; i < 24; ++i) tokens.push_back((i * 37 + 5) % static_cast<int>(p.n_vocab));
  const std::vector<float> base = forward_logits(*hf_model, tokens, nullptr);
  const std::vector<float> on_hf = forward_logits(*hf_model, tokens, &adapter);
  const LoraAdapter from_gguf = read_lora(gguf_adapter.string(), p, RopePairing::Interleaved);
  const LoraAdapter from_peft = read_lora(peft_adapter.string(), p, RopePairing::Interleaved);
  const std::vector<float> on_gguf = forward_logits(*gguf, tokens, &from_gguf);
  const std::vector<float> on_gguf_peft = forward_logits(*gguf, tokens, &from_peft);
  // The half-split adapter on the interleaved model, unconverted: what a missing
  // permutation would give.
  const std::vector<float> unconverted = forward_logits(*gguf, tokens, &adapter);

  const double size = max_abs(on_hf);
  const double effect = max_abs_diff(on_hf, base);
  const double diff = max_abs_diff(on_gguf, on_hf);
  const double wrong = max_abs_diff(unconverted, on_hf);
  // The floor: the two models differ without an adapter too (BF16 vs F32 weight kernels).
  const double floor = max_abs_diff(forward_logits(*gguf, tokens, nullptr), base);
  std::cout << "HF vs GGUF without the adapter: " << floor << "\n";
  std::cout << "logits up to " << size << "; the adapter moves them by up to " << effect << "; HF vs GGUF with the adapter: "
            << diff << "; without the Q/K permutation: " << wrong << "\n";
  EXPECT_GT(effect, 0.1 * size);
  EXPECT_GT(wrong, 0.05 * size);
  // Float rounding only: BF16 vs F32 weight kernels sum in other orders (measured 4e-6
  // relative, the same as without the adapter).
  EXPECT_LE(diff, 1e-4 * size);
  EXPECT_EQ(max_abs_diff(on_gguf_peft, on_gguf), 0.0);
}

// ---------------------------------------------------------------- corrupt files

// A whole GGUF in memory, to be edited and written back.
struct GgufImage {
  struct Tensor {
    std::string name;
    GgmlType type;
    std::vector<std::int64_t> shape;
    std::vector<std::uint8_t> bytes;
  };
  std::vector<std::pair<std::string, GgufValue>> kv;
  std::vector<Tensor> tensors;

  static GgufImage read(const fs::path& path) {
    const GgufFile file(path.string());
    GgufImage image;
    image.kv = file.metadata();
    for (const GgufTensorInfo& t : file.tensors()) {
      const auto data = file.tensor_data(t);
      image.tensors.push_back({t.name, t.type, t.shape, {data.begin(), data.end()}});
    }
    return image;
  }
  void write(const fs::path& path) const {
    GgufWriter writer(path.string());
    for (const auto& [key, value] : kv) writer.set(key, value);
    for (const Tensor& t : tensors) writer.add_tensor(t.name, t.type, t.shape);
    writer.write_header();
    for (const Tensor& t : tensors) writer.write_tensor(t.name, t.bytes);
    writer.finish();
  }
  void set(const std::string& key, GgufValue value) {
    for (auto& [k, v] : kv) {
      if (k == key) {
        v = std::move(value);
        return;
      }
    }
    kv.emplace_back(key, std::move(value));
  }
  void erase(const std::string& key) { std::erase_if(kv, [&](const auto& e) { return e.first == key; }); }
  Tensor& tensor(const std::string& name) {
    for (Tensor& t : tensors) {
      if (t.name == name) return t;
    }
    throw std::runtime_error("no tensor " + name);
  }
  void erase_tensor(const std::string& name) { std::erase_if(tensors, [&](const Tensor& t) { return t.name == name; }); }
  // A tensor of `shape` in `type`, zero-filled.
  void reshape(const std::string& name, GgmlType type, std::vector<std::int64_t> shape) {
    Tensor& t = tensor(name);
    std::int64_t n = 1;
    for (const auto d : shape) n *= d;
    t.type = type;
    t.shape = std::move(shape);
    t.bytes.assign(static_cast<std::size_t>(ggml_nbytes(type, static_cast<std::uint64_t>(n))), 0);
  }
  void add(const std::string& name, std::vector<std::int64_t> shape) {
    tensors.push_back({name, GgmlType::F32, {}, {}});
    reshape(name, GgmlType::F32, std::move(shape));
  }
};

// Runs read, expects an Error whose message holds every part.
void expect_error(const std::function<void()>& read, const std::vector<std::string>& parts, const std::string& label) {
  try {
    read();
    ADD_FAILURE() << label << ": read without an error";
  } catch (const Error& e) {
    const std::string message = e.what();
    for (const std::string& part : parts) {
      EXPECT_NE(message.find(part), std::string::npos) << label << ": '" << part << "' not in: " << message;
    }
  }
}

TEST(LoraFiles, CorruptGgufAdaptersAreRefusedNamingFileAndTensor) {
  const TempDir dir;
  const LlamaParams p = small_params();
  // Rank 2 on Q, K, V of both layers and on layer 1's ffn_down.
  LoraAdapter adapter = random_lora(p, {WeightKind::AttnQ, WeightKind::AttnK, WeightKind::AttnV}, 2, 4.0f,
                                    RopePairing::Interleaved, 1.0f, 5);
  const LoraAdapter down = random_lora(p, {WeightKind::FfnDown}, 2, 4.0f, RopePairing::Interleaved, 1.0f, 6);
  adapter.add(WeightId{WeightKind::FfnDown, 1}, 16, 24) = *down.find(WeightId{WeightKind::FfnDown, 1});
  const auto valid = dir / "valid.gguf";
  write_gguf_lora(adapter, p, valid.string());
  ASSERT_NO_THROW(read_gguf_lora(valid.string(), p, RopePairing::Interleaved));
  const GgufImage good = GgufImage::read(valid);

  struct Case {
    std::string label;
    std::function<void(GgufImage&)> edit;
    std::string field;  // besides the path, the message names this
  };
  const std::vector<Case> cases = {
      {"general.type model", [](GgufImage& g) { g.set("general.type", "model"); }, "general.type"},
      {"general.type missing", [](GgufImage& g) { g.erase("general.type"); }, "general.type"},
      {"adapter.type", [](GgufImage& g) { g.set("adapter.type", "cvec"); }, "adapter.type"},
      {"adapter.type missing", [](GgufImage& g) { g.erase("adapter.type"); }, "adapter.type"},
      {"architecture", [](GgufImage& g) { g.set("general.architecture", "qwen2"); }, "general.architecture"},
      {"alpha as a string", [](GgufImage& g) { g.set("adapter.lora.alpha", "16"); }, "adapter.lora.alpha"},
      {"alpha as FLOAT64", [](GgufImage& g) { g.set("adapter.lora.alpha", 16.0); }, "adapter.lora.alpha"},
      {"alpha as INT32", [](GgufImage& g) { g.set("adapter.lora.alpha", std::int32_t{16}); }, "adapter.lora.alpha"},
      {"alpha NaN", [](GgufImage& g) { g.set("adapter.lora.alpha", std::nanf("")); }, "adapter.lora.alpha"},
      {"missing lora_b", [](GgufImage& g) { g.erase_tensor("blk.0.attn_q.weight.lora_b"); }, "blk.0.attn_q.weight.lora_b"},
      {"missing lora_a", [](GgufImage& g) { g.erase_tensor("blk.1.ffn_down.weight.lora_a"); }, "blk.1.ffn_down.weight.lora_a"},
      {"lora_a columns", [](GgufImage& g) { g.reshape("blk.0.attn_v.weight.lora_a", GgmlType::F32, {17, 2}); },
       "blk.0.attn_v.weight.lora_a"},
      {"lora_b rows", [](GgufImage& g) { g.reshape("blk.1.attn_k.weight.lora_b", GgmlType::F32, {2, 16}); },
       "blk.1.attn_k.weight.lora_b"},
      {"lora_b rank", [](GgufImage& g) { g.reshape("blk.0.attn_k.weight.lora_b", GgmlType::F32, {3, 8}); },
       "blk.0.attn_k.weight.lora_b"},
      {"one pair of another rank",
       [](GgufImage& g) {
         g.reshape("blk.1.ffn_down.weight.lora_a", GgmlType::F32, {24, 3});
         g.reshape("blk.1.ffn_down.weight.lora_b", GgmlType::F32, {3, 16});
       },
       "blk.1.ffn_down.weight.lora_a"},
      {"transposed lora_a", [](GgufImage& g) { g.reshape("blk.0.attn_q.weight.lora_a", GgmlType::F32, {2, 16}); },
       "blk.0.attn_q.weight.lora_a"},
      {"unknown suffix", [](GgufImage& g) { g.add("blk.0.attn_q.weight.lora_c", {16, 2}); }, "blk.0.attn_q.weight.lora_c"},
      {"norm tensor", [](GgufImage& g) { g.add("blk.0.attn_norm.weight", {16}); }, "blk.0.attn_norm.weight"},
      {"not a model weight", [](GgufImage& g) { g.add("blk.0.attn_qkv.weight.lora_a", {16, 2}); }, "blk.0.attn_qkv.weight.lora_a"},
      {"token embedding",
       [](GgufImage& g) {
         g.add("token_embd.weight.lora_a", {2, 32});
         g.add("token_embd.weight.lora_b", {16, 2});
       },
       "token_embd.weight.lora_"},
      {"layer past the model",
       [](GgufImage& g) {
         g.add("blk.2.attn_q.weight.lora_a", {16, 2});
         g.add("blk.2.attn_q.weight.lora_b", {2, 16});
       },
       "blk.2.attn_q.weight.lora_"},
      {"I32 tensor", [](GgufImage& g) { g.reshape("blk.0.attn_v.weight.lora_b", GgmlType::I32, {2, 8}); },
       "blk.0.attn_v.weight.lora_b"},
      {"BF16 tensor", [](GgufImage& g) { g.reshape("blk.0.attn_v.weight.lora_b", GgmlType::BF16, {2, 8}); },
       "blk.0.attn_v.weight.lora_b"},
      {"3-D tensor", [](GgufImage& g) { g.reshape("blk.0.attn_v.weight.lora_a", GgmlType::F32, {16, 2, 1}); },
       "blk.0.attn_v.weight.lora_a"},
      {"no tensors", [](GgufImage& g) { g.tensors.clear(); }, "no LoRA tensors"},
  };
  for (const Case& c : cases) {
    GgufImage image = good;
    c.edit(image);
    const auto path = dir / "corrupt.gguf";
    image.write(path);
    expect_error([&] { read_gguf_lora(path.string(), p, RopePairing::Interleaved); }, {path.string(), c.field}, c.label);
    expect_error([&] { read_lora(path.string(), p, RopePairing::HalfSplit); }, {path.string(), c.field}, c.label + " (read_lora)");
  }

  // The unedited image written back reads (the table's failures come from its edits).
  good.write(dir / "rewritten.gguf");
  EXPECT_NO_THROW(read_gguf_lora((dir / "rewritten.gguf").string(), p, RopePairing::Interleaved));

  // Without alpha (or alpha 0) llama.cpp scales by 1: alpha = rank.
  GgufImage no_alpha = good;
  no_alpha.erase("adapter.lora.alpha");
  no_alpha.write(dir / "no-alpha.gguf");
  EXPECT_EQ(read_gguf_lora((dir / "no-alpha.gguf").string(), p, RopePairing::Interleaved).scale(), 1.0f);

  // A tied output: the adapter's output.weight has nothing to change.
  LlamaParams untied = p;
  const LoraAdapter output = random_lora(untied, {WeightKind::Output}, 2, 4.0f, RopePairing::Interleaved, 1.0f, 1);
  write_gguf_lora(output, untied, (dir / "output.gguf").string());
  LlamaParams tied = p;
  tied.tie_word_embeddings = true;
  expect_error([&] { read_gguf_lora((dir / "output.gguf").string(), tied, RopePairing::Interleaved); },
               {(dir / "output.gguf").string(), "output.weight.lora_", "tie"}, "tied output");
  // A base of another shape.
  LlamaParams wider = p;
  wider.n_ff = {32, 32};
  expect_error([&] { read_gguf_lora(valid.string(), wider, RopePairing::Interleaved); },
               {valid.string(), "blk.1.ffn_down.weight.lora_a"}, "another base");

  // Truncated: the header still promises the tensor data.
  const std::string bytes = read_file(valid);
  for (const std::size_t keep : {bytes.size() - 1, bytes.size() / 2, std::size_t{100}, std::size_t{3}}) {
    const auto path = dir / "truncated.gguf";
    write_file(path, bytes.substr(0, keep));
    expect_error([&] { read_lora(path.string(), p, RopePairing::Interleaved); }, {path.string()},
                 "truncated to " + std::to_string(keep));
  }
  write_file(dir / "text.bin", "not an adapter at all");
  expect_error([&] { read_lora((dir / "text.bin").string(), p, RopePairing::Interleaved); }, {(dir / "text.bin").string()},
               "not an adapter");
  expect_error([&] { read_lora((dir / "missing").string(), p, RopePairing::Interleaved); }, {(dir / "missing").string()},
               "no such path");
}

// A PEFT folder in memory: its config and its tensors.
struct PeftImage {
  struct Tensor {
    std::string name;
    SafeDtype dtype;
    std::vector<std::int64_t> shape;
    std::vector<std::uint8_t> bytes;
  };
  json config;
  std::vector<Tensor> tensors;

  static PeftImage read(const fs::path& dir) {
    PeftImage image;
    image.config = json::parse(read_file(dir / "adapter_config.json"));
    const SafetensorsFile file((dir / "adapter_model.safetensors").string());
    for (const SafeTensor& t : file.tensors()) image.tensors.push_back({t.name, t.dtype, t.shape, {t.data.begin(), t.data.end()}});
    return image;
  }
  void write(const fs::path& dir) const {
    fs::remove_all(dir);
    fs::create_directories(dir);
    SafetensorsWriter writer(dir.string(), UINT64_MAX, "adapter_model");
    for (const Tensor& t : tensors) writer.add(t.name, t.dtype, t.shape);
    for (const Tensor& t : tensors) writer.write(t.bytes);
    writer.finish();
    write_file(dir / "adapter_config.json", config.dump(2));
  }
  Tensor& tensor(const std::string& name) {
    for (Tensor& t : tensors) {
      if (t.name == name) return t;
    }
    throw std::runtime_error("no tensor " + name);
  }
  void reshape(const std::string& name, SafeDtype dtype, std::vector<std::int64_t> shape) {
    Tensor& t = tensor(name);
    std::size_t n = safe_dtype_bytes(dtype);
    for (const auto d : shape) n *= static_cast<std::size_t>(d);
    t.dtype = dtype;
    t.shape = std::move(shape);
    t.bytes.assign(n, 0);
  }
  void rename(const std::string& from, const std::string& to) { tensor(from).name = to; }
};

TEST(LoraFiles, CorruptPeftAdaptersAreRefusedNamingFileAndTensor) {
  const TempDir dir;
  const LlamaParams p = small_params();
  const LoraAdapter adapter = random_lora(p, {WeightKind::AttnQ, WeightKind::FfnUp}, 2, 4.0f, RopePairing::HalfSplit, 1.0f, 9);
  const auto valid = dir / "valid";
  write_peft_lora(adapter, p, valid.string());
  ASSERT_NO_THROW(read_peft_lora(valid.string(), p, RopePairing::HalfSplit));
  const PeftImage good = PeftImage::read(valid);
  const std::string q = "base_model.model.model.layers.0.self_attn.q_proj";
  const std::string up = "base_model.model.model.layers.1.mlp.up_proj";

  struct Case {
    std::string label;
    std::function<void(PeftImage&)> edit;
    std::string file;   // "config" or "weights": the file the message must name
    std::string field;  // and this
  };
  const std::vector<Case> cases = {
      {"peft_type", [](PeftImage& g) { g.config["peft_type"] = "IA3"; }, "config", "peft_type"},
      {"peft_type missing", [](PeftImage& g) { g.config.erase("peft_type"); }, "config", "peft_type"},
      {"r missing", [](PeftImage& g) { g.config.erase("r"); }, "config", "r"},
      {"r a string", [](PeftImage& g) { g.config["r"] = "2"; }, "config", "r"},
      {"r zero", [](PeftImage& g) { g.config["r"] = 0; }, "config", "r"},
      {"r not the tensors' rank", [](PeftImage& g) { g.config["r"] = 3; }, "weights", q + ".lora_A.weight"},
      {"lora_alpha a string", [](PeftImage& g) { g.config["lora_alpha"] = "16"; }, "config", "lora_alpha"},
      {"lora_alpha missing", [](PeftImage& g) { g.config.erase("lora_alpha"); }, "config", "lora_alpha"},
      {"use_rslora", [](PeftImage& g) { g.config["use_rslora"] = true; }, "config", "use_rslora"},
      {"use_dora", [](PeftImage& g) { g.config["use_dora"] = true; }, "config", "use_dora"},
      {"fan_in_fan_out", [](PeftImage& g) { g.config["fan_in_fan_out"] = true; }, "config", "fan_in_fan_out"},
      {"bias", [](PeftImage& g) { g.config["bias"] = "lora_only"; }, "config", "bias"},
      {"rank_pattern", [](PeftImage& g) { g.config["rank_pattern"] = {{"q_proj", 4}}; }, "config", "rank_pattern"},
      {"alpha_pattern", [](PeftImage& g) { g.config["alpha_pattern"] = {{"q_proj", 4}}; }, "config", "alpha_pattern"},
      {"modules_to_save", [](PeftImage& g) { g.config["modules_to_save"] = {"lm_head"}; }, "config", "modules_to_save"},
      {"missing lora_B", [&](PeftImage& g) { std::erase_if(g.tensors, [&](const auto& t) { return t.name == q + ".lora_B.weight"; }); },
       "weights", q + ".lora_B.weight"},
      {"lora_A columns", [&](PeftImage& g) { g.reshape(q + ".lora_A.weight", SafeDtype::F32, {2, 17}); }, "weights",
       q + ".lora_A.weight"},
      {"lora_B rows", [&](PeftImage& g) { g.reshape(up + ".lora_B.weight", SafeDtype::F32, {16, 2}); }, "weights",
       up + ".lora_B.weight"},
      {"lora_B rank", [&](PeftImage& g) { g.reshape(up + ".lora_B.weight", SafeDtype::F32, {24, 3}); }, "weights",
       up + ".lora_B.weight"},
      {"transposed lora_A", [&](PeftImage& g) { g.reshape(q + ".lora_A.weight", SafeDtype::F32, {16, 2}); }, "weights",
       q + ".lora_A.weight"},
      {"I32 dtype", [&](PeftImage& g) { g.reshape(q + ".lora_A.weight", SafeDtype::I32, {2, 16}); }, "weights",
       q + ".lora_A.weight"},
      {"unknown module",
       [&](PeftImage& g) { g.rename(q + ".lora_A.weight", "base_model.model.model.layers.0.self_attn.qkv_proj.lora_A.weight"); },
       "weights", "qkv_proj"},
      {"embedding adapter",
       [&](PeftImage& g) { g.rename(q + ".lora_A.weight", "base_model.model.model.embed_tokens.lora_embedding_A"); }, "weights",
       "embed_tokens.lora_embedding_A"},
      {"no prefix", [&](PeftImage& g) { g.rename(q + ".lora_A.weight", "model.layers.0.self_attn.q_proj.lora_A.weight"); },
       "weights", "model.layers.0.self_attn.q_proj.lora_A.weight"},
      {"layer past the model",
       [&](PeftImage& g) {
         g.rename(q + ".lora_A.weight", "base_model.model.model.layers.2.self_attn.q_proj.lora_A.weight");
         g.rename(q + ".lora_B.weight", "base_model.model.model.layers.2.self_attn.q_proj.lora_B.weight");
       },
       "weights", "layers.2.self_attn.q_proj"},
      {"no tensors", [](PeftImage& g) { g.tensors.clear(); }, "weights", "no LoRA tensors"},
  };
  const auto path = dir / "corrupt";
  for (const Case& c : cases) {
    PeftImage image = good;
    c.edit(image);
    image.write(path);
    const std::string file = (path / (c.file == "config" ? "adapter_config.json" : "adapter_model.safetensors")).string();
    expect_error([&] { read_peft_lora(path.string(), p, RopePairing::HalfSplit); }, {file, c.field}, c.label);
    expect_error([&] { read_lora(path.string(), p, RopePairing::Interleaved); }, {file, c.field}, c.label + " (read_lora)");
  }
  good.write(path);
  EXPECT_NO_THROW(read_peft_lora(path.string(), p, RopePairing::HalfSplit));

  // Broken files.
  write_file(path / "adapter_config.json", "{\"peft_type\": \"LORA\", ");
  expect_error([&] { read_lora(path.string(), p, RopePairing::HalfSplit); }, {(path / "adapter_config.json").string(), "JSON"},
               "config not JSON");
  good.write(path);
  const std::string weights = read_file(path / "adapter_model.safetensors");
  write_file(path / "adapter_model.safetensors", weights.substr(0, weights.size() - 4));
  expect_error([&] { read_lora(path.string(), p, RopePairing::HalfSplit); }, {(path / "adapter_model.safetensors").string()},
               "truncated weights");
  fs::remove(path / "adapter_model.safetensors");
  write_file(path / "adapter_model.bin", "pickle");
  expect_error([&] { read_lora(path.string(), p, RopePairing::HalfSplit); }, {path.string(), "adapter_model.bin"}, "pickle only");
  fs::remove(path / "adapter_config.json");
  expect_error([&] { read_lora(path.string(), p, RopePairing::HalfSplit); }, {path.string(), "adapter_config.json"},
               "no config");
}

}  // namespace
}  // namespace piquant::testing
