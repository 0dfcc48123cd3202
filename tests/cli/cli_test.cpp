// The CLI: bad input gives a one-line error naming the file and a non-zero exit.
#include <gtest/gtest.h>

#include "support/test_support.h"

namespace piquant {
namespace {

TEST(Cli, CorruptGgufIsAClearErrorNotACrash) {
  testing::TempDir dir;
  testing::write_file(dir / "bad.gguf", std::string("GGUF\x03\0\0\0", 8) + std::string(8, '\xff') + std::string(8, '\0'));
  for (const std::string& cmd : std::vector<std::string>{"inspect ", "convert -o " + (dir / "out.gguf").string() + " "}) {
    const auto result = testing::run_cli(cmd + (dir / "bad.gguf").string());
    EXPECT_EQ(result.exit_code, 1) << result.output;
    EXPECT_NE(result.output.find("bad.gguf"), std::string::npos) << result.output;
    EXPECT_NE(result.output.find("piquant: error:"), std::string::npos) << result.output;
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "out.gguf"));
}

TEST(Cli, MissingInputAndBadOptions) {
  testing::TempDir dir;
  auto result = testing::run_cli("convert " + (dir / "nothing").string() + " -o " + (dir / "x.gguf").string());
  EXPECT_NE(result.exit_code, 0);
  EXPECT_NE(result.output.find("nothing"), std::string::npos) << result.output;
  result = testing::run_cli("synth --preset llama-9 -o " + (dir / "s").string());
  EXPECT_NE(result.exit_code, 0);
  EXPECT_NE(result.output.find("llama-9"), std::string::npos) << result.output;
  result = testing::run_cli("convert a -o b --type q9");
  EXPECT_NE(result.exit_code, 0);
  result = testing::run_cli("frobnicate");
  EXPECT_NE(result.exit_code, 0);
}

TEST(Cli, SynthConvertInspectTiny) {
  testing::TempDir dir;
  auto result = testing::run_cli("synth --preset tiny --mlp-widths 0-1:384 -o " + (dir / "hf").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  result = testing::run_cli("convert " + (dir / "hf").string() + " -o " + (dir / "m.gguf").string() + " --type bf16");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  result = testing::run_cli("inspect " + (dir / "m.gguf").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("architecture:   deci"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("384 x2 (layers 0-1), 512 x2 (layers 2-3)"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("BF16"), std::string::npos) << result.output;
  result = testing::run_cli("inspect --json " + (dir / "hf").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("\"model.layers.3.mlp.down_proj.weight\""), std::string::npos);
}

}  // namespace
}  // namespace piquant

namespace piquant {
namespace {

TEST(Cli, QuantizeDryRunAndRecipes) {
  testing::TempDir dir;
  ASSERT_EQ(testing::run_cli("synth --preset tiny -o " + (dir / "hf").string()).exit_code, 0);
  auto result = testing::run_cli("quantize " + (dir / "hf").string() + " --dry-run --recipe Q4_K_M");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("blk.0.attn_v.weight"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("q6_K"), std::string::npos) << result.output;
  EXPECT_FALSE(std::filesystem::exists(dir / "q.gguf"));
  result = testing::run_cli("quantize " + (dir / "hf").string() + " " + (dir / "q.gguf").string() + " Q4_K_M");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  result = testing::run_cli("inspect " + (dir / "q.gguf").string());
  EXPECT_NE(result.output.find("Q4_K - Medium"), std::string::npos) << result.output;
  result = testing::run_cli("generate -m " + (dir / "q.gguf").string() + " -p hello -n 4 --temp 0");
  EXPECT_EQ(result.exit_code, 0) << result.output;
  result = testing::run_cli("quantize " + (dir / "hf").string() + " " + (dir / "x.gguf").string() + " Q9_X");
  EXPECT_NE(result.exit_code, 0);
  EXPECT_NE(result.output.find("Q9_X"), std::string::npos) << result.output;
  EXPECT_FALSE(std::filesystem::exists(dir / "x.gguf"));
}

}  // namespace
}  // namespace piquant
