#include "cli/commands.h"

namespace piquant::cli {

void register_inspect(CLI::App& app) {
  app.add_subcommand("inspect", "(not yet)");
}

}  // namespace piquant::cli
