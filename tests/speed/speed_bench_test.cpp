// run_speed_bench on stories260K: the report's shape and the bytes it says a decoded
// token reads, recomputed here from the GGUF's own tensor table.
#include <cmath>
#include <filesystem>
#include <string>

#include "core/error.h"
#include "support/eval_test_support.h"
#include "speed/speed_bench.h"
#include "formats/gguf.h"

namespace piquant::testing {
namespace {

// Leaves `model` empty (and the test skipped) without the shared data.
void stories_f32(const TempDir& dir, std::filesystem::path& model) {
  const auto checkpoint = PIQUANT_SHARED_FILE("models/stories260K/stories260K.bin");
  const auto tokenizer = PIQUANT_SHARED_FILE("models/stories260K/tok512.bin");
  model = convert_stories260k(dir, checkpoint, tokenizer, "f32");
}

// Small and quick: a test must not depend on how fast the machine is.
SpeedBenchOptions small_options(const std::filesystem::path& model) {
  SpeedBenchOptions o;
  o.model_path = model.string();
  o.prompt_lengths = {4, 16};
  o.n_decode = 5;
  o.decode_prompt_tokens = 3;
  o.reps = 2;
  o.cold_reps = 1;
  o.n_threads = 2;
  o.bandwidth_buffer_bytes = 1 << 20;
  o.bandwidth_passes = 1;
  return o;
}

// One warm repetition, no cold load, no bandwidth probe: for tests of the byte counts.
SpeedBenchOptions single_rep_options(const std::filesystem::path& model) {
  SpeedBenchOptions o = small_options(model);
  o.reps = 1;
  o.cold_reps = 0;
  o.bandwidth_buffer_bytes = 0;
  return o;
}

// Weights one token reads, from the file's tensor table: everything but the embedding
// (and rope_freqs, folded into the RoPE table at load), plus one embedding row, or the
// whole embedding when it doubles as the output matrix.
std::uint64_t gguf_bytes_per_token(const GgufFile& f) {
  std::uint64_t total = 0;
  const GgufTensorInfo& embd = f.tensor("token_embd.weight");
  for (const GgufTensorInfo& t : f.tensors()) {
    if (t.name != "token_embd.weight" && t.name != "rope_freqs.weight") total += t.size_bytes;
  }
  const bool tied = f.find_tensor("output.weight") == nullptr;
  return total + (tied ? embd.size_bytes : embd.size_bytes / static_cast<std::uint64_t>(embd.n_rows()));
}

void expect_positive_finite(const TimingStats& s, int n, const std::string& what) {
  ASSERT_EQ(s.n(), n) << what;
  for (const double x : s.samples) {
    EXPECT_TRUE(std::isfinite(x) && x > 0.0) << what << ": " << x;
  }
  EXPECT_TRUE(std::isfinite(s.mean) && s.mean > 0.0) << what;
  EXPECT_TRUE(std::isfinite(s.stddev) && s.stddev >= 0.0) << what;
}

TEST(SpeedBench, ReportHasEveryMeasurementPerRep) {
  TempDir dir;
  std::filesystem::path model;
  stories_f32(dir, model);
  if (model.empty()) return;
  const SpeedBenchReport r = run_speed_bench(small_options(model));

  EXPECT_EQ(r.model_file_bytes, std::filesystem::file_size(model));
  EXPECT_EQ(r.n_threads, 2u);
  EXPECT_EQ(r.reps, 2);
  EXPECT_EQ(r.n_ctx, 16);  // max(16, 3 + 5)
  expect_positive_finite(r.load_cold_seconds, 1, "cold load");
  EXPECT_EQ(r.load_cold_seconds.stddev, 0.0);
  expect_positive_finite(r.load_warm_seconds, 2, "warm load");
  ASSERT_EQ(r.prompts.size(), 2u);
  EXPECT_EQ(r.prompts[0].n_tokens, 4);
  EXPECT_EQ(r.prompts[1].n_tokens, 16);
  for (const PromptBenchResult& p : r.prompts) {
    expect_positive_finite(p.ttft_seconds, 2, "ttft");
    expect_positive_finite(p.tokens_per_second, 2, "prompt t/s");
  }
  expect_positive_finite(r.decode_seconds, 2, "decode seconds");
  expect_positive_finite(r.decode_tokens_per_second, 2, "decode t/s");
  EXPECT_GT(r.rss_after_load_bytes, 0u);
  EXPECT_GE(r.peak_rss_bytes, r.rss_after_load_bytes);
  // How much of the file is cached is the kernel's and the filesystem's doing (tmpfs
  // never drops pages; memory pressure may drop them any time): only the range is the
  // code's. page_cache_test checks eviction where the filesystem supports it.
  EXPECT_GE(r.cold_cached_fraction_max, 0.0);
  EXPECT_LE(r.cold_cached_fraction_max, 1.0);
  EXPECT_GE(r.warm_cached_fraction_min, 0.0);
  EXPECT_LE(r.warm_cached_fraction_min, 1.0);
  EXPECT_EQ(r.bandwidth_buffer_bytes, 1u << 20);
  EXPECT_TRUE(std::isfinite(r.read_bandwidth_gbs) && r.read_bandwidth_gbs > 0.0);
  EXPECT_TRUE(std::isfinite(r.bandwidth_efficiency) && r.bandwidth_efficiency > 0.0);
}

TEST(SpeedBench, BytesPerTokenMatchesTheTensorTable) {
  TempDir dir;
  std::filesystem::path model;
  stories_f32(dir, model);
  if (model.empty()) return;
  SpeedBenchOptions o = single_rep_options(model);
  const SpeedBenchReport r = run_speed_bench(o);

  const GgufFile f(model.string());
  EXPECT_EQ(r.weight_bytes_per_token, gguf_bytes_per_token(f));
  // KV: per position, every layer's K and V rows of n_head_kv × head_dim F16 values.
  const std::int64_t n_layer = f.get_int("llama.block_count");
  const std::int64_t n_embd = f.get_int("llama.embedding_length");
  const std::int64_t n_head = f.get_int("llama.attention.head_count");
  const std::int64_t n_head_kv = f.get_int("llama.attention.head_count_kv", n_head);
  const auto per_position = static_cast<std::uint64_t>(n_layer * 2 * n_head_kv * (n_embd / n_head) * 2);
  EXPECT_EQ(r.kv_bytes_per_position, per_position);
  EXPECT_DOUBLE_EQ(r.mean_decode_positions, 3.0 + 3.0);  // positions 4..8 attended: mean 6
  EXPECT_DOUBLE_EQ(r.kv_bytes_per_token, 6.0 * static_cast<double>(per_position));
  EXPECT_DOUBLE_EQ(r.bytes_per_token, static_cast<double>(gguf_bytes_per_token(f)) + 6.0 * static_cast<double>(per_position));
  // Skipped parts stay empty, one rep has no spread.
  EXPECT_EQ(r.load_cold_seconds.n(), 0);
  EXPECT_FALSE(r.cold_evicted);  // no cold load: none was evicted
  EXPECT_EQ(r.cold_cached_fraction_max, 0.0);
  EXPECT_EQ(r.read_bandwidth_gbs, 0.0);
  EXPECT_EQ(r.bandwidth_efficiency, 0.0);
  EXPECT_EQ(r.load_warm_seconds.stddev, 0.0);
  EXPECT_EQ(r.decode_tokens_per_second.stddev, 0.0);
  for (const PromptBenchResult& p : r.prompts) EXPECT_EQ(p.ttft_seconds.stddev, 0.0);
}

// synth's tiny preset: an untied output matrix, GQA, llama3 rope factors (rope_freqs)
// and a different MLP width per layer, as F16.
TEST(SpeedBench, BytesPerTokenOfAnUntiedPrunedF16Model) {
  TempDir dir;
  const auto hf = synth_tiny(dir, "tiny", "96,128,64,160", 0.02f);
  const auto model = dir / "tiny-f16.gguf";
  run_piquant("convert " + shell_quote(hf.string()) + " --type f16 -o " + shell_quote(model.string()));
  const GgufFile f(model.string());
  ASSERT_NE(f.find_tensor("output.weight"), nullptr);
  ASSERT_NE(f.find_tensor("rope_freqs.weight"), nullptr);

  SpeedBenchOptions o = small_options(model);
  o.prompt_lengths = {4};
  o.n_decode = 2;
  o.reps = 1;
  o.cold_reps = 0;
  o.bandwidth_buffer_bytes = 0;
  const SpeedBenchReport r = run_speed_bench(o);
  EXPECT_EQ(r.weight_bytes_per_token, gguf_bytes_per_token(f));
  EXPECT_EQ(r.architecture, "deci");
  // 4 layers × (K + V) × 2 kv heads × 64 × 2 bytes.
  EXPECT_EQ(r.kv_bytes_per_position, 4u * 2u * 2u * 64u * 2u);
}

TEST(SpeedBench, KvBytesFollowTheKvType) {
  TempDir dir;
  std::filesystem::path model;
  stories_f32(dir, model);
  if (model.empty()) return;
  SpeedBenchOptions o = single_rep_options(model);
  const std::uint64_t f16 = run_speed_bench(o).kv_bytes_per_position;
  o.kv_type = GgmlType::F32;
  EXPECT_EQ(run_speed_bench(o).kv_bytes_per_position, 2 * f16);
}

TEST(SpeedBench, NoMmapReadsTheSameWeights) {
  TempDir dir;
  std::filesystem::path model;
  stories_f32(dir, model);
  if (model.empty()) return;
  SpeedBenchOptions o = small_options(model);
  o.reps = 1;
  o.bandwidth_buffer_bytes = 0;
  o.use_mmap = false;
  const SpeedBenchReport r = run_speed_bench(o);
  EXPECT_FALSE(r.use_mmap);
  EXPECT_EQ(r.weight_bytes_per_token, gguf_bytes_per_token(GgufFile(model.string())));
  EXPECT_EQ(r.load_cold_seconds.n(), 1);
  EXPECT_EQ(r.decode_tokens_per_second.n(), 1);
}

TEST(SpeedBench, SummarizeUsesTheSampleStandardDeviation) {
  const TimingStats s = summarize({1.0, 2.0, 3.0, 4.0});
  EXPECT_DOUBLE_EQ(s.mean, 2.5);
  EXPECT_NEAR(s.stddev, std::sqrt(5.0 / 3.0), 1e-12);
  EXPECT_EQ(s.n(), 4);
  const TimingStats one = summarize({7.0});
  EXPECT_EQ(one.mean, 7.0);
  EXPECT_EQ(one.stddev, 0.0);
  EXPECT_EQ(summarize({}).n(), 0);
}

void expect_rejected(const SpeedBenchOptions& o, const std::string& fragment) {
  try {
    validate_speed_bench_options(o);
    ADD_FAILURE() << "accepted options that should fail with '" << fragment << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)run_speed_bench(o), Error);
}

TEST(SpeedBench, BadOptionsAreRejectedBeforeLoading) {
  TempDir dir;
  const auto model = dir / "model.gguf";
  write_file(model, "not read: validation comes first");
  SpeedBenchOptions o = small_options(model);
  EXPECT_NO_THROW(validate_speed_bench_options(o));

  SpeedBenchOptions bad = o;
  bad.prompt_lengths = {64, 0};
  expect_rejected(bad, "prompt length (-p) must be positive, got 0");
  bad = o;
  bad.prompt_lengths = {};
  expect_rejected(bad, "at least one prompt length");
  bad = o;
  bad.n_decode = 0;
  expect_rejected(bad, "decode length (-n) must be positive, got 0");
  bad = o;
  bad.reps = 0;
  expect_rejected(bad, "repetitions (-r) must be positive, got 0");
  bad = o;
  bad.cold_reps = -1;
  expect_rejected(bad, "--cold-reps");
  bad = o;
  bad.model_path = (dir / "missing.gguf").string();
  expect_rejected(bad, (dir / "missing.gguf").string() + ": no such model file");
}

}  // namespace
}  // namespace piquant::testing
