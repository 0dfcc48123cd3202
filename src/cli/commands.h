#pragma once
// Each subcommand registers itself on the app; main() runs the one chosen.
#include <CLI/CLI.hpp>

namespace piquant::cli {

void register_convert(CLI::App& app);
void register_inspect(CLI::App& app);
void register_synth(CLI::App& app);
void register_generate(CLI::App& app);
void register_chat(CLI::App& app);
void register_perplexity(CLI::App& app);
void register_kld(CLI::App& app);
void register_quantize(CLI::App& app);
void register_imatrix(CLI::App& app);
void register_awq(CLI::App& app);
void register_bench(CLI::App& app);
void register_finetune(CLI::App& app);
void register_train(CLI::App& app);
void register_merge(CLI::App& app);
void register_prune(CLI::App& app);
void register_train_tokenizer(CLI::App& app);
void register_pipeline(CLI::App& app);

}  // namespace piquant::cli
