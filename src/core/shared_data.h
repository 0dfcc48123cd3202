#pragma once
// Where the project's shared test data lives: $PIQUANT_SHARED, else a "shared"
// folder beside the project (found from the working directory or the executable).
#include <filesystem>
#include <string>

namespace piquant {

// The path of `relative` inside the shared folder; throws Error listing the places tried.
std::filesystem::path find_shared_file(const std::string& relative);

}  // namespace piquant
