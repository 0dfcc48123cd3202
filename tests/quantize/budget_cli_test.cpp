// `piquant quantize --target-size / --target-bpw` end to end: the file written never
// exceeds the budget, is the size the plan said, replays byte for byte from its
// --plan-out, reuses its sensitivity cache, and bad inputs give clear errors.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>

#include "formats/gguf.h"
#include "support/eval_test_support.h"
#include "support/model_fixtures.h"
#include "support/test_support.h"

namespace piquant::testing {
namespace {

class BudgetCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    // MLP widths 96 and 160 take no K-quant (row-length fallbacks); 256 and 512 do.
    model_ = new std::filesystem::path(synth_tiny(*dir_, "synth", "96,160,256,512", 0.25f));
  }
  static void TearDownTestSuite() {
    delete model_;
    delete dir_;
  }
  static std::string model() { return shell_quote(model_->string()); }
  static std::string path(const std::string& name) { return (*dir_ / name).string(); }
  // A calibration text from the shared corpus (skips, or fails in CI, without it).
  static std::string calibration() {
    const auto text = *dir_ / "calib.txt";
    if (!std::filesystem::exists(text)) write_file(text, text_head(shared_dir() / "corpora/austen.txt", 6000));
    return text.string();
  }
  // The options every measuring run here shares: a short calibration, three candidates
  // (each a row-length fallback for the MLP widths 96 and 160), the suite's cache.
  static std::string measured() {
    return " --calib " + shell_quote(calibration()) + " --calib-ctx 32 --calib-chunks 2 -t 2 --candidates " + kCandidates +
           " --sensitivity " + shell_quote(path("sens.json"));
  }
  static constexpr const char* kCandidates = "q2_K,q4_K,q8_0";
  static nlohmann::json json_of(const CommandResult& r) {
    const std::size_t start = r.output.find("{\n");
    EXPECT_NE(start, std::string::npos) << r.output;
    return nlohmann::json::parse(r.output.substr(start, r.output.rfind('}') + 1 - start));
  }
  // The plan for a budget, without writing a model.
  static nlohmann::json dry_run(const std::string& budget) {
    const CommandResult r = run_cli("quantize " + model() + " --dry-run --json " + budget + measured());
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return json_of(r);
  }
  static TempDir* dir_;
  static std::filesystem::path* model_;
};
TempDir* BudgetCli::dir_ = nullptr;
std::filesystem::path* BudgetCli::model_ = nullptr;

std::uint64_t file_size(const std::string& p) { return std::filesystem::file_size(p); }

TEST_F(BudgetCli, WrittenFilesNeverExceedTheBudget) {
  PIQUANT_SHARED_FILE("corpora/austen.txt");
  const nlohmann::json wide = dry_run("--target-size 1GB");
  const std::uint64_t lo = wide["smallest_file_bytes"], hi = wide["largest_file_bytes"];
  ASSERT_LT(lo, hi);
  // The Q4_K_M file's own size, as the closing table uses.
  ASSERT_EQ(run_cli("quantize " + model() + " " + shell_quote(path("q4km.gguf")) + " Q4_K_M -t 2").exit_code, 0);
  const std::uint64_t q4km = file_size(path("q4km.gguf"));
  int n = 0;
  for (const std::uint64_t budget : {lo, lo + 1, lo + 100, (lo + hi) / 2, q4km, hi - 1, hi + 1000}) {
    const std::string out = path("b" + std::to_string(n++) + ".gguf");
    const CommandResult r =
        run_cli("quantize " + model() + " " + shell_quote(out) + " --json --target-size " + std::to_string(budget) + measured());
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const nlohmann::json plan = json_of(r);
    EXPECT_LE(file_size(out), budget) << out;
    EXPECT_EQ(file_size(out), plan["file_bytes"].get<std::uint64_t>()) << out;
    // A budget a few bytes under the next type up is used almost to the byte: not exceeded, not wasted.
    if (budget == hi + 1000) {
      EXPECT_EQ(file_size(out), hi);
    }
  }
  EXPECT_EQ(file_size(path("b0.gguf")), lo);

  // --target-bpw: 8 × tensor bytes / weights over the file's own tensors.
  for (const double bpw : {4.3, 5.5}) {
    const std::string out = path("bpw.gguf");
    const CommandResult r =
        run_cli("quantize " + model() + " " + shell_quote(out) + " --target-bpw " + std::to_string(bpw) + measured());
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const GgufFile file(out);
    std::uint64_t bytes = 0, weights = 0;
    for (const GgufTensorInfo& t : file.tensors()) {
      bytes += t.size_bytes;
      weights += static_cast<std::uint64_t>(t.n_elements());
    }
    EXPECT_LE(8.0 * static_cast<double>(bytes) / static_cast<double>(weights), bpw);
    EXPECT_GT(8.0 * static_cast<double>(bytes) / static_cast<double>(weights), bpw - 0.5);  // the budget is used
  }
}

TEST_F(BudgetCli, PlanOutReplaysByteForByte) {
  PIQUANT_SHARED_FILE("corpora/austen.txt");
  const nlohmann::json wide = dry_run("--target-size 1GB");
  const std::uint64_t mid = (wide["smallest_file_bytes"].get<std::uint64_t>() + wide["largest_file_bytes"].get<std::uint64_t>()) / 2;
  const CommandResult r = run_cli("quantize " + model() + " " + shell_quote(path("budget.gguf")) + " --target-size " +
                                  std::to_string(mid) + " --plan-out " + shell_quote(path("plan.txt")) + measured());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string plan = read_file(path("plan.txt"));
  EXPECT_NE(plan.find("^blk\\.0\\.ffn_down\\.weight$="), std::string::npos) << plan;
  EXPECT_EQ(plan.find("attn_norm"), std::string::npos) << plan;  // F32 in every plan: not listed

  const CommandResult replay = run_cli("quantize " + model() + " " + shell_quote(path("replay.gguf")) +
                                       " --tensor-type-file " + shell_quote(path("plan.txt")) + " -t 2");
  ASSERT_EQ(replay.exit_code, 0) << replay.output;
  EXPECT_EQ(read_file(path("replay.gguf")), read_file(path("budget.gguf")));

  // With a recipe the file type is the recipe's, on both sides.
  ASSERT_EQ(run_cli("quantize " + model() + " " + shell_quote(path("budget-r.gguf")) + " Q4_K_M --target-size " +
                    std::to_string(mid) + " --plan-out " + shell_quote(path("plan-r.txt")) + measured())
                .exit_code,
            0);
  ASSERT_EQ(run_cli("quantize " + model() + " " + shell_quote(path("replay-r.gguf")) + " Q4_K_M --tensor-type-file " +
                    shell_quote(path("plan-r.txt")) + " -t 2")
                .exit_code,
            0);
  EXPECT_EQ(read_file(path("replay-r.gguf")), read_file(path("budget-r.gguf")));
  EXPECT_EQ(GgufFile(path("budget-r.gguf")).get_int("general.file_type"), 15);  // MOSTLY_Q4_K_M
}

TEST_F(BudgetCli, SensitivitiesAreCachedPerModelAndCalibration) {
  PIQUANT_SHARED_FILE("corpora/austen.txt");
  const std::string cache = path("own-cache.json");
  const std::string calib = " --calib " + shell_quote(calibration()) + " --calib-ctx 32 -t 2 --candidates " +
                            std::string(kCandidates) + " --sensitivity " + shell_quote(cache);
  CommandResult r = run_cli("quantize " + model() + " --dry-run --target-size 1GB --calib-chunks 1" + calib);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("measuring"), std::string::npos) << r.output;
  const std::string first = read_file(cache);
  // Another budget, no calibration given: the cache alone.
  r = run_cli("quantize " + model() + " --dry-run --target-size 900KB --candidates " + kCandidates + " --sensitivity " +
              shell_quote(cache));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find("measuring"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("every sensitivity is in"), std::string::npos) << r.output;
  // Candidates the cache lacks, and no calibration to measure them.
  r = run_cli("quantize " + model() + " --dry-run --target-size 900KB --candidates q2_K,q5_K --sensitivity " + shell_quote(cache));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("lacks"), std::string::npos) << r.output;
  // Another chunking: measured again and the file replaced.
  r = run_cli("quantize " + model() + " --dry-run --target-size 1GB --calib-chunks 2" + calib);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("another calibration"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("measuring"), std::string::npos) << r.output;
  EXPECT_NE(read_file(cache), first);
  // Another model: not used.
  const auto other = synth_tiny(*dir_, "other", "96,160,256,512", 0.25f, 8);
  r = run_cli("quantize " + shell_quote(other.string()) + " --dry-run --target-size 1GB --candidates " + kCandidates +
              " --sensitivity " + shell_quote(cache));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("another model"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--calib"), std::string::npos) << r.output;
}

TEST_F(BudgetCli, BadInputsAreClearErrors) {
  PIQUANT_SHARED_FILE("corpora/austen.txt");
  const nlohmann::json wide = dry_run("--target-size 1GB");
  const std::uint64_t lo = wide["smallest_file_bytes"];
  const auto fails_with = [&](const std::string& args, const std::string& expected) {
    const CommandResult r = run_cli("quantize " + model() + " " + args);
    EXPECT_EQ(r.exit_code, 1) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(expected), std::string::npos) << args << "\n" << r.output;
    EXPECT_NE(r.output.find("piquant: error:"), std::string::npos) << r.output;
  };
  fails_with(shell_quote(path("x.gguf")) + " --target-size " + std::to_string(lo - 1) + measured(),
             "smallest file these candidates make, " + std::to_string(lo) + " bytes");
  fails_with("--dry-run --target-size 3.5XB" + measured(), "unknown unit 'XB'");
  fails_with("--dry-run --target-size 1GB --target-bpw 4" + measured(), "not both");
  fails_with("--dry-run --target-bpw 1.5" + measured(), "below the smallest");
  fails_with("--dry-run --target-size 1GB --candidates q4_K,q9_K", "unknown type 'q9_K'");
  fails_with("--dry-run --target-size 1GB", "--calib");
  fails_with("--dry-run --target-size 1GB --pure" + measured(), "--pure");
  fails_with(shell_quote(path("x.gguf")) + " --calib " + shell_quote(calibration()), "size budget");
  fails_with(shell_quote(path("x.gguf")), "give a recipe");
  EXPECT_FALSE(std::filesystem::exists(path("x.gguf")));

  write_file(*dir_ / "partial.txt", "# only one tensor\n^output\\.weight$=q6_K\n");
  fails_with(shell_quote(path("x.gguf")) + " --tensor-type-file " + shell_quote(path("partial.txt")), "no line gives token_embd.weight");
  write_file(*dir_ / "broken.txt", "^output\\.weight$=q6_K\n\n^blk\\.0\\..*=q9\n");
  fails_with(shell_quote(path("x.gguf")) + " --tensor-type-file " + shell_quote(path("broken.txt")), "broken.txt:3:");
  EXPECT_FALSE(std::filesystem::exists(path("x.gguf")));
}

TEST_F(BudgetCli, DryRunPrintsThePlanAndTotals) {
  PIQUANT_SHARED_FILE("corpora/austen.txt");
  const CommandResult r = run_cli("quantize " + model() + " --dry-run --target-size 1MiB" + measured());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* expected : {"blk.0.ffn_down.weight", "predicted KLD", "budget:        file of at most 1048576 bytes",
                               "bits per weight", "file type:"}) {
    EXPECT_NE(r.output.find(expected), std::string::npos) << expected << "\n" << r.output;
  }
  EXPECT_FALSE(std::filesystem::exists(path("x.gguf")));
}

}  // namespace
}  // namespace piquant::testing
