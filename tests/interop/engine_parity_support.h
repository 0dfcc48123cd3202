#pragma once
// Shared by the engine parity tests: models converted by the piquant CLI into a
// test's temporary folder, and small numeric helpers that do not use piquant's own
// evaluation code (so they can check it).
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "support/model_fixtures.h"
#include "support/test_support.h"

namespace piquant::testing {

// Softmax in double.
std::vector<double> softmax(std::span<const float> logits);

// KL(p ‖ q) in double between the next-token distributions of two logit rows of the
// same length: p = softmax(reference), q = softmax(logits). From log-softmax, so
// probabilities far below double's range still count exactly.
double kl_divergence(std::span<const float> reference, std::span<const float> logits);

}  // namespace piquant::testing
