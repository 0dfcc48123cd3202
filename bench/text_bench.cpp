// Speed of the text side on real inputs: parsing llama.cpp's Llama 3 vocab GGUF (128,256
// tokens, 280,147 merges) and SentencePiece-encoding a 2.6 MB English corpus with Llama
// 2's vocab. These timings used to be assertions in the unit tests (gguf_real_files_test,
// spm_corpus_test), where they measured the machine and its load as much as the code.
//
// Each timing is reported next to an anchor timed in the same run on the same bytes, and
// as a ratio to it, so numbers from different machines or runs can be compared by the
// ratio rather than by the seconds:
//   GGUF parse   / reading the file's bytes into memory (from the page cache),
//   SPM encode   / copying the corpus and counting its UTF-8 code points.
// Every figure is the best of --reps runs (default 5). Do not read much into it on a
// busy machine.
//
//   text_bench [SHARED_DIR] [--reps N]      (SHARED_DIR default: $PIQUANT_SHARED)
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "core/error.h"
#include "formats/gguf.h"
#include "tokenizer/spm_tokenizer.h"
#include "tokenizer/vocab.h"

namespace piquant {
namespace {

using Clock = std::chrono::steady_clock;

// Best (shortest) wall time of `reps` calls of fn, in seconds.
double best_seconds(int reps, const std::function<void()>& fn) {
  double best = 0.0;
  for (int i = 0; i < reps; ++i) {
    const auto start = Clock::now();
    fn();
    const double s = std::chrono::duration<double>(Clock::now() - start).count();
    if (i == 0 || s < best) best = s;
  }
  return best;
}

std::string read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path.string() + ": cannot open");
  std::string bytes(std::filesystem::file_size(path), '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!in) throw Error(path.string() + ": short read");
  return bytes;
}

void report(const char* what, double seconds, double anchor_seconds, const char* anchor, double megabytes) {
  std::printf("%-34s %9.3f ms  %8.2f MB/s\n", what, seconds * 1e3, megabytes / seconds);
  std::printf("%-34s %9.3f ms  %8.2f MB/s\n", anchor, anchor_seconds * 1e3, megabytes / anchor_seconds);
  std::printf("%-34s %9.1f x\n\n", "ratio (time / anchor time)", seconds / anchor_seconds);
}

int run(const std::filesystem::path& shared, int reps) {
  const auto gguf = shared / "tokenizers/ggml-vocab/ggml-vocab-llama-bpe.gguf";
  const auto spm_model = shared / "tokenizers/llama2/tokenizer.model";
  const auto corpus = shared / "corpora/sotu_1950plus.txt";
  for (const auto& p : {gguf, spm_model, corpus}) {
    if (!std::filesystem::exists(p)) throw Error(p.string() + ": missing (give the shared test data folder)");
  }
  std::printf("best of %d runs each\n\n", reps);

  // GGUF: the file is read once first, so both timings start from the page cache.
  const double file_mb = static_cast<double>(std::filesystem::file_size(gguf)) / 1e6;
  std::size_t n_tokens = 0;
  (void)read_bytes(gguf);
  const double read_s = best_seconds(reps, [&] { (void)read_bytes(gguf); });
  const double parse_s = best_seconds(reps, [&] {
    const GgufFile file(gguf.string());
    n_tokens = file.at("tokenizer.ggml.tokens").as_array().size();
  });
  std::printf("GGUF vocab %s: %.1f MB, %zu tokens\n", gguf.filename().c_str(), file_mb, n_tokens);
  report("parse (GgufFile)", parse_s, read_s, "anchor: read the file", file_mb);

  // SPM: encode the whole corpus.
  const std::string text = read_bytes(corpus);
  const double text_mb = static_cast<double>(text.size()) / 1e6;
  const SpmTokenizer tokenizer(load_vocab_sentencepiece(spm_model.string()));
  std::size_t n_ids = 0;
  std::uint64_t code_points = 0;
  const double encode_s = best_seconds(reps, [&] { n_ids = tokenizer.encode(text, false, false).size(); });
  const double scan_s = best_seconds(reps, [&] {
    const std::string copy = text;
    code_points = static_cast<std::uint64_t>(
        std::count_if(copy.begin(), copy.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
  });
  std::printf("SPM encode %s: %.2f MB, %llu code points -> %zu tokens\n", corpus.filename().c_str(), text_mb,
              static_cast<unsigned long long>(code_points), n_ids);
  report("encode (SpmTokenizer, Llama 2)", encode_s, scan_s, "anchor: copy + count code points", text_mb);
  return 0;
}

}  // namespace
}  // namespace piquant

int main(int argc, char** argv) {
  std::filesystem::path shared;
  int reps = 5;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--reps" && i + 1 < argc) {
      reps = std::atoi(argv[++i]);
    } else if (!arg.empty() && arg[0] != '-' && shared.empty()) {
      shared = arg;
    } else {
      std::cerr << "usage: text_bench [SHARED_DIR] [--reps N]\n";
      return 2;
    }
  }
  if (shared.empty()) {
    const char* env = std::getenv("PIQUANT_SHARED");
    if (env == nullptr || *env == '\0') {
      std::cerr << "text_bench: give the shared test data folder or set PIQUANT_SHARED\n";
      return 2;
    }
    shared = env;
  }
  if (reps < 1) {
    std::cerr << "text_bench: --reps must be at least 1\n";
    return 2;
  }
  try {
    return piquant::run(shared, reps);
  } catch (const std::exception& e) {
    std::cerr << "text_bench: " << e.what() << "\n";
    return 1;
  }
}
