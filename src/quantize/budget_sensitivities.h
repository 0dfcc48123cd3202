#pragma once
// The sensitivities a size budget needs (sensitivity.h), from the cache file where it
// holds them for this model, imatrix and calibration (sensitivity_file.h), measured where
// it does not, and the cache written back with everything measured so far.
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "quantize/budget_plan.h"
#include "quantize/imatrix_file.h"
#include "quantize/sensitivity_file.h"

namespace piquant {

struct BudgetSensitivityRequest {
  std::string model_path;        // the float model (GGUF or Hugging Face folder), as `checkpoint`
  std::string imatrix_path;      // "" without an imatrix
  std::string calibration_path;  // "": use the cache alone
  std::int64_t calibration_ctx = 256;
  std::int64_t calibration_chunks = 8;
  std::string cache_path;        // "": no cache
  unsigned n_threads = 0;        // 0: one per physical core
};

// Every sensitivity the unfixed choices need. A cache measured on another model, imatrix
// or calibration text is not used (the log says why); measurements it lacks are made on
// an F32 copy of the model. Throws Error when something is missing and no calibration
// text was given, naming what is missing.
SensitivityRecord budget_sensitivities(const BudgetSensitivityRequest& request, const Checkpoint& checkpoint,
                                       const std::vector<BudgetChoices>& choices, const ImportanceMatrix& imatrix);

}  // namespace piquant
