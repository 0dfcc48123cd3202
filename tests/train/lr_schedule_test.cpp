#include "train/lr_schedule.h"

#include <gtest/gtest.h>

#include <cmath>

namespace piquant {
namespace {

TEST(LrSchedule, WarmupRisesLinearlyThenCosineEndsAtTheFloor) {
  const LrSchedule s{.peak = 1.0, .warmup_steps = 4, .total_steps = 14, .min_ratio = 0.1, .cosine = true};
  EXPECT_DOUBLE_EQ(s.at(0), 0.25);
  EXPECT_DOUBLE_EQ(s.at(3), 1.0);
  EXPECT_DOUBLE_EQ(s.at(4), 1.0);                                  // decay starts at the peak
  EXPECT_NEAR(s.at(13), 0.1, 1e-15);                              // last step: the floor
  EXPECT_NEAR(s.at(8), 0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI * 4.0 / 9)), 1e-12);  // step 8: 4 of 9 decay steps
  for (int i = 5; i < 14; ++i) EXPECT_LT(s.at(i), s.at(i - 1));
}

TEST(LrSchedule, ConstantWithoutCosine) {
  const LrSchedule s{.peak = 2e-4, .warmup_steps = 0, .total_steps = 10, .min_ratio = 0.1, .cosine = false};
  for (int i = 0; i < 10; ++i) EXPECT_EQ(s.at(i), 2e-4);
}

}  // namespace
}  // namespace piquant
