// Acceptance: `piquant perplexity` agrees with the perplexity of stock llama.cpp's
// own logits on the same text, chunked as llama-perplexity chunks it. The llama.cpp
// side is computed here from scratch: its tokenizer, its logits, and this file's
// own chunking and NLL code (not piquant's evaluation library).
#include <cmath>
#include <cstdint>
#include <iostream>
#include <string>
#include <vector>

#include "interop/engine_parity_support.h"
#include "interop/llama_cpp_runner.h"
#include "engine/llama_model.h"

namespace piquant::testing {
namespace {

using nlohmann::json;

constexpr std::int64_t kCtx = 128;
constexpr std::size_t kTextBytes = 20 * 1024;
// llama2.c's BOS; LlamaCppRunsPiquantFiles checks that llama.cpp prepends it for this model.
constexpr std::int32_t kBos = 1;

struct Perplexity {
  double ppl = 0;
  double ppl_stderr = 0;
  std::int64_t n_scored = 0;
};

TEST(EngineParity, PerplexityOfStories260KOnAustenMatchesLlamaCpp) {
  const auto checkpoint = PIQUANT_SHARED_FILE("models/stories260K/stories260K.bin");
  const auto tokenizer = PIQUANT_SHARED_FILE("models/stories260K/tok512.bin");
  const auto corpus = PIQUANT_SHARED_FILE("corpora/austen.txt");
  const TempDir dir;
  const auto gguf = convert_stories260k(dir, checkpoint, tokenizer, "f32");
  // The first 20 KB, cut at a line end so no UTF-8 sequence is split.
  std::string text = read_file(corpus).substr(0, kTextBytes);
  text.resize(text.rfind('\n') + 1);
  const auto text_path = dir / "austen-20k.txt";
  write_file(text_path, text);

  // llama.cpp: llama-perplexity's recipe, step by step. BOS + the text's tokens,
  // whole chunks of kCtx, each from an empty cache with its first token set to BOS;
  // positions kCtx/2 .. kCtx-2 predict the next token.
  std::vector<std::int32_t> tokens{kBos};
  const auto tokenized = run_llama_cpp({"tokenize", gguf.string(), text_path.string()}).at("tokens").get<std::vector<std::int32_t>>();
  tokens.insert(tokens.end(), tokenized.begin(), tokenized.end());
  const std::int64_t n_chunks = static_cast<std::int64_t>(tokens.size()) / kCtx;
  ASSERT_GE(n_chunks, 20);
  json chunks = json::array();
  for (std::int64_t c = 0; c < n_chunks; ++c) {
    std::vector<std::int32_t> chunk(tokens.begin() + c * kCtx, tokens.begin() + (c + 1) * kCtx);
    chunk[0] = kBos;
    chunks.push_back(chunk);
  }
  const auto chunks_path = dir / "chunks.json";
  write_file(chunks_path, chunks.dump());
  const auto logits_path = dir / "logits.bin";
  const std::int64_t first = kCtx / 2;
  const auto info = run_llama_cpp({"chunk-logits", gguf.string(), chunks_path.string(), logits_path.string(), "--first",
                                   std::to_string(first)});
  const std::int64_t n_vocab = info.at("n_vocab").get<std::int64_t>();
  const std::vector<float> logits = read_floats(logits_path);
  ASSERT_EQ(logits.size(), static_cast<std::size_t>(n_chunks * (kCtx - first) * n_vocab));

  double sum = 0, sum_sq = 0;
  std::int64_t count = 0;
  for (std::int64_t c = 0; c < n_chunks; ++c) {
    for (std::int64_t pos = first; pos < kCtx - 1; ++pos) {
      const float* row = logits.data() + ((c * (kCtx - first)) + (pos - first)) * n_vocab;
      double max = row[0];
      for (std::int64_t i = 1; i < n_vocab; ++i) max = std::max(max, static_cast<double>(row[i]));
      double z = 0;
      for (std::int64_t i = 0; i < n_vocab; ++i) z += std::exp(row[i] - max);
      const std::int32_t target = tokens[static_cast<std::size_t>(c * kCtx + pos + 1)];
      const double nll = -(row[target] - max - std::log(z));
      sum += nll;
      sum_sq += nll * nll;
      ++count;
    }
  }
  Perplexity theirs;
  theirs.n_scored = count;
  const double mean = sum / static_cast<double>(count);
  theirs.ppl = std::exp(mean);
  theirs.ppl_stderr = theirs.ppl * std::sqrt((sum_sq / static_cast<double>(count) - mean * mean) / static_cast<double>(count - 1));

  // piquant: the CLI end to end, with its own tokenizer and defaults (F16 KV cache).
  const json ours = run_cli_json("perplexity -m " + shell_quote(gguf.string()) + " -f " + shell_quote(text_path.string()) +
                                 " --ctx " + std::to_string(kCtx) + " --json");
  std::cout << "stories260K on " << text.size() << " bytes of austen.txt, ctx " << kCtx << ": piquant PPL " << ours.at("ppl")
            << " ± " << ours.at("ppl_stderr") << ", llama.cpp PPL " << theirs.ppl << " ± " << theirs.ppl_stderr << " ("
            << count << " tokens in " << n_chunks << " chunks)\n";

  // Same tokens, so the same chunks and scored positions.
  const auto model = LlamaModel::load(gguf.string());
  EXPECT_EQ(model->tokenizer().encode(text, /*add_special=*/true, /*parse_special=*/false), tokens);
  EXPECT_EQ(ours.at("n_chunks"), n_chunks);
  EXPECT_EQ(ours.at("n_scored"), theirs.n_scored);
  EXPECT_NEAR(ours.at("ppl").get<double>(), theirs.ppl, 0.005 * theirs.ppl);
  EXPECT_NEAR(ours.at("ppl_stderr").get<double>(), theirs.ppl_stderr, 0.02 * theirs.ppl_stderr);
}

}  // namespace
}  // namespace piquant::testing
