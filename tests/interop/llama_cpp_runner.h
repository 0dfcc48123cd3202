#pragma once
// Runs stock llama.cpp (tests/interop/llama_cpp.mjs over the npm package
// node-llama-cpp) and hands back its JSON answer.
#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "support/model_fixtures.h"

namespace piquant::testing {

// Runs `node llama_cpp.mjs ARGS...` and parses the JSON it prints. Throws
// std::runtime_error carrying the command, exit code and llama.cpp's log when the
// script fails or prints something that is not JSON; gtest reports that as a test
// failure with the message.
nlohmann::json run_llama_cpp(const std::vector<std::string>& args);

// The same for the piquant CLI: runs it, expects exit code 0, parses stdout as JSON.
nlohmann::json run_cli_json(const std::string& args);


}  // namespace piquant::testing
