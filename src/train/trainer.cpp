#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <filesystem>

#include "core/error.h"
#include "core/logger.h"
#include "core/split_mix64.h"
#include "train/train_state_file.h"

namespace piquant {

namespace {

constexpr std::uint64_t kDropoutPurpose = 0x64726f70;  // "drop"

// Inputs, targets and loss weights of one sequence, weights = mask · scale.
struct SequenceTokens {
  std::vector<std::int32_t> targets;
  std::vector<float> weights;
  void fill(const TrainingExample& e, double scale) {
    const auto n = static_cast<std::size_t>(e.n_positions());
    targets.assign(e.tokens.begin() + 1, e.tokens.begin() + 1 + static_cast<std::ptrdiff_t>(n));
    weights.resize(n);
    for (std::size_t t = 0; t < n; ++t) weights[t] = e.loss_mask[t] != 0 ? static_cast<float>(scale) : 0.0f;
  }
};

std::int64_t longest(const std::vector<TrainingExample>& a, const std::vector<TrainingExample>& b) {
  std::int64_t n = 1;
  for (const auto* v : {&a, &b}) {
    for (const TrainingExample& e : *v) n = std::max(n, e.n_positions());
  }
  return n;
}

void save_checkpoint(const std::string& path, const Trainable& trainable, const AdamW& opt, std::int64_t step,
                     const DataPosition& position, const TrainerOptions& options) {
  TrainState state;
  state.set_int("step", step);
  state.set_int("optimizer_steps", opt.steps());
  state.set_int("data_epoch", position.epoch);
  state.set_int("data_index", position.index);
  state.set_u64("seed", options.seed);
  state.set("settings", options.settings_json);
  for (std::size_t i = 0; i < trainable.tensors().size(); ++i) {
    const TrainableTensor& t = trainable.tensors()[i];
    const ParameterTensor& p = opt.tensors()[i];
    std::copy(t.value.begin(), t.value.end(), state.add("value/" + t.name, t.shape).data.begin());
    std::copy(p.m.begin(), p.m.end(), state.add("adam_m/" + t.name, t.shape).data.begin());
    std::copy(p.v.begin(), p.v.end(), state.add("adam_v/" + t.name, t.shape).data.begin());
  }
  write_train_state(state, path);
}

struct Resumed {
  std::int64_t step = 0;
  DataPosition position;
};

Resumed load_checkpoint(const std::string& path, Trainable& trainable, AdamW& opt, const TrainerOptions& options) {
  const TrainState state = read_train_state(path);
  state.check_settings("settings", options.settings_json);
  if (state.get_u64("seed") != options.seed) {
    throw Error(path + ": checkpoint of a run with seed " + std::to_string(state.get_u64("seed")) + ", not " + std::to_string(options.seed));
  }
  for (std::size_t i = 0; i < trainable.tensors().size(); ++i) {
    const TrainableTensor& t = trainable.tensors()[i];
    ParameterTensor& p = opt.tensors()[i];
    const NamedTensor& value = state.tensor("value/" + t.name, t.shape);
    std::copy(value.data.begin(), value.data.end(), t.value.begin());
    const NamedTensor& m = state.tensor("adam_m/" + t.name, t.shape);
    std::copy(m.data.begin(), m.data.end(), p.m.begin());
    const NamedTensor& v = state.tensor("adam_v/" + t.name, t.shape);
    std::copy(v.data.begin(), v.data.end(), p.v.begin());
  }
  opt.set_steps(state.get_int("optimizer_steps"));
  return {state.get_int("step"), {state.get_int("data_epoch"), state.get_int("data_index")}};
}

}  // namespace

std::int64_t planned_steps(const TrainerOptions& options, std::int64_t n_train) {
  if (options.batch <= 0) throw Error("training: the batch must hold at least one sequence");
  if (options.steps > 0) return options.steps;
  if (!(options.epochs > 0.0)) throw Error("training: give --steps or a positive number of --epochs");
  const std::int64_t per_epoch = (n_train + options.batch - 1) / options.batch;
  return std::max<std::int64_t>(1, static_cast<std::int64_t>(std::ceil(options.epochs * static_cast<double>(per_epoch))));
}

double evaluate_loss(TrainingPass& pass, const std::vector<TrainingExample>& examples) {
  std::int64_t n = 0;
  for (const TrainingExample& e : examples) n += e.n_loss_targets();
  if (n == 0) throw Error("evaluation: the held-out sequences have no loss tokens");
  double total = 0.0;
  SequenceTokens s;
  for (const TrainingExample& e : examples) {
    s.fill(e, 1.0 / static_cast<double>(n));
    total += pass.forward_loss({e.inputs(), s.targets, s.weights, {}}, TokenLossWeights{});
  }
  return total;
}

TrainerRun run_training(const LlamaModel& model, const LoraAdapter* lora, Trainable& trainable,
                        const std::vector<TrainingExample>& train, const std::vector<TrainingExample>& held_out,
                        const TeacherSource& teacher, const TrainerOptions& options, ThreadPool& pool,
                        const std::function<void(const StepReport&)>& on_step) {
  if (train.empty()) throw Error("training: no training sequences");
  if (options.loss.distill != 0.0 && !teacher) throw Error("training: distillation needs a teacher");
  const std::int64_t total_steps = planned_steps(options, static_cast<std::int64_t>(train.size()));
  const LrSchedule schedule{options.lr, options.warmup, total_steps, options.min_lr_ratio, options.cosine};
  TrainingPass pass(model, lora, pool, longest(train, held_out), options.loss_chunk, options.keep_activations);
  pass.set_lora_dropout(options.lora_dropout);

  AdamW opt(options.adam);
  for (const TrainableTensor& t : trainable.tensors()) opt.add(t.name, t.value, t.grad, t.decay);
  EpochIterator data(static_cast<std::int64_t>(train.size()), options.seed, options.shuffle);
  TrainerRun run;
  std::int64_t step = 0;
  if (options.resume) {
    if (options.checkpoint_path.empty()) throw Error("--resume needs a checkpoint file");
    const Resumed r = load_checkpoint(options.checkpoint_path, trainable, opt, options);
    step = r.step;
    data.seek(r.position);
    run.resumed_from = step;
    log::info("resumed from ", options.checkpoint_path, " after step ", step);
  }
  if (!held_out.empty() && !options.resume) run.first_eval_loss = evaluate_loss(pass, held_out);

  const auto start = std::chrono::steady_clock::now();
  std::int64_t tokens_done = 0;
  std::vector<std::int64_t> batch;
  SequenceTokens s;
  std::vector<TeacherTopK> teacher_rows;
  for (; step < total_steps; ++step) {
    batch.clear();
    std::int64_t loss_tokens = 0, tokens = 0;
    for (std::int64_t i = 0; i < options.batch; ++i) {
      batch.push_back(data.next());
      loss_tokens += train[static_cast<std::size_t>(batch.back())].n_loss_targets();
      tokens += train[static_cast<std::size_t>(batch.back())].n_positions();
    }
    trainable.zero_gradients();
    double loss = 0.0;
    const double scale = loss_tokens > 0 ? 1.0 / static_cast<double>(loss_tokens) : 0.0;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      const std::int64_t index = batch[i];
      const TrainingExample& e = train[static_cast<std::size_t>(index)];
      s.fill(e, scale);
      std::span<const TeacherTopK> rows;
      if (options.loss.distill != 0.0) {
        teacher(index, e, teacher_rows);
        rows = teacher_rows;
      }
      const std::uint64_t dropout_seed = stream_seed(options.seed, kDropoutPurpose, static_cast<std::uint64_t>(step * options.batch) + i);
      loss += pass.forward_backward({e.inputs(), s.targets, s.weights, rows, dropout_seed}, options.loss, trainable.gradients());
    }
    StepReport report;
    report.step = step + 1;
    report.total_steps = total_steps;
    report.loss = loss;
    report.lr = schedule.at(step);
    report.grad_norm = opt.step(report.lr, pool);
    report.tokens = tokens;
    tokens_done += tokens;
    report.elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    report.tokens_per_s = static_cast<double>(tokens_done) / std::max(report.elapsed_s, 1e-9);
    const std::int64_t done_here = step + 1 - run.resumed_from;
    report.eta_s = report.elapsed_s / static_cast<double>(done_here) * static_cast<double>(total_steps - step - 1);
    const bool last = step + 1 == total_steps;
    if (!held_out.empty() && (last || (options.eval_every > 0 && (step + 1) % options.eval_every == 0))) {
      report.eval_loss = evaluate_loss(pass, held_out);
      if (last) run.final_eval_loss = report.eval_loss;
    }
    if (!options.checkpoint_path.empty() && options.checkpoint_every > 0 && ((step + 1) % options.checkpoint_every == 0 || last)) {
      save_checkpoint(options.checkpoint_path, trainable, opt, step + 1, data.position(), options);
      report.checkpointed = true;
    }
    run.final_loss = loss;
    if (on_step) on_step(report);
  }
  run.steps_done = step;
  return run;
}

}  // namespace piquant
