// Training runs on stories260K (a real pretrained model): LoRA lowers the held-out loss,
// distillation from the unpruned model recovers part of what pruning 25% of the MLP
// neurons cost, and a resumed run ends bit-identical to an uninterrupted one.
#include "train/trainer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <numeric>

#include "core/error.h"
#include "engine/llama_context.h"
#include "engine/owned_model.h"
#include "generate/sampler.h"
#include "support/model_fixtures.h"
#include "support/test_support.h"
#include "train/model_checkpoint.h"
#include "train/trainable.h"

namespace piquant {
namespace {

class TrainerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const auto checkpoint = PIQUANT_SHARED_FILE("models/stories260K/stories260K.bin");
    const auto tokenizer = PIQUANT_SHARED_FILE("models/stories260K/tok512.bin");
    dir_ = new testing::TempDir();
    path_ = testing::convert_stories260k(*dir_, checkpoint, tokenizer, "f32").string();
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static testing::TempDir* dir_;
  static std::string path_;
};
testing::TempDir* TrainerTest::dir_ = nullptr;
std::string TrainerTest::path_;

// Stories sampled from the model itself: text in its own style. At temperature 1 a model
// is already the best predictor of its own samples in expectation; at a lower
// temperature the text is its style made more predictable, which fine-tuning can learn.
std::vector<TrainingExample> sample_stories(const LlamaModel& model, int n, std::int64_t length, std::uint64_t seed,
                                            float temperature = 1.0f) {
  ContextOptions co;
  co.n_ctx = length + 1;
  co.n_threads = 2;
  LlamaContext context(model, co);
  Sampler sampler({.temperature = temperature, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f, .seed = seed});
  std::vector<TrainingExample> out;
  for (int s = 0; s < n; ++s) {
    context.reset();
    TrainingExample e;
    e.tokens.push_back(static_cast<std::int32_t>(model.params().bos_token_id >= 0 ? model.params().bos_token_id : 1));
    while (static_cast<std::int64_t>(e.tokens.size()) < length + 1) {
      const std::span<const float> logits = context.eval(std::span(e.tokens).last(1));
      e.tokens.push_back(sampler.sample(logits));
    }
    e.loss_mask.assign(static_cast<std::size_t>(length), 1);
    out.push_back(std::move(e));
  }
  return out;
}

// A copy with the `keep` MLP neurons of largest ‖up row‖ · ‖down column‖ in every layer
// (a simple magnitude rule: the pruning issue builds the real ones).
std::unique_ptr<OwnedLlamaModel> prune_mlp(const LlamaModel& model, std::int64_t keep) {
  LlamaParams p = model.params();
  for (auto& f : p.n_ff) f = keep;
  auto full = OwnedLlamaModel::copy_of(model);
  p.tie_word_embeddings = full->tied_output();
  auto pruned = OwnedLlamaModel::random(p, model.vocab(), model.rope_pairing(), 1);
  for (WeightId id : pruned->weight_ids()) {
    if (id.kind != WeightKind::FfnGate && id.kind != WeightKind::FfnUp && id.kind != WeightKind::FfnDown) {
      std::span<const float> src = full->weight(id);
      std::copy(src.begin(), src.end(), pruned->weight(id).begin());
    }
  }
  const std::int64_t E = p.n_embd;
  for (std::int64_t l = 0; l < p.n_layer; ++l) {
    const std::int64_t F = model.params().n_ff[static_cast<std::size_t>(l)];
    std::span<const float> up = full->weight({WeightKind::FfnUp, l}), gate = full->weight({WeightKind::FfnGate, l}),
                           down = full->weight({WeightKind::FfnDown, l});
    std::vector<double> score(static_cast<std::size_t>(F));
    for (std::int64_t j = 0; j < F; ++j) {
      double u = 0.0, d = 0.0;
      for (std::int64_t i = 0; i < E; ++i) {
        u += up[static_cast<std::size_t>(j * E + i)] * up[static_cast<std::size_t>(j * E + i)];
        d += down[static_cast<std::size_t>(i * F + j)] * down[static_cast<std::size_t>(i * F + j)];
      }
      score[static_cast<std::size_t>(j)] = std::sqrt(u * d);
    }
    std::vector<std::int64_t> order(static_cast<std::size_t>(F));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](auto a, auto b) { return score[static_cast<std::size_t>(a)] > score[static_cast<std::size_t>(b)]; });
    order.resize(static_cast<std::size_t>(keep));
    std::sort(order.begin(), order.end());
    std::span<float> pu = pruned->weight({WeightKind::FfnUp, l}), pg = pruned->weight({WeightKind::FfnGate, l}),
                     pd = pruned->weight({WeightKind::FfnDown, l});
    for (std::int64_t k = 0; k < keep; ++k) {
      const std::int64_t j = order[static_cast<std::size_t>(k)];
      std::copy_n(up.begin() + j * E, E, pu.begin() + k * E);
      std::copy_n(gate.begin() + j * E, E, pg.begin() + k * E);
      for (std::int64_t i = 0; i < E; ++i) pd[static_cast<std::size_t>(i * keep + k)] = down[static_cast<std::size_t>(i * F + j)];
    }
  }
  return pruned;
}

double held_out_loss(const LlamaModel& model, const std::vector<TrainingExample>& examples) {
  ThreadPool pool(2);
  std::int64_t longest = 1;
  for (const auto& e : examples) longest = std::max(longest, e.n_positions());
  TrainingPass pass(model, nullptr, pool, longest);
  return evaluate_loss(pass, examples);
}

// The teacher's exact distribution (k = n_vocab) at every position, computed up front.
struct TeacherTable {
  std::vector<std::vector<std::int32_t>> ids;
  std::vector<std::vector<float>> logits;
  std::vector<std::vector<double>> lse;
};
TeacherTable teacher_table(const LlamaModel& teacher, const std::vector<TrainingExample>& examples) {
  TeacherTable table;
  ContextOptions co;
  co.n_ctx = 512;
  co.kv_type = GgmlType::F32;
  co.n_threads = 2;
  LlamaContext context(teacher, co);
  const std::int64_t V = teacher.params().n_vocab;
  for (const TrainingExample& e : examples) {
    context.reset();
    const std::span<const float> all = context.eval(e.inputs(), true);
    auto& ids = table.ids.emplace_back();
    auto& logits = table.logits.emplace_back(all.begin(), all.end());
    auto& lse = table.lse.emplace_back();
    for (std::int64_t t = 0; t < e.n_positions(); ++t) {
      double s = 0.0;
      for (std::int64_t v = 0; v < V; ++v) s += std::exp(static_cast<double>(all[static_cast<std::size_t>(t * V + v)]));
      lse.push_back(std::log(s));
    }
    ids.resize(static_cast<std::size_t>(V));
    std::iota(ids.begin(), ids.end(), 0);
    (void)logits;
  }
  return table;
}

TEST_F(TrainerTest, LoraLowersTheHeldOutLossOnTextInTheModelsOwnStyle) {
  auto model = LlamaModel::load(path_);
  std::vector<TrainingExample> stories = sample_stories(*model, 176, 64, 17, 0.6f);
  const std::vector<TrainingExample> held_out(stories.end() - 16, stories.end());
  stories.resize(stories.size() - 16);  // 160: one epoch of 40 steps of 4
  LoraAdapter adapter(8, 16.0f, model->rope_pairing());
  add_lora_targets(adapter, *model, parse_lora_targets("q,k,v,o,gate,up,down"));
  init_lora(adapter, 3);
  auto trainable = Trainable::lora(adapter);
  TrainerOptions options;
  options.steps = 40;
  options.batch = 4;
  options.lr = 3e-3;
  options.warmup = 4;
  ThreadPool pool(2);
  const TrainerRun run = run_training(*model, &adapter, *trainable, stories, held_out, {}, options, pool, {});
  ASSERT_TRUE(run.first_eval_loss && run.final_eval_loss);
  std::printf("LoRA r=8 on stories260K's own samples: held-out loss %.4f -> %.4f\n", *run.first_eval_loss, *run.final_eval_loss);
  EXPECT_LT(*run.final_eval_loss, *run.first_eval_loss - 0.02);
}

TEST_F(TrainerTest, DistillationRecoversPartOfWhatPruningCost) {
  auto teacher = LlamaModel::load(path_);
  std::vector<TrainingExample> stories = sample_stories(*teacher, 48, 64, 23);
  const std::vector<TrainingExample> held_out(stories.end() - 8, stories.end());
  stories.resize(stories.size() - 8);
  const std::int64_t F = teacher->params().n_ff[0];
  auto student = prune_mlp(*teacher, F - F / 4);

  const double teacher_loss = held_out_loss(*teacher, held_out);
  const double pruned_loss = held_out_loss(*student, held_out);
  ASSERT_GT(pruned_loss, teacher_loss + 0.05) << "pruning must cost something for the test to mean anything";

  const TeacherTable table = teacher_table(*teacher, stories);
  const TeacherSource source = [&](std::int64_t index, const TrainingExample& e, std::vector<TeacherTopK>& out) {
    const auto i = static_cast<std::size_t>(index);
    const std::int64_t V = teacher->params().n_vocab;
    out.resize(static_cast<std::size_t>(e.n_positions()));
    for (std::int64_t t = 0; t < e.n_positions(); ++t) {
      out[static_cast<std::size_t>(t)] = {V, table.ids[i].data(), table.logits[i].data() + t * V, table.lse[i][static_cast<std::size_t>(t)]};
    }
  };
  LoraAdapter adapter(8, 16.0f, student->rope_pairing());
  add_lora_targets(adapter, *student, parse_lora_targets("q,k,v,o,gate,up,down"));
  init_lora(adapter, 5);
  auto trainable = Trainable::lora(adapter);
  TrainerOptions options;
  options.steps = 40;
  options.batch = 4;
  options.lr = 1e-2;
  options.warmup = 4;
  options.loss = {0.0, 1.0, 1.0};  // distillation only
  ThreadPool pool(2);
  run_training(*student, &adapter, *trainable, stories, held_out, source, options, pool, {});

  ThreadPool eval_pool(2);
  std::int64_t longest = 64;
  TrainingPass pass(*student, &adapter, eval_pool, longest);
  const double recovered_loss = evaluate_loss(pass, held_out);
  const double share = (std::exp(pruned_loss) - std::exp(recovered_loss)) / (std::exp(pruned_loss) - std::exp(teacher_loss));
  std::printf("stories260K pruned 25%%: held-out perplexity teacher %.3f, pruned %.3f, distilled %.3f: %.0f%% of the gap recovered\n",
              std::exp(teacher_loss), std::exp(pruned_loss), std::exp(recovered_loss), 100.0 * share);
  EXPECT_GT(share, 0.2);
}

// Stopped after a checkpoint (an exception out of the loop), then resumed from it by a
// fresh adapter and optimizer: the final adapter equals the uninterrupted run's bit for bit.
TEST_F(TrainerTest, ResumedRunEndsBitIdentical) {
  auto model = LlamaModel::load(path_);
  const std::vector<TrainingExample> stories = sample_stories(*model, 12, 32, 29);
  const std::string checkpoint = (dir_->path() / "resume.safetensors").string();
  TrainerOptions options;
  options.steps = 6;
  options.batch = 3;
  options.lr = 5e-3;
  options.checkpoint_every = 2;
  options.checkpoint_path = checkpoint;
  options.settings_json = R"({"what": "resume test"})";
  const auto fresh = [&] {
    auto adapter = std::make_unique<LoraAdapter>(4, 8.0f, model->rope_pairing());
    add_lora_targets(*adapter, *model, parse_lora_targets("q,v,down"));
    init_lora(*adapter, 9);
    return adapter;
  };
  const auto values = [](const LoraAdapter& a) {
    std::vector<float> v;
    for (WeightId id : a.ids()) {
      v.insert(v.end(), a.find(id)->a.begin(), a.find(id)->a.end());
      v.insert(v.end(), a.find(id)->b.begin(), a.find(id)->b.end());
    }
    return v;
  };
  ThreadPool pool(2);
  auto whole = fresh();
  auto t1 = Trainable::lora(*whole);
  run_training(*model, whole.get(), *t1, stories, {}, {}, options, pool, {});

  auto interrupted = fresh();
  auto t2 = Trainable::lora(*interrupted);
  struct Stop {};
  EXPECT_THROW(run_training(*model, interrupted.get(), *t2, stories, {}, {}, options, pool,
                            [](const StepReport& r) {
                              if (r.step == 4) throw Stop{};
                            }),
               Stop);
  auto resumed = fresh();  // starts from the initial values: everything must come from the checkpoint
  auto t3 = Trainable::lora(*resumed);
  options.resume = true;
  const TrainerRun run = run_training(*model, resumed.get(), *t3, stories, {}, {}, options, pool, {});
  EXPECT_EQ(run.resumed_from, 4);
  const std::vector<float> a = values(*whole), b = values(*resumed);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
  EXPECT_NE(values(*fresh()), a);  // training changed something

  // Other settings: the resume is refused with the difference named.
  options.settings_json = R"({"what": "something else"})";
  auto other = fresh();
  auto t4 = Trainable::lora(*other);
  EXPECT_THROW(run_training(*model, other.get(), *t4, stories, {}, {}, options, pool, {}), Error);
}

}  // namespace
}  // namespace piquant
