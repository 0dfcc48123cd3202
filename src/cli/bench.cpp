// piquant bench: llama-bench's prompt and decode speed, plus cold/warm load time, time
// to first token, peak RSS, bytes read per token and memory-bandwidth efficiency.
// Progress goes to stderr, results to stdout (-o md, json or csv; see bench_output.h).
#include <cstdint>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli/bench_output.h"
#include "cli/commands.h"
#include "cli/inference_options.h"
#include "core/error.h"
#include "core/logger.h"
#include "core/thread_pool.h"
#include "speed/memory_bandwidth.h"
#include "speed/pi4_projection.h"
#include "formats/gguf.h"
#include "speed/speed_bench.h"

namespace piquant::cli {
namespace {

struct BenchArgs {
  std::string model;
  std::vector<std::int64_t> prompts = {64, 512};
  std::int64_t n_decode = 128;
  unsigned threads = 0;
  int reps = 3;
  int cold_reps = 1;
  std::string output = "md";
  bool no_mmap = false;
  std::string kv_type = "f16";
  bool bandwidth_only = false;
  bool project_pi4 = false;
  std::uint64_t bandwidth_mib = 1024;
};

void run_bandwidth_table(const BenchArgs& args) {
  const std::uint64_t bytes = args.bandwidth_mib << 20;
  log::info("bench: read bandwidth of a ", args.bandwidth_mib, " MiB buffer, 1..",
            args.threads ? args.threads : ThreadPool::physical_cores(), " threads");
  const auto table = measure_read_bandwidth_table(bytes, args.threads, 5);
  std::cout << bandwidth_output(table, bytes, args.output) << std::flush;
}

void run_bench(const BenchArgs& args) {
  constexpr std::uint64_t kMaxBandwidthMib = std::uint64_t{1} << 20;  // 1 TiB: beyond any machine here
  if (args.bandwidth_mib > kMaxBandwidthMib) {
    throw Error("bench: --bandwidth-mib " + std::to_string(args.bandwidth_mib) + " is more than 1 TiB");
  }
  if (args.bandwidth_only) {
    if (args.bandwidth_mib == 0) throw Error("bench: --bandwidth needs --bandwidth-mib of at least 1");
    run_bandwidth_table(args);
    return;
  }
  if (args.model.empty()) throw Error("bench: -m/--model is required (or --bandwidth for the memory probe alone)");
  if (args.project_pi4) {
    // Static: from the file's tensor table and the committed Cortex-A72 cycle counts,
    // nothing is timed (README: "Raspberry Pi 4 projection").
    const GgufFile gguf(args.model);
    const auto matrices = pi4_decode_matrices(gguf);
    std::cout << format_pi4_projection(project_pi4(matrices), args.model) << std::flush;
    return;
  }
  SpeedBenchOptions options;
  options.model_path = args.model;
  options.prompt_lengths = args.prompts;
  options.n_decode = args.n_decode;
  options.n_threads = args.threads;
  options.reps = args.reps;
  options.cold_reps = args.cold_reps;
  options.use_mmap = !args.no_mmap;
  options.kv_type = parse_kv_type(args.kv_type);
  options.bandwidth_buffer_bytes = args.bandwidth_mib << 20;
  options.on_progress = [](const std::string& line) { log::info("bench: ", line); };
  const SpeedBenchReport report = run_speed_bench(options);
  if (args.output == "json") {
    std::cout << bench_json(report).dump(2) << "\n";
  } else if (args.output == "csv") {
    std::cout << bench_csv(report);
  } else {
    std::cout << bench_markdown(report);
  }
  std::cout << std::flush;
}

}  // namespace

void register_bench(CLI::App& app) {
  auto args = std::make_shared<BenchArgs>();
  CLI::App* cmd = app.add_subcommand("bench", "Speed of a model (llama-bench style) plus load time, TTFT, memory and bandwidth");
  cmd->add_option("-m,--model", args->model, "Model: a .gguf file or a Hugging Face checkpoint folder");
  cmd->add_option("-p,--prompt", args->prompts, "Prompt lengths to time, comma-separated")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("-n,--n-gen", args->n_decode, "Tokens decoded one at a time")->capture_default_str();
  cmd->add_option("-t,--threads", args->threads, "Threads (default: one per physical core)");
  cmd->add_option("-r,--reps", args->reps, "Repetitions (mean ± sample standard deviation)")->capture_default_str();
  cmd->add_option("--cold-reps", args->cold_reps, "Loads timed after dropping the file from the page cache (0: none)")
      ->capture_default_str();
  cmd->add_option("-o,--output", args->output, "Output format: md, json or csv")
      ->check(CLI::IsMember({"md", "json", "csv"}))
      ->capture_default_str();
  cmd->add_flag("--no-mmap", args->no_mmap, "Read the weights into memory instead of mapping the file");
  cmd->add_option("--kv-type", args->kv_type, "KV cache element type: f16 or f32")
      ->check(CLI::IsMember({"f16", "f32"}, CLI::ignore_case))
      ->capture_default_str();
  cmd->add_flag("--bandwidth", args->bandwidth_only, "Only measure memory read bandwidth with 1..-t threads");
  cmd->add_flag("--project-pi4", args->project_pi4,
                "Only print the projected Raspberry Pi 4 decode speed of the model (static: Cortex-A72 cycle counts "
                "of the NEON kernels against the Pi 4's memory bandwidth)");
  cmd->add_option("--bandwidth-mib", args->bandwidth_mib, "Buffer of the bandwidth probe in MiB (0: skip it in a model bench)")
      ->capture_default_str();
  cmd->callback([args] { run_bench(*args); });
}

}  // namespace piquant::cli
