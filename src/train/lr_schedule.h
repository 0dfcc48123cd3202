#pragma once
// The learning rate at each optimizer step: linear warm-up from 0, then a cosine decay
// to min_ratio · peak at the last step (constant when decay is off).
#include <cstdint>

namespace piquant {

struct LrSchedule {
  double peak = 1e-4;
  std::int64_t warmup_steps = 0;
  std::int64_t total_steps = 1;  // optimizer steps in the run
  double min_ratio = 0.1;        // the rate at the last step, as a share of peak
  bool cosine = true;

  // Step s counts from 0: warm-up steps 0 .. w-1 use peak · (s + 1) / w.
  double at(std::int64_t step) const;
};

}  // namespace piquant
