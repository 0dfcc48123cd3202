#include "cli/commands.h"

namespace piquant::cli {

void register_synth(CLI::App& app) {
  app.add_subcommand("synth", "(not yet)");
}

}  // namespace piquant::cli
