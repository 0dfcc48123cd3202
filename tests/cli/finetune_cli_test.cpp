// piquant finetune / train / merge end to end: a run killed with SIGKILL and resumed ends
// with the same adapter bit for bit; --dry-run prints the memory plan; bad data is one
// clear error; train writes a model that loads.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include <nlohmann/json.hpp>

#include "engine/llama_model.h"
#include "support/model_fixtures.h"
#include "support/test_support.h"
#include "train/lora_files.h"

namespace piquant {
namespace {

using testing::run_cli;
using testing::shell_quote;

class FinetuneCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const auto checkpoint = PIQUANT_SHARED_FILE("models/stories260K/stories260K.bin");
    const auto tokenizer = PIQUANT_SHARED_FILE("models/stories260K/tok512.bin");
    data_ = new std::string(PIQUANT_SHARED_FILE("instruct/wordnet_define_alpaca.json").string());
    dir_ = new testing::TempDir();
    model_ = new std::string(testing::convert_stories260k(*dir_, checkpoint, tokenizer, "f32").string());
  }
  static void TearDownTestSuite() {
    delete dir_;
    delete model_;
    delete data_;
  }
  static std::string finetune_args(const std::string& out, const std::string& checkpoint, int steps) {
    return "finetune -m " + shell_quote(*model_) + " --data " + shell_quote(*data_) +
           " --max-records 64 --max-seq 128 --batch 2 --lr 3e-3 --lora-r 4 --lora-dropout 0.1 --held-out 0 -t 2 --seed 3 --steps " +
           std::to_string(steps) + " --checkpoint-every 2 --checkpoint " + shell_quote(checkpoint) + " -o " + shell_quote(out);
  }
  static testing::TempDir* dir_;
  static std::string* model_;
  static std::string* data_;
};
testing::TempDir* FinetuneCli::dir_ = nullptr;
std::string* FinetuneCli::model_ = nullptr;
std::string* FinetuneCli::data_ = nullptr;

std::vector<float> adapter_values(const std::string& path, const LlamaParams& params) {
  const LoraAdapter a = read_gguf_lora(path, params, RopePairing::Interleaved);
  std::vector<float> v;
  for (WeightId id : a.ids()) {
    v.insert(v.end(), a.find(id)->a.begin(), a.find(id)->a.end());
    v.insert(v.end(), a.find(id)->b.begin(), a.find(id)->b.end());
  }
  return v;
}

TEST_F(FinetuneCli, KilledRunResumesToTheSameAdapter) {
  const int steps = 60;
  const std::string whole = (dir_->path() / "whole.gguf").string();
  const testing::CommandResult a = run_cli(finetune_args(whole, (dir_->path() / "whole.ckpt.safetensors").string(), steps));
  ASSERT_EQ(a.exit_code, 0) << a.output;

  const std::string resumed = (dir_->path() / "resumed.gguf").string();
  const std::string checkpoint = (dir_->path() / "killed.ckpt.safetensors").string();
  const std::string command = std::string(PIQUANT_CLI) + " " + finetune_args(resumed, checkpoint, steps) + " >/dev/null 2>&1";
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", ("exec " + command).c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  // Kill it as soon as its first checkpoint is in place (a few steps in).
  const auto start = std::chrono::steady_clock::now();
  while (!std::filesystem::exists(checkpoint) && std::chrono::steady_clock::now() - start < std::chrono::minutes(5)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "the run ended before it was killed";
  EXPECT_FALSE(std::filesystem::exists(resumed)) << "no adapter under its final name from a killed run";

  const testing::CommandResult b = run_cli(finetune_args(resumed, checkpoint, steps) + " --resume --json");
  ASSERT_EQ(b.exit_code, 0) << b.output;
  const auto summary = nlohmann::json::parse(b.output.substr(b.output.find('{')));
  EXPECT_GT(summary["resumed_from"].get<int>(), 0);
  EXPECT_LT(summary["resumed_from"].get<int>(), steps);

  const auto params = LlamaModel::load(*model_)->params();
  const std::vector<float> x = adapter_values(whole, params), y = adapter_values(resumed, params);
  ASSERT_EQ(x.size(), y.size());
  EXPECT_EQ(0, std::memcmp(x.data(), y.data(), x.size() * sizeof(float)));
}

TEST_F(FinetuneCli, DryRunPrintsTheMemoryPlan) {
  const testing::CommandResult r = run_cli("finetune -m " + shell_quote(*model_) + " --data " + shell_quote(*data_) +
                                           " --max-records 16 --max-seq 128 --dry-run --json -o " +
                                           shell_quote((dir_->path() / "never.gguf").string()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto plan = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  const auto& memory = plan["memory"];
  EXPECT_EQ(memory["total"].get<std::uint64_t>(), memory["base_weights"].get<std::uint64_t>() +
                                                      memory["adapter_and_optimizer"].get<std::uint64_t>() +
                                                      memory["activations"].get<std::uint64_t>() + memory["teacher"].get<std::uint64_t>());
  // r = 8 on all seven kinds of 5 layers of stories260K: (64·8 + 8·64)·4 + (64·8 + 8·32)·2 + ... counted by hand below.
  const std::int64_t E = 64, kv = 32, F = 172, r8 = 8;
  const std::int64_t per_layer = r8 * (E + E) * 2 /*q, o*/ + r8 * (E + kv) * 2 /*k, v*/ + r8 * (E + F) * 3 /*gate, up, down*/;
  EXPECT_EQ(plan["adapter_parameters"].get<std::int64_t>(), 5 * per_layer);
  EXPECT_FALSE(std::filesystem::exists(dir_->path() / "never.gguf"));
}

TEST_F(FinetuneCli, MalformedDataIsOneClearError) {
  const auto bad = dir_->path() / "bad.json";
  testing::write_file(bad, R"([{"instruction": "a", "output": "b"}, {"instruction": 3, "output": "c"}])");
  const testing::CommandResult r = run_cli("finetune -m " + shell_quote(*model_) + " --data " + shell_quote(bad.string()) +
                                           " -o " + shell_quote((dir_->path() / "x.gguf").string()));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find(bad.string()), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("1"), std::string::npos) << r.output;  // the record's index
}

TEST_F(FinetuneCli, TrainWritesAModelThatLoadsAndLearns) {
  const auto config = dir_->path() / "config.json";
  testing::write_file(config, R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 32, "intermediate_size": 64,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512,
    "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": false,
    "bos_token_id": 1, "eos_token_id": 2})");
  const auto text = dir_->path() / "text.txt";
  std::string story;
  for (int i = 0; i < 60; ++i) story += "The cat sat on the mat. The dog ran to the park. ";
  testing::write_file(text, story);
  const auto out = dir_->path() / "trained.gguf";
  const testing::CommandResult r = run_cli("train --config " + shell_quote(config.string()) + " --tokenizer " +
                                           shell_quote(PIQUANT_SHARED_FILE("models/stories260K/tok512.bin").string()) +
                                           " --data " + shell_quote(text.string()) +
                                           " --max-seq 32 --steps 30 --batch 4 --lr 1e-2 --held-out 0.2 -t 2 --json -o " +
                                           shell_quote(out.string()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto summary = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  EXPECT_LT(summary["final_eval_loss"].get<double>(), summary["first_eval_loss"].get<double>() - 1.0);
  const auto model = LlamaModel::load(out.string());
  EXPECT_EQ(model->params().n_embd, 32);
}

}  // namespace
}  // namespace piquant

namespace piquant {
namespace {

// Distillation from a teacher run alongside, from its top-k computed into a file by the
// same run, and from that file alone: the same teacher numbers, so the same adapter bit
// for bit. (The teacher is the F16 conversion of the student's own model: close, but
// not equal, so the gradients are not zero.)
TEST_F(FinetuneCli, DistillationFromALiveTeacherOrItsPrecomputedLogitsGivesTheSameAdapter) {
  const auto checkpoint = PIQUANT_SHARED_FILE("models/stories260K/stories260K.bin");
  const auto tokenizer = PIQUANT_SHARED_FILE("models/stories260K/tok512.bin");
  const std::string teacher = testing::convert_stories260k(*dir_, checkpoint, tokenizer, "f16").string();
  const std::string logits = (dir_->path() / "teacher.topk").string();
  const auto run = [&](const std::string& teacher_args, const std::string& out) {
    const testing::CommandResult r = run_cli("finetune -m " + shell_quote(*model_) + " --data " + shell_quote(*data_) +
                                             " --max-records 24 --max-seq 128 --steps 4 --batch 2 --lr 1e-2 --held-out 0 -t 2"
                                             " --seed 5 --teacher-top-k 16 --temperature 2 " +
                                             teacher_args + " -o " + shell_quote(out));
    EXPECT_EQ(r.exit_code, 0) << r.output;
  };
  const std::string live = (dir_->path() / "live.gguf").string(), computed = (dir_->path() / "computed.gguf").string(),
                    from_file = (dir_->path() / "from_file.gguf").string();
  run("--teacher " + shell_quote(teacher), live);
  run("--teacher " + shell_quote(teacher) + " --teacher-logits " + shell_quote(logits), computed);
  ASSERT_TRUE(std::filesystem::exists(logits));
  run("--teacher-logits " + shell_quote(logits), from_file);
  const auto params = LlamaModel::load(*model_)->params();
  const std::vector<float> a = adapter_values(live, params), b = adapter_values(computed, params),
                           c = adapter_values(from_file, params);
  ASSERT_EQ(a.size(), b.size());
  ASSERT_EQ(a.size(), c.size());
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
  EXPECT_EQ(0, std::memcmp(a.data(), c.data(), a.size() * sizeof(float)));
  // B started at zero: distillation moved it.
  double b_norm = 0.0;
  const LoraAdapter adapter = read_gguf_lora(live, params, RopePairing::Interleaved);
  for (WeightId id : adapter.ids()) {
    for (float v : adapter.find(id)->b) b_norm += static_cast<double>(v) * v;
  }
  EXPECT_GT(b_norm, 0.0);

  // A file computed at another temperature is refused, naming it.
  const testing::CommandResult r = run_cli("finetune -m " + shell_quote(*model_) + " --data " + shell_quote(*data_) +
                                           " --max-records 24 --max-seq 128 --steps 1 --held-out 0 --seed 5 --temperature 1"
                                           " --teacher-logits " + shell_quote(logits) + " -o " +
                                           shell_quote((dir_->path() / "never.gguf").string()));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find(logits), std::string::npos) << r.output;
}

}  // namespace
}  // namespace piquant

namespace piquant {
namespace {

// --activations keep (nothing recomputed) and recompute give the same adapter bit for bit.
TEST_F(FinetuneCli, KeptAndRecomputedActivationsGiveTheSameAdapter) {
  std::vector<std::vector<float>> adapters;
  for (const char* mode : {"keep", "recompute"}) {
    const std::string out = (dir_->path() / (std::string("activations-") + mode + ".gguf")).string();
    const testing::CommandResult r = run_cli("finetune -m " + shell_quote(*model_) + " --data " + shell_quote(*data_) +
                                             " --max-records 16 --max-seq 128 --steps 3 --batch 2 --lr 1e-2 --lora-dropout 0.1"
                                             " --held-out 0 -t 2 --seed 8 --activations " + mode + " -o " + shell_quote(out));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    adapters.push_back(adapter_values(out, LlamaModel::load(*model_)->params()));
  }
  ASSERT_EQ(adapters[0].size(), adapters[1].size());
  EXPECT_EQ(0, std::memcmp(adapters[0].data(), adapters[1].data(), adapters[0].size() * sizeof(float)));
}

}  // namespace
}  // namespace piquant
