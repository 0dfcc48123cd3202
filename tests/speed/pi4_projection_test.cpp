// The Pi 4 projection's arithmetic on hand-made numbers, its errors, and the committed
// kernel cycle table's coverage. Whether that table is still what today's kernels give
// is not a unit test's question (it cross-compiles and runs qemu and llvm-mca, whose
// versions move the numbers): scripts/test.sh checks it within a tolerance with
// bench/pi4/kernel_cycles.sh --check.
#include "speed/pi4_projection.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/error.h"

namespace piquant {
namespace {

// Made-up kernels with round numbers, so every expected value below is done by hand.
const Pi4KernelCycles kHandTable[] = {
    {GgmlType::Q4_0, 32, 16.0, 40.0, 0.0},
    {GgmlType::Q6_K, 256, 200.0, 100.0, 0.0},
};

TEST(Pi4Projection, ArithmeticByHand) {
  const std::vector<Pi4Matrix> matrices = {
      {"a", GgmlType::Q4_0, 1000, 4096},  // 128 000 blocks of 18 bytes
      {"b", GgmlType::Q6_K, 500, 512},    // 1 000 super-blocks of 210 bytes
      {"c", GgmlType::Q4_0, 1, 64},       // 2 blocks
  };
  Pi4Settings settings;
  settings.clocks_ghz = {1.0};
  settings.cores = 2;
  settings.bandwidths_gbs = {2.0, 4.0};
  const Pi4Projection p = project_pi4(matrices, settings, kHandTable);

  ASSERT_EQ(p.per_type.size(), 2u);
  const Pi4TypeCost& q4 = p.per_type[0];
  EXPECT_EQ(q4.type, GgmlType::Q4_0);
  EXPECT_EQ(q4.matrices, 2);
  EXPECT_EQ(q4.rows, 1001);
  EXPECT_EQ(q4.blocks, 128002);
  EXPECT_EQ(q4.weights, 4096000 + 64);
  EXPECT_EQ(q4.bytes, 128002u * 18u);                      // 2 304 036
  EXPECT_DOUBLE_EQ(q4.cycles, 128002.0 * 16 + 1001.0 * 40);  // 2 048 032 + 40 040 = 2 088 072
  const Pi4TypeCost& q6 = p.per_type[1];
  EXPECT_EQ(q6.type, GgmlType::Q6_K);
  EXPECT_EQ(q6.blocks, 1000);
  EXPECT_EQ(q6.bytes, 210000u);
  EXPECT_DOUBLE_EQ(q6.cycles, 250000.0);  // 1000 · 200 + 500 · 100

  // The breakdown sums to the totals.
  EXPECT_DOUBLE_EQ(p.cycles, 2338072.0);
  EXPECT_EQ(p.bytes, 2514036u);

  ASSERT_EQ(p.bounds.size(), 2u);
  // 2 338 072 cycles / (1 GHz · 2 cores) = 1.169036 ms; 2 514 036 bytes / 2 GB/s = 1.257018 ms.
  EXPECT_NEAR(p.bounds[0].compute_seconds, 1.169036e-3, 1e-12);
  EXPECT_NEAR(p.bounds[0].memory_seconds, 1.257018e-3, 1e-12);
  EXPECT_FALSE(p.bounds[0].compute_bound());
  EXPECT_NEAR(p.bounds[0].tokens_per_second(), 1.0 / 1.257018e-3, 1e-6);  // 795.5 t/s
  // At 4 GB/s memory takes 0.628509 ms: compute binds.
  EXPECT_NEAR(p.bounds[1].memory_seconds, 0.628509e-3, 1e-12);
  EXPECT_TRUE(p.bounds[1].compute_bound());
  EXPECT_NEAR(p.bounds[1].tokens_per_second(), 1.0 / 1.169036e-3, 1e-6);  // 855.4 t/s

  const std::string text = format_pi4_projection(p, "hand");
  EXPECT_NE(text.find("| q4_0 | 2 | 1001 | 128002 |"), std::string::npos) << text;
  EXPECT_NE(text.find("memory"), std::string::npos);
  EXPECT_NE(text.find("855.41 t/s"), std::string::npos) << text;
  EXPECT_NE(text.find("Not counted: attention"), std::string::npos);
}

TEST(Pi4Projection, DefaultSettingsCoverBothClocksAndBandwidths) {
  const std::vector<Pi4Matrix> matrices = {{"a", GgmlType::Q4_0, 4096, 4096}};
  const Pi4Projection p = project_pi4(matrices, {}, kHandTable);
  ASSERT_EQ(p.bounds.size(), 4u);
  EXPECT_EQ(p.cores, 4);
  EXPECT_DOUBLE_EQ(p.bounds[0].clock_ghz, 1.5);
  EXPECT_DOUBLE_EQ(p.bounds[0].bandwidth_gbs, 5.5);
  EXPECT_DOUBLE_EQ(p.bounds[3].clock_ghz, 1.8);
  EXPECT_DOUBLE_EQ(p.bounds[3].bandwidth_gbs, 12.8);
  // 4096 · 128 · 16 + 4096 · 40 = 8 552 448 cycles over 4 cores at 1.5 GHz.
  EXPECT_NEAR(p.bounds[0].compute_seconds, 8552448.0 / 6e9, 1e-15);
}

TEST(Pi4Projection, TypeWithoutKernelIsAnErrorNamingIt) {
  const std::vector<Pi4Matrix> matrices = {{"a", GgmlType::Q4_0, 8, 64}, {"output", GgmlType::F16, 8, 64}};
  try {
    project_pi4(matrices, {}, kHandTable);
    FAIL() << "F16 has no kernel in the table";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("output"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("f16"), std::string::npos) << e.what();
  }
  const std::vector<Pi4Matrix> ragged = {{"r", GgmlType::Q6_K, 8, 300}};
  EXPECT_THROW(project_pi4(ragged, {}, kHandTable), Error);
  const std::vector<Pi4Matrix> empty = {{"e", GgmlType::Q4_0, 0, 64}};
  EXPECT_THROW(project_pi4(empty, {}, kHandTable), Error);
}

TEST(Pi4Projection, CommittedTableHasEveryQuantizedDecodeType) {
  for (const GgmlType t : {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1,
                           GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K}) {
    const Pi4KernelCycles* k = find_pi4_kernel_cycles(t);
    ASSERT_NE(k, nullptr) << ggml_type_name(t);
    EXPECT_EQ(k->weights_per_block, ggml_type_info(t).block_size) << ggml_type_name(t);
    // A 128-bit A72 core retires at most 3 instructions a cycle, and a block takes some work.
    EXPECT_GE(k->cycles_per_block, k->instructions_per_block / 3.0) << ggml_type_name(t);
    EXPECT_GT(k->cycles_per_block, 0.0) << ggml_type_name(t);
  }
  EXPECT_EQ(find_pi4_kernel_cycles(GgmlType::F16), nullptr);
}

}  // namespace
}  // namespace piquant
