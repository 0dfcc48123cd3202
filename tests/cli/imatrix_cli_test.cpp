// `piquant imatrix` end to end: the file it writes read back, used by
// `piquant quantize --imatrix`, and its error messages.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>

#include "quantize/imatrix_file.h"
#include "support/model_fixtures.h"
#include "support/test_support.h"

namespace piquant::testing {
namespace {

// The first `bytes` of a text, cut back to a line end.
std::string text_head(const std::filesystem::path& path, std::size_t bytes) {
  std::string text = read_file(path).substr(0, bytes);
  return text.substr(0, text.rfind('\n') + 1);
}

class ImatrixCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    model_ = new std::filesystem::path(synth_tiny(*dir_, "synth", "96,128,64,160", 0.25f));
  }
  static void TearDownTestSuite() {
    delete model_;
    delete dir_;
  }
  // A calibration text from the shared corpus; skips (or fails in CI) without it.
  static std::filesystem::path calibration_text(std::size_t bytes = 3000) {
    const auto corpus = (shared_dir() / "corpora/austen.txt");
    const auto text = *dir_ / ("calib-" + std::to_string(bytes) + ".txt");
    if (std::filesystem::exists(corpus) && !std::filesystem::exists(text)) write_file(text, text_head(corpus, bytes));
    return text;
  }
  static std::string model() { return shell_quote(model_->string()); }
  static TempDir* dir_;
  static std::filesystem::path* model_;
};
TempDir* ImatrixCli::dir_ = nullptr;
std::filesystem::path* ImatrixCli::model_ = nullptr;

TEST_F(ImatrixCli, WritesAFileThatQuantizeUses) {
  PIQUANT_SHARED_FILE("corpora/austen.txt");
  const auto text = calibration_text();
  const auto out = *dir_ / "synth.imatrix";
  const CommandResult r = run_cli("imatrix -m " + model() + " -f " + shell_quote(text.string()) + " --ctx 64 --chunks 3 -t 2 -o " +
                                  shell_quote(out.string()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("chunk 3/3"), std::string::npos) << r.output;

  const ImportanceMatrix m = read_imatrix_file(out.string());
  EXPECT_EQ(m.chunks, 3);
  EXPECT_EQ(m.dataset, text.string());
  EXPECT_EQ(m.entries.size(), 4u * 7u);
  EXPECT_FALSE(m.contains("output.weight"));
  const std::size_t widths[] = {96, 128, 64, 160};
  for (std::size_t l = 0; l < 4; ++l) {
    const auto& down = m.entries.at("blk." + std::to_string(l) + ".ffn_down.weight");
    EXPECT_EQ(down.values.size(), widths[l]);
    EXPECT_EQ(down.ncall, 3);
  }

  const auto quantized = *dir_ / "q4km.gguf";
  const CommandResult q = run_cli("quantize " + model() + " " + shell_quote(quantized.string()) + " Q4_K_M --imatrix " +
                                  shell_quote(out.string()) + " -t 2");
  ASSERT_EQ(q.exit_code, 0) << q.output;
  EXPECT_TRUE(std::filesystem::exists(quantized));
  EXPECT_EQ(q.output.find("has no entry for blk."), std::string::npos) << q.output;

  // A model whose MLP widths differ cannot use it: quantize names the tensor and both widths.
  const auto other = synth_tiny(*dir_, "other", "128,96,64,160", 0.25f);
  const CommandResult bad = run_cli("quantize " + shell_quote(other.string()) + " " + shell_quote((*dir_ / "bad.gguf").string()) +
                                    " Q4_K_M --imatrix " + shell_quote(out.string()) + " -t 2");
  EXPECT_EQ(bad.exit_code, 1) << bad.output;
  EXPECT_NE(bad.output.find("blk.0.ffn_down.weight: importance has 96 values for rows of 128"), std::string::npos) << bad.output;
  EXPECT_FALSE(std::filesystem::exists(*dir_ / "bad.gguf"));
}

TEST_F(ImatrixCli, ChunksLimitAndProcessOutput) {
  PIQUANT_SHARED_FILE("corpora/austen.txt");
  const auto text = calibration_text(900);  // a few chunks: all of them run
  const auto all = *dir_ / "all.imatrix";
  const auto json_out = *dir_ / "all.json";
  // Only stdout goes to the JSON file (run_command appends 2>&1 after the parentheses).
  const CommandResult r = run_command("(" + shell_quote(PIQUANT_CLI) + " imatrix -m " + model() + " -f " + shell_quote(text.string()) +
                                      " --ctx 64 -t 2 --json -o " + shell_quote(all.string()) + " > " + shell_quote(json_out.string()) + ")");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto summary = nlohmann::json::parse(read_file(json_out));
  const int n_chunks = summary.at("n_chunks");
  EXPECT_GT(n_chunks, 3);  // every whole chunk of the text
  EXPECT_EQ(read_imatrix_file(all.string()).chunks, n_chunks);
  EXPECT_EQ(read_imatrix_file(all.string()).entries.at("blk.2.attn_q.weight").ncall, n_chunks);

  const auto two = *dir_ / "two.imatrix";
  const CommandResult limited = run_cli("imatrix -m " + model() + " -f " + shell_quote(text.string()) +
                                        " --ctx 64 --chunks 2 --process-output -t 2 -o " + shell_quote(two.string()));
  ASSERT_EQ(limited.exit_code, 0) << limited.output;
  const ImportanceMatrix m = read_imatrix_file(two.string());
  EXPECT_EQ(m.chunks, 2);
  ASSERT_TRUE(m.contains("output.weight"));
  EXPECT_EQ(m.entries.at("output.weight").values.size(), 256u);
  EXPECT_EQ(m.entries.at("output.weight").ncall, 2);
}

TEST_F(ImatrixCli, ErrorsNameTheProblem) {
  const auto out = shell_quote((*dir_ / "err.imatrix").string());
  const auto short_text = *dir_ / "short.txt";
  write_file(short_text, "Once upon a time.\n");
  const auto empty_text = *dir_ / "empty.txt";
  write_file(empty_text, "");

  CommandResult r = run_cli("imatrix -m " + shell_quote((*dir_ / "missing.gguf").string()) + " -f " +
                            shell_quote(short_text.string()) + " -o " + out);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("missing.gguf"), std::string::npos) << r.output;

  r = run_cli("imatrix -m " + model() + " -f " + shell_quote((*dir_ / "missing.txt").string()) + " -o " + out);
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("missing.txt"), std::string::npos) << r.output;

  r = run_cli("imatrix -m " + model() + " -f " + shell_quote(empty_text.string()) + " -o " + out);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("empty"), std::string::npos) << r.output;

  r = run_cli("imatrix -m " + model() + " -f " + shell_quote(short_text.string()) + " --ctx 2 -o " + out);
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("--ctx"), std::string::npos) << r.output;

  r = run_cli("imatrix -m " + model() + " -f " + shell_quote(short_text.string()) + " --ctx 64 -o " + out);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("fewer than one chunk of 64"), std::string::npos) << r.output;

  r = run_cli("imatrix -m " + model() + " -f " + shell_quote(short_text.string()) + " --ctx 4 -o " +
              shell_quote((*dir_ / "no-such-folder" / "x.imatrix").string()));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("no-such-folder"), std::string::npos) << r.output;

  EXPECT_FALSE(std::filesystem::exists(*dir_ / "err.imatrix"));
}

}  // namespace
}  // namespace piquant::testing
