// Forcing SIMD targets: the switch the other kernel tests rely on must really switch.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <string>

#include "core/error.h"
#include "kernel_test_support.h"

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

}  // namespace
}  // namespace piquant
