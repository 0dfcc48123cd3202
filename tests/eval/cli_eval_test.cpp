// `piquant perplexity` and `piquant kld` end to end on stories260K.
#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>

#include "support/eval_test_support.h"

namespace piquant::testing {
namespace {

using nlohmann::json;

struct CliFiles {
  TempDir dir;
  std::filesystem::path f32, f16, text;
};

void prepare(CliFiles& s) {
  const auto checkpoint = PIQUANT_SHARED_FILE("models/stories260K/stories260K.bin");
  const auto tokenizer = PIQUANT_SHARED_FILE("models/stories260K/tok512.bin");
  const auto corpus = PIQUANT_SHARED_FILE("corpora/austen.txt");
  s.f32 = convert_stories260k(s.dir, checkpoint, tokenizer, "f32");
  s.f16 = convert_stories260k(s.dir, checkpoint, tokenizer, "f16");
  s.text = s.dir / "text.txt";
  write_file(s.text, text_head(corpus, 4000));
}

// stdout of a successful run, parsed (stderr goes elsewhere).
json run_json(const CliFiles& s, const std::string& args) {
  const auto out = s.dir / "out.json";
  const CommandResult result = run_command(shell_quote(PIQUANT_CLI) + " " + args + " > " + shell_quote(out.string()));
  if (result.exit_code != 0) throw std::runtime_error("piquant " + args + " failed:\n" + result.output);
  return json::parse(read_file(out));
}

TEST(PerplexityCli, PrintsPplWithErrorAndSpeed) {
  CliFiles s;
  prepare(s);
  if (s.f32.empty()) return;
  const CommandResult text = run_cli("perplexity -m " + shell_quote(s.f32.string()) + " -f " + shell_quote(s.text.string()) + " --ctx 64 --chunks 4 -t 1");
  ASSERT_EQ(text.exit_code, 0) << text.output;
  EXPECT_NE(text.output.find("PPL = "), std::string::npos) << text.output;
  EXPECT_NE(text.output.find(" ± "), std::string::npos) << text.output;
  EXPECT_NE(text.output.find("tokens/s"), std::string::npos) << text.output;

  const json j = run_json(s, "perplexity -m " + shell_quote(s.f32.string()) + " -f " + shell_quote(s.text.string()) +
                                 " --ctx 64 --chunks 3 --kv-type f32 --json");
  EXPECT_EQ(j.at("n_ctx"), 64);
  EXPECT_EQ(j.at("n_chunks"), 3);
  EXPECT_EQ(j.at("n_scored"), 3 * 31);
  EXPECT_EQ(j.at("kv_type"), "f32");
  // stories260K knows children's stories, not Jane Austen: well above 1, far below uniform (512).
  EXPECT_GT(j.at("ppl").get<double>(), 5.0);
  EXPECT_LT(j.at("ppl").get<double>(), 200.0);
  EXPECT_GT(j.at("ppl_stderr").get<double>(), 0.0);
  EXPECT_GT(j.at("tokens_per_second").get<double>(), 0.0);
}

TEST(PerplexityCli, ErrorsNameTheProblem) {
  CliFiles s;
  prepare(s);
  if (s.f32.empty()) return;
  const auto short_text = s.dir / "short.txt";
  write_file(short_text, "Emma Woodhouse, handsome, clever, and rich.");
  CommandResult r = run_cli("perplexity -m " + shell_quote(s.f32.string()) + " -f " + shell_quote(short_text.string()));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("fewer than one chunk of 512"), std::string::npos) << r.output;
  r = run_cli("perplexity -m " + shell_quote((s.dir / "missing.gguf").string()) + " -f " + shell_quote(s.text.string()));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("missing.gguf"), std::string::npos) << r.output;
  r = run_cli("perplexity -m " + shell_quote(s.f32.string()) + " -f " + shell_quote(s.text.string()) + " --ctx 2");
  EXPECT_NE(r.exit_code, 0);
}

TEST(KldCli, SavedBaseLogitsGiveTheSameAnswer) {
  CliFiles s;
  prepare(s);
  if (s.f32.empty()) return;
  const auto saved = s.dir / "base.logits";
  const std::string common = " -m " + shell_quote(s.f16.string()) + " -f " + shell_quote(s.text.string()) + " --ctx 64 --chunks 4 --json";
  const json direct = run_json(s, "kld --base " + shell_quote(s.f32.string()) + " --save-logits " + shell_quote(saved.string()) + common);
  ASSERT_TRUE(std::filesystem::exists(saved));
  const json reused = run_json(s, "kld --base-logits " + shell_quote(saved.string()) + common);
  EXPECT_EQ(direct.at("n_scored"), 4 * 31);
  EXPECT_EQ(reused.at("n_scored"), 4 * 31);
  EXPECT_GT(direct.at("kld_mean").get<double>(), 0.0);
  EXPECT_NEAR(reused.at("kld_mean").get<double>(), direct.at("kld_mean").get<double>(), 0.05 * direct.at("kld_mean").get<double>());
  EXPECT_NEAR(reused.at("ppl_base").get<double>(), direct.at("ppl_base").get<double>(), 1e-5);
  EXPECT_EQ(reused.at("ppl_model"), direct.at("ppl_model"));
  EXPECT_EQ(reused.at("top1_agreement"), direct.at("top1_agreement"));
  // The text report.
  const CommandResult text = run_cli("kld --base-logits " + shell_quote(saved.string()) + " -m " + shell_quote(s.f16.string()) + " -f " +
                                     shell_quote(s.text.string()) + " --ctx 64 --chunks 4");
  ASSERT_EQ(text.exit_code, 0) << text.output;
  for (const char* line : {"Mean KLD", "99% KLD", "Same top", "PPL(base)", "ΔPPL"}) {
    EXPECT_NE(text.output.find(line), std::string::npos) << line << " missing in\n" << text.output;
  }
}

TEST(KldCli, MismatchedOrCorruptBaseLogitsAreRefused) {
  CliFiles s;
  prepare(s);
  if (s.f32.empty()) return;
  const auto saved = s.dir / "base.logits";
  const std::string model_text = " -m " + shell_quote(s.f16.string()) + " -f " + shell_quote(s.text.string());
  run_json(s, "kld --base " + shell_quote(s.f32.string()) + " --save-logits " + shell_quote(saved.string()) + model_text + " --ctx 64 --chunks 2 --json");

  CommandResult r = run_cli("kld --base-logits " + shell_quote(saved.string()) + model_text + " --ctx 32 --chunks 2");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("saved with n_ctx 64 but this run uses --ctx 32"), std::string::npos) << r.output;

  std::string bytes = read_file(saved);
  bytes[bytes.size() / 2] ^= 0x40;
  const auto corrupt = s.dir / "corrupt.logits";
  write_file(corrupt, bytes);
  r = run_cli("kld --base-logits " + shell_quote(corrupt.string()) + model_text + " --ctx 64 --chunks 2");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find(corrupt.string() + ": checksum"), std::string::npos) << r.output;

  r = run_cli("kld --base " + shell_quote(s.f32.string()) + " --base-logits " + shell_quote(saved.string()) + model_text);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("one of them"), std::string::npos) << r.output;
  r = run_cli("kld --base-logits " + shell_quote(saved.string()) + " --save-logits " + shell_quote((s.dir / "x").string()) + model_text);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_FALSE(std::filesystem::exists(s.dir / "x"));
}

}  // namespace
}  // namespace piquant::testing
