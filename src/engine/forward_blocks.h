#pragma once
// The forward pass of a Llama layer stack as named blocks: embed, attention_block,
// mlp_block, output_head, and linear(), the one place a weight product happens. Each
// block takes its inputs, outputs and scratch explicitly (no hidden state), so the
// inference engine (LlamaContext) and training call the same code.
//
// Shapes: T tokens per call, E = n_embd, H = n_head query heads, KV = n_head_kv key/value
// heads, D = head_dim, F = the layer's n_ff. Activations are row-major, one row per
// token. Buffers are spans at least as large as the call needs (larger is fine: a
// context's buffers hold n_batch rows); a smaller one is an Error.
//
// Arithmetic per token, in order: RMSNorm row by row (vector_ops), products by matmul
// (kernels/matmul.h), RoPE, attention by attend() (a query's result does not depend on
// how queries are blocked into tasks), SwiGLU element by element, residual adds
// x[i] += proj[i]. Splitting token loops over threads changes nothing. Products with
// F32/F16/BF16 weights do not depend on the batch either (matmul.h), so a token's
// logits are the same however a prompt is split; quantized products may depend on how
// many tokens one matmul call gets (the MLP's calls take up to kMlpTokensPerStep).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>

#include "core/thread_pool.h"
#include "engine/llama_model.h"
#include "engine/lora.h"
#include "formats/ggml_type.h"
#include "formats/llama_params.h"
#include "formats/tensor_names.h"
#include "kernels/matrix_view.h"
#include "kernels/rope.h"

namespace piquant {

// Sees the input of every linear layer during a forward pass (importance-matrix
// collection). Called on the evaluating thread, before each product.
class MatmulObserver {
 public:
  virtual ~MatmulObserver() = default;
  // x: n_tokens × cols floats, the input of weight `id` (cols = its input dimension).
  virtual void observe(WeightId id, const float* x, std::int64_t n_tokens, std::int64_t cols) = 0;
};

// The MLP of a long batch runs this many tokens at a time: its two n_ff-wide buffers are
// the largest scratch (2 × 512 × 14336 floats = 59 MB for a 512-token prompt on the 8B
// shape, 15 MB in steps of 128). Speed does not change: the integer kernels take tokens
// in L2-sized chunks of 8-32 anyway, re-reading the weights per chunk.
inline constexpr std::int64_t kMlpTokensPerStep = 128;
inline std::int64_t mlp_step_tokens(std::int64_t n_tokens) { return std::min(n_tokens, kMlpTokensPerStep); }

// What every block reads besides its weights and buffers.
struct ForwardEnv {
  const LlamaParams& params;
  ThreadPool& pool;
  const RopeTable& rope;
  MatmulObserver* observer = nullptr;  // nullptr: none
  const LoraAdapter* lora = nullptr;   // nullptr: none; else linear() adds its updates
  // Training: products take the activations as float for every weight type
  // (kernels/matmul_float.h) instead of rounding them as llama.cpp's inference does.
  bool float_activations = false;
  LoraDropout lora_dropout = {};  // training only: dropout on the adapter's inputs
};

// One layer's KV cache: n_ctx rows of K and n_ctx rows of V, each row n_head_kv · D
// elements of `type` (F32, F16 or BF16), row_bytes apart.
struct KvLayerView {
  std::uint8_t* k = nullptr;
  std::uint8_t* v = nullptr;
  std::size_t row_bytes = 0;
  std::int64_t n_ctx = 0;
  GgmlType type = GgmlType::F16;
};

struct AttentionBuffers {
  std::span<float> xn;    // T × E: the normalised input of wq, wk, wv
  std::span<float> q;     // T × H·D
  std::span<float> k, v;  // T × KV·D: this step's keys and values before they go to the cache
  std::span<float> attn;  // T × H·D: attention output, wo's input
  std::span<float> proj;  // T × E: wo's output
  // attend()'s scratch: pool-size slices of scratch_per_thread floats, each at least one
  // query over p0 + T positions (attend_scratch_floats(1, p0 + T, D)).
  std::span<float> scratch;
  std::size_t scratch_per_thread = 0;
  // Kept for the backward when not empty (training): rstd of each token's RMSNorm (T),
  // the log-sum-exp of each query's attention scores (T × H, token-major).
  std::span<float> rstd;
  std::span<float> lse;
};

struct MlpBuffers {
  std::span<float> xn;        // T × E: the normalised input of w_gate, w_up
  std::span<float> gate, up;  // mlp_step_tokens(T) × F each; gate ends as SwiGLU's output, w_down's input
  std::span<float> proj;      // T × E: w_down's output (+ its bias)
  // Kept for the backward when not empty (training without recomputation): every
  // token's gate and up products before SwiGLU, T × F each.
  std::span<float> kept_gate = {}, kept_up = {};
};

// out (n_tokens × w.rows) = in (n_tokens × w.cols) · wᵀ, after showing `in` to the
// observer as weight {kind, layer} (layer -1 for the output matrix). With an adapter
// that has this weight, out += scale · (drop(in) · Aᵀ) · Bᵀ afterwards (lora.h; drop is
// the identity unless env.lora_dropout is on; this path allocates). token0: the position
// of `in`'s first row in the sequence (for the dropout mask).
void linear(const ForwardEnv& env, WeightKind kind, std::int64_t layer, const MatrixView& w, const float* in,
            std::int64_t n_tokens, float* out, std::int64_t token0 = 0);

// x (T × E) = the embedding rows of the tokens (ids checked by the caller).
void embed(const MatrixView& table, std::span<const std::int32_t> tokens, std::span<float> x);

// x += wo · attention(RoPE(wq · n), cache), n = RMSNorm(x) with w.attn_norm, for tokens at
// positions p0 .. p0 + T - 1. Their keys and values (after RoPE) are stored in kv rows
// p0 .. p0 + T - 1 first; token t then attends causally to rows 0 .. p0 + t.
void attention_block(const ForwardEnv& env, std::int64_t layer, const LayerWeights& w, const KvLayerView& kv, std::int64_t p0,
                     std::int64_t T, std::span<float> x, const AttentionBuffers& buffers);

// x += w_down · (SiLU(w_gate · n) ⊙ (w_up · n)) + b, n = RMSNorm(x) with w.ffn_norm, b =
// w.ffn_down_bias (when not nullptr; added to the product in proj, then proj to x, the
// order llama.cpp's graph adds them in); the products in steps of mlp_step_tokens(T)
// tokens.
void mlp_block(const ForwardEnv& env, std::int64_t layer, const LayerWeights& w, std::int64_t T, std::span<float> x,
               const MlpBuffers& buffers);

// logits ((T - first) × n_vocab) = output · RMSNorm(x row t, norm) for rows first .. T - 1
// of x; the normalised rows go to xn rows 0 .. T - first - 1. Only the rows whose logits
// are wanted go through the output matrix.
void output_head(const ForwardEnv& env, const float* norm, const MatrixView& output, std::span<const float> x,
                 std::int64_t first, std::int64_t T, std::span<float> xn, float* logits);

// Attention runs in tasks of up to kAttendTokens consecutive tokens × query heads sharing
// one KV head (at most kMaxAttendQueries queries), all handed to one attend() call so each
// cached K/V row is converted once for all of them.
inline constexpr std::int64_t kAttendTokens = 4;
inline constexpr std::int64_t kMaxAttendQueries = 64;

// How attention for T tokens at positions p0 .. p0 + T - 1 splits into tasks. Contract:
// - the tasks cover every (token, query head) exactly once; task i is task(i);
// - a task's queries number at most kMaxAttendQueries, and unless it is a single query
//   they fit scratch_floats: attend_scratch_floats(queries, p0 + T, D) ≤ scratch_floats
//   (blocks shrink token-wise first, then heads halve);
// - then a KV head's query heads are halved until there are at least n_threads tasks, or
//   one head per task, so decode (T = 1) keeps every thread busy.
struct AttentionTasks {
  struct Task {
    std::int64_t t0, t1;  // tokens [t0, t1)
    std::int64_t h0, h1;  // query heads [h0, h1), all of KV head kv_head
    std::int64_t kv_head;
  };
  std::int64_t n_tokens = 0, group = 1, n_head_kv = 0;  // group: query heads per KV head
  std::int64_t tokens_per_task = 1, heads_per_task = 1;
  std::int64_t parts = 1;    // tasks per KV head per block of tokens
  std::int64_t n_tasks = 0;  // blocks of tokens × n_head_kv × parts

  Task task(std::int64_t i) const {
    const std::int64_t block = i / (n_head_kv * parts);
    const std::int64_t g = i / parts % n_head_kv;
    const std::int64_t h0 = g * group + i % parts * heads_per_task;
    const std::int64_t t0 = block * tokens_per_task;
    return {t0, std::min(n_tokens, t0 + tokens_per_task), h0, std::min((g + 1) * group, h0 + heads_per_task), g};
  }
};
AttentionTasks plan_attention_tasks(std::int64_t T, std::int64_t p0, std::int64_t n_head, std::int64_t n_head_kv,
                                    std::int64_t head_dim, std::size_t scratch_floats, unsigned n_threads);

}  // namespace piquant
