// `piquant pipeline` end to end on the committed default model, a fast variant of
// examples/default.toml (half the neurons by magnitude without bias compensation: the
// default's 25% by FLAP costs this model only 0.3% perplexity, too little room to check the
// orderings on a short text; this costs 1.3% and recovery wins back 0.4 of it): the report's
// numbers exist, are finite and are ordered as
// pruning, recovery and quantization must order them; a rerun runs nothing; and runs
// killed with SIGKILL during finetune and during quantize, then rerun, end with every
// artifact byte-identical to an uninterrupted run's.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "support/eval_test_support.h"
#include "support/model_fixtures.h"
#include "support/test_support.h"

extern char** environ;

namespace piquant {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kDefaultModel = fs::path(PIQUANT_SOURCE_DIR) / "models/default/piquant-default.gguf";

class DefaultPipeline : public ::testing::Test {
 protected:
  void SetUp() override {
#ifdef PIQUANT_TESTS_EMULATED
    GTEST_SKIP() << "the pipeline starts its stages as child processes; under qemu-user they would run emulated for minutes";
#endif
    ASSERT_TRUE(fs::exists(kDefaultModel)) << kDefaultModel;
    const auto calib_src = PIQUANT_SHARED_FILE("corpora/austen.txt");
    const auto eval_src = PIQUANT_SHARED_FILE("corpora/sotu_1950plus.txt");
    testing::write_file(dir_ / "calib.txt", testing::text_head(calib_src, 300'000));
    testing::write_file(dir_ / "eval.txt", testing::text_head(eval_src, 120'000));
    recipe_ = (dir_ / "fast.toml").string();
    testing::write_file(recipe_, "name = \"fast\"\nmodel = \"" + kDefaultModel.string() + R"("
threads = 2
[prune]
layers = "1-5"
ratio = 0.5
criterion = "magnitude"
bias_compensation = "off"
calib = "calib.txt"
calib_tokens = 8192
calib_seq = 256
[finetune]
data = "calib.txt"
distill = true
max_seq = 128
steps = 16
batch = 2
lr = 2e-3
held_out_count = 8
eval_every = 8
checkpoint_every = 4
[merge]
type = "f16"
[awq]
text = "calib.txt"
ctx = 128
chunks = 4
grid = 5
[imatrix]
text = "calib.txt"
ctx = 128
chunks = 8
[quantize]
recipes = ["Q4_K_M", "Q3_K_M"]
[evaluate]
text = "eval.txt"
ctx = 128
chunks = 24
[bench]
prompt = [16]
gen = 4
reps = 1
)");
  }

  testing::CommandResult pipeline(const fs::path& run, const std::string& extra = "") {
    return testing::run_cli("pipeline " + testing::shell_quote(recipe_) + " -o " + testing::shell_quote(run.string()) + " " + extra);
  }

  // Starts the pipeline in the background, waits until `ready` exists under the run
  // folder, then kills it with SIGKILL (its stage child dies with it).
  void run_and_kill_when(const fs::path& run, const std::string& ready) {
    const std::string cli = PIQUANT_CLI;
    const std::string out = (dir_ / "killed.log").string();
    std::vector<std::string> words = {cli, "pipeline", recipe_, "-o", run.string(), "--quiet"};
    std::vector<char*> argv;
    for (auto& w : words) argv.push_back(w.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    pid_t pid = 0;
    ASSERT_EQ(posix_spawn(&pid, cli.c_str(), &actions, nullptr, argv.data(), environ), 0);
    posix_spawn_file_actions_destroy(&actions);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
    bool seen = false;
    while (!seen && std::chrono::steady_clock::now() < deadline) {
      seen = fs::exists(run / ready);
      int status = 0;
      if (!seen && waitpid(pid, &status, WNOHANG) == pid) FAIL() << "the pipeline ended before " << ready << " appeared";
      if (!seen) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(seen) << ready << " never appeared";
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the stage's child receives its SIGKILL
  }

  testing::TempDir dir_;
  std::string recipe_;
};

json read_json(const fs::path& path) {
  std::ifstream in(path);
  return json::parse(in);
}

const json& variant(const json& report, const std::string& name) {
  for (const auto& v : report["variants"]) {
    if (v["name"] == name) return v;
  }
  throw std::runtime_error("no variant " + name);
}

TEST_F(DefaultPipeline, ReportsOrderedFiniteNumbersAndRerunsNothing) {
  const fs::path run = dir_ / "run";
  const auto first = pipeline(run);
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_NE(first.output.find("REPORT.md"), std::string::npos) << first.output;

  const json report = read_json(run / "report.json");
  std::map<std::string, double> ppl;
  for (const char* name : {"base", "pruned", "recovered", "Q4_K_M", "Q3_K_M"}) {
    const json& v = variant(report, name);
    ppl[name] = v["eval"]["ppl"].get<double>();
    EXPECT_TRUE(std::isfinite(ppl[name]) && ppl[name] > 1.0) << name << " perplexity " << ppl[name];
    const double kld = v["eval"]["kld"].get<double>();
    EXPECT_TRUE(std::isfinite(kld) && kld >= 0.0) << name << " KLD " << kld;
    EXPECT_GT(v["file_bytes"].get<double>(), 0) << name;
  }
  EXPECT_GE(ppl["pruned"], ppl["base"]);
  EXPECT_LE(ppl["recovered"], ppl["pruned"]);
  EXPECT_GT(variant(report, "pruned")["eval"]["kld"].get<double>(), 0.0);
  const double q3 = variant(report, "Q3_K_M")["file_bytes"], q4 = variant(report, "Q4_K_M")["file_bytes"];
  const double f16 = variant(report, "recovered")["file_bytes"];
  EXPECT_LT(q3, q4);
  EXPECT_LT(q4, f16);
  EXPECT_LT(variant(report, "pruned")["n_params"].get<double>(), variant(report, "base")["n_params"].get<double>());
  for (const char* name : {"Q4_K_M", "Q3_K_M"}) {
    const json& b = variant(report, name)["bench"];
    EXPECT_GT(b["decode_tps"].get<double>(), 0) << name;
    EXPECT_GT(b["peak_rss_bytes"].get<double>(), 0) << name;
    EXPECT_GT(variant(report, name)["pi4"]["bounds"][0]["tokens_per_s"].get<double>(), 0) << name;
  }
  ASSERT_TRUE(report.contains("plots")) << report.value("plots_error", "");
  for (const auto& [name, path] : report["plots"].items()) {
    EXPECT_EQ(testing::read_file(path.get<std::string>()).substr(1, 3), "PNG") << name;
  }
  const std::string md = testing::read_file(run / "REPORT.md");
  EXPECT_NE(md.find("| Q3_K_M |"), std::string::npos);
  // The imatrix is collected on the AWQ-scaled model, not on the merged one.
  const json imatrix = read_json(run / "imatrix/imatrix.record.json");
  EXPECT_NE(imatrix["command"].dump().find("awq/model.gguf"), std::string::npos) << imatrix["command"].dump();
  EXPECT_NE(md.find("Raspberry Pi 4"), std::string::npos);

  // Nothing changed: every step is skipped.
  const auto second = pipeline(run, "--json");
  ASSERT_EQ(second.exit_code, 0) << second.output;
  std::size_t skips = 0, starts = 0;
  for (std::size_t at = 0; (at = second.output.find("\"event\":\"skip\"", at)) != std::string::npos; ++at) ++skips;
  for (std::size_t at = 0; (at = second.output.find("\"event\":\"start\"", at)) != std::string::npos; ++at) ++starts;
  EXPECT_EQ(starts, 0u) << second.output;
  EXPECT_EQ(skips, report["steps"].size()) << second.output;
}

TEST_F(DefaultPipeline, KilledDuringFinetuneAndQuantizeResumesToTheSameArtifacts) {
  const fs::path run = dir_ / "run";
  const std::vector<std::string> artifacts = {"prune/model.gguf", "finetune/adapter.gguf", "merge/model.gguf",
                                              "awq/model.gguf", "imatrix/imatrix.dat", "quantize/model-Q4_K_M.gguf", "quantize/model-Q3_K_M.gguf"};
  const auto clean = pipeline(run, "--quiet");
  ASSERT_EQ(clean.exit_code, 0) << clean.output;
  std::map<std::string, std::string> expected;
  for (const auto& a : artifacts) expected[a] = testing::read_file(run / a);
  fs::remove_all(run);

  // Killed after finetune's first checkpoint: the rerun resumes from it.
  run_and_kill_when(run, "finetune/train-state.safetensors");
  EXPECT_TRUE(fs::exists(run / "finetune/adapter.pending"));
  EXPECT_FALSE(fs::exists(run / "finetune/adapter.record.json"));
  EXPECT_FALSE(fs::exists(run / "finetune/adapter.gguf"));

  // Killed while quantize writes its file (the rerun skips prune, resumes finetune).
  run_and_kill_when(run, "quantize/model-Q4_K_M.gguf.partial");
  EXPECT_TRUE(fs::exists(run / "quantize/Q4_K_M.pending"));
  EXPECT_FALSE(fs::exists(run / "quantize/Q4_K_M.record.json"));
  EXPECT_FALSE(fs::exists(run / "quantize/model-Q4_K_M.gguf"));
  const json finetune = read_json(run / "finetune/adapter.record.json");
  EXPECT_EQ(finetune["command"].back(), "--resume") << finetune["command"].dump();

  const auto finish = pipeline(run, "--quiet");
  ASSERT_EQ(finish.exit_code, 0) << finish.output;
  for (const auto& a : artifacts) EXPECT_TRUE(testing::read_file(run / a) == expected[a]) << a << " differs from the uninterrupted run's";
  for (const auto& e : fs::recursive_directory_iterator(run)) {
    EXPECT_NE(e.path().extension(), ".partial") << e.path() << " left behind";
  }
}

TEST_F(DefaultPipeline, AFailedStageNamesItselfAndItsLog) {
  testing::write_file(dir_ / "bad.toml", "model = \"" + kDefaultModel.string() +
                                             "\"\n[prune]\nlayers = \"1-99\"\nratio = 0.25\n");
  const auto r = testing::run_cli("pipeline " + testing::shell_quote((dir_ / "bad.toml").string()) + " -o " +
                                  testing::shell_quote((dir_ / "bad-run").string()) + " --quiet");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("pipeline: prune failed"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("prune/model.log"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir_ / "bad-run/prune/model.gguf"));
}

}  // namespace
}  // namespace piquant
