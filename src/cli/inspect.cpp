// piquant inspect: what is in a GGUF, a .safetensors file or a Hugging Face folder.
#include <iostream>

#include "cli/commands.h"
#include "checkpoint/model_report.h"

namespace piquant::cli {

void register_inspect(CLI::App& app) {
  struct Args {
    std::string path;
    bool json = false;
    bool all = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("inspect", "Show a model file's architecture, sizes, metadata and tensors");
  cmd->add_option("file", args->path, "GGUF file, .safetensors file or Hugging Face folder")->required();
  cmd->add_flag("--json", args->json, "Print everything as JSON (all metadata values in full)");
  cmd->add_flag("--all", args->all, "Print metadata arrays in full");
  cmd->callback([args] {
    const nlohmann::json report = inspect_model_file(args->path);
    if (args->json) {
      std::cout << report.dump(1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    } else {
      std::cout << render_model_report(report, args->all);
    }
  });
}

}  // namespace piquant::cli
