#include "checkpoint/synthetic.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/half.h"
#include "formats/hf_config.h"
#include "formats/safetensors.h"
#include "checkpoint/checkpoint.h"
#include "formats/tensor_names.h"

namespace piquant {
namespace {

LlamaParams llama3_base() {
  LlamaParams p;
  p.n_vocab = 128256;
  p.rms_norm_eps = 1e-5;
  p.rope_theta = 500000.0;
  p.n_ctx_train = 131072;
  p.bos_token_id = 128000;
  p.eos_token_ids = {128001};
  return p;
}

// splitmix64: seeds independent streams from (seed, tensor, chunk).
std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// N(0, stddev) as bf16 by inverse-CDF lookup on 16 random bits: four values per
// 64-bit draw, fast enough to fill 16 GB in seconds.
class NormalBf16Table {
 public:
  explicit NormalBf16Table(float stddev) {
    for (std::size_t i = 0; i < table_.size(); ++i) {
      const double p = (static_cast<double>(i) + 0.5) / static_cast<double>(table_.size());
      table_[i] = f32_to_bf16(static_cast<float>(stddev * inverse_normal_cdf(p)));
    }
  }
  std::uint16_t operator[](std::uint16_t i) const { return table_[i]; }

 private:
  // Bisection on erfc: plenty precise for 65536 quantiles.
  static double inverse_normal_cdf(double p) {
    double lo = -10.0, hi = 10.0;
    for (int it = 0; it < 80; ++it) {
      const double mid = 0.5 * (lo + hi);
      if (0.5 * std::erfc(-mid / std::sqrt(2.0)) < p) lo = mid; else hi = mid;
    }
    return 0.5 * (lo + hi);
  }
  std::array<std::uint16_t, 65536> table_{};
};

void fill_normal(const NormalBf16Table& table, std::uint64_t stream, std::uint16_t* out, std::size_t n) {
  std::uint64_t state = mix(stream);
  std::size_t i = 0;
  while (i < n) {
    state += 0x9e3779b97f4a7c15ull;
    std::uint64_t r = mix(state);
    for (int k = 0; k < 4 && i < n; ++k, ++i, r >>= 16) out[i] = table[static_cast<std::uint16_t>(r)];
  }
}

std::int64_t parse_int(std::string_view text, const std::string& spec) {
  std::int64_t v = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size()) throw Error("--mlp-widths '" + spec + "': '" + std::string(text) + "' is not a number");
  return v;
}

}  // namespace

std::vector<std::string> synth_preset_names() { return {"llama-3.1-8b", "llama-3.2-1b", "tiny"}; }

bool synth_preset_has_own_tokenizer(const std::string& name) { return name == "tiny"; }

LlamaParams synth_preset(const std::string& name) {
  LlamaParams p = llama3_base();
  if (name == "llama-3.1-8b") {
    p.n_embd = 4096;
    p.n_layer = 32;
    p.n_head = 32;
    p.n_head_kv = 8;
    p.head_dim = 128;
    p.n_ff.assign(32, 14336);
    p.rope_scaling = RopeScaling{"llama3", 8.0, 1.0, 4.0, 8192};
    p.eos_token_ids = {128001, 128008, 128009};
  } else if (name == "llama-3.2-1b") {
    p.n_embd = 2048;
    p.n_layer = 16;
    p.n_head = 32;
    p.n_head_kv = 8;
    p.head_dim = 64;
    p.n_ff.assign(16, 8192);
    p.rope_scaling = RopeScaling{"llama3", 32.0, 1.0, 4.0, 8192};
    p.tie_word_embeddings = true;
    p.eos_token_ids = {128001, 128008, 128009};
  } else if (name == "tiny") {
    p.n_vocab = 512;
    p.n_embd = 256;
    p.n_layer = 4;
    p.n_head = 4;
    p.n_head_kv = 2;
    p.head_dim = 64;
    p.n_ff.assign(4, 512);
    p.n_ctx_train = 2048;
    p.rope_scaling = RopeScaling{"llama3", 8.0, 1.0, 4.0, 8192};
    p.bos_token_id = -1;  // from the tokenizer
    p.eos_token_ids.clear();
  } else {
    std::string names;
    for (const auto& n : synth_preset_names()) names += (names.empty() ? "" : ", ") + n;
    throw Error("unknown preset '" + name + "' (presets: " + names + ")");
  }
  return p;
}

void apply_mlp_widths(LlamaParams& params, const std::string& spec) {
  if (spec.empty()) return;
  std::vector<std::string> items;
  for (std::size_t start = 0;;) {
    const std::size_t comma = spec.find(',', start);
    items.push_back(spec.substr(start, comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  const bool ranges = items.front().find(':') != std::string::npos;
  if (!ranges) {
    if (static_cast<std::int64_t>(items.size()) != params.n_layer) {
      throw Error("--mlp-widths '" + spec + "': " + std::to_string(items.size()) + " widths for " +
                  std::to_string(params.n_layer) + " layers (or use LAYERS:WIDTH, e.g. 4-27:10752)");
    }
    for (std::size_t l = 0; l < items.size(); ++l) params.n_ff[l] = parse_int(items[l], spec);
  } else {
    for (const std::string& item : items) {
      const std::size_t colon = item.find(':');
      if (colon == std::string::npos) throw Error("--mlp-widths '" + spec + "': mix of plain widths and LAYERS:WIDTH");
      const std::string layers = item.substr(0, colon);
      const std::size_t dash = layers.find('-');
      const std::int64_t first = parse_int(std::string_view(layers).substr(0, dash), spec);
      const std::int64_t last = dash == std::string::npos ? first : parse_int(std::string_view(layers).substr(dash + 1), spec);
      const std::int64_t width = parse_int(std::string_view(item).substr(colon + 1), spec);
      if (first < 0 || last < first || last >= params.n_layer) {
        throw Error("--mlp-widths '" + spec + "': layers " + layers + " outside 0-" + std::to_string(params.n_layer - 1));
      }
      for (std::int64_t l = first; l <= last; ++l) params.n_ff[static_cast<std::size_t>(l)] = width;
    }
  }
  for (const std::int64_t w : params.n_ff) {
    if (w <= 0) throw Error("--mlp-widths '" + spec + "': widths must be positive");
  }
}

void write_synthetic_weights(const LlamaParams& params, const std::string& dir, const SynthOptions& options) {
  namespace fs = std::filesystem;
  params.validate("synthetic model");
  fs::create_directories(dir);
  {
    AtomicFileWriter config((fs::path(dir) / "config.json").string());
    const std::string text = hf_config_to_json(params).dump(2) + "\n";
    config.write(text.data(), text.size());
    config.commit();
  }

  const NormalBf16Table table(options.stddev);
  const unsigned threads = options.threads ? options.threads : std::max(1u, std::thread::hardware_concurrency());
  SafetensorsWriter writer(dir, options.max_shard_bytes);
  writer.set_metadata("format", "pt");
  std::vector<CheckpointTensor> layout;
  for (auto& t : llama_tensor_layout(params)) {
    if (t.id.kind != WeightKind::RopeFreqs) layout.push_back(std::move(t));
  }
  for (const auto& t : layout) writer.add(hf_tensor_name(t.id), SafeDtype::BF16, {t.shape.rbegin(), t.shape.rend()});

  constexpr std::size_t kChunk = 1u << 24;  // values per step
  std::vector<std::uint16_t> buffer(kChunk);
  for (std::size_t ti = 0; ti < layout.size(); ++ti) {
    const CheckpointTensor& t = layout[ti];
    const std::size_t n = static_cast<std::size_t>(t.n_elements());
    const bool is_norm = t.shape.size() == 1;
    for (std::size_t done = 0, chunk = 0; done < n; done += kChunk, ++chunk) {
      const std::size_t count = std::min(kChunk, n - done);
      if (is_norm) {  // norm weights 1, ffn_down biases 0
        std::fill_n(buffer.begin(), count, f32_to_bf16(t.id.kind == WeightKind::FfnDownBias ? 0.0f : 1.0f));
      } else {
        // Each thread fills a slice from its own stream; the result does not depend on the thread count.
        constexpr std::size_t kSlice = 1u << 16;
        const std::size_t slices = (count + kSlice - 1) / kSlice;
        std::vector<std::thread> pool;
        for (unsigned w = 0; w < threads; ++w) {
          pool.emplace_back([&, w] {
            for (std::size_t s = w; s < slices; s += threads) {
              const std::uint64_t stream = mix(options.seed ^ mix(ti * 1000003ull + chunk)) + s;
              fill_normal(table, stream, buffer.data() + s * kSlice, std::min(kSlice, count - s * kSlice));
            }
          });
        }
        for (auto& th : pool) th.join();
      }
      writer.write({reinterpret_cast<const std::uint8_t*>(buffer.data()), count * sizeof(std::uint16_t)});
    }
  }
  writer.finish();
}

}  // namespace piquant
