// Forcing SIMD targets: the switch the other kernel tests rely on must really switch.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <string>

#include "core/error.h"
#include "kernel_test_support.h"
#include "kernels/q8_matmul.h"

namespace piquant {
namespace {

TEST(SimdTarget, ListsTheBaselineAndTheBestTargetFirst) {
  kernel_test::SimdTargetReset reset;
  const std::vector<std::string> targets = simd_targets();
  ASSERT_FALSE(targets.empty());
  force_simd_target("");  // lifts a level PIQUANT_SIMD forced on the test binary
  EXPECT_EQ(simd_target(), targets.front());  // unforced: the best
#if defined(__x86_64__)
  // The portable baseline always runs (EMU128, or SCALAR where GCC < 12.3 builds it).
  EXPECT_TRUE(targets.back() == "EMU128" || targets.back() == "SCALAR") << targets.back();
#endif
}

TEST(SimdTarget, ForcingSwitchesAndLiftingRestores) {
  kernel_test::SimdTargetReset reset;
  const std::vector<std::string> targets = simd_targets();
  for (const std::string& t : targets) {
    force_simd_target(t);
    EXPECT_EQ(simd_target(), t);
    EXPECT_EQ(simd_targets(), targets) << "the list must not shrink while a target is forced";
  }
  force_simd_target("");
  EXPECT_EQ(simd_target(), targets.front());
}

TEST(SimdTarget, AcceptsAliasesAndRejectsUnknownNames) {
  kernel_test::SimdTargetReset reset;
  const std::vector<std::string> targets = simd_targets();
#if defined(__x86_64__)
  force_simd_target("scalar");
  EXPECT_EQ(simd_target(), targets.back());
#endif
  if (std::find(targets.begin(), targets.end(), "AVX3") != targets.end()) {
    force_simd_target("AVX512");
    EXPECT_EQ(simd_target(), "AVX3");
  }
  force_simd_target("best");
  EXPECT_EQ(simd_target(), targets.front());
  try {
    force_simd_target("mmx");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'mmx'"), std::string::npos) << e.what();
  }
}

TEST(SimdTarget, EnvironmentVariableForcesATarget) {
  kernel_test::SimdTargetReset reset;
  // Put back what the binary was started with: the CLI that other tests spawn reads it.
  const char* started_with = std::getenv("PIQUANT_SIMD");
  struct Restore {
    std::optional<std::string> value;
    ~Restore() {
      if (value) {
        ::setenv("PIQUANT_SIMD", value->c_str(), 1);
      } else {
        ::unsetenv("PIQUANT_SIMD");
      }
    }
  } restore{started_with ? std::optional<std::string>(started_with) : std::nullopt};
  const std::string last = simd_targets().back();
  ::setenv("PIQUANT_SIMD", last.c_str(), 1);
  force_simd_target_from_env();
  EXPECT_EQ(simd_target(), last);
  ::setenv("PIQUANT_SIMD", "nonsense", 1);
  EXPECT_THROW(force_simd_target_from_env(), Error);
}

// AVX-512 with and without VNNI are two levels (the VNNI kernels are a CPU-dependent path
// like a Highway target): listed next to each other, each forceable by name and alias,
// and the forced one decides which Q8 kernel runs.
TEST(SimdTarget, Avx512WithAndWithoutVnniAreSeparateLevels) {
  kernel_test::SimdTargetReset reset;
  const std::vector<std::string> targets = simd_targets();
  const auto vnni = std::find(targets.begin(), targets.end(), "AVX3_VNNI");
  if (vnni == targets.end()) {
    EXPECT_FALSE(simd_avx512_vnni_enabled());
    EXPECT_THROW(force_simd_target("avx512vnni"), Error);
    GTEST_SKIP() << "this CPU has no AVX-512 VNNI";
  }
  ASSERT_NE(vnni + 1, targets.end());
  EXPECT_EQ(*(vnni + 1), "AVX3") << "AVX-512 without VNNI comes right below";
  force_simd_target("avx512vnni");
  EXPECT_EQ(simd_target(), "AVX3_VNNI");
  EXPECT_TRUE(simd_avx512_vnni_enabled());
  const Q8MatmulRows with_vnni = find_q8_matmul(GgmlType::Q4_K);
  force_simd_target("avx512");
  EXPECT_EQ(simd_target(), "AVX3");
  EXPECT_FALSE(simd_avx512_vnni_enabled());
  EXPECT_NE(find_q8_matmul(GgmlType::Q4_K), with_vnni) << "forcing avx512 must rule out the VNNI kernels";
  force_simd_target("AVX3_VNNI");
  EXPECT_EQ(simd_target(), "AVX3_VNNI");
  EXPECT_EQ(find_q8_matmul(GgmlType::Q4_K), with_vnni);
  force_simd_target("avx512");
  force_simd_target("best");  // lifting the restriction brings VNNI back
  EXPECT_EQ(simd_target(), "AVX3_VNNI");
}

}  // namespace
}  // namespace piquant
