#pragma once
// The backward of the forward blocks (forward_blocks.h), block by block, for training.
// No tape: each block's backward is written out here beside the forward it inverts,
// and reads what that forward kept (AttentionBuffers / MlpBuffers with their keep
// fields) or recomputes it. Training runs every sequence from position 0 with an F32
// KV view of its own (n_ctx = T), so a block's keys and values are its K/V rows.
//
// Gradients accumulate (+=) into LayerGrads (F32, the weights' shapes; nullptr: frozen,
// nothing computed) and into an adapter's gradient (the same shapes as the adapter).
// Determinism: every sum runs in an order fixed by the shapes alone — matmul gradients
// per kernels/matmul_backward.h, norm weights summed over tokens ascending, attention's
// K/V gradients per KV head in one task — so results do not depend on the thread count.
#include <cstdint>
#include <span>

#include "engine/forward_blocks.h"
#include "engine/lora.h"

namespace piquant {

struct LayerGrads {
  float* attn_norm = nullptr;  // n_embd
  float *wq = nullptr, *wk = nullptr, *wv = nullptr, *wo = nullptr;
  float* ffn_norm = nullptr;  // n_embd
  float *w_gate = nullptr, *w_up = nullptr, *w_down = nullptr;
};

// Sees an MLP block's values during its backward (first-order pruning scores): for each
// step of n tokens (tokens token0 .. token0 + n - 1 of the block, ascending), after the
// step's gradients are known and before they flow on. Every array is n × F, row-major,
// F = the layer's n_ff: gate = w_gate · xn, up = w_up · xn, h = SiLU(gate) ⊙ up (w_down's
// input), and ∂L/∂ of each. Called on the evaluating thread (it may use the pool).
struct MlpStepValues {
  std::int64_t layer = 0, token0 = 0, n_tokens = 0, n_ff = 0;
  const float *gate = nullptr, *up = nullptr, *h = nullptr;
  const float *dgate = nullptr, *dup = nullptr, *dh = nullptr;
};
class MlpBackwardObserver {
 public:
  virtual ~MlpBackwardObserver() = default;
  virtual void observe(const MlpStepValues& step) = 0;
};

struct BackwardEnv {
  const ForwardEnv& forward;          // the forward's params, pool, rope and adapter
  LoraAdapter* lora_grads = nullptr;  // gradients of forward.lora's matrices; nullptr: none
  MlpBackwardObserver* mlp_observer = nullptr;  // nullptr: none
};

// Given out = linear(in) (forward_blocks.h, incl. an adapter's update) and dout:
// din += dout · w (+ the adapter's path) unless din is nullptr; dw += doutᵀ · in unless
// dw is nullptr; the adapter's gradients dA, dB += when env has them for this weight.
// token0 as for linear() (the dropout mask).
void linear_backward(const BackwardEnv& env, WeightKind kind, std::int64_t layer, const MatrixView& w, const float* in,
                     std::int64_t n_tokens, const float* dout, float* din, float* dw, std::int64_t token0 = 0);

// Buffers of an attention block's backward (T tokens; sizes as AttentionBuffers).
struct AttentionGradBuffers {
  std::span<float> dattn;   // T × H·D
  std::span<float> dq;      // T × H·D
  std::span<float> dk, dv;  // T × KV·D
  std::span<float> dxn;     // T × E
};

// Backward of attention_block at p0 = 0. x_in: the block's input (T × E); kept: the
// buffers the forward filled with rstd and lse kept; kv: the F32 view it wrote K and V
// to. dx (T × E) holds ∂L/∂(block output) and becomes ∂L/∂x_in (the residual passes
// it through; the block adds its part).
void attention_block_backward(const BackwardEnv& env, std::int64_t layer, const LayerWeights& w, const KvLayerView& kv,
                              std::int64_t T, std::span<const float> x_in, const AttentionBuffers& kept,
                              std::span<float> dx, const AttentionGradBuffers& buffers, const LayerGrads& grads);

// Buffers of an MLP block's backward. The forward's gate and up products are recomputed
// here in steps of mlp_step_tokens(T) tokens (activation checkpointing: nothing T × F is
// kept), unless the forward kept them (MlpBuffers::kept_gate / kept_up, given here).
struct MlpGradBuffers {
  std::span<float> xn;                  // T × E
  std::span<float> rstd;                // T
  std::span<float> gate, up, h;         // step × F each: the step's products and SwiGLU output
  std::span<float> dh, dgate, dup;      // step × F each
  std::span<float> dxn;                 // T × E
  std::span<const float> kept_gate = {}, kept_up = {};  // T × F each, or empty: recompute
};

// Backward of mlp_block: x_in is the block's input; dx as for attention_block_backward.
void mlp_block_backward(const BackwardEnv& env, std::int64_t layer, const LayerWeights& w, std::int64_t T,
                        std::span<const float> x_in, std::span<float> dx, const MlpGradBuffers& buffers,
                        const LayerGrads& grads);

// Backward of y = RMSNorm(x rows) · weight over `rows` rows of E: dx += ∂L/∂x (rows in
// parallel), dweight += Σ_t ∂L/∂weight over rows ascending (unless nullptr).
void rms_norm_rows_backward(ThreadPool& pool, const float* x, const float* weight, const float* rstd, const float* dy,
                            std::int64_t E, std::int64_t rows, float* dx, float* dweight);

// rstd[t] of each row (what rms_norm multiplies row t by).
void rms_norm_rows_rstd(ThreadPool& pool, const float* x, std::int64_t E, float eps, std::int64_t rows, float* rstd);

}  // namespace piquant
