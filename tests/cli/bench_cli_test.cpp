// `piquant bench` end to end on stories260K: the shape of each output format and its
// errors. No assertion depends on how fast the machine is.
#include <nlohmann/json.hpp>

#include <sstream>
#include <string>
#include <vector>

#include "support/model_fixtures.h"
#include "support/test_support.h"

namespace piquant::testing {
namespace {

using nlohmann::json;

// Leaves `model` empty (and the test skipped) without the shared data.
void stories(const TempDir& dir, std::filesystem::path& model) {
  const auto checkpoint = PIQUANT_SHARED_FILE("models/stories260K/stories260K.bin");
  const auto tokenizer = PIQUANT_SHARED_FILE("models/stories260K/tok512.bin");
  model = convert_stories260k(dir, checkpoint, tokenizer, "f32");
}

// stdout of `piquant ARGS` alone: progress goes to stderr, which run_command keeps
// apart here (the subshell's stderr is what it captures).
std::string cli_stdout(const TempDir& dir, const std::string& args) {
  const auto out = dir / "stdout.txt";
  const CommandResult r = run_command("( " + shell_quote(PIQUANT_CLI) + " " + args + " > " + shell_quote(out.string()) + " )");
  EXPECT_EQ(r.exit_code, 0) << args << ":\n" << r.output;
  return read_file(out);
}

// Small settings.
std::string bench_stdout(const TempDir& dir, const std::filesystem::path& model, const std::string& extra) {
  return cli_stdout(dir, "bench -m " + shell_quote(model.string()) + " -p 4,8 -n 3 -r 1 -t 1 --bandwidth-mib 1 " + extra);
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

TEST(BenchCli, JsonHasEveryKey) {
  TempDir dir;
  std::filesystem::path model;
  stories(dir, model);
  if (model.empty()) return;
  const json j = json::parse(bench_stdout(dir, model, "-o json --kv-type f32"));
  for (const char* key : {"model", "architecture", "model_bytes", "model_gib", "n_params", "threads", "kv_type", "use_mmap",
                          "reps", "n_ctx", "token_source", "token_seed", "load_cold_seconds", "cold_evicted",
                          "cold_cached_fraction_max", "load_warm_seconds", "warm_cached_fraction_min", "prompt", "decode",
                          "rss_after_load_bytes", "peak_rss_bytes", "bytes_per_token", "bandwidth"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_EQ(j.at("model_bytes").get<std::uint64_t>(), std::filesystem::file_size(model));
  EXPECT_EQ(j.at("threads"), 1);
  EXPECT_EQ(j.at("kv_type"), "f32");
  EXPECT_EQ(j.at("use_mmap"), true);
  EXPECT_EQ(j.at("reps"), 1);
  ASSERT_EQ(j.at("prompt").size(), 2u);
  EXPECT_EQ(j.at("prompt")[1].at("n_tokens"), 8);
  EXPECT_EQ(j.at("prompt")[0].at("ttft_seconds").at("n"), 1);
  EXPECT_EQ(j.at("prompt")[0].at("tokens_per_second").at("stddev"), 0.0);
  EXPECT_EQ(j.at("decode").at("n_tokens"), 3);
  EXPECT_GT(j.at("decode").at("tokens_per_second").at("mean").get<double>(), 0.0);
  EXPECT_EQ(j.at("load_cold_seconds").at("samples").size(), 1u);  // --cold-reps defaults to 1
  for (const char* key : {"weights", "kv", "total", "kv_bytes_per_position", "mean_decode_positions"}) {
    EXPECT_TRUE(j.at("bytes_per_token").contains(key)) << key;
  }
  EXPECT_EQ(j.at("bandwidth").at("buffer_bytes"), 1 << 20);
  EXPECT_GT(j.at("bandwidth").at("read_gbs").get<double>(), 0.0);
  EXPECT_TRUE(j.at("bandwidth").contains("efficiency"));
}

TEST(BenchCli, CsvHasOneRowPerMeasurement) {
  TempDir dir;
  std::filesystem::path model;
  stories(dir, model);
  if (model.empty()) return;
  const auto lines = lines_of(bench_stdout(dir, model, "-o csv --cold-reps 0"));
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines[0], "model,threads,kv_type,mmap,measurement,unit,n,mean,stddev");
  std::vector<std::string> measurements;
  for (std::size_t i = 1; i < lines.size(); ++i) {
    std::vector<std::string> fields;
    std::istringstream in(lines[i]);
    for (std::string f; std::getline(in, f, ',');) fields.push_back(f);
    ASSERT_EQ(fields.size(), 9u) << lines[i];
    measurements.push_back(fields[4]);
  }
  const std::vector<std::string> expected = {"load_warm", "ttft_pp4", "pp4", "ttft_pp8", "pp8", "tg3", "rss_after_load",
                                             "peak_rss", "bytes_per_token", "weight_bytes_per_token", "read_bandwidth",
                                             "bandwidth_efficiency", "model_size", "n_params"};
  EXPECT_EQ(measurements, expected);  // no load_cold row with --cold-reps 0
}

TEST(BenchCli, MarkdownIsALlamaBenchTablePlusMeasurements) {
  TempDir dir;
  std::filesystem::path model;
  stories(dir, model);
  if (model.empty()) return;
  const std::string md = bench_stdout(dir, model, "");
  EXPECT_EQ(md.rfind("| model | size | params | threads | test | t/s |\n", 0), 0u) << md;
  for (const char* text : {"| pp4 |", "| pp8 |", "| tg3 |", " ± ", "load, cold", "load, warm", "time to first token, pp8",
                           "peak RSS", "bytes read per decoded token", "read bandwidth, 1 threads", "bandwidth efficiency",
                           "pseudo-random token ids"}) {
    EXPECT_NE(md.find(text), std::string::npos) << text << " in\n" << md;
  }
}

TEST(BenchCli, BandwidthTableNeedsNoModel) {
  TempDir dir;
  const std::string csv = cli_stdout(dir, "bench --bandwidth -t 2 --bandwidth-mib 1 -o csv");
  const auto lines = lines_of(csv);
  ASSERT_EQ(lines.size(), 3u) << csv;
  EXPECT_EQ(lines[0], "threads,buffer_bytes,read_gbs,best_seconds");
  EXPECT_EQ(lines[1].rfind("1,1048576,", 0), 0u) << lines[1];
  EXPECT_EQ(lines[2].rfind("2,1048576,", 0), 0u) << lines[2];
}

TEST(BenchCli, ErrorsNameTheProblem) {
  TempDir dir;
  const auto model = dir / "m.gguf";
  write_file(model, "unused");
  const std::string m = " -m " + shell_quote(model.string());
  const struct {
    std::string args;
    std::string message;
  } cases[] = {
      {"bench" + m + " -o xml", "--output"},
      {"bench" + m + " -p 64,0", "prompt length (-p) must be positive, got 0"},
      {"bench" + m + " -n 0", "decode length (-n) must be positive, got 0"},
      {"bench" + m + " -r 0", "repetitions (-r) must be positive, got 0"},
      {"bench -m " + shell_quote((dir / "missing.gguf").string()), "missing.gguf: no such model file"},
      {"bench", "-m/--model is required"},
  };
  for (const auto& c : cases) {
    const CommandResult r = run_cli(c.args);
    EXPECT_NE(r.exit_code, 0) << c.args;
    EXPECT_NE(r.output.find(c.message), std::string::npos) << c.args << ":\n" << r.output;
  }
}

}  // namespace
}  // namespace piquant::testing

namespace piquant::testing {
namespace {

// --project-pi4 on a model whose matrices are all K-quants (the tiny preset, Q4_K_M):
// the per-type table and the bounds; a float model is refused with a message naming
// the type the projection has no kernel cycles for.
TEST(BenchCli, ProjectPi4PrintsTheProjection) {
  const TempDir dir;
  const auto hf = synth_tiny(dir, "synth", "512,512,512,512", 0.05f);
  const auto f32 = dir / "tiny-f32.gguf";
  const auto q4 = dir / "tiny-q4km.gguf";
  ASSERT_EQ(run_cli("-q convert " + shell_quote(hf.string()) + " --type f32 -o " + shell_quote(f32.string())).exit_code, 0);
  ASSERT_EQ(run_cli("-q quantize " + shell_quote(f32.string()) + " " + shell_quote(q4.string()) + " Q4_K_M").exit_code, 0);
  const std::string out = cli_stdout(dir, "bench -m " + shell_quote(q4.string()) + " --project-pi4");
  EXPECT_NE(out.find("Raspberry Pi 4 decode projection"), std::string::npos) << out;
  EXPECT_NE(out.find("| q4_K |"), std::string::npos) << out;
  EXPECT_NE(out.find("| 1.50 GHz | 5.5 GB/s |"), std::string::npos) << out;
  const CommandResult f = run_cli("bench -m " + shell_quote(f32.string()) + " --project-pi4");
  EXPECT_NE(f.exit_code, 0);
  EXPECT_NE(f.output.find("f32"), std::string::npos) << f.output;
}

}  // namespace
}  // namespace piquant::testing
