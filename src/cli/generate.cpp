#include "cli/commands.h"
#include "core/error.h"

namespace piquant::cli {

// Placeholder until the engine lands (issue 3): says so instead of pretending.
void register_generate(CLI::App& app) {
  app.add_subcommand("generate", "(not implemented yet)")->callback([] { throw Error("'generate' is not implemented yet"); });
}

}  // namespace piquant::cli
