// piquant train: full training of every weight from a random initialisation (a model
// shape from a config.json and a tokenizer), written as a GGUF model.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include <nlohmann/json.hpp>

#include "checkpoint/gguf_export.h"
#include "cli/commands.h"
#include "cli/train_args.h"
#include "core/error.h"
#include "core/logger.h"
#include "core/memory_info.h"
#include "engine/owned_model.h"
#include "formats/gguf.h"
#include "formats/hf_config.h"
#include "tokenizer/vocab.h"
#include "train/model_checkpoint.h"
#include "train/trainable.h"

namespace piquant::cli {
namespace {

struct TrainCmdArgs {
  std::string config, tokenizer, output, type = "f32", name = "piquant-trained";
  float init_std = 0.02f;
  TrainArgs train;
};

// A tokenizer.json, a GGUF file's vocabulary, a SentencePiece tokenizer.model or a
// llama2.c tokenizer.bin (n_vocab tokens).
Vocab load_any_vocab(const std::string& path, std::int64_t n_vocab) {
  const std::string ext = std::filesystem::path(path).extension().string();
  if (ext == ".json") return load_vocab_hf(path);
  if (ext == ".gguf") return load_vocab_gguf(GgufFile(path));
  if (ext == ".model") return load_vocab_sentencepiece(path);
  if (ext == ".bin") return load_vocab_llama2c(path, n_vocab);
  throw Error(path + ": not a tokenizer piquant reads (tokenizer.json, .gguf, tokenizer.model, llama2.c .bin)");
}

void run_train(TrainCmdArgs& args) {
  TrainArgs& ta = args.train;
  TrainerOptions& opts = ta.trainer;
  const unsigned threads = resolve_threads(ta.threads);
  const auto type = ggml_type_from_name(args.type);
  if (!type || (*type != GgmlType::F32 && *type != GgmlType::F16 && *type != GgmlType::BF16)) {
    throw Error("--type '" + args.type + "': use f32, f16 or bf16 (quantize afterwards)");
  }
  if (opts.checkpoint_path.empty() && (opts.resume || opts.checkpoint_every > 0)) {
    opts.checkpoint_path = args.output + ".checkpoint.safetensors";
  }
  const LlamaParams params = load_hf_config(args.config);
  const Vocab vocab = load_any_vocab(args.tokenizer, params.n_vocab);
  if (static_cast<std::int64_t>(vocab.size()) > params.n_vocab) {
    throw Error(args.tokenizer + ": " + std::to_string(vocab.size()) + " tokens, more than the config's vocab_size " +
                std::to_string(params.n_vocab));
  }
  auto model = OwnedLlamaModel::random(params, vocab, RopePairing::Interleaved, opts.seed, args.init_std);
  std::unique_ptr<Trainable> trainable = Trainable::full(*model);

  const DataSplit split = load_training_data(ta, model->tokenizer());
  std::int64_t longest = 1;
  for (const auto* v : {&split.train, &split.held_out}) {
    for (const TrainingExample& e : *v) longest = std::max(longest, e.n_positions());
  }
  const std::uint64_t weights = 4u * 4u * static_cast<std::uint64_t>(trainable->parameter_count());
  const TrainingPlan recomputing = plan_training(params, longest, opts.loss_chunk, threads, false);
  const TrainingPlan keeping = plan_training(params, longest, opts.loss_chunk, threads, true);
  opts.keep_activations = choose_keep_activations(ta, weights + recomputing.bytes(), weights + keeping.bytes());
  const TrainingPlan& plan = opts.keep_activations ? keeping : recomputing;
  const std::uint64_t total = weights + plan.bytes();
  log::info("memory plan: weights, gradients and AdamW ", format_memory_size(weights), " + activations ",
            format_memory_size(plan.bytes()), " = ", format_memory_size(total));
  const nlohmann::json memory = {{"weights_and_optimizer", weights}, {"activations", plan.bytes()}, {"total", total},
                                 {"max_seq", longest}, {"threads", threads}, {"activations_kept", opts.keep_activations}};
  if (ta.dry_run) {
    if (ta.json) std::cout << nlohmann::json{{"memory", memory}, {"parameters", trainable->parameter_count()}}.dump(2) << "\n";
    return;
  }
  check_training_memory("training", total, ta.no_memory_check);

  nlohmann::json settings = train_settings(ta);
  settings["config"] = args.config;
  settings["init_std"] = args.init_std;
  opts.settings_json = settings.dump();
  log::info("train: ", trainable->parameter_count(), " parameters, ", split.train.size(), " training and ",
            split.held_out.size(), " held-out sequences of up to ", longest, " tokens, ", threads, " threads");
  ThreadPool pool(threads);
  TrainProgress progress("train", ta.log_file);
  const TrainerRun run = run_training(*model, nullptr, *trainable, split.train, split.held_out, {}, opts, pool,
                                      [&](const StepReport& r) { progress.step(r); });
  progress.finish();

  GgufExportOptions export_options;
  export_options.type = *type;
  export_options.file_type = *type == GgmlType::F32 ? LlamaFileType::AllF32 : *type == GgmlType::F16 ? LlamaFileType::MostlyF16 : LlamaFileType::MostlyBF16;
  export_options.n_threads = threads;
  export_gguf(*checkpoint_of(*model, args.name), args.output, export_options);

  report_training(ta, run, {{"output", args.output}, {"parameters", trainable->parameter_count()}, {"memory", memory}},
                  "wrote " + args.output + " (" + std::to_string(trainable->parameter_count()) + " parameters)");
}

}  // namespace

void register_train(CLI::App& app) {
  auto args = std::make_shared<TrainCmdArgs>();
  CLI::App* cmd = app.add_subcommand("train", "Train every weight of a model from a random initialisation");
  cmd->add_option("--config", args->config, "The model's shape: a Hugging Face config.json")->required();
  cmd->add_option("--tokenizer", args->tokenizer, "tokenizer.json, a .gguf's vocabulary, tokenizer.model or a llama2.c .bin")->required();
  cmd->add_option("-o,--output", args->output, "GGUF model to write")->required();
  cmd->add_option("--type", args->type, "Weight type of the written model: f32, f16, bf16")->capture_default_str();
  cmd->add_option("--name", args->name, "general.name of the written model")->capture_default_str();
  cmd->add_option("--init-std", args->init_std, "Standard deviation of the initial weights")->capture_default_str();
  add_train_options(*cmd, args->train);
  cmd->callback([args] { run_train(*args); });
}

}  // namespace piquant::cli
