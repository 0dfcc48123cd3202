#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>

#include "core/error.h"
#include "kernels/simd_target.h"

// PIQUANT_SIMD applies to the test binaries as to the CLI, so that one machine runs the
// code another CPU would: with a level forced, the kernels dispatch to it, and tests
// that loop over SIMD targets (kernel_test_support.h) take only it and those below it.
int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (std::getenv("PIQUANT_SIMD") != nullptr) {
    try {
      piquant::force_simd_target_from_env();
    } catch (const piquant::Error& e) {
      std::fprintf(stderr, "%s\n", e.what());
      return 2;
    }
    // stderr: gtest_discover_tests reads the test list from stdout.
    std::fprintf(stderr, "PIQUANT_SIMD=%s: SIMD target %s\n", std::getenv("PIQUANT_SIMD"),
                 piquant::simd_target().c_str());
  }
  return RUN_ALL_TESTS();
}
