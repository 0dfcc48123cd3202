#include "cli/commands.h"
#include "core/error.h"

namespace piquant::cli {

// Placeholder until the engine lands (issue 3): says so instead of pretending.
void register_kld(CLI::App& app) {
  app.add_subcommand("kld", "(not implemented yet)")->callback([] { throw Error("'kld' is not implemented yet"); });
}

}  // namespace piquant::cli
