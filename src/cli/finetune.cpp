// piquant finetune: LoRA on a float or quantized base, with cross-entropy on the data
// and/or distillation from a teacher (run alongside, or its top-k logits precomputed).
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/train_args.h"
#include "core/error.h"
#include "core/logger.h"
#include "core/memory_info.h"
#include "engine/llama_context.h"
#include "train/lora_files.h"
#include "train/teacher_logits.h"
#include "train/trainable.h"

namespace piquant::cli {
namespace {

struct FinetuneArgs {
  std::string model, output;
  std::int64_t rank = 8;
  float alpha = 16.0f;
  std::string targets = "q,k,v,o,gate,up,down";
  std::string teacher, teacher_logits;
  int teacher_top_k = kDefaultTeacherTopK;
  bool distill_weight_set = false;
  TrainArgs train;
};

// Teacher rows from the precomputed file, per training sequence.
TeacherSource file_teacher(std::shared_ptr<TeacherLogitsFile> file) {
  auto ids = std::make_shared<std::vector<std::int32_t>>();
  return [file, ids](std::int64_t index, const TrainingExample& e, std::vector<TeacherTopK>& out) {
    const std::int64_t n = e.n_positions();
    out.resize(static_cast<std::size_t>(n));
    for (std::int64_t t = 0; t < n; ++t) {
      const TeacherLogitsFile::TopK r = file->at(index, t);
      out[static_cast<std::size_t>(t)] = {file->k(), r.ids.data(), r.logits.data(), r.lse_tau};
    }
  };
}

// The teacher run alongside: its logits for the sequence, then each position's top k.
TeacherSource live_teacher(const LlamaModel& teacher, std::int64_t max_seq, int k, double tau, unsigned threads) {
  ContextOptions options;
  options.n_ctx = max_seq;
  options.n_batch = max_seq;
  options.kv_type = GgmlType::F32;
  options.n_threads = threads;
  auto context = std::make_shared<LlamaContext>(teacher, options);
  auto ids = std::make_shared<std::vector<std::int32_t>>();
  auto logits = std::make_shared<std::vector<float>>();
  return [context, ids, logits, k, tau](std::int64_t, const TrainingExample& e, std::vector<TeacherTopK>& out) {
    context->reset();
    const std::span<const float> all = context->eval(e.inputs(), true);
    const std::int64_t n = e.n_positions();
    const std::int64_t V = context->n_vocab();
    ids->resize(static_cast<std::size_t>(n * k));
    logits->resize(static_cast<std::size_t>(n * k));
    out.resize(static_cast<std::size_t>(n));
    for (std::int64_t t = 0; t < n; ++t) {
      const std::span<std::int32_t> row_ids(ids->data() + t * k, static_cast<std::size_t>(k));
      const std::span<float> row_top(logits->data() + t * k, static_cast<std::size_t>(k));
      const double lse = teacher_top_k(all.subspan(static_cast<std::size_t>(t * V), static_cast<std::size_t>(V)), k, tau, row_ids, row_top);
      out[static_cast<std::size_t>(t)] = {k, row_ids.data(), row_top.data(), lse};
    }
  };
}

void run_finetune(FinetuneArgs& args) {
  TrainArgs& ta = args.train;
  TrainerOptions& opts = ta.trainer;
  const unsigned threads = resolve_threads(ta.threads);
  const bool distill = !args.teacher.empty() || !args.teacher_logits.empty();
  if (distill && !args.distill_weight_set) {
    opts.loss.distill = 1.0;
    opts.loss.cross_entropy = 0.0;
  }
  if (!distill && opts.loss.distill != 0.0) throw Error("--distill-weight needs --teacher or --teacher-logits");
  if (opts.checkpoint_path.empty() && (opts.resume || opts.checkpoint_every > 0)) {
    opts.checkpoint_path = args.output + ".checkpoint.safetensors";
  }

  auto model = LlamaModel::load(args.model);
  const LlamaParams& p = model->params();
  LoraAdapter adapter(args.rank, args.alpha, model->rope_pairing());
  add_lora_targets(adapter, *model, parse_lora_targets(args.targets));
  init_lora(adapter, opts.seed);
  std::unique_ptr<Trainable> trainable = Trainable::lora(adapter);

  const DataSplit split = load_training_data(ta, model->tokenizer());
  std::int64_t longest = 1;
  for (const auto* v : {&split.train, &split.held_out}) {
    for (const TrainingExample& e : *v) longest = std::max(longest, e.n_positions());
  }
  const TrainingPlan recomputing = plan_training(p, longest, opts.loss_chunk, threads, false);
  const TrainingPlan keeping = plan_training(p, longest, opts.loss_chunk, threads, true);
  const std::uint64_t adapter_bytes = 4u * 4u * static_cast<std::uint64_t>(adapter.parameter_count());  // values, grads, m, v
  std::unique_ptr<LlamaModel> teacher;
  std::uint64_t teacher_bytes = 0;
  if (!args.teacher.empty()) {
    teacher = LlamaModel::load(args.teacher);
    if (teacher->params().n_vocab != p.n_vocab) {
      throw Error(args.teacher + ": a vocabulary of " + std::to_string(teacher->params().n_vocab) + " tokens, the student has " +
                  std::to_string(p.n_vocab));
    }
    ContextOptions co;
    co.n_ctx = longest;
    co.n_batch = longest;
    co.kv_type = GgmlType::F32;
    teacher_bytes = teacher->weight_bytes() + LlamaContext::kv_cache_bytes(teacher->params(), co) +
                    LlamaContext::scratch_bytes(teacher->params(), co) + 4u * static_cast<std::uint64_t>(longest * p.n_vocab);
  }
  const std::uint64_t others = model->weight_bytes() + adapter_bytes + teacher_bytes;
  opts.keep_activations = choose_keep_activations(ta, others + recomputing.bytes(), others + keeping.bytes());
  const TrainingPlan& plan = opts.keep_activations ? keeping : recomputing;
  const std::uint64_t total = others + plan.bytes();
  const nlohmann::json memory = {{"base_weights", model->weight_bytes()}, {"adapter_and_optimizer", adapter_bytes},
                                 {"activations", plan.bytes()},           {"teacher", teacher_bytes},
                                 {"total", total},                        {"max_seq", longest},
                                 {"activations_kept", opts.keep_activations},
                                 {"threads", threads}};
  log::info("memory plan: base ", format_memory_size(model->weight_bytes()), " + adapter and AdamW ",
            format_memory_size(adapter_bytes), " + activations ", format_memory_size(plan.bytes()),
            teacher_bytes > 0 ? " + teacher " + format_memory_size(teacher_bytes) : std::string(), " = ", format_memory_size(total));
  if (ta.dry_run) {
    if (ta.json) std::cout << nlohmann::json{{"memory", memory}, {"adapter_parameters", adapter.parameter_count()}}.dump(2) << "\n";
    return;
  }
  check_training_memory("finetune of " + args.model, total, ta.no_memory_check);

  TeacherSource teacher_source;
  if (distill) {
    std::shared_ptr<TeacherLogitsFile> file;
    if (!args.teacher_logits.empty()) {
      if (!std::filesystem::exists(args.teacher_logits)) {
        if (!teacher) throw Error(args.teacher_logits + ": no such file (give --teacher to compute it)");
        log::info("computing the teacher's top-", args.teacher_top_k, " logits into ", args.teacher_logits);
        compute_teacher_logits(*teacher, split.train, args.teacher_top_k, opts.loss.temperature, threads, args.teacher_logits);
      }
      file = std::make_shared<TeacherLogitsFile>(args.teacher_logits);
      file->check_matches(split.train, p.n_vocab);
      if (std::fabs(file->tau() - opts.loss.temperature) > 0.0) {
        throw Error(args.teacher_logits + ": computed at temperature " + std::to_string(file->tau()) + ", not " +
                    std::to_string(opts.loss.temperature));
      }
      teacher_source = file_teacher(file);
    } else {
      teacher_source = live_teacher(*teacher, longest, static_cast<int>(std::min<std::int64_t>(args.teacher_top_k, p.n_vocab)),
                                    opts.loss.temperature, threads);
    }
  }

  nlohmann::json settings = train_settings(ta);
  settings["lora_r"] = args.rank;
  settings["lora_alpha"] = args.alpha;
  settings["targets"] = args.targets;
  settings["lora_dropout"] = opts.lora_dropout;
  settings["model"] = args.model;
  opts.settings_json = settings.dump();
  log::info("finetune: LoRA r=", args.rank, " alpha=", args.alpha, " on ", args.targets, " (", adapter.parameter_count(),
            " parameters), ", split.train.size(), " training and ", split.held_out.size(), " held-out sequences, ", threads,
            " threads");
  ThreadPool pool(threads);
  TrainProgress progress("finetune", ta.log_file);
  const TrainerRun run = run_training(*model, &adapter, *trainable, split.train, split.held_out, teacher_source, opts, pool,
                                      [&](const StepReport& r) { progress.step(r); });
  progress.finish();

  LoraFileOptions file_options;
  file_options.base_model = args.model;
  const bool gguf = std::filesystem::path(args.output).extension() == ".gguf";
  if (gguf) {
    write_gguf_lora(adapter, p, args.output, file_options);
  } else {
    write_peft_lora(adapter, p, args.output, file_options);
  }
  report_training(ta, run, {{"model", args.model}, {"output", args.output}, {"format", gguf ? "gguf" : "peft"}, {"memory", memory}},
                  "wrote " + args.output + " (" + (gguf ? "GGUF" : "PEFT") + " adapter, " + std::to_string(adapter.parameter_count()) +
                      " parameters)");
}

}  // namespace

void register_finetune(CLI::App& app) {
  auto args = std::make_shared<FinetuneArgs>();
  CLI::App* cmd = app.add_subcommand("finetune", "Train a LoRA adapter on a float or quantized base (cross-entropy and/or distillation)");
  cmd->add_option("-m,--model", args->model, "Base model: a .gguf file (any type) or a Hugging Face folder")->required();
  cmd->add_option("-o,--output", args->output, "Adapter to write: NAME.gguf (llama.cpp LoRA) or a folder (PEFT)")->required();
  cmd->add_option("--lora-r", args->rank, "LoRA rank")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--lora-alpha", args->alpha, "LoRA alpha (the update is scaled by alpha / r)")->capture_default_str();
  cmd->add_option("--lora-dropout", args->train.trainer.lora_dropout, "Dropout on the adapter's inputs")
      ->capture_default_str()->check(CLI::Range(0.0f, 0.95f));
  cmd->add_option("--targets", args->targets, "Adapted weights, from q,k,v,o,gate,up,down")->capture_default_str();
  cmd->add_option("--teacher", args->teacher, "Distil from this model (run alongside, or to compute --teacher-logits)");
  cmd->add_option("--teacher-logits", args->teacher_logits, "Precomputed teacher top-k logits (computed first when missing and --teacher is given)");
  cmd->add_option("--teacher-top-k", args->teacher_top_k, "Teacher logits kept per position")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--temperature", args->train.trainer.loss.temperature, "Distillation temperature")->capture_default_str();
  cmd->add_option("--distill-weight", args->train.trainer.loss.distill,
                  "Weight of the distillation loss (default with a teacher: 1, and cross-entropy 0)")
      ->each([args](const std::string&) { args->distill_weight_set = true; });
  cmd->add_option("--ce-weight", args->train.trainer.loss.cross_entropy, "Weight of the cross-entropy loss")->capture_default_str();
  add_train_options(*cmd, args->train);
  cmd->callback([args] { run_finetune(*args); });
}

}  // namespace piquant::cli
