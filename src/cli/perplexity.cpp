#include "cli/commands.h"
#include "core/error.h"

namespace piquant::cli {

// Placeholder until the engine lands (issue 3): says so instead of pretending.
void register_perplexity(CLI::App& app) {
  app.add_subcommand("perplexity", "(not implemented yet)")->callback([] { throw Error("'perplexity' is not implemented yet"); });
}

}  // namespace piquant::cli
