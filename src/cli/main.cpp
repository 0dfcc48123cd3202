// piquant: prune, recover, convert, quantize and run Llama-family models on small CPUs.
#include <CLI/CLI.hpp>

#include <exception>
#include <iostream>

#include "cli/commands.h"
#include "core/error.h"
#include "core/logger.h"
#include "kernels/simd_target.h"

int main(int argc, char** argv) {
  CLI::App app{"piquant: Llama-family models from Hugging Face checkpoints to small, fast GGUF files"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "piquant 0.1.0");
  bool verbose = false;
  bool quiet = false;
  app.add_flag("-v,--verbose", verbose, "Log debug messages");
  app.add_flag("-q,--quiet", quiet, "Log warnings and errors only");
  app.parse_complete_callback([&] {
    if (verbose) piquant::log::set_level(piquant::log::Level::Debug);
    if (quiet) piquant::log::set_level(piquant::log::Level::Warn);
  });

  piquant::cli::register_convert(app);
  piquant::cli::register_inspect(app);
  piquant::cli::register_synth(app);
  piquant::cli::register_generate(app);
  piquant::cli::register_chat(app);
  piquant::cli::register_perplexity(app);
  piquant::cli::register_kld(app);
  piquant::cli::register_quantize(app);
  piquant::cli::register_imatrix(app);
  piquant::cli::register_awq(app);
  piquant::cli::register_bench(app);
  piquant::cli::register_finetune(app);
  piquant::cli::register_train(app);
  piquant::cli::register_merge(app);
  piquant::cli::register_prune(app);
  piquant::cli::register_train_tokenizer(app);
  piquant::cli::register_pipeline(app);

  try {
    piquant::force_simd_target_from_env();  // PIQUANT_SIMD=scalar|sse4|avx2|avx512|avx512vnni|neon|best
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::cerr << "piquant: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
