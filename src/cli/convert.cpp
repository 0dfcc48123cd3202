#include "cli/commands.h"

namespace piquant::cli {

void register_convert(CLI::App& app) {
  app.add_subcommand("convert", "(not yet)");
}

}  // namespace piquant::cli
