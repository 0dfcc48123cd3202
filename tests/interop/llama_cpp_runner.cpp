#include "interop/llama_cpp_runner.h"

#include <stdexcept>

#include "support/model_fixtures.h"
#include "support/test_support.h"

namespace piquant::testing {
namespace {

struct SplitOutput {
  int exit_code = -1;
  std::string out;  // stdout alone: the JSON
  std::string err;  // stderr: logs and error messages
};

// run_command() merges stderr into stdout; JSON must come through untouched, so the
// two streams go to separate files in a fresh folder.
SplitOutput run_split(const std::string& command_line) {
  const TempDir dir;
  const auto out_path = dir / "stdout";
  const auto err_path = dir / "stderr";
  const CommandResult result = run_command("{ " + command_line + " >" + shell_quote(out_path.string()) + " 2>" +
                                           shell_quote(err_path.string()) + "; }");
  return SplitOutput{result.exit_code, read_file(out_path), read_file(err_path) + result.output};
}

nlohmann::json parse_or_throw(const std::string& what, const SplitOutput& run) {
  if (run.exit_code != 0) {
    throw std::runtime_error(what + " exited with " + std::to_string(run.exit_code) + "\n--- stderr ---\n" +
                             run.err + "--- stdout ---\n" + run.out.substr(0, 2000));
  }
  try {
    return nlohmann::json::parse(run.out);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(what + " printed no valid JSON (" + e.what() + ")\n--- stdout ---\n" +
                             run.out.substr(0, 2000) + "\n--- stderr ---\n" + run.err);
  }
}

}  // namespace

nlohmann::json run_llama_cpp(const std::vector<std::string>& args) {
  const std::string node = PIQUANT_NODE;
  if (node.empty()) {
    throw std::runtime_error("node was not found when the project was configured; install Node.js >= 18 "
                             "or configure with -DPIQUANT_INTEROP_TESTS=OFF");
  }
  // Built with += throughout: g++ 12 warns falsely (-Wrestrict) on "literal" + std::string&&.
  std::string command = "PIQUANT_INTEROP_DIR=";
  command += shell_quote(PIQUANT_INTEROP_DIR);
  for (const std::string& part : {std::string(node), std::string(PIQUANT_INTEROP_SCRIPT)}) {
    command += ' ';
    command += shell_quote(part);
  }
  for (const auto& arg : args) {
    command += ' ';
    command += shell_quote(arg);
  }
  return parse_or_throw("llama_cpp.mjs (" + command + ")", run_split(command));
}

nlohmann::json run_cli_json(const std::string& args) {
  const std::string command = shell_quote(PIQUANT_CLI) + " " + args;
  return parse_or_throw("piquant (" + command + ")", run_split(command));
}

}  // namespace piquant::testing
