#pragma once
// Models and texts for the evaluation tests, made by the piquant CLI in a test's
// temporary folder from the shared test data.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "support/model_fixtures.h"
#include "support/test_support.h"

namespace piquant::testing {

// The first `bytes` of a text, cut back to a line end (no split UTF-8 sequence).
std::string text_head(const std::filesystem::path& path, std::size_t bytes);

}  // namespace piquant::testing
